"""The geometry analysis of one A-vs-B comparison: its typed result and `run_geometry`.

Every model is read against the shared reference of the pair: the unembedding geometry of
ref, A and B and how far training moved each token's unembedding (‖W_z − W_ref,z‖); on the
training pairs, the single-token prediction, CHES on the reference against the observed
change of log π(y⁺), likelihood displacement at every saved step of A's and B's
trajectories, and where the exact response mass of ref, A and B goes. `GeometryResult.to_json`
writes the layout of the report's JSON twin, a file format: its keys and their order are
fixed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.analysis.geometry.displacement import (
    DisplacementPoint,
    displacement_point,
    mass_by_kind,
)
from interp.analysis.geometry.hidden_similarity import (
    ChesScores,
    ChesSpearman,
    ches_scores,
    ches_spearman,
)
from interp.analysis.geometry.token_geometry import (
    Gram,
    SingleToken,
    geometry_tokens,
    gram,
    single_token,
    unembedding,
)
from interp.analysis.interventions import check_pair
from interp.core.sampling import EXACT_THRESHOLD, enumerate_responses
from interp.core.scoring import split_logprobs
from interp.runs.sources import SourceOptions, resolve
from interp.runs.store import CheckpointRef


@dataclass
class GeometryResult:
    a: str
    b: str
    ref: str
    tokens: list[str]  # the response tokens' names, the index of every per-token array
    unembedding: dict[str, Gram]  # ref / A / B
    unembedding_shift: dict[str, Float[Tensor, " n_tokens"]]  # A / B: ‖W_z − W_ref,z‖
    single: SingleToken
    pairs: list[tuple[int, int, int]]  # training pairs (s, y⁺, y⁻), index of per-pair arrays
    ches: ChesScores
    preferred_change: dict[str, Float[Tensor, " n_pairs"]]  # A / B: log π(y⁺) − log π_ref(y⁺)
    ches_spearman: dict[str, ChesSpearman]  # A / B
    displacement: dict[str, list[DisplacementPoint]]  # A / B: one per saved step
    mass: dict[str, dict[str, float]]  # ref / A / B -> response kind -> mean probability
    exact_threshold: float
    checkpoints: list[CheckpointRef]
    not_computable: dict[str, str] = field(default_factory=dict)  # metric -> why not

    def to_json(self, findings: list[str]) -> dict[str, Any]:
        """The report's `data`, in the layout of its JSON twin; `findings` is the page's
        prose, stored last."""
        point_fields = [f.name for f in dataclasses.fields(DisplacementPoint)]
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "tokens": list(self.tokens),
            "unembedding": {who: g.to_json() for who, g in self.unembedding.items()},
            "unembedding_shift": {who: s.tolist() for who, s in self.unembedding_shift.items()},
            "single": self.single.to_json(),
            "pairs": [list(p) for p in self.pairs],
            "ches": self.ches.to_json(),
            "preferred_change": {who: c.tolist() for who, c in self.preferred_change.items()},
            "ches_spearman": {who: r.to_json() for who, r in self.ches_spearman.items()},
            "displacement": {
                who: {name: [getattr(p, name) for p in points] for name in point_fields}
                for who, points in self.displacement.items()
            },
            "mass": {who: dict(m) for who, m in self.mass.items()},
            "exact_threshold": self.exact_threshold,
            "checkpoints": self.checkpoints,
            "not_computable": self.not_computable,
            "findings": list(findings),
        }


def run_geometry(
    a: str,
    b: str,
    root: Path | None = None,
    exact_threshold: float = EXACT_THRESHOLD,
    progress: bool = True,
    sources: SourceOptions | None = None,
) -> GeometryResult:
    pair = resolve(a, b, root, sources)
    check_pair(pair)
    ref_ck = pair.ref.checkpoint()
    ref = ref_ck.model
    models = {"A": pair.a.checkpoint().model, "B": pair.b.checkpoint().model}
    everyone = {"ref": ref} | models
    data = pair.dataset
    train, task = data.train, data.task

    tokens = geometry_tokens(train)
    W = {k: unembedding(m, tokens) for k, m in everyone.items()}
    scores = ches_scores(ref, train)
    ref_seq = split_logprobs(ref, train)
    change = {k: (split_logprobs(m, train) - ref_seq)[train.chosen] for k, m in models.items()}

    used = [ref_ck]
    disp: dict[str, list[DisplacementPoint]] = {}
    for who, r in (("A", pair.a), ("B", pair.b)):
        disp[who] = []
        for c in tqdm(
            r.trajectory(),
            desc=f"displacement {who}",
            disable=None if progress else True,
            leave=False,
        ):
            disp[who].append(displacement_point(c.model, train, c.step, exact_threshold))
            used.append(c)

    mass = (
        {
            k: mass_by_kind(
                enumerate_responses(m, task, train.prompts, task.max_new_tokens, exact_threshold),
                task,
            )
            for k, m in everyone.items()
        }
        if task.enumerable
        else {}
    )
    return GeometryResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        tokens=[task.token_text([t]) for t in tokens],
        unembedding={k: gram(w) for k, w in W.items()},
        unembedding_shift={k: (W[k] - W["ref"]).norm(dim=1) for k in models},
        single=single_token(ref, models, train),
        pairs=list(
            zip(
                train.pair_prompt.tolist(),
                train.seq_response[train.chosen].tolist(),
                train.seq_response[train.rejected].tolist(),
            )
        ),
        ches=scores,
        preferred_change=change,
        ches_spearman={k: ches_spearman(scores, c) for k, c in change.items()},
        displacement=disp,
        mass=mass,
        exact_threshold=exact_threshold,
        checkpoints=[c.ref for c in used],
        not_computable=pair.not_computable,
    )

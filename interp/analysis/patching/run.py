"""The activation-patching run: settings, engine checks, the typed result and `run_patching`.

One run loads the pair's checkpoints (ref, A, B) and A's test prompts of the most common
length. It patches B into A where A is out of distribution and B is not (`cross`), patches
clean into corrupted runs within each of ref, A and B (`within`), and measures two
invariants of the engine on the same prompts with their reference answers (`checks`): a
model patched with its own activations is unchanged, and B's last `resid_post` patched at
every position gives A's readout of B's residual stream. Either analysis may be not
computable for the task (no judge; nothing to corrupt): its field is then None.
`PatchingResult.to_json` rebuilds the report's JSON twin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.analysis.interventions import check_pair, run_patched, sites
from interp.analysis.patching.cross import CrossPatching, cross_policy, divergence
from interp.analysis.patching.inputs import probe_tokens, spread
from interp.analysis.patching.within import PlacePatching, place_patching, within_pairs
from interp.core.data import modal_prompts
from interp.errors import UserError
from interp.lens import HookedTransformer
from interp.options import option, seed_error, seed_option
from interp.runs.sources import SourceOptions, resolve
from interp.runs.store import CheckpointRef


@dataclass
class PatchingSettings:
    """The knobs of a patching run (a command's options inherit them, help included)."""

    max_prompts: int = option(64, help="prompts per analysis, evenly spread over the test split")
    seed: int = seed_option(0, help="seed of the corrupted digits")

    def validate(self) -> None:
        if self.max_prompts < 1:
            raise UserError("--max-prompts must be at least 1")
        if (why := seed_error(self.seed)) is not None:
            raise UserError(f"--seed: {why}")


@dataclass(frozen=True)
class EngineChecks:
    """Invariants of the engine measured on real inputs (max |difference|, 0 expected)."""

    self_patch_max_abs_logit_change: float
    resid_post_all_positions_vs_readout_max_abs: float


def engine_checks(
    a: HookedTransformer, b: HookedTransformer, tokens: Int[Tensor, "batch pos"]
) -> EngineChecks:
    """Patching a model's own activations changes nothing; B's final resid_post at every
    position gives A's readout of B's residual stream."""
    site_list, positions = sites(a), range(tokens.shape[1])
    with torch.inference_mode():
        a_logits, a_cache = a.run_with_cache(tokens)
        _, b_cache = b.run_with_cache(tokens)
        last = site_list[-1]
        own = max(
            float((run_patched(a, tokens, a_cache, [(s, p)]) - a_logits).abs().max())
            for s in site_list
            for p in positions
        )
        all_pos = run_patched(a, tokens, b_cache, [(last, p) for p in positions])
        readout = a.unembed(a.ln_final(b_cache[last.hook]))
    return EngineChecks(own, float((all_pos - readout).abs().max()))


@dataclass
class PatchingResult:
    a: str
    b: str
    ref: str
    cross: CrossPatching | None  # None: no prompt where A is OOD and B is not (or A ≠ B)
    within: dict[str, list[PlacePatching]] | None  # ref / A / B -> places; None: not computable
    checks: EngineChecks
    checkpoints: list[CheckpointRef]
    judged: bool = True  # False: the task has no judge (prompts where A's answer is not B's)
    not_computable: dict[str, str] = field(default_factory=dict)  # metric -> why not

    def to_json(self, findings: list[str]) -> dict[str, Any]:
        """The report's `data`; `findings` are the page's prose (`interp.present.pages`)."""
        within = self.within
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "cross": None if self.cross is None else self.cross.to_json(),
            "within": None
            if within is None
            else {who: {p.place: p.to_json() for p in places} for who, places in within.items()},
            "checks": dataclasses.asdict(self.checks),
            "checkpoints": self.checkpoints,
            "not_computable": self.not_computable,
            "findings": findings,
        }


def run_patching(
    a: str,
    b: str,
    root: Path | None = None,
    settings: PatchingSettings | None = None,
    sources: SourceOptions | None = None,
) -> PatchingResult:
    """Cross-policy patching of B into A, within-policy patching of ref, A and B, and the
    engine checks, on A's test prompts of the most common length (at most
    `settings.max_prompts` per analysis; corrupting draws seeded with `settings.seed`)."""
    opts = settings or PatchingSettings()
    opts.validate()
    pair = resolve(a, b, root, sources)
    cks = check_pair(pair)
    models = {k: c.model for k, c in cks.items()}
    data = pair.dataset
    task = data.task
    prompts = modal_prompts(task, data.test.prompts)
    div = divergence(models["A"], models["B"], task, prompts)
    cross = cross_policy(models["A"], models["B"], task, prompts, div, opts.max_prompts)
    pairs = within_pairs(task, prompts[spread(range(len(prompts)), opts.max_prompts)], opts.seed)
    within = None if pairs is None else {k: place_patching(m, pairs) for k, m in models.items()}
    return PatchingResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        cross=cross,
        within=within,
        checks=engine_checks(models["A"], models["B"], probe_tokens(task, prompts[:16])),
        checkpoints=[c.ref for c in cks.values()],
        judged=div.judged,
        not_computable=pair.not_computable,
    )

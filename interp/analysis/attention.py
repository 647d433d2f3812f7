"""Attention patterns of two policies and their reference, and how they drift in training.

`pattern(model, "305=303")` gives the attention of every head on one token string:
`pattern[layer, head, query, key]` is how much the query position attends to the key
position (each row sums to 1 over the causal window). Query position t predicts token
t + 1, so on "305=303" the row of `=` is where the first response token is chosen.
Patterns come from TransformerLens's `hook_pattern` via `run_with_cache`.

For comparisons across models the input is fixed: each test prompt followed by the
task's reference response, teacher-forced with EOS dropped (on the number line the
identity answer, "s=s"), so every model attends over the same tokens, and positions line
up across the prompts of one token length (the most common one: `modal_prompts`). The
query rows that matter are those that predict response tokens: the last prompt token
(`=`) and each response token.

Summaries per head, over those rows and the test prompts:
- entropy of the attention distribution (nats);
- where the attention goes: each prompt position (hundreds, tens, units, `=`), or earlier
  response tokens ("response");
- drift from another model: the total variation distance ½ Σ_k |p(k) − q(k)| between the
  two attention distributions of a row (0 = identical, 1 = disjoint), averaged.

`run_attention` computes these for the reference, A and B at their final steps, along
both training trajectories (beside each checkpoint's kl_exact and OOD rate), and picks
single prompts where A answers out of distribution and B does not (the task's judge; a
task without one leaves `examples` None: not computable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from interp.analysis.interventions import check_pair
from interp.core.data import Dataset, modal_prompts, most_common
from interp.core.numberline import get_task
from interp.core.sampling import EXACT_THRESHOLD, greedy
from interp.core.task import Task
from interp.errors import UserError
from interp.lens import HookedTransformer
from interp.runs.evaluations import evaluation
from interp.runs.names import DEFAULT_PRESET
from interp.runs.sources import FolderPolicy, SourceOptions, resolve
from interp.runs.store import Checkpoint, CheckpointRef, Run, find_run

if TYPE_CHECKING:
    import pandas as pd

Role = Literal["ref", "A", "B"]
ROLES: tuple[Role, ...] = ("ref", "A", "B")
TRAJECTORY_METRICS = ("kl_exact", "ood_rate")


@dataclass(frozen=True)
class Pattern:
    """Attention of every layer and head on one sequence, with its token labels."""

    text: str
    tokens: list[str]
    values: Float[Tensor, "layer head_index query_pos key_pos"]

    def __getitem__(self, idx: int | slice | tuple[int | slice, ...]) -> Tensor:
        return self.values[idx]

    def frame(self, layer: int = 0, head: int = 0) -> pd.DataFrame:
        """One head's pattern as a pandas DataFrame: rows = queries, columns = keys."""
        import pandas as pd  # pandas is only needed here, in interactive use

        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        return pd.DataFrame(self.values[layer, head].numpy(), index=labels, columns=labels)


@torch.inference_mode()
def patterns(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch layer head_index query_pos key_pos"]:
    """Every head's attention pattern on each sequence."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    pats = torch.stack([cache["pattern", l] for l in range(model.cfg.n_layers)], dim=1)
    return pats.float().cpu()  # beside the inputs and the figures, whatever the model's device


@torch.inference_mode()
def pattern(
    model: HookedTransformer | str,
    text: str,
    step: int | None = None,
    root: Path | None = None,
    *,
    task: Task | None = None,
) -> Pattern:
    """Attention of every head of a model on a string, e.g. `pattern(m, "305=303")`.

    `model` may be a policy name (`pattern("beta0.01", "305=303")`): its final checkpoint,
    or `step`, under `root`, tokenized by its preset's task. `task` tokenizes when given;
    otherwise a bare model uses the default preset's task (the number line's tokenizer)."""
    if isinstance(model, str):
        run = find_run(model, root)
        model = run.checkpoint(step).model
        if task is None:
            task = get_task(run.key.preset)
    if task is None:
        task = get_task(DEFAULT_PRESET)
    ids = task.encode(text)
    return Pattern(
        text, [task.token_text([i]) for i in ids], patterns(model, torch.tensor([ids]))[0]
    )


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class IdentityInputs:
    """Each prompt followed by its reference response (EOS dropped), one length for all."""

    prompts: Int[Tensor, " batch"]
    tokens: Int[Tensor, "batch pos"]
    labels: list[str]  # one per position, from the task
    n_prompt: int  # prompt tokens; the row of the last one predicts the first response token

    @property
    def parts(self) -> list[str]:
        """Names of the key groups of `head_stats`: each prompt position, then "response"."""
        return self.labels[: self.n_prompt] + ["response"]


def identity_inputs(task: Task, prompts: Int[Tensor, " batch"]) -> IdentityInputs:
    """Prompt + teacher-forced response tokens (`Task.teacher_response`, EOS dropped) and the
    task's position labels, for the prompts whose prompt and response lengths are the most
    common pair (all of them on the number line, whose answers have the prompt's length),
    so that positions line up across prompts."""
    rows = []
    for s in prompts.tolist():
        y = task.teacher_response(s)
        if y is None:
            raise UserError(
                f"the {task.name} task knows no response to teacher-force after prompt {s}; "
                "the attention analysis runs every model on prompt + response"
            )
        rows.append((task.prompt_ids(s), task.response_ids(y)[:-1]))  # response_ids ends in EOS
    shapes = [(len(p), len(r)) for p, r in rows]
    n_prompt, n_response = most_common(shapes)
    keep = [i for i, x in enumerate(shapes) if x == (n_prompt, n_response)]
    prompts = prompts[torch.tensor(keep)]
    return IdentityInputs(
        prompts=prompts,
        tokens=torch.tensor([rows[i][0] + rows[i][1] for i in keep]),
        labels=task.position_labels(int(prompts[0]), n_response),
        n_prompt=n_prompt,
    )


# ----------------------------------------------------------------------------- head stats


@dataclass(frozen=True)
class HeadStats:
    """Per-head summaries over the response rows of identity inputs."""

    entropy: Float[Tensor, "layer head_index"]
    parts: Float[Tensor, "layer head_index part"]  # share of attention per key group
    drift: Float[Tensor, "layer head_index"] | None = None  # total variation from a baseline

    def to_json(self) -> dict[str, object]:
        return {
            "entropy": self.entropy.tolist(),
            "parts": self.parts.tolist(),
            "drift": None if self.drift is None else self.drift.tolist(),
        }


def head_stats(
    pats: Float[Tensor, "batch layer head_index query_pos key_pos"],
    n_prompt: int,
    baseline: Float[Tensor, "batch layer head_index query_pos key_pos"] | None = None,
) -> HeadStats:
    """Entropy, share per key group and (with `baseline`, another model's patterns on the
    same inputs) drift, over the rows that predict response tokens, averaged over the batch.
    Key groups: each of the `n_prompt` prompt positions, then the response so far."""
    n_pos = pats.shape[-1]
    rows = list(range(n_prompt - 1, n_pos))
    p = pats[:, :, :, rows, :]  # [batch, layer, head, row, key]
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    groups = [[i] for i in range(n_prompt)] + [list(range(n_prompt, n_pos))]
    mass = torch.stack([p[..., g].sum(-1) for g in groups], dim=-1)  # [..., row, part]
    drift = None
    if baseline is not None:
        drift = 0.5 * (p - baseline[:, :, :, rows, :]).abs().sum(-1).mean(dim=(0, 3))
    return HeadStats(ent.mean(dim=(0, 3)), mass.mean(dim=(0, 3)), drift)


# ----------------------------------------------------------------------------- the analysis


@dataclass(frozen=True)
class Trajectory:
    """One run's head stats at each saved step (drift from the reference), beside the
    checkpoint's kl_exact and greedy OOD rate (None: not computable)."""

    steps: list[int]
    entropy: Float[Tensor, "step layer head_index"]
    parts: Float[Tensor, "step layer head_index part"]
    drift: Float[Tensor, "step layer head_index"]
    kl_exact: list[float | None]
    ood_rate: list[float | None]

    def to_json(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "entropy": self.entropy.tolist(),
            "parts": self.parts.tolist(),
            "drift": self.drift.tolist(),
            "kl_exact": self.kl_exact,
            "ood_rate": self.ood_rate,
        }


@dataclass(frozen=True)
class Example:
    """One test prompt where A answers out of distribution and B does not."""

    prompt: int
    text: str  # the identity input
    tokens: list[str]  # its tokens, one per position (not in the JSON twin: `text` is)
    answers: dict[Role, str]  # each model's greedy response
    patterns: dict[Role, Float[Tensor, "layer head_index query_pos key_pos"]]

    def to_json(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "answers": dict(self.answers),
            "patterns": {k: v.tolist() for k, v in self.patterns.items()},
        }


@dataclass
class AttentionResult:
    a: str
    b: str
    ref: str
    positions: list[str]  # labels of the identity inputs' positions
    parts: list[str]  # key groups of the `parts` shares
    n_prompts: int
    mean: dict[Role, Float[Tensor, "layer head_index query_pos key_pos"]]  # over the prompts
    final: dict[Role, HeadStats]  # at the final step; drift from the reference
    a_vs_b: Float[Tensor, "layer head_index"]  # drift between A and B at the final step
    examples: list[Example] | None  # None: the task has no judge (not computable)
    trajectory: dict[Role, Trajectory]  # "A" and "B"
    checkpoints: list[CheckpointRef]  # every model used
    not_computable: dict[str, str] = field(default_factory=dict)  # metric -> why not

    def to_json(self, findings: list[str]) -> dict[str, object]:
        """The report's `data`: every field, and the findings prose of the page."""
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "positions": self.positions,
            "parts": self.parts,
            "n_prompts": self.n_prompts,
            "mean": {k: v.tolist() for k, v in self.mean.items()},
            "final": {k: v.to_json() for k, v in self.final.items()},
            "a_vs_b": self.a_vs_b.tolist(),
            "examples": None if self.examples is None else [e.to_json() for e in self.examples],
            "trajectory": {k: v.to_json() for k, v in self.trajectory.items()},
            "checkpoints": self.checkpoints,
            "not_computable": self.not_computable,
            "findings": findings,
        }


def run_trajectory(
    run: Run | FolderPolicy,
    data: Dataset,
    inputs: IdentityInputs,
    ref: Checkpoint,
    ref_patterns: Float[Tensor, "batch layer head_index query_pos key_pos"],
    exact_threshold: float,
    desc: str,
    progress: bool,
) -> tuple[Trajectory, list[Checkpoint]]:
    """Head stats of every saved checkpoint of a run on `inputs`, and the checkpoints
    (their kl_exact and OOD rate on `data`'s test split)."""
    ckpts = run.trajectory()
    stats, metrics = [], []
    for c in tqdm(ckpts, desc=desc, disable=None if progress else True, leave=False):
        stats.append(head_stats(patterns(c.model, inputs.tokens), inputs.n_prompt, ref_patterns))
        metrics.append(evaluation(c, data, ref, exact_threshold, TRAJECTORY_METRICS))
    traj = Trajectory(
        steps=[c.step for c in ckpts],
        entropy=torch.stack([s.entropy for s in stats]),
        parts=torch.stack([s.parts for s in stats]),
        drift=torch.stack([s.drift for s in stats]),
        kl_exact=[m["kl_exact"] for m in metrics],
        ood_rate=[m["ood_rate"] for m in metrics],
    )
    return traj, ckpts


def ood_examples(
    task: Task,
    inputs: IdentityInputs,
    models: dict[Role, HookedTransformer],
    pats: dict[Role, Float[Tensor, "batch layer head_index query_pos key_pos"]],
    n_examples: int,
) -> list[Example] | None:
    """Up to `n_examples` prompts where A's greedy answer is OOD and B's is not; None when
    the task cannot judge its responses."""
    answers = {k: greedy(m, task, inputs.prompts, task.max_new_tokens) for k, m in models.items()}
    judged = {k: task.judge(r.prompts, r.tokens, r.lengths) for k, r in answers.items()}
    ja, jb = judged["A"], judged["B"]
    if ja is None or jb is None:
        return None
    picks = (ja.ood & ~jb.ood).nonzero().flatten().tolist()[:n_examples]
    return [
        Example(
            prompt=int(inputs.prompts[i]),
            text=task.token_text(inputs.tokens[i]),
            tokens=[task.token_text([t]) for t in inputs.tokens[i].tolist()],
            answers={k: answers[k].text(task, i) for k in ROLES},
            patterns={k: pats[k][i] for k in ROLES},
        )
        for i in picks
    ]


def run_attention(
    a: str,
    b: str,
    root: Path | None = None,
    n_examples: int = 3,
    progress: bool = True,
    exact_threshold: float = EXACT_THRESHOLD,
    sources: SourceOptions | None = None,
) -> AttentionResult:
    """Attention of ref, A and B on A's test prompts, and its drift along both
    trajectories. `exact_threshold` is the one kl_exact of the trajectories is read (or
    recomputed) at; `sources` says where the policies and data come from."""
    pair = resolve(a, b, root, sources)
    final = check_pair(pair)
    ref_ck = final["ref"]
    data = pair.dataset
    task = data.task
    inputs = identity_inputs(task, modal_prompts(task, data.test.prompts))
    ref_p = patterns(ref_ck.model, inputs.tokens)

    used: list[Checkpoint] = [ref_ck]
    trajectory: dict[Role, Trajectory] = {}
    for who, run in (("A", pair.a), ("B", pair.b)):
        trajectory[who], ckpts = run_trajectory(
            run, data, inputs, ref_ck, ref_p, exact_threshold, f"attention {who}", progress
        )
        used += ckpts

    models: dict[Role, HookedTransformer] = {
        "ref": ref_ck.model,
        "A": final["A"].model,
        "B": final["B"].model,
    }
    pats = {k: (ref_p if k == "ref" else patterns(m, inputs.tokens)) for k, m in models.items()}
    return AttentionResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        positions=inputs.labels,
        parts=inputs.parts,
        n_prompts=len(inputs.prompts),
        mean={k: p.mean(0) for k, p in pats.items()},
        final={k: head_stats(p, inputs.n_prompt, ref_p) for k, p in pats.items()},
        a_vs_b=head_stats(pats["A"], inputs.n_prompt, pats["B"]).drift,
        examples=ood_examples(task, inputs, models, pats, n_examples),
        trajectory=trajectory,
        checkpoints=[c.ref for c in used],
        not_computable=pair.not_computable,
    )

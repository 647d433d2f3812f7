"""Activation patching within one policy, through TransformerLens's `patching` module.

Clean/corrupted prompts differ at one prompt position (`task.corrupt`; on the number line
one digit — "305=3" vs "315=3" for the tens digit), with the task's reference answer
teacher-forced up to that place. The metric is the normalised logit difference between
the clean and the corrupted token at the last position: 1 = clean behaviour restored,
0 = corrupted behaviour. Patching the clean run's activation at each (site, position)
into the corrupted run shows which positions and heads carry each prompt token into the
answer. A task that cannot corrupt a prompt (or knows no reference answer) makes this
part not computable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.core.task import Task
from interp.lens import HookedTransformer, patching, quiet_patching


@dataclass(frozen=True)
class PlacePairs:
    """Clean and corrupted inputs that differ at one prompt place, the reference answer
    teacher-forced up to that place; and the prompt token there in each."""

    place: str
    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    clean_token: Int[Tensor, " batch"]
    corrupted_token: Int[Tensor, " batch"]
    positions: list[str]


def place_pairs(
    task: Task, prompts: Int[Tensor, " batch"], place: int, seed: int = 0
) -> PlacePairs | None:
    """The pairs for prompt place `place` (one corrupting draw per prompt, in order, from a
    generator seeded with seed + place); None when the task cannot corrupt a prompt there
    or knows no reference answer."""
    g = torch.Generator().manual_seed(seed + place)
    clean, corrupted = [], []
    for s in prompts.tolist():
        other, answer = task.corrupt(s, place, g), task.reference_response(s)
        if other is None or answer is None:
            return None
        forced = task.response_ids(answer)[:place]
        clean.append(task.prompt_ids(s) + forced)
        corrupted.append(task.prompt_ids(other) + forced)
    clean_t, corrupted_t = torch.tensor(clean), torch.tensor(corrupted)
    first = int(prompts[0])
    return PlacePairs(
        place=task.prompt_places(first)[place],
        clean=clean_t,
        corrupted=corrupted_t,
        clean_token=clean_t[:, place],
        corrupted_token=corrupted_t[:, place],
        positions=task.position_labels(first, place),
    )


def within_pairs(
    task: Task, prompts: Int[Tensor, " batch"], seed: int = 0
) -> list[PlacePairs] | None:
    """The pairs of every place the task can corrupt (prompts of one length); None when
    there is none: within-policy patching is then not computable."""
    out = []
    for k in range(len(task.prompt_places(int(prompts[0])))):
        pairs = place_pairs(task, prompts, k, seed)
        if pairs is None:
            return None
        out.append(pairs)
    return out or None


@dataclass(frozen=True)
class PlacePatching:
    """TransformerLens's patching of the clean run into the corrupted one for one place, as
    the normalised logit difference (1 = clean restored, 0 = no effect)."""

    place: str
    resid_pre: Float[Tensor, "layer pos"]
    attn_out: Float[Tensor, "layer pos"]
    mlp_out: Float[Tensor, "layer pos"]
    head_out: Float[Tensor, "layer pos head_index"]
    logit_diff_clean: float
    logit_diff_corrupt: float
    positions: list[str]

    def grid(self) -> tuple[Float[Tensor, "row pos"], list[str]]:
        """All of it as one [row, pos] grid — per layer resid_pre, attn_out, mlp_out and
        each head's output — and the row labels."""
        rows, labels = [], []
        n_layers, _, n_heads = self.head_out.shape
        for l in range(n_layers):
            for name in ("resid_pre", "attn_out", "mlp_out"):
                rows.append(getattr(self, name)[l])
                labels.append(f"L{l} {name}")
            for h in range(n_heads):
                rows.append(self.head_out[l, :, h])
                labels.append(f"L{l}H{h} out")
        return torch.stack(rows), labels

    def to_json(self) -> dict[str, Any]:
        return {
            "resid_pre": self.resid_pre.tolist(),
            "attn_out": self.attn_out.tolist(),
            "mlp_out": self.mlp_out.tolist(),
            "head_out": self.head_out.tolist(),
            "logit_diff_clean": self.logit_diff_clean,
            "logit_diff_corrupt": self.logit_diff_corrupt,
            "positions": self.positions,
        }


def _logit_diff(
    logits: Float[Tensor, "batch pos d_vocab"],
    want: Int[Tensor, " batch"],
    other: Int[Tensor, " batch"],
) -> Float[Tensor, ""]:
    """Mean over rows of logit(clean token) − logit(corrupted token) at the last position."""
    last = logits[:, -1].float()
    rows = torch.arange(len(last))
    return (last[rows, want] - last[rows, other]).mean()


def _restored(
    logits: Float[Tensor, "batch pos d_vocab"],
    want: Int[Tensor, " batch"],
    other: Int[Tensor, " batch"],
    lo: float,
    hi: float,
) -> Float[Tensor, ""]:
    """The logit difference rescaled so the corrupted run gives 0 and the clean run 1."""
    return (_logit_diff(logits, want, other) - lo) / (hi - lo)


@torch.inference_mode()
def place_patching(model: HookedTransformer, pairs: Sequence[PlacePairs]) -> list[PlacePatching]:
    """Per place: TransformerLens's patching of the clean run into the corrupted one at
    resid_pre, attn_out, mlp_out (each [layer, pos]) and each head's output ([layer, pos,
    head])."""
    out = []
    for pp in pairs:
        want, other = pp.clean_token, pp.corrupted_token
        clean_logits, clean_cache = model.run_with_cache(pp.clean)
        ld_clean = float(_logit_diff(clean_logits, want, other))
        ld_corrupt = float(_logit_diff(model(pp.corrupted), want, other))
        metric = partial(_restored, want=want, other=other, lo=ld_corrupt, hi=ld_clean)
        args = (model, pp.corrupted, clean_cache, metric)
        with quiet_patching():
            out.append(
                PlacePatching(
                    place=pp.place,
                    resid_pre=patching.get_act_patch_resid_pre(*args),
                    attn_out=patching.get_act_patch_attn_out(*args),
                    mlp_out=patching.get_act_patch_mlp_out(*args),
                    head_out=patching.get_act_patch_attn_head_out_by_pos(*args),
                    logit_diff_clean=ld_clean,
                    logit_diff_corrupt=ld_corrupt,
                    positions=pp.positions,
                )
            )
    return out

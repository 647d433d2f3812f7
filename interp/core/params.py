"""Parameter groups: the one authority on which weights belong to which part of the model.

A group is a set of *slices*: a whole parameter tensor, or one head's slice of a per-head
attention tensor (W_Q, W_K, W_V, W_O, b_Q, b_K, b_V are [n_heads, ...]; b_O is not per head).
Group names, for a model with layers l and heads h:

    model                        every parameter (swapping it gives B: a sanity check)
    attention, non-attention     every attention parameter (W_Q/K/V/O, b_Q/K/V/O) / the rest
    qk, ov                       W_Q, W_K, b_Q, b_K / W_V, W_O, b_V, b_O (all layers)
    mlp, embed, pos, unembed, ln the MLPs, W_E, W_pos, W_U + b_U, every LayerNorm
    L{l}H{h}                     head h of layer l: its slices of W_Q, W_K, W_V, W_O, b_Q, b_K, b_V
    L{l}H{h}.qk, L{l}H{h}.ov     that head's QK slices / OV slices
    L{l}.b_O                     layer l's attention output bias (belongs to no single head)
    L{l}.attn, L{l}.mlp          one layer's attention / MLP

Partitions (each covers every parameter entry exactly once; tested):

    attention   attention | non-attention
    circuits    qk | ov | mlp | embed | pos | unembed | ln
    heads       every L{l}H{h} | every L{l}.b_O | mlp | embed | pos | unembed | ln
    finest      every L{l}H{h}.qk and .ov | every L{l}.b_O | mlp | embed | pos | unembed | ln

WeightDelta (case study Eq. 7) sums the Frobenius norm of the difference over parameter
*tensors*; FracWeightDelta(Q) sums it over the tensors or head slices in Q and divides by
WeightDelta. Over a partition into whole tensors the fractions add up to 1; head slices
add up to more than their tensor (the norm of a whole is at most the sum of its parts'),
so per-head fractions are comparable to one another, not additive with whole tensors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from interp.errors import UnknownGroup
from interp.lens import HookedTransformer

PER_HEAD = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")
QK = ("W_Q", "W_K", "b_Q", "b_K")
OV = ("W_V", "W_O", "b_V", "b_O")


@dataclass(frozen=True)
class Slice:
    """A whole parameter (head=None) or one head's slice of a per-head attention parameter."""

    param: str
    head: int | None = None

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.head is None else tensor[self.head]


@dataclass(frozen=True)
class Group:
    name: str
    slices: tuple[Slice, ...]

    def numel(self, model: HookedTransformer) -> int:
        params = dict(model.named_parameters())
        return sum(s.of(params[s.param]).numel() for s in self.slices)


def _kind(name: str) -> str:
    """The coarse kind of a parameter name: attn, mlp, embed, pos, unembed or ln."""
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    if name.startswith("embed."):
        return "embed"
    if name.startswith("pos_embed."):
        return "pos"
    if name.startswith("unembed."):
        return "unembed"
    if ".ln" in name or name.startswith("ln_final."):
        return "ln"
    raise ValueError(f"parameter {name!r} has no group; extend interp.params")


def _layer(name: str) -> int:
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _whole(names: Iterable[str]) -> tuple[Slice, ...]:
    return tuple(Slice(n) for n in names)


def all_groups(model: HookedTransformer) -> dict[str, Group]:
    """Every named group of this model's architecture."""
    names = [n for n, _ in model.named_parameters()]
    n_heads, n_layers = model.cfg.n_heads, model.cfg.n_layers
    kind = {n: _kind(n) for n in names}
    attn = [n for n in names if kind[n] == "attn"]
    g: dict[str, Group] = {}

    def add(name: str, slices: Iterable[Slice]) -> None:
        g[name] = Group(name, tuple(slices))

    add("model", _whole(names))
    add("attention", _whole(attn))
    add("non-attention", _whole(n for n in names if kind[n] != "attn"))
    add("qk", _whole(n for n in attn if _leaf(n) in QK))
    add("ov", _whole(n for n in attn if _leaf(n) in OV))
    for k in ("mlp", "embed", "pos", "unembed", "ln"):
        add(k, _whole(n for n in names if kind[n] == k))
    for l in range(n_layers):
        layer_attn = [n for n in attn if _layer(n) == l]
        add(f"L{l}.attn", _whole(layer_attn))
        add(f"L{l}.mlp", _whole(n for n in names if kind[n] == "mlp" and _layer(n) == l))
        add(f"L{l}.b_O", _whole(n for n in layer_attn if _leaf(n) == "b_O"))
        for h in range(n_heads):
            per_head = [n for n in layer_attn if _leaf(n) in PER_HEAD]
            add(f"L{l}H{h}", (Slice(n, h) for n in per_head))
            add(f"L{l}H{h}.qk", (Slice(n, h) for n in per_head if _leaf(n) in QK))
            add(f"L{l}H{h}.ov", (Slice(n, h) for n in per_head if _leaf(n) in OV))
    return g


def partitions(model: HookedTransformer) -> dict[str, list[str]]:
    """Named partitions of the parameters into groups (see the module docstring)."""
    L, H = range(model.cfg.n_layers), range(model.cfg.n_heads)
    rest = ["mlp", "embed", "pos", "unembed", "ln"]
    b_o = [f"L{l}.b_O" for l in L]
    return {
        "attention": ["attention", "non-attention"],
        "circuits": ["qk", "ov", *rest],
        "heads": [f"L{l}H{h}" for l in L for h in H] + b_o + rest,
        "finest": [f"L{l}H{h}.{c}" for l in L for h in H for c in ("qk", "ov")] + b_o + rest,
    }


def resolve_groups(model: HookedTransformer, names: Iterable[str]) -> list[Group]:
    """Groups by name; `all` expands to the finest partition. Unknown names: UnknownGroup."""
    groups = all_groups(model)
    out: list[Group] = []
    for name in names:
        if name == "all":
            out += [groups[n] for n in partitions(model)["finest"]]
        elif name in groups:
            out.append(groups[name])
        else:
            raise UnknownGroup(
                f"unknown parameter group {name!r}; known: all, " + ", ".join(groups)
            )
    return list({g.name: g for g in out}.values())


def coverage(model: HookedTransformer, group_names: Iterable[str]) -> dict[str, torch.Tensor]:
    """How many of the given groups contain each parameter entry (for partition checks)."""
    groups = all_groups(model)
    count = {n: torch.zeros_like(p, dtype=torch.int32) for n, p in model.named_parameters()}
    for gname in group_names:
        for s in groups[gname].slices:
            s.of(count[s.param]).add_(1)
    return count


# ----------------------------------------------------------------------------- weight deltas


@torch.no_grad()
def weight_delta(m1: HookedTransformer, m2: HookedTransformer, group: Group | None = None) -> float:
    """Eq. 7 (group None): Σ over parameter tensors of ‖M1[P] − M2[P]‖_F.
    With a group: the same sum over the group's tensors or head slices."""
    p1, p2 = dict(m1.named_parameters()), dict(m2.named_parameters())
    slices = _whole(p1) if group is None else group.slices
    return float(
        sum(torch.linalg.norm((s.of(p1[s.param]) - s.of(p2[s.param])).float()) for s in slices)
    )


def frac_weight_delta(m1: HookedTransformer, m2: HookedTransformer, group: Group) -> float:
    """Eq. 8: the group's part of WeightDelta(M1, M2) (NaN when the models are equal)."""
    total = weight_delta(m1, m2)
    return weight_delta(m1, m2, group) / total if total > 0 else float("nan")

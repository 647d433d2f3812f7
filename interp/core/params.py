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
    L{l}KV{g}, .qk, .ov          grouped-query attention only (see below)

Partitions (each covers every parameter entry exactly once; tested per architecture):

    attention   attention | non-attention
    circuits    qk | ov | mlp | embed | pos | unembed | ln
    heads       every L{l}H{h} | every L{l}KV{g} | every L{l}.b_O | mlp | embed | pos | unembed | ln
    finest      every L{l}H{h}.qk and .ov | every L{l}KV{g}.qk and .ov | every L{l}.b_O | the rest

Architectures. The same names cover every model TransformerLens builds from the Hugging
Face folders the suite reads (`interp.runs.hf_folder`): GPT-2 and the suite's own models
(learned positions, LayerNorm, biases), GPT-NeoX/Pythia (rotary positions: no `pos`), and
Llama-style models (RMSNorm: LayerNorm weights only; a gated MLP, whose W_gate belongs to
`mlp`; no biases in the checkpoint, which TransformerLens keeps as zero parameters).
A group an architecture has no parameters for (`pos` under rotary positions) is left out
of its partitions.

Grouped-query attention (Llama with fewer key/value heads than query heads): each key and
value head is shared by n_heads / n_key_value_heads query heads, and TransformerLens keeps
it once (`_W_K`, `_W_V`, `_b_K`, `_b_V`, [n_key_value_heads, ...]). A query head's group
`L{l}H{h}` then holds its own slices only (W_Q, b_Q, W_O: `.qk` is its query side, `.ov`
its output side); the shared key/value head g is its own group `L{l}KV{g}` (`.qk`: _W_K and
_b_K, `.ov`: _W_V and _b_V), used by query heads g·r … g·r + r − 1 (r = n_heads /
n_key_value_heads). Swapping one query head therefore leaves the key/value head it reads
from alone; swapping `L{l}KV{g}` changes what all r query heads attend to and read.

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
SHARED_KV = ("_W_K", "_W_V", "_b_K", "_b_V")  # grouped-query attention: per key/value head
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
    """The tensor's kind: "W_K" for both blocks.0.attn.W_K and (grouped) blocks.0.attn._W_K."""
    return name.rsplit(".", 1)[-1].lstrip("_")


def _shared_kv(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in SHARED_KV


def n_kv_heads(model: HookedTransformer) -> int | None:
    """Key/value heads per layer under grouped-query attention, else None."""
    n = model.cfg.n_key_value_heads
    return n if n is not None and n != model.cfg.n_heads else None


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
        per_head = [n for n in layer_attn if _leaf(n) in PER_HEAD and not _shared_kv(n)]
        for h in range(n_heads):
            add(f"L{l}H{h}", (Slice(n, h) for n in per_head))
            add(f"L{l}H{h}.qk", (Slice(n, h) for n in per_head if _leaf(n) in QK))
            add(f"L{l}H{h}.ov", (Slice(n, h) for n in per_head if _leaf(n) in OV))
        shared = [n for n in layer_attn if _shared_kv(n)]
        for kv in range(n_kv_heads(model) or 0):
            add(f"L{l}KV{kv}", (Slice(n, kv) for n in shared))
            add(f"L{l}KV{kv}.qk", (Slice(n, kv) for n in shared if _leaf(n) in QK))
            add(f"L{l}KV{kv}.ov", (Slice(n, kv) for n in shared if _leaf(n) in OV))
    return g


def partitions(model: HookedTransformer) -> dict[str, list[str]]:
    """Named partitions of the parameters into groups (see the module docstring)."""
    L, H = range(model.cfg.n_layers), range(model.cfg.n_heads)
    KV = range(n_kv_heads(model) or 0)
    rest = ["mlp", "embed", "pos", "unembed", "ln"]
    b_o = [f"L{l}.b_O" for l in L]
    kv_heads = [f"L{l}KV{g}" for l in L for g in KV]
    kv_finest = [f"L{l}KV{g}.{c}" for l in L for g in KV for c in ("qk", "ov")]
    parts = {
        "attention": ["attention", "non-attention"],
        "circuits": ["qk", "ov", *rest],
        "heads": [f"L{l}H{h}" for l in L for h in H] + kv_heads + b_o + rest,
        "finest": [f"L{l}H{h}.{c}" for l in L for h in H for c in ("qk", "ov")]
        + kv_finest
        + b_o
        + rest,
    }
    groups = all_groups(model)
    return {k: [g for g in v if groups[g].slices] for k, v in parts.items()}


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

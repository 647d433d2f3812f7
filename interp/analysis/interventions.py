"""Interventions: temporary edits of a model's weights or activations.

Two kinds, one convention. A *parameter swap* gives model A the parameters of group Q
(`interp.core.params`) taken from model B — or moves them a fraction α of the way there
(α = 0 is A, α = 1 the swap); head groups take one head's slices of the per-head
attention tensors. An *activation patch* replaces the activation at one hook site and
position with the value another run produced there, through TransformerLens's patch
setters.

Every intervention comes as a context manager that restores the model on exit
(`swapped`, `patched`, like TransformerLens's `model.hooks()`); functions that edit in
place end in `_`; `swap` and `interpolate` return new models and leave A and B untouched.
Surgery (`interp.analysis.surgery`) and activation patching
(`interp.analysis.patching`) are both built on this module.

A hybrid says what it is: its `cfg.model_name` is A's with the swapped groups and their
donor in brackets (`hybrid_name`), e.g. "beta0.01[attention←beta1.0]@step756", or
"…[attention←beta1.0 α=0.5]…" part of the way; the names never enter a computation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.core.model import build_model, config_to_dict, same_architecture
from interp.core.params import Group, resolve_groups
from interp.errors import ArchitectureMismatch
from interp.lens import ActivationCache, HookedTransformer, get_act_name, patching
from interp.runs.sources import Comparison

Groups = Group | str | Iterable[Group | str]

# ----------------------------------------------------------------------------- parameters


def _vocab(model: HookedTransformer) -> dict[str, int] | None:
    """The model's tokenizer as token -> id (None without one: nothing to compare)."""
    return None if model.tokenizer is None else model.tokenizer.get_vocab()


def check_compatible(a: HookedTransformer, b: HookedTransformer, what: str = "A and B") -> None:
    if not same_architecture(a, b):
        da, db = config_to_dict(a.cfg), config_to_dict(b.cfg)
        diff = ", ".join(f"{k} {da[k]} vs {db[k]}" for k in da if da[k] != db[k])
        diff = diff or "parameter names or shapes differ: grouped key/value heads, a gated MLP…"
        raise ArchitectureMismatch(
            f"{what} have different architectures ({diff}); compare policies of one "
            "architecture (for the suite's runs: the same --n-layers, --d-model, --n-heads and "
            "--d-mlp)"
        )


def check_pair(pair: Comparison) -> dict[str, Any]:
    """The final checkpoints of A's reference, A and B (keys "ref", "A", "B"), after
    checking that the three share one architecture: every A-vs-B analysis that runs one
    policy's parameters or activations beside another's calls this first, so a mismatch
    is one ArchitectureMismatch naming the differing fields, not an error deep inside."""
    ref, a, b = pair.ref.checkpoint(), pair.a.checkpoint(), pair.b.checkpoint()
    others = [(b, f"{pair.a.name} and {pair.b.name}")]
    others.append((ref, f"{pair.a.name} and its reference {pair.ref.name}"))
    for other, what in others:
        check_compatible(a.model, other.model, what)
        va, vo = _vocab(a.model), _vocab(other.model)
        if va is not None and vo is not None and va != vo:  # once here, not at every swap
            raise ArchitectureMismatch(
                f"{what} have different tokenizers: the same token ids mean different text; "
                "compare policies trained with one tokenizer"
            )
    return {"ref": ref, "A": a, "B": b}


def as_groups(model: HookedTransformer, groups: Groups) -> list[Group]:
    if isinstance(groups, (Group, str)):
        groups = [groups]
    out: list[Group] = []
    for g in groups:
        out += [g] if isinstance(g, Group) else resolve_groups(model, [g])
    return out


def clone(model: HookedTransformer) -> HookedTransformer:
    """An independent copy (same config, name, tokenizer and parameters), in eval mode."""
    m = build_model(copy.deepcopy(model.cfg))  # its own config: renaming it spares the original
    m.tokenizer = model.tokenizer
    m.load_state_dict(model.state_dict())
    return m.eval()


def hybrid_name(a: str, b: str, groups: Sequence[Group], alpha: float = 1.0) -> str:
    """The name of A with `groups` taken from B (a fraction alpha of the way): A's name
    with "[groups←B]" before its "@step" part; B's step is left out when it is A's."""
    base_a, at_a, step_a = a.rpartition("@") if "@" in a else (a, "", "")
    base_b, at_b, step_b = b.rpartition("@") if "@" in b else (b, "", "")
    donor = base_b if step_b == step_a else b
    what = "+".join(g.name for g in groups) + "←" + donor
    what += "" if alpha == 1.0 else f" α={alpha:g}"
    return f"{base_a}[{what}]{at_a}{step_a}"


def _rename(
    model: HookedTransformer, donor: HookedTransformer, groups: Groups, alpha: float
) -> None:
    """Name `model` (A, already edited) as the hybrid it now is."""
    chosen = as_groups(model, groups)
    model.cfg.model_name = hybrid_name(model.cfg.model_name, donor.cfg.model_name, chosen, alpha)


@torch.no_grad()
def interpolate_(
    model: HookedTransformer, donor: HookedTransformer, groups: Groups, alpha: float = 1.0
) -> HookedTransformer:
    """In place: move `model`'s group parameters a fraction alpha toward `donor`'s.

    alpha = 1 copies the donor's values exactly; alpha = 0 leaves the model as it was.
    """
    check_compatible(model, donor)
    mine, theirs = dict(model.named_parameters()), dict(donor.named_parameters())
    for g in as_groups(model, groups):
        for s in g.slices:
            dst, src = s.of(mine[s.param]), s.of(theirs[s.param])
            if alpha == 1.0:
                dst.copy_(src)
            elif alpha != 0.0:
                dst.copy_(torch.lerp(dst, src, alpha))
    return model


def swap(a: HookedTransformer, b: HookedTransformer, groups: Groups) -> HookedTransformer:
    """A new model: A with the parameters of `groups` taken from B."""
    return interpolate(a, b, groups, 1.0)


def interpolate(
    a: HookedTransformer, b: HookedTransformer, groups: Groups, alpha: float
) -> HookedTransformer:
    """A new model: A with `groups` moved a fraction alpha of the way to B."""
    m = interpolate_(clone(a), b, groups, alpha)
    _rename(m, b, groups, alpha)
    return m


@contextmanager
def swapped(
    a: HookedTransformer, b: HookedTransformer, groups: Groups, alpha: float = 1.0
) -> Iterator[HookedTransformer]:
    """Temporarily give A the groups of B (or a fraction alpha of the way); restores A on exit."""
    saved = {k: v.detach().clone() for k, v in a.named_parameters()}
    name = a.cfg.model_name
    try:
        interpolate_(a, b, groups, alpha)
        _rename(a, b, groups, alpha)
        yield a
    finally:
        a.cfg.model_name = name
        with torch.no_grad():
            for k, v in a.named_parameters():
                v.copy_(saved[k])


# ----------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class Site:
    """A hook site: a TransformerLens activation name and, for per-head activations, a head."""

    label: str
    hook: str
    layer: int
    head: int | None = None

    def setter(self, pos: int) -> Callable[[Tensor, Any], Tensor]:
        """A forward hook replacing this site's activation at `pos` with the source's."""
        index = [self.layer, pos] if self.head is None else [self.layer, pos, self.head]
        tl_setter = (
            patching.layer_pos_patch_setter
            if self.head is None
            else patching.layer_pos_head_vector_patch_setter
        )

        def hook(act: Tensor, hook: Any, source: Tensor) -> Tensor:
            return tl_setter(act.clone(), index, source)

        return hook


def sites(model: HookedTransformer) -> list[Site]:
    out = []
    for l in range(model.cfg.n_layers):
        out.append(Site(f"L{l} resid_pre", get_act_name("resid_pre", l), l))
        out += [Site(f"L{l}H{h} z", get_act_name("z", l), l, h) for h in range(model.cfg.n_heads)]
        out.append(Site(f"L{l} attn_out", get_act_name("attn_out", l), l))
        out.append(Site(f"L{l} mlp_out", get_act_name("mlp_out", l), l))
        out.append(Site(f"L{l} resid_post", get_act_name("resid_post", l), l))
    return out


@contextmanager
def patched(
    model: HookedTransformer,
    source: ActivationCache | dict[str, Tensor],
    patches: Sequence[tuple[Site, int]],
) -> Iterator[HookedTransformer]:
    """Temporarily take each (site, position) activation of `model` from `source` (the
    same site's activation in another run on the same tokens); the hooks are removed on
    exit, also after an error."""
    hooks = [(s.hook, partial(s.setter(p), source=source[s.hook])) for s, p in patches]
    with model.hooks(fwd_hooks=hooks):
        yield model


@torch.inference_mode()
def run_patched(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source: ActivationCache | dict[str, Tensor],
    patches: Sequence[tuple[Site, int]],
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of `model` on `tokens` with each (site, position) taken from `source`."""
    with patched(model, source, patches):
        return model(tokens)


@torch.inference_mode()
def patch_grid(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source: ActivationCache | dict[str, Tensor],
    site_list: Sequence[Site],
    metric: Callable[[Tensor], Tensor],
    positions: Sequence[int] | None = None,
) -> Float[Tensor, "site pos batch metric"]:
    """The generic engine: `metric(patched logits)` -> [batch, m] for every site and position."""
    positions = range(tokens.shape[1]) if positions is None else positions
    rows = []
    for s in site_list:
        rows.append(
            torch.stack([metric(run_patched(model, tokens, source, [(s, p)])) for p in positions])
        )
    return torch.stack(rows)

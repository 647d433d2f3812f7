"""The lean forward computes what the HookedTransformer computes (up to float rounding)."""

import pytest
import torch

from interp.core.lean import Lean, supports
from interp.core.model import ModelSpec, build_model
from interp.lens import HookedTransformerConfig


def _models(n: int, spec: ModelSpec) -> list:
    out = []
    for i in range(n):
        m = build_model(spec, seed=i)
        with torch.no_grad():  # off the initialisation, so LayerNorm weights and biases matter
            for p in m.parameters():
                p.add_(0.1 * torch.randn_like(p))
        out.append(m)
    return out


@pytest.mark.parametrize(
    "spec", [ModelSpec(d_model=32, n_heads=2, d_mlp=32), ModelSpec(n_layers=2)]
)
def test_logits_match_the_hooked_transformer(spec):
    models = _models(3, spec)
    lean = Lean.of(models)
    toks = torch.randint(0, 13, (7, 9))
    out = lean(toks)
    for e, m in enumerate(models):
        torch.testing.assert_close(out[e], m(toks), atol=1e-5, rtol=0)
    per_member = torch.stack([toks, toks.flip(0), toks.roll(1, 1)])  # each member its own
    out = lean(per_member)
    for e, m in enumerate(models):
        torch.testing.assert_close(out[e], m(per_member[e]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_last_position_logits_from_tables_equal_the_whole_forward(n_layers):
    """One layer deep, `last` computes from (token, position) tables: an independent path."""
    models = _models(3, ModelSpec(n_layers=n_layers, d_model=32, n_heads=2, d_mlp=32))
    lean = Lean.of(models)
    for width in (1, 4, 9):
        toks = torch.randint(0, 13, (6, width))
        for e, m in enumerate(models):
            torch.testing.assert_close(lean.last(toks)[e], m(toks)[:, -1], atol=1e-5, rtol=0)
        per_member = torch.stack([toks, toks.flip(0), toks.roll(1, 0)])
        for e, m in enumerate(models):
            got = lean.last(per_member)[e]
            torch.testing.assert_close(got, m(per_member[e])[:, -1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="exceed n_ctx"):
        lean.last(torch.zeros(2, 11, dtype=torch.long))


def test_a_member_gets_the_same_bits_whatever_its_slot():
    """What lets a member equal to the reference get log-ratios of exactly 0."""
    a, b = _models(2, ModelSpec(d_model=32, n_heads=2, d_mlp=32))
    toks = torch.randint(0, 13, (300, 8))
    for fn in ("__call__", "last"):
        alone = getattr(Lean.of([a]), fn)(toks)[0]
        stacked = getattr(Lean.of([b, a, a]), fn)(toks)
        assert torch.equal(alone, stacked[1]) and torch.equal(alone, stacked[2]), fn


def test_the_ensemble_trains_through_it_with_gradients():
    models = _models(2, ModelSpec(d_model=32, n_heads=2, d_mlp=32))
    lean = Lean.of(models)
    for v in lean.p.values():
        v.requires_grad_()
    toks = torch.randint(0, 13, (4, 6))
    lean(toks)[1].logsumexp(-1).sum().backward()
    ref = models[1]
    ref.zero_grad()
    ref(toks).logsumexp(-1).sum().backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(lean.p[name].grad[1], p.grad, atol=1e-4, rtol=1e-4)
        assert lean.p[name].grad[0].abs().max() == 0  # member 0's logits were not used


def test_other_architectures_are_left_to_transformer_lens():
    base = dict(n_layers=1, d_model=32, n_ctx=10, d_head=16, d_vocab=13)
    assert supports(HookedTransformerConfig(**base, act_fn="gelu", normalization_type="LN"))
    for other in (
        dict(act_fn="relu", normalization_type="LN"),
        dict(act_fn="gelu", normalization_type="RMS"),
        dict(act_fn="gelu", normalization_type="LN", positional_embedding_type="rotary"),
        dict(act_fn="gelu", normalization_type="LN", attn_only=True),
    ):
        assert not supports(HookedTransformerConfig(**base, **other))
    with pytest.raises(ValueError, match="own architecture"):
        Lean({}, HookedTransformerConfig(**base, act_fn="relu"))

import pytest
import torch

from interp.analysis.interventions import interpolate, swap, swapped
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import tokens
from interp.core.params import partitions
from interp.errors import ArchitectureMismatch

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)
X = torch.cat([tokens("123=121."), tokens("99=100.3")])


@pytest.fixture
def ab():
    return build_model(SPEC, seed=1).eval(), build_model(SPEC, seed=2).eval()


def test_swap_nothing_is_a_and_everything_is_b(ab):
    a, b = ab
    assert torch.equal(swap(a, b, []).forward(X), a(X))
    everything = partitions(a)["circuits"]
    assert torch.equal(swap(a, b, everything)(X), b(X))
    assert torch.equal(swap(a, b, ["attention", "non-attention"])(X), b(X))


@pytest.mark.parametrize("partition", ["attention", "circuits", "heads", "finest"])
def test_halves_of_a_partition_compose_to_b(ab, partition):
    a, b = ab
    groups = partitions(a)[partition]
    half = len(groups) // 2
    step = swap(swap(a, b, groups[:half]), b, groups[half:])
    assert torch.equal(step(X), b(X))
    assert not torch.equal(swap(a, b, groups[:half])(X), b(X))


def test_swap_leaves_a_and_b_untouched(ab):
    a, b = ab
    before = (a(X).clone(), b(X).clone())
    out = swap(a, b, "attention")
    assert torch.equal(a(X), before[0]) and torch.equal(b(X), before[1])
    assert torch.equal(out.blocks[0].attn.W_Q, b.blocks[0].attn.W_Q)
    assert torch.equal(out.blocks[0].mlp.W_in, a.blocks[0].mlp.W_in)


def test_head_swap_touches_only_that_head(ab):
    a, b = ab
    out = swap(a, b, "L0H1")
    assert torch.equal(out.blocks[0].attn.W_K[1], b.blocks[0].attn.W_K[1])
    assert torch.equal(out.blocks[0].attn.W_K[0], a.blocks[0].attn.W_K[0])
    assert torch.equal(out.blocks[0].attn.b_O, a.blocks[0].attn.b_O)


def test_interpolate_endpoints_and_midpoint(ab):
    a, b = ab
    assert torch.equal(interpolate(a, b, "attention", 0.0)(X), a(X))
    assert torch.equal(interpolate(a, b, "attention", 1.0)(X), swap(a, b, "attention")(X))
    mid = interpolate(a, b, "attention", 0.25)
    want = a.blocks[0].attn.W_V + 0.25 * (b.blocks[0].attn.W_V - a.blocks[0].attn.W_V)
    assert torch.allclose(mid.blocks[0].attn.W_V, want, atol=1e-6)
    assert torch.equal(mid.blocks[0].mlp.W_out, a.blocks[0].mlp.W_out)


def test_swapped_context_restores(ab):
    a, b = ab
    before = a(X).clone()
    with swapped(a, b, ["attention", "non-attention"]) as m:
        assert m is a and torch.equal(a(X), b(X))
    assert torch.equal(a(X), before)
    with pytest.raises(RuntimeError), swapped(a, b, "mlp"):
        raise RuntimeError("inside")
    assert torch.equal(a(X), before)


def test_mismatched_architectures(ab):
    a, _ = ab
    other = build_model(ModelSpec(d_model=32, n_heads=4, d_mlp=32))
    with pytest.raises(ArchitectureMismatch, match="n_heads 2 vs 4"):
        swap(a, other, "attention")

import pytest
import torch

from interp.core.model import ModelSpec, build_model
from interp.core.params import (
    all_groups,
    coverage,
    frac_weight_delta,
    partitions,
    resolve_groups,
    weight_delta,
)
from interp.errors import UnknownGroup
from interp.lens import HookedTransformerConfig

SPECS = [ModelSpec(), ModelSpec(n_layers=2, d_model=32, n_heads=2, d_mlp=32)]

# The layouts TransformerLens gives the Hugging Face architectures the suite converts
# (interp.runs.hf_folder): the same configs its conversion builds, at toy size.
_TINY = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=20, n_ctx=16)
ARCHITECTURES = {
    "gpt2": HookedTransformerConfig(**_TINY, act_fn="gelu_new", normalization_type="LN"),
    "gpt_neox": HookedTransformerConfig(
        **_TINY,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="rotary",
        rotary_dim=4,
        parallel_attn_mlp=True,
    ),
    "llama-gqa": HookedTransformerConfig(
        **_TINY,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        gated_mlp=True,
        final_rms=True,
        n_key_value_heads=2,
    ),
}


def _models():
    yield from ((f"spec-{i}", build_model(s)) for i, s in enumerate(SPECS))
    yield from ((k, build_model(cfg)) for k, cfg in ARCHITECTURES.items())


@pytest.mark.parametrize("name,m", list(_models()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_partition_covers_every_parameter_exactly_once(name, m):
    for pname_, groups in partitions(m).items():
        for pname, count in coverage(m, groups).items():
            assert (count == 1).all(), (name, pname_, pname, count.unique())


def test_grouped_query_attention_groups():
    m = build_model(ARCHITECTURES["llama-gqa"])
    g = all_groups(m)
    head = {(s.param, s.head) for s in g["L1H3"].slices}
    assert head == {("blocks.1.attn.W_Q", 3), ("blocks.1.attn.b_Q", 3), ("blocks.1.attn.W_O", 3)}
    kv = {(s.param, s.head) for s in g["L1KV1"].slices}
    assert kv == {(f"blocks.1.attn._{w}", 1) for w in ("W_K", "W_V", "b_K", "b_V")}
    assert {s.param for s in g["L1KV1.qk"].slices} == {"blocks.1.attn._W_K", "blocks.1.attn._b_K"}
    assert "blocks.0.mlp.W_gate" in {s.param for s in g["mlp"].slices}
    parts = partitions(m)
    assert "pos" not in parts["circuits"]  # rotary: no positional parameters
    assert parts["heads"][8:12] == ["L0KV0", "L0KV1", "L1KV0", "L1KV1"]
    assert "L0KV0" not in all_groups(build_model(ARCHITECTURES["gpt_neox"]))


def test_a_broken_partition_is_caught():
    m = build_model(SPECS[1])
    cov = coverage(m, ["qk", "mlp", "embed", "pos", "unembed", "ln"])  # ov missing
    assert (cov["blocks.0.attn.W_V"] == 0).all()
    cov = coverage(m, ["attention", "qk"])  # qk counted twice
    assert (cov["blocks.1.attn.W_Q"] == 2).all()


def test_group_contents():
    m = build_model()
    g = all_groups(m)
    assert g["attention"].numel(m) == 66_048
    assert g["attention"].numel(m) + g["non-attention"].numel(m) == 104_461
    head = {(s.param, s.head) for s in g["L0H2"].slices}
    assert ("blocks.0.attn.W_Q", 2) in head and ("blocks.0.attn.b_V", 2) in head
    assert not any(p.endswith("b_O") for p, _ in head)
    assert g["L0H2"].numel(m) == 4 * 128 * 32 + 3 * 32
    assert {s.param.rsplit(".", 1)[1] for s in g["ov"].slices} == {"W_V", "W_O", "b_V", "b_O"}


def test_resolve_groups():
    m = build_model()
    assert [g.name for g in resolve_groups(m, ["all"])] == partitions(m)["finest"]
    with pytest.raises(UnknownGroup, match="unknown parameter group 'atention'"):
        resolve_groups(m, ["atention"])


def test_weight_delta_hand_computed():
    a, b = build_model(seed=0), build_model(seed=0)
    with torch.no_grad():
        b.blocks[0].attn.W_Q[1] += 3.0  # one head slice: 128*32 entries, Frobenius 3*64
        b.unembed.b_U += torch.tensor([4.0] + [0.0] * 12)
    g = all_groups(a)
    assert weight_delta(a, b) == pytest.approx(3 * 64 + 4)
    assert weight_delta(a, b, g["L0H1"]) == pytest.approx(3 * 64)
    assert weight_delta(a, b, g["L0H0"]) == 0.0
    assert frac_weight_delta(a, b, g["attention"]) == pytest.approx(192 / 196)
    assert frac_weight_delta(a, b, g["attention"]) + frac_weight_delta(
        a, b, g["non-attention"]
    ) == pytest.approx(1.0)
    assert weight_delta(a, a) == 0.0

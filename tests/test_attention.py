import math

import pytest
import torch

from interp.attention import (
    head_stats,
    identity_inputs,
    main,
    modal_prompts,
    pattern,
    run_attention,
)
from interp.model import ModelSpec, build_model

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)


def test_rows_sum_to_one_over_the_causal_window():
    m = build_model(SPEC, seed=1)
    p = pattern(m, "305=303")
    assert p.tokens == list("305=303") and p.values.shape == (1, 2, 7, 7)
    assert torch.allclose(p.values.sum(-1), torch.ones(1, 2, 7), atol=1e-6)
    assert (p.values.triu(1) == 0).all()
    df = p.frame(0, 1)
    assert df.shape == (7, 7) and df.index[3] == "3:="


def test_identity_inputs():
    toks, labels = identity_inputs(torch.tensor([305, 123]))
    assert labels == ["hundreds", "tens", "units", "=", "y0", "y1", "y2"]
    assert toks[0].tolist() == [3, 0, 5, 10, 3, 0, 5]
    with pytest.raises(ValueError):
        identity_inputs(torch.tensor([5, 123]))
    assert modal_prompts(torch.tensor([5, 12, 34, 56])).tolist() == [12, 34, 56]


def test_head_stats_hand_built():
    labels = ["hundreds", "tens", "units", "=", "y0", "y1", "y2"]
    T = 7
    one_hot = torch.zeros(1, 1, 1, T, T)
    one_hot[..., :, 0] = 1.0  # every row attends to 'hundreds' only
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None, None]
    st = head_stats(one_hot, labels, baseline=one_hot)
    assert float(st.entropy) == 0.0 and float(st.drift) == 0.0
    assert st.parts[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    st = head_stats(uniform, labels, baseline=one_hot)
    rows = range(3, 7)  # '=' and the response digits; row r attends over r + 1 keys
    assert float(st.entropy) == pytest.approx(sum(math.log(r + 1) for r in rows) / 4, abs=1e-5)
    assert float(st.drift) == pytest.approx(sum(1 - 1 / (r + 1) for r in rows) / 4, abs=1e-6)
    assert float(st.parts.sum()) == pytest.approx(1.0)


def test_pattern_by_policy_name(tiny_root):
    p = pattern("tiny/beta0.1", "123=12", root=tiny_root)
    assert p.values.shape[-1] == 6


def test_analysis_and_cli(tiny_root, tmp_path, capsys):
    res = run_attention("tiny/beta0.1", "tiny/beta1.0", tiny_root, progress=False)
    assert res.positions == ["hundreds", "tens", "units", "=", "y0", "y1", "y2"]
    assert float(res.final["ref"]["drift"].abs().max()) == 0.0  # the reference against itself
    assert (
        res.trajectory["A"]["steps"][0] == 0 and float(res.trajectory["A"]["drift"][0].max()) == 0.0
    )
    args = ["--checkpoints", str(tiny_root), "--reports", str(tmp_path), "--no-progress"]
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args]) == 0
    assert (tmp_path / "attention" / "tiny-beta0.1_vs_tiny-beta1.0.json").exists()
    capsys.readouterr()
    assert main(["--a", "tiny/beta0.9", "--b", "tiny/beta1.0", *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1

import dataclasses
import math

import pytest
import torch

from interp.analysis.attention import (
    head_stats,
    identity_inputs,
    pattern,
    run_attention,
)
from interp.attention import main
from interp.core.data import modal_prompts
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import NumberLine, get_task
from interp.present.pages.attention import build_report, findings
from interp.runs.store import find_run

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)
SWEEP = get_task("sweep")
DATA_KEYS = [
    "a",
    "b",
    "ref",
    "positions",
    "parts",
    "n_prompts",
    "mean",
    "final",
    "a_vs_b",
    "examples",
    "trajectory",
    "checkpoints",
    "not_computable",
    "findings",
]


def test_rows_sum_to_one_over_the_causal_window():
    m = build_model(SPEC, seed=1)
    p = pattern(m, "305=303")
    assert p.tokens == list("305=303") and p.values.shape == (1, 2, 7, 7)
    assert torch.allclose(p.values.sum(-1), torch.ones(1, 2, 7), atol=1e-6)
    assert (p.values.triu(1) == 0).all()
    df = p.frame(0, 1)
    assert df.shape == (7, 7) and df.index[3] == "3:="
    assert torch.equal(pattern(m, "305=303", task=SWEEP).values, p.values)
    with pytest.raises(ValueError):
        pattern(m, "30x")


def test_identity_inputs():
    inputs = identity_inputs(SWEEP, torch.tensor([305, 123]))
    assert inputs.labels == ["hundreds", "tens", "units", "=", "y0", "y1", "y2"]
    assert inputs.parts == ["hundreds", "tens", "units", "=", "response"]
    assert inputs.n_prompt == 4
    assert inputs.tokens[0].tolist() == [3, 0, 5, 10, 3, 0, 5]
    # only the prompts of the most common (prompt, response) length line up
    assert identity_inputs(SWEEP, torch.tensor([5, 123, 456])).prompts.tolist() == [123, 456]
    assert modal_prompts(SWEEP, torch.tensor([5, 12, 34, 56])).tolist() == [12, 34, 56]


def test_head_stats_hand_built():
    n_prompt = 4  # hundreds, tens, units, '='; then y0, y1, y2
    T = 7
    one_hot = torch.zeros(1, 1, 1, T, T)
    one_hot[..., :, 0] = 1.0  # every row attends to 'hundreds' only
    uniform = torch.tril(torch.ones(T, T))
    uniform = (uniform / uniform.sum(-1, keepdim=True))[None, None, None]
    st = head_stats(one_hot, n_prompt, baseline=one_hot)
    assert float(st.entropy) == 0.0 and float(st.drift) == 0.0
    assert st.parts[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    st = head_stats(uniform, n_prompt, baseline=one_hot)
    rows = range(3, 7)  # '=' and the response digits; row r attends over r + 1 keys
    assert float(st.entropy) == pytest.approx(sum(math.log(r + 1) for r in rows) / 4, abs=1e-5)
    assert float(st.drift) == pytest.approx(sum(1 - 1 / (r + 1) for r in rows) / 4, abs=1e-6)
    assert float(st.parts.sum()) == pytest.approx(1.0)
    assert head_stats(uniform, n_prompt).drift is None


def test_pattern_by_policy_name(tiny_root):
    p = pattern("tiny/beta0.1", "123=12", root=tiny_root)
    assert p.values.shape[-1] == 6


def test_analysis_and_cli(tiny_root, tmp_path, capsys):
    res = run_attention(
        "tiny/beta0.1", "tiny/beta1.0", tiny_root, progress=False, exact_threshold=1e-2
    )
    assert res.positions == ["hundreds", "tens", "units", "=", "y0", "y1", "y2"]
    assert float(res.final["ref"].drift.abs().max()) == 0.0  # the reference against itself
    assert res.trajectory["A"].steps[0] == 0 and float(res.trajectory["A"].drift[0].max()) == 0.0
    a_steps = find_run("tiny/beta0.1", tiny_root).trajectory()
    assert res.trajectory["A"].kl_exact == [c.eval["kl_exact"] for c in a_steps]
    data = res.to_json(findings(res))
    assert list(data) == DATA_KEYS and data["findings"] == findings(res)
    assert list(data["trajectory"]["A"]) == [
        "steps",
        "entropy",
        "parts",
        "drift",
        "kl_exact",
        "ood_rate",
    ]
    for ex in data["examples"]:
        assert list(ex) == ["prompt", "text", "answers", "patterns"]
    args = ["--checkpoints", str(tiny_root), "--reports", str(tmp_path), "--no-progress"]
    args += ["--exact-threshold", "0.01"]
    assert main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", *args]) == 0
    assert (tmp_path / "attention" / "tiny-beta0.1_vs_tiny-beta1.0.json").exists()
    capsys.readouterr()
    assert main(["--a", "tiny/beta0.9", "--b", "tiny/beta1.0", *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["--examples", "-1", *args]) == 2


def test_not_computable_without_a_judge(tiny_root, monkeypatch):
    """A task that cannot judge: no OOD examples, and no OOD rates in the prose."""
    monkeypatch.setattr(NumberLine, "judge", lambda self, prompts, tokens, lengths: None)
    res = run_attention(
        "tiny/beta0.1", "tiny/beta1.0", tiny_root, progress=False, exact_threshold=1e-2
    )
    assert res.examples is None and res.to_json([])["examples"] is None
    report = build_report(res, {})
    assert report.sections[1].paragraphs[0].startswith("Not computable")
    no_ood = {
        k: dataclasses.replace(t, ood_rate=[None] * len(t.steps)) for k, t in res.trajectory.items()
    }
    lines = findings(dataclasses.replace(res, trajectory=no_ood))
    assert len(lines) == 2 and "not computable" in lines[0]

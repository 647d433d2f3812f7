"""The training-log page: known curves in, the same numbers out (result, twin, page)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from interp.analysis.training_log import smooth, training_logs
from interp.present.pages.training import slug
from interp.runs.files import LOG_FILE, META_FILE, run_dir
from interp.runs.names import parse_policy
from interp.training_log import main

# a hand-made log of 6 steps whose curves are known
LOG = {
    "step": [1, 2, 3, 4, 5, 6],
    "loss": [0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
    "rewards/chosen": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    "rewards/rejected": [0.0, -1.0, -2.0, -3.0, -4.0, -5.0],
    "rewards/margins": [1.0, 3.0, 5.0, 7.0, 9.0, 11.0],
    "rewards/accuracies": [0.5, 0.5, 1.0, 1.0, 1.0, 1.0],
    "logps/chosen": [-3.0, -3.0, -3.0, -3.0, -3.0, -3.0],
    "logps/rejected": [-3.0, -4.0, -5.0, -6.0, -7.0, -8.0],
}
# the centred moving average over 3 steps (2 at either end) of rewards/chosen
CHOSEN_SMOOTH_3 = [1.5, 2.0, 3.0, 4.0, 5.0, 5.5]


def slow_smooth(x: list[float], window: int) -> list[float]:
    """The definition, one step at a time."""
    before, after = window // 2, window - 1 - window // 2
    out = []
    for i in range(len(x)):
        part = [x[j] for j in range(i - before, i + after + 1) if 0 <= j < len(x)]
        out.append(sum(part) / len(part))
    return out


@pytest.mark.parametrize("window", [1, 2, 3, 4, 7, 25])
@pytest.mark.parametrize("n", [1, 2, 5, 30])
def test_smooth_is_the_slow_loop(window, n):
    x = np.random.default_rng(n * 100 + window).normal(size=n)
    assert np.allclose(smooth(x, window), slow_smooth(list(x), window), rtol=0, atol=1e-12)


def test_smooth_known_answer():
    assert smooth(np.array(LOG["rewards/chosen"]), 3).tolist() == CHOSEN_SMOOTH_3
    assert smooth(np.array([2.0, 4.0]), 1).tolist() == [2.0, 4.0]
    with pytest.raises(ValueError):
        smooth(np.array([1.0]), 0)


@pytest.fixture()
def known_root(tiny_root, tmp_path):
    """A copy of the tiny runs with tiny/beta0.1's log replaced by `LOG`."""
    root = tmp_path / "ckpts"
    shutil.copytree(tiny_root, root)
    (run_dir(parse_policy("tiny/beta0.1"), root) / LOG_FILE).write_text(json.dumps(LOG))
    return root


def stored_evals(root, name):
    rdir = run_dir(parse_policy(name), root)
    metas = [json.loads((d / META_FILE).read_text()) for d in sorted(rdir.glob("step_*"))]
    return [m["step"] for m in metas], [m["eval"] for m in metas]


def test_result_holds_the_log_and_the_stored_evaluations(known_root):
    res = training_logs(["tiny/beta0.1", "tiny/beta0.10", "tiny/ref"], known_root, window=3)
    assert [r.policy for r in res.runs] == ["tiny/beta0.1", "tiny/ref"]  # one run, two spellings
    run = res.runs[0]
    assert run.steps.tolist() == LOG["step"]
    for col, values in LOG.items():
        if col != "step":
            assert run.curves[col].raw.tolist() == values
            assert run.curves[col].smoothed.tolist() == pytest.approx(slow_smooth(values, 3))
    assert run.curves["rewards/chosen"].smoothed.tolist() == CHOSEN_SMOOTH_3
    assert run.final("rewards/margins", 3) == pytest.approx(9.0)  # mean of 7, 9, 11
    steps, evals = stored_evals(known_root, "tiny/beta0.1")
    assert run.evals.steps == steps
    for name in evals[0]:
        assert run.evals.metrics[name] == [e[name] for e in evals]
    assert [c.step for c in run.checkpoints] == steps
    assert res.runs[1].curves.keys() == {"loss"} and not res.runs[1].is_preference


def test_command_writes_page_twin_and_index(known_root, tmp_path, capsys):
    reports = tmp_path / "reports"
    names = ["tiny/ref", "tiny/beta0.1", "tiny/beta1.0"]
    argv = ["--checkpoints", str(known_root), "--reports", str(reports), "--smooth", "3"]
    assert main([*argv, "--policies", *names]) == 0
    html = reports / "training" / f"{slug(names)}.html"
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(html)
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 4  # steps, evaluations; SFT loss, evaluations
    assert "<script" not in page and "http://" not in page
    assert "training/" + html.name in (reports / "index.html").read_text()

    twin = json.loads(html.with_suffix(".json").read_text())
    assert twin["kind"] == "training" and twin["data"]["window"] == 3
    run = next(r for r in twin["data"]["runs"] if r["policy"] == "tiny/beta0.1")
    assert run["steps"] == LOG["step"]
    assert run["curves"]["rewards/chosen"]["raw"] == LOG["rewards/chosen"]
    assert run["curves"]["rewards/chosen"]["smoothed"] == CHOSEN_SMOOTH_3
    steps, evals = stored_evals(known_root, "tiny/beta0.1")
    assert run["evals"]["steps"] == steps
    assert run["evals"]["ood_rate"] == [e["ood_rate"] for e in evals]
    tables = {t["title"]: t for t in twin["tables"]}
    end = tables["At the end of training"]
    row = next(r for r in end["rows"] if r[0] == "tiny/beta0.1")
    assert row[end["columns"].index("rewards/margins")] == pytest.approx(9.0)
    assert row[end["columns"].index("logps/rejected")] == pytest.approx(-7.0)
    rows = [r for r in tables["Evaluation at each checkpoint"]["rows"] if r[0] == "tiny/beta0.1"]
    cols = tables["Evaluation at each checkpoint"]["columns"]
    assert [r[cols.index("kl_greedy")] for r in rows] == [e["kl_greedy"] for e in evals]
    assert "SFT: evaluation at each checkpoint" in tables


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--policies", "tiny/beta0.3"], ["unknown policy"]),
        (["--policies", "tiny/beta0.1", "--smooth", "0"], ["--smooth", "at least 1"]),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tiny_root, tmp_path, capsys, args, words):
    reports = tmp_path / "reports"
    rc = main(["--checkpoints", str(tiny_root), "--reports", str(reports), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and all(w in err for w in words)
    assert not (reports / "training").exists()


def test_slug_of_many_policies_is_short_and_distinct():
    many = [f"beta{b}" for b in range(30)]
    assert len(slug(many)) < 60 and slug(many) != slug(many[:-1])
    assert slug(["ref", "grokking/beta0.5"]) == "ref_grokking-beta0.5"


def test_every_panel_has_axis_titles_and_runs_get_distinct_colours(known_root):
    from interp.present.figures.training import eval_curves, run_colors, step_curves

    res = training_logs(["tiny/ref", "tiny/beta0.1", "tiny/beta1.0"], known_root, window=3)
    for fig in (step_curves(res.preference, 3), eval_curves(res.preference, res.runs[0])):
        drawn = [ax for ax in fig.axes if ax.axison]
        assert drawn and all(ax.get_xlabel() and ax.get_ylabel() for ax in drawn)
    many = [dataclasses.replace(res.runs[1], policy=f"beta{i}") for i in range(12)]
    colors = run_colors([res.runs[0], *many])
    assert len(set(colors.values())) == 13

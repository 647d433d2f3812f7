"""Reusing stored checkpoint evaluations: only when they are the evaluation asked for."""

import pytest

from interp.core.metrics import evaluate
from interp.core.numberline import make_dataset
from interp.runs.evaluations import evaluation, stored_evaluation
from interp.runs.store import find_run

METRICS = ("kl_exact", "ood_rate")


@pytest.fixture(scope="module")
def setting(tiny_root):
    run = find_run("tiny/beta0.1", tiny_root)
    ref = find_run("tiny/ref", tiny_root).checkpoint()
    return run.trajectory()[-1], make_dataset("tiny", 0), ref


def test_the_stored_evaluation_is_reused_when_it_matches(setting):
    c, data, ref = setting
    got = evaluation(c, data, ref, 1e-2, METRICS)  # the tiny runs were evaluated at 1e-2
    assert got == c.meta["eval"]


def test_another_threshold_reference_or_split_recomputes(setting, tiny_root):
    c, data, ref = setting
    assert stored_evaluation(c, data.task, 5e-2, ref.sha256, "tiny", 0, METRICS) is None
    assert stored_evaluation(c, data.task, 1e-2, "0" * 64, "tiny", 0, METRICS) is None
    assert stored_evaluation(c, data.task, 1e-2, ref.sha256, "tiny", 1, METRICS) is None
    assert stored_evaluation(c, data.task, 1e-2, ref.sha256, "tiny", 0, ["no_such"]) is None
    fresh = evaluate(c.model, data.test, ref.model, exact_threshold=5e-2)
    got = evaluation(c, data, ref, 5e-2, METRICS)
    assert {m: got[m] for m in METRICS} == {m: fresh[m] for m in METRICS}


def test_evaluations_of_older_code_are_recomputed(setting, monkeypatch):
    import interp.core.metrics as metrics
    import interp.runs.evaluations as evaluations

    c, data, ref = setting
    calls = []
    monkeypatch.setattr(
        evaluations, "evaluate", lambda *a, **k: calls.append(1) or metrics.evaluate(*a, **k)
    )
    evaluation(c, data, ref, 1e-2, METRICS)
    assert calls == []
    monkeypatch.setattr(metrics, "EVAL_VERSION", metrics.EVAL_VERSION + 1)
    assert stored_evaluation(c, data.task, 1e-2, ref.sha256, "tiny", 0, METRICS) is None
    fresh = evaluation(c, data, ref, 1e-2, METRICS)
    assert calls == [1]
    assert fresh["kl_exact"] == pytest.approx(c.meta["eval"]["kl_exact"], abs=1e-6)

"""Stage headers: their format, elapsed time on a fake clock, nesting, and when they print."""

from __future__ import annotations

import io
import time

import pytest

from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey
from interp.stages import Stages, each, format_elapsed, header

from .conftest import TINY_MODEL

T0 = 1_700_000_000.0  # any instant: HH:MM is checked against time.localtime of it


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def hhmm(t: float) -> str:
    return time.strftime("%H:%M", time.localtime(t))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "+0s"), (12.9, "+12s"), (60, "+1m00s"), (250, "+4m10s"), (3725, "+1h02m05s"), (-3, "+0s")],
)
def test_format_elapsed(seconds, text):
    assert format_elapsed(seconds) == text


def test_header_format():
    assert header(T0 + 250, T0, "2/5", "beta sweep (seed 0)") == (
        f"[{hhmm(T0 + 250)} +4m10s] stage 2/5: beta sweep (seed 0)"
    )


def test_stages_print_elapsed_time_and_nest():
    clock, out = FakeClock(), io.StringIO()
    with Stages(2, stream=out, clock=clock) as stage:
        clock.now += 5
        stage("grokking")
        clock.now += 250
        stage("beta sweep")
        with Stages(2) as inner:  # takes the outer stream, clock and start
            clock.now += 60
            inner("seed 0")
            for seed in each([1], lambda s: f"seed {s}"):
                assert seed == 1
    assert out.getvalue().splitlines() == [
        f"[{hhmm(T0 + 5)} +5s] stage 1/2: grokking",
        f"[{hhmm(T0 + 255)} +4m15s] stage 2/2: beta sweep",
        f"[{hhmm(T0 + 315)} +5m15s] stage 2/2 › 1/2: seed 0",
        f"[{hhmm(T0 + 315)} +5m15s] stage 2/2 › 1/2 › 1/1: seed 1",
    ]
    with Stages(1, stream=out) as stage:  # closed lists are forgotten: a new one is outermost
        assert stage.label == "0/1"


def test_printed_only_when_not_a_terminal():
    tty, log = Terminal(), io.StringIO()
    for stream in (tty, log):
        with Stages(1, stream=stream) as stage:
            stage("x")
    assert tty.getvalue() == "" and "stage 1/1: x" in log.getvalue()
    with Stages(1, stream=tty, show=True) as stage:
        stage("forced")
    assert "forced" in tty.getvalue()
    quiet = io.StringIO()
    with Stages(1, stream=quiet, show=False) as stage:
        stage("never")
    assert quiet.getvalue() == ""


def test_stdout_is_the_default_stream(capsys):
    with Stages(1) as stage:  # capsys's stdout is not a terminal
        stage("to stdout")
    assert "stage 1/1: to stdout" in capsys.readouterr().out


def test_training_prints_one_header_per_training_stage(tmp_path, capsys):
    keys = [PolicyKey("tiny", "dpo", b, 0) for b in (0.1, 1.0)]
    ensure_trained(keys, tmp_path, TINY_MODEL, 2, progress=False, exact_threshold=None)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "stage" in ln]
    assert len(lines) == 2
    assert lines[0].endswith("stage 1/2: train tiny/ref (sft, tiny preset, seed 0)")
    assert lines[1].endswith(
        "stage 2/2: train tiny/beta0.1, tiny/beta1.0 (dpo, tiny preset, seed 0, one ensemble)"
    )
    ensure_trained(keys, tmp_path, TINY_MODEL, 2, progress=False, exact_threshold=None)
    assert "stage" not in capsys.readouterr().out  # nothing left to train: no stages

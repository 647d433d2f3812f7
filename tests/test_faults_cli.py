"""Faults a careful user can cause from the command line: each gets one line on stderr, exit
status 2 (130 for Ctrl-C), and leaves nothing half-written behind."""

import errno
import json
import os
import shutil
from types import SimpleNamespace

import pytest

import interp.cli as cli
from interp.core.model import ModelSpec
from interp.present.html import Report, Section, Table
from interp.runs.ensure import ensure_trained
from interp.runs.names import PolicyKey

TINY = ["--d-model", "32", "--n-heads", "2", "--d-mlp", "32", "--no-progress"]


@pytest.fixture
def no_training(monkeypatch):
    """Training anything fails the test: the mistake must be caught before."""
    import interp.train as tr

    def refuse(*a, **k):
        raise AssertionError("started training before checking the options")

    monkeypatch.setattr(cli, "ensure_default_policies", refuse)
    monkeypatch.setattr(tr, "ensure_trained", refuse)


def one_line(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def files_under(path):
    return sorted(p.relative_to(path) for p in path.rglob("*")) if path.exists() else []


# ----------------------------------------------------------------------------- architectures


@pytest.fixture(scope="module")
def two_layer_root(tiny_root, tmp_path_factory):
    """tiny_root's 1-layer runs plus tiny/beta0.5-s1 (and its reference) with 2 layers."""
    root = tmp_path_factory.mktemp("two_layer")
    shutil.copytree(tiny_root / "tiny", root / "tiny")
    spec = ModelSpec(n_layers=2, d_model=16, n_heads=2, d_mlp=16)
    key = PolicyKey("tiny", "dpo", 0.5, 1)
    ensure_trained([key], root, spec, 1, progress=False, announce=False, exact_threshold=None)
    return root


@pytest.mark.parametrize("kind", ["attention", "patching"])
@pytest.mark.parametrize(
    "a,b", [("tiny/beta0.1", "tiny/beta0.5-s1"), ("tiny/beta0.5-s1", "tiny/beta0.1")]
)
def test_a_and_b_of_other_architectures_are_refused(two_layer_root, tmp_path, capsys, kind, a, b):
    import importlib

    main = importlib.import_module(f"interp.{kind}").main
    reports = tmp_path / "reports"
    args = ["--checkpoints", str(two_layer_root), "--reports", str(reports), "--a", a, "--b", b]
    assert main(args + (["--no-progress"] if kind == "attention" else [])) == 2
    one_line(capsys, "different architectures", "n_layers")
    assert not reports.exists()  # not even an empty reports/<kind>/ folder


def test_a_and_its_reference_of_other_architectures_are_refused(two_layer_root):
    from interp.analysis.interventions import check_pair
    from interp.errors import ArchitectureMismatch
    from interp.runs.sources import SourceOptions, resolve

    def pair(ref: str):
        return resolve("tiny/beta0.1", "tiny/beta1.0", two_layer_root, SourceOptions(ref=ref))

    with pytest.raises(ArchitectureMismatch, match="its reference tiny/ref-s1"):
        check_pair(pair("tiny/ref-s1"))
    assert set(check_pair(pair("tiny/ref"))) == {
        "ref",
        "A",
        "B",
    }


# ----------------------------------------------------------------------------- writing


def fake_comparison(reports, checkpoints, monkeypatch, compute=None, argv=()):
    """The shared A-vs-B command body with a trivial analysis: nothing trained or loaded."""
    monkeypatch.setattr(cli, "ensure_default_policies", lambda names, root: None)
    opts = SimpleNamespace(a="x", b="y", checkpoints=str(checkpoints), reports=str(reports))

    def build(res, prov):
        table = Table("t", ["a"], [[1]])
        return Report("demo", "x_vs_y", "T", ["s"], [Section("S", tables=[table])], {}, prov)

    return cli.run_comparison(
        "prog",
        list(argv),
        opts,
        "demo",
        compute or (lambda root: SimpleNamespace(checkpoints=[])),
        build,
        lambda res: ["line"],
    )


def test_fake_comparison_writes_a_report(tmp_path, monkeypatch, capsys):
    reports = tmp_path / "reports"
    assert fake_comparison(reports, tmp_path, monkeypatch) == 0
    assert [str(p) for p in files_under(reports)] == [
        "demo",
        "demo/x_vs_y.html",
        "demo/x_vs_y.json",
        "index.html",
    ]


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def fileno(self):
            return self.f.fileno()

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real(fd, *a, **k)))
    reports = tmp_path / "reports"
    assert fake_comparison(reports, tmp_path, monkeypatch) == 2
    one_line(capsys, "No space left on device", "free some disk space")
    assert not reports.exists()  # no temporary file, no empty reports/demo/


def test_index_html_folder_is_refused_before_computing(tmp_path, monkeypatch, capsys):
    reports = tmp_path / "reports"
    (reports / "index.html").mkdir(parents=True)
    computed = []
    compute = lambda root: computed.append(root) or SimpleNamespace(checkpoints=[])  # noqa: E731
    assert fake_comparison(reports, tmp_path, monkeypatch, compute) == 2
    one_line(capsys, "index.html", "in the way")
    assert not computed
    assert [str(p) for p in files_under(reports)] == ["index.html"]


def test_twin_path_folder_leaves_no_html_without_twin(tmp_path, monkeypatch, capsys):
    reports = tmp_path / "reports"
    (reports / "demo" / "x_vs_y.json").mkdir(parents=True)
    assert fake_comparison(reports, tmp_path, monkeypatch) == 2
    one_line(capsys, "x_vs_y.json", "in the way")
    assert [str(p) for p in files_under(reports)] == ["demo", "demo/x_vs_y.json"]


def test_non_utf8_reports_path(tmp_path, monkeypatch, capsys):
    reports = tmp_path / os.fsdecode(b"r\xff")
    argv = ["--reports", str(reports)]
    assert fake_comparison(reports, tmp_path, monkeypatch, argv=argv) == 0
    out = capsys.readouterr().out
    assert "x_vs_y.html" in out
    html = (reports / "demo" / "x_vs_y.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert "--reports" in html
    twin = json.loads((reports / "demo" / "x_vs_y.json").read_text())
    assert str(reports) in twin["provenance"]["command"]


def test_checkpoints_that_is_a_file(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    reports = tmp_path / "reports"
    assert fake_comparison(reports, blocker, monkeypatch) == 2
    one_line(capsys, "--checkpoints", "is a file")
    assert not reports.exists()


@pytest.mark.parametrize("command", ["train", "checkpoints"])
def test_checkpoints_that_is_a_file_other_commands(tmp_path, capsys, command):
    import importlib

    main = importlib.import_module(f"interp.{command}").main
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    extra = ["--preset", "tiny", *TINY] if command == "train" else []
    assert main(["--checkpoints", str(blocker / "sub"), *extra]) == 2
    one_line(capsys, "--checkpoints", "is a file")
    assert blocker.read_text() == "not a folder"


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_in_a_report_command(tmp_path, monkeypatch, capsys):
    def interrupted(root):
        raise KeyboardInterrupt

    reports = tmp_path / "reports"
    assert fake_comparison(reports, tmp_path, monkeypatch, interrupted) == 130
    one_line(capsys, "interrupted", "no report was written", "rerun the same command")
    assert not reports.exists()


def test_sigterm_in_a_report_command_is_handled_like_ctrl_c(tmp_path, monkeypatch, capsys):
    import signal

    def killed(root):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    reports = tmp_path / "reports"
    assert fake_comparison(reports, tmp_path, monkeypatch, killed) == 128 + signal.SIGTERM
    one_line(capsys, "terminated", "no report was written")
    assert not reports.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_ctrl_c_in_training_says_what_was_kept(tiny_root, tmp_path, monkeypatch, capsys):
    import interp.train as tr

    root = tmp_path / "ck"
    shutil.copytree(tiny_root, root)
    info = root / "tiny" / "beta1.0" / "run.json"
    d = json.loads(info.read_text())
    info.write_text(json.dumps(d | {"status": "running"}))  # as if stopped mid-run

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "ensure_trained", interrupted)
    argv = ["--preset", "tiny", "--betas", "0.1", "1.0", "0.7", "--checkpoints", str(root)]
    assert tr.main(argv + TINY) == 130
    err = one_line(capsys, "interrupted", "rerun the same command to resume")
    assert "tiny/ref complete" in err and "tiny/beta0.1 complete" in err
    assert "tiny/beta1.0 saved up to step" in err and "beta0.7" not in err


def test_ctrl_c_other_commands(monkeypatch, capsys):
    import interp.data as data

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "make_dataset", interrupted)
    assert data.main(["--preset", "tiny"]) == 130
    one_line(capsys, "interrupted", "nothing was written")


# ----------------------------------------------------------------------------- flag values


@pytest.mark.parametrize("seed", ["-1", "12345678901234567890123", "4294967296", "1e3"])
@pytest.mark.parametrize(
    "command,flag", [("data", "--seed"), ("train", "--seeds"), ("patching", "--seed")]
)
def test_seeds_are_bounded(tmp_path, capsys, no_training, command, flag, seed):
    import importlib

    main = importlib.import_module(f"interp.{command}").main
    with pytest.raises(SystemExit) as e:
        main(["--checkpoints", str(tmp_path)] * (command != "data") + [flag, seed])
    assert e.value.code == 2
    one_line(capsys, flag, "a seed must be a whole number from 0 to 4294967295")
    assert not any(tmp_path.iterdir())


def test_surgery_seed_is_bounded(tmp_path, capsys, no_training):
    from interp.surgery import main

    with pytest.raises(SystemExit) as e:
        main(["--checkpoints", str(tmp_path), "--seed", "-1"])
    assert e.value.code == 2
    one_line(capsys, "--seed", "from 0 to 4294967295")


def test_largest_seed_is_accepted(capsys):
    from interp.data import main

    assert main(["--preset", "tiny", "--seed", "4294967295"]) == 0


def test_bad_group_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from interp.surgery import main

    trained = []
    monkeypatch.setattr(cli, "ensure_default_policies", lambda names, root: trained.append(names))
    reports = tmp_path / "reports"
    args = ["--checkpoints", str(tmp_path / "ck"), "--reports", str(reports)]
    assert main([*args, "--groups", "attention", "atention"]) == 2
    one_line(capsys, "unknown parameter group 'atention'")
    assert not trained and not reports.exists() and not (tmp_path / "ck").exists()


@pytest.mark.parametrize("n", ["1000000000", "10001"])
def test_n_checkpoints_is_bounded(tmp_path, capsys, no_training, n):
    from interp.train import main

    assert main(["--preset", "tiny", "--checkpoints", str(tmp_path), "--n-checkpoints", n]) == 2
    one_line(capsys, "--n-checkpoints", "at most 10000")
    assert not any(tmp_path.iterdir())


def test_group_names_checked_by_form_not_by_one_architecture():
    from interp.analysis.surgery.run import check_group_names
    from interp.errors import UnknownGroup

    check_group_names(["all", "model", "L12H3.ov", "L7.b_O", "L0.mlp"])  # any layer or head
    for bad in ["atention", "L01H0", "L0H", "H0", "L0H0.kq", ""]:
        with pytest.raises(UnknownGroup, match="unknown parameter group"):
            check_group_names([bad])


def test_closed_stdout_stops_quietly(monkeypatch, capsys):
    import interp.data as data

    def reader_left(*a, **k):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(data, "make_dataset", reader_left)
    assert data.main(["--preset", "tiny"]) == 141
    assert capsys.readouterr().err == ""

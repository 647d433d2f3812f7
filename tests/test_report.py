import errno
import json
import os
import stat

import pytest

from interp.errors import UserError
from interp.present.figures.common import new_figure
from interp.present.html import FigureBlock, Report, Section, Table, cell, jsonable
from interp.present.write import write_report
from interp.runs.provenance import provenance


def report(title="T", slug="x"):
    fig, axes = new_figure()
    axes[0][0].plot([0, 1], [1, 0])
    return Report(
        kind="demo",
        slug=slug,
        title=title,
        summary=["first <b>line</b>", "second"],
        sections=[
            Section(
                "S & T",
                ["para <i>x</i>"],
                [FigureBlock(fig, "cap <x>")],
                [Table("tab", ["a", "<b>"], [[1.23456, None], ["<script>", True]])],
            )
        ],
        data={"nan": float("nan"), "xs": [1, 2]},
        provenance=provenance(
            "prog", ["--a", "<b>"], [{"policy": "p<", "step": 1, "sha256": "ab"}], {"s": 0}, 0.0
        ),
    )


def test_html_escapes_what_it_did_not_write(tmp_path):
    path = write_report(report(title="<script>alert(1)</script>"), tmp_path)
    html = path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>line</b>" not in html and "<i>x</i>" not in html and "p&lt;" in html
    assert "data:image/png;base64," in html


def test_json_twin_holds_every_table_and_no_nan(tmp_path):
    path = write_report(report(), tmp_path)
    twin = json.loads(path.with_suffix(".json").read_text())
    assert twin["tables"][0]["rows"] == [[1.23456, None], ["<script>", True]]
    assert twin["data"]["nan"] is None
    assert twin["provenance"]["checkpoints"][0]["sha256"] == "ab"


def test_index_lists_reports(tmp_path):
    write_report(report(title="one", slug="a"), tmp_path)
    write_report(report(title="two", slug="b"), tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert "demo/a.html" in index and "demo/b.html" in index and "two" in index


def test_failed_render_writes_nothing(tmp_path, monkeypatch):
    import interp.present.write as rp

    def broken(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(rp, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_report(report(), tmp_path)
    assert not list(tmp_path.rglob("*.html")) and not list(tmp_path.rglob("*.json"))


def test_cells_and_jsonable():
    import numpy as np
    import torch

    assert cell(None) == "—" and cell(float("inf")) == "—" and cell(True) == "yes"
    assert cell(0.000123) == "1.23e-04" and cell(3.14159) == "3.142"
    assert jsonable({"t": torch.tensor([1.5]), "a": np.array([2]), "f": np.float32(1.0)}) == {
        "t": [1.5],
        "a": [2],
        "f": 1.0,
    }


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_report(report(), tmp_path)
    finally:
        os.umask(old)
    for p in (path, path.with_suffix(".json"), tmp_path / "index.html"):
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


@pytest.mark.parametrize("blocked", ["index.html", "demo/x.json", "demo/x.html"])
def test_a_folder_in_the_way_writes_nothing(tmp_path, blocked):
    (tmp_path / blocked).mkdir(parents=True)
    with pytest.raises(UserError, match="in the way"):
        write_report(report(), tmp_path)
    left = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert left == {"demo", blocked}  # no page without its twin, no temporary file


def test_failed_rename_takes_back_what_it_placed(tmp_path, monkeypatch):
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        write_report(report(), tmp_path)
    assert [p.name for p in tmp_path.rglob("*")] == ["demo"]


def test_index_skips_stray_json(tmp_path):
    outside = tmp_path / "outside.html"
    outside.write_text("<p>not a report</p>")
    reports = tmp_path / "reports"
    (reports / "demo").mkdir(parents=True)
    (reports / "demo" / "page.html").write_text("<p>page</p>")
    strays = {
        "abs.json": {"html": str(outside), "title": "absolute"},
        "demo/up.json": {"html": "../../outside.html", "title": "up"},
        "demo/num.json": {"html": 5},
        "demo/summary.json": {"html": "page.html", "title": "bad summary", "summary": 5},
        "demo/prov.json": {"html": "page.html", "title": "bad prov", "provenance": [1]},
        "demo/list.json": [1, 2],
        "demo/nul.json": {"html": "a\u0000b"},
        "demo/self.json": {"html": ""},
        "demo/ok.json": {"html": "page.html", "title": "kept", "summary": [], "kind": "demo"},
    }
    for name, doc in strays.items():
        (reports / name).write_text(json.dumps(doc))
    (reports / "demo" / "latin1.json").write_bytes(b'{"html": "\xff"}')
    path = write_report(report(title="mine", slug="x"), reports)
    index = (reports / "index.html").read_text()
    assert "outside" not in index and "absolute" not in index and 'href="../' not in index
    assert "bad summary" not in index and "bad prov" not in index
    assert "demo/page.html" in index and "kept" in index and "demo/x.html" in index
    assert path.exists()

"""Writing reports: the page, its JSON twin and the index, all together or none.

Files are written under temporary names and renamed into place, HTML, JSON and the index
together, so a failure (disk full, a folder in the way, Ctrl-C) leaves no half report and
no HTML without its twin. They get the mode the umask gives any new file.

The four A-vs-B reports of one pair (`PAIR_KINDS`) link each other: writing one also
rewrites the link line of the siblings already on disk (a marked block of our own markup,
each page replaced whole), so the set links fully in whatever order it was written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from interp.errors import UserError
from interp.present.html import PAIR_KINDS, Report, nav_line, render_html, twin
from interp.present.index import INDEX, render_index


def default_reports_root() -> Path:
    return Path(os.environ.get("INTERP_REPORTS", "reports"))


def ensure_writable(folder: Path) -> None:
    """Fail now, with one line, if reports cannot be written into `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        raise UserError(
            f"cannot write reports to {folder}: {e.strerror or e}; choose another --reports folder"
        ) from None


def _check_not_a_folder(path: Path) -> None:
    if path.is_dir():
        raise UserError(
            f"cannot write {path}: a folder of that name is in the way; move it or choose "
            "another --reports folder"
        )


def ensure_reports(root: Path, kind: str) -> None:
    """Fail now, with one line, if a report of `kind` cannot be written under `root` (the
    folder is not writable, or a folder named index.html is in the way)."""
    ensure_writable(root / kind)
    _check_not_a_folder(root / INDEX)


_SIBLINGS = re.compile(r"<!--siblings-->.*?<!--/siblings-->", re.S)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write_all(files: dict[Path, str]) -> None:
    """Write every file under a temporary name, then rename them all into place; on any
    failure (disk full, a folder in the way, Ctrl-C) remove the temporary files and those
    already renamed, so the set is written whole or not at all. Files get the mode the
    umask gives a new file (mkstemp's own is 0600); text that cannot be encoded (a
    non-UTF-8 path in the command line) is written backslash-escaped."""
    for path in files:
        _check_not_a_folder(path)
    mode = 0o666 & ~_umask()
    tmps: list[tuple[str, Path]] = []
    placed: list[Path] = []
    try:
        for path, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            tmps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
                os.chmod(tmp, mode)
                f.write(text)
        for tmp, path in tmps:
            os.replace(tmp, path)
            placed.append(path)
    except BaseException:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        raise


def write_report(report: Report, root: Path | None = None, top_level: bool = False) -> Path:
    """Write `<root>/<kind>/<slug>.html` and `.json` (`<root>/<slug>.*` when `top_level`,
    as for paper.html) and refresh `<root>/index.html`: the three together or none."""
    root = Path(root) if root is not None else default_reports_root()
    folder = root if top_level else root / report.kind
    ensure_writable(folder)
    html_path = folder / f"{report.slug}.html"
    json_path = folder / f"{report.slug}.json"
    index_href = "index.html" if top_level else "../index.html"
    doc = twin(report, html_path.name)
    siblings = set() if top_level else _siblings_on_disk(root, report.kind, report.slug)
    _atomic_write_all(
        {
            html_path: render_html(report, json_path.name, index_href, siblings),
            json_path: json.dumps(doc, indent=1, allow_nan=False) + "\n",
            root / INDEX: render_index(root, {json_path: doc}),
        }
    )
    _relink_siblings(root, report.kind, report.slug, siblings)
    return html_path


def _siblings_on_disk(root: Path, kind: str, slug: str) -> set[str]:
    """The other reports of the same A-vs-B pair whose page and twin exist under `root`."""
    if kind not in PAIR_KINDS:
        return set()
    return {
        k
        for k in PAIR_KINDS
        if k != kind
        and (root / k / f"{slug}.html").is_file()
        and (root / k / f"{slug}.json").is_file()
    }


def _relink_siblings(root: Path, kind: str, slug: str, siblings: set[str]) -> None:
    """Rewrite the link line of each sibling page so it links the whole set now on disk.
    Each page is replaced whole; one that cannot be read or written keeps its old links
    (the report just written is complete either way)."""
    for k in siblings:
        page = root / k / f"{slug}.html"
        try:
            text = page.read_text(encoding="utf-8")
        except (OSError, ValueError):
            continue
        block = f"<!--siblings-->{nav_line(k, slug, (siblings - {k}) | {kind}, '../index.html')}"
        new = _SIBLINGS.sub(lambda _, b=block: b + "<!--/siblings-->", text, count=1)
        if new != text:
            try:
                _atomic_write_all({page: new})
            except OSError:
                continue


def refresh_index(root: Path) -> Path:
    """Rewrite `<root>/index.html` from the JSON twins found under `root`."""
    index = root / INDEX
    _atomic_write_all({index: render_index(root)})
    return index

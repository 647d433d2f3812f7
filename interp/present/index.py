"""`reports/index.html`: one row per report found under the reports folder.

The index is rebuilt from the JSON twins on disk (and the one about to be written beside
them) every time a report is written, so it never lists a report that is gone. A twin is
read through a small schema (`_Listed`): a stray JSON file that does not fit is not
listed, nor a twin whose page is missing or lies outside the reports folder. Each summary
is cut at a sentence or word boundary (`interp.present.text.shorten`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic

from interp.present.html import ENV, STYLE
from interp.present.text import shorten

INDEX = "index.html"  # the list of every report, at the top of the reports folder
SUMMARY_CHARS = 300  # an index summary's longest cut

_INDEX = ENV.from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>interp reports</title>
<style>{{ style }}</style></head><body>
<h1>interp reports</h1>
{% if not rows %}<p>No reports yet: run <code>make report</code>.</p>{% endif %}
<table><tr><th>report</th><th>kind</th><th>created</th><th>summary</th></tr>
{% for r in rows %}<tr><td><a href="{{ r.href }}">{{ r.title }}</a></td><td>{{ r.kind }}</td>
<td>{{ r.created }}</td><td style="text-align:left">{{ r.summary }}</td></tr>{% endfor %}
</table></body></html>
"""
)


class _Provenance(pydantic.BaseModel):
    created: str = ""


class _Listed(pydantic.BaseModel):
    """What the index reads of a JSON twin; a file that does not fit is not listed."""

    html: str
    title: str | None = None
    kind: str = ""
    summary: list[str] = []
    provenance: _Provenance = _Provenance()


def _index_row(root: Path, path: Path, doc: Any, pending: set[Path]) -> dict[str, str] | None:
    """The index row of the twin at `path`, or None: not a twin, or its page is missing or
    outside `root` (the index links only to reports inside it)."""
    try:
        d = _Listed.model_validate(doc)
    except pydantic.ValidationError:
        return None
    html = path.parent / d.html
    try:
        href = html.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    if html not in pending and not html.is_file():
        return None
    return {
        "href": href.as_posix(),
        "title": path.stem if d.title is None else d.title,
        "kind": d.kind,
        "created": d.provenance.created,
        "summary": shorten((d.summary or [""])[0], SUMMARY_CHARS),
    }


def render_index(root: Path, pending: dict[Path, dict[str, Any]] | None = None) -> str:
    """`<root>/index.html` listing the JSON twins found under `root` and the `pending`
    ones (path -> twin) about to be written beside them."""
    pending = pending or {}
    found = {0: set(root.glob("*.json")), 1: set(root.glob("*/*.json"))}
    for p in pending:
        if p.parent == root:
            found[0].add(p)
        elif p.parent.parent == root:
            found[1].add(p)
    pages = {p.parent / d.get("html", "") for p, d in pending.items()}
    rows = []
    for path in sorted(found[0]) + sorted(found[1]):
        if path in pending:
            doc: Any = pending[path]
        else:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        row = _index_row(root, path, doc, pages)
        if row is not None:
            rows.append(row)
    return _INDEX.render(rows=rows, style=STYLE)

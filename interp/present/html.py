"""Self-contained HTML report pages and their JSON twins.

This module only assembles: analyses compute, `interp.present.figures` draws, and a report is a
list of sections holding paragraphs, figures and tables. Every figure is embedded as a
PNG data URI, nothing is fetched from the network, and every string goes through Jinja's
autoescaping, so text that came from files or arguments cannot inject markup. The JSON
twin holds every table of the HTML plus the analysis's full data and the provenance.
Writing pages and twins to disk is `interp.present.write`; the list of every report is
`interp.present.index`.

Navigation: a page with several sections opens with a table of contents whose anchors are
the sections' ids (`section_ids`), and a link line to the index and to the other reports
of the same A-vs-B pair (`PAIR_KINDS`, `nav_line`). Table cells are formatted one column at
a time by `interp.present.numbers`; the twin keeps the raw values.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import numpy as np
import torch
from matplotlib.figure import Figure

from interp.present.numbers import MISSING, column_format, is_number

LONG_TABLE = 16  # tables with more rows than this are folded into <details>
PAIR_KINDS = ("surgery", "attention", "patching", "geometry")  # the reports of one A-vs-B pair
TOC_FROM = 3  # pages with at least this many sections get a table of contents


def pair_slug(a: str, b: str) -> str:
    """The file name stem of an A-vs-B report: policy names, slashes made safe."""
    return f"{a}_vs_{b}".replace("/", "-")


@dataclass(frozen=True)
class Link:
    """A table cell that links to another report (href relative to the page)."""

    text: str
    href: str


@dataclass
class Table:
    """A table of the page and of the JSON twin. `percent` names the columns holding
    fractions the page writes as percentages (the twin keeps the fractions)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    percent: tuple[str, ...] = ()


@dataclass
class FigureBlock:
    figure: Figure
    caption: str = ""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[FigureBlock] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


@dataclass
class Report:
    kind: str  # the analysis: surgery, attention, …; also the report's folder
    slug: str  # file name stem, e.g. beta0.01_vs_beta1.0
    title: str
    summary: list[str]
    sections: list[Section]
    data: dict[str, Any]
    provenance: dict[str, Any]


# ----------------------------------------------------------------------------- helpers


def jsonable(obj: Any) -> Any:
    """Tensors, arrays, dataclasses and paths as plain JSON values; NaN and inf as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cell(v: Any) -> str:
    """How a table cell is shown (escaped by the template, except links built here)."""
    if isinstance(v, Link):
        return markupsafe.Markup('<a href="{}">{}</a>').format(v.href, v.text)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, Link) for x in v):
        return markupsafe.Markup("<br>").join(cell(x) for x in v)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return str(v)


def table_cells(t: Table) -> list[list[tuple[str, str]]]:
    """Every cell of `t` as (text, css class): numbers formatted one column at a time
    (`interp.present.numbers`), class "num" (never wrapped) or "txt" (left-aligned)."""
    n = max((len(r) for r in t.rows), default=0)
    formats = [
        column_format(
            [r[j] for r in t.rows if j < len(r)],
            percent=j < len(t.columns) and t.columns[j] in t.percent,
        )
        for j in range(n)
    ]
    out = []
    for row in t.rows:
        cells = []
        for j, v in enumerate(row):
            if is_number(v):
                cells.append((formats[j](v), "num"))
            elif v is None:
                cells.append((MISSING, "num"))
            else:
                cells.append((cell(v), "txt" if isinstance(v, (str, Link, list)) else ""))
        out.append(cells)
    return out


def section_ids(sections: list[Section]) -> list[str]:
    """A unique anchor per section, from its title: "2. Where A's weight change goes"
    → "where-a-s-weight-change-goes"."""
    ids: list[str] = []
    for s in sections:
        base = re.sub(r"[^a-z0-9]+", "-", s.title.lower()).strip("-") or "section"
        sid, k = base, 2
        while sid in ids:
            sid, k = f"{base}-{k}", k + 1
        ids.append(sid)
    return ids


def figure_png(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- HTML

ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
ENV.filters["cell"] = cell

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;
margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid
#d8dce4;padding-bottom:.2em}h3{font-size:1.02em;margin-bottom:.3em}
.summary{background:#f4f6fa;border-left:4px solid #4a6fa5;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.88em}
th,td{border:1px solid #d8dce4;padding:.25em .55em;text-align:right}
th{background:#eef1f6}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.88em;color:#4b5263}
.note{font-size:.85em;color:#4b5263}footer{margin-top:3em;font-size:.8em;color:#4b5263;
border-top:1px solid #d8dce4}code{font-size:.95em}details{margin:.3em 0}
.scroll{overflow-x:auto}summary{cursor:pointer;color:#4a6fa5}td.txt{text-align:left}
td.num{white-space:nowrap;font-variant-numeric:tabular-nums}
nav.toc{font-size:.9em;margin:1em 0}nav.toc ol{margin:.2em 0;padding-left:1.6em}
"""

_PAGE = ENV.from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ r.title }}</title><style>{{ style }}</style></head>
<body>
<p class="note"><!--siblings-->{{ nav }}<!--/siblings--></p>
<h1>{{ r.title }}</h1>
<div class="summary">{% for p in r.summary %}<p>{{ p }}</p>{% endfor %}</div>
{% if r.sections | length >= toc_from %}<nav class="toc" aria-label="contents"><strong>Contents</strong><ol>
{% for s in r.sections %}<li><a href="#{{ ids[loop.index0] }}">{{ s.title }}</a></li>{% endfor %}
</ol></nav>{% endif %}
{% for s in r.sections %}{% set si = loop.index0 %}
<h2 id="{{ ids[si] }}">{{ loop.index }}. {{ s.title }}</h2>
{% for p in s.paragraphs %}<p>{{ p }}</p>{% endfor %}
{% for f in s.figures %}<figure><img alt="{{ f.caption }}" src="data:image/png;base64,{{ pngs[si][loop.index0] }}">
{% if f.caption %}<figcaption>{{ f.caption }}</figcaption>{% endif %}</figure>{% endfor %}
{% for t in s.tables %}<h3>{{ t.title }}</h3>
{% if t.rows | length > long_table %}<details><summary>show the table ({{ t.rows | length }} rows)</summary>{% endif %}
<div class="scroll"><table><thead><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in table_cells(t) %}<tr>{% for text, cls in row %}<td{% if cls %} class="{{ cls }}"{% endif %}>{{ text }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>{% if t.rows | length > long_table %}</details>{% endif %}
{% if t.note %}<p class="note">{{ t.note }}</p>{% endif %}{% endfor %}
{% endfor %}
<footer><h3>Provenance</h3>
<p>Command: <code>{{ p.command }}</code><br>
Git commit: <code>{{ p.git_commit }}</code> · created {{ p.created }} · wall time {{ p.wall_time_s }} s<br>
Seeds: {% for k, v in p.seeds.items() %}{{ k }} = {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}<br>
Versions: {% for k, v in p.versions.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}</p>
<details><summary>Checkpoints ({{ p.checkpoints | length }}) with sha256</summary>
<table><tr><th>policy</th><th>step</th><th>sha256</th></tr>
{% for c in p.checkpoints %}<tr><td>{{ c.policy }}</td><td>{{ c.step }}</td><td><code>{{ c.sha256 }}</code></td></tr>{% endfor %}
</table></details>
<p>JSON twin with every number: <a href="{{ json_name }}">{{ json_name }}</a></p>
</footer></body></html>
"""
)


def nav_line(kind: str, slug: str, siblings: set[str], index_href: str) -> markupsafe.Markup:
    """The line atop a page: the index, then the pair's reports in `PAIR_KINDS` order
    (this one in bold, the others linked when in `siblings`), or just this page's kind."""
    parts = [markupsafe.Markup('<a href="{}">all reports</a>').format(index_href)]
    if kind not in PAIR_KINDS:
        parts.append(markupsafe.escape(kind))
    else:
        href = urllib.parse.quote(slug + ".html")
        for k in PAIR_KINDS:
            if k == kind:
                parts.append(markupsafe.Markup("<strong>{}</strong>").format(k))
            elif k in siblings:
                parts.append(markupsafe.Markup('<a href="../{}/{}">{}</a>').format(k, href, k))
    return markupsafe.Markup(" · ").join(parts)


def render_html(
    report: Report,
    json_name: str,
    index_href: str = "../index.html",
    siblings: set[str] = frozenset(),
) -> str:
    pngs = [[figure_png(f.figure) for f in s.figures] for s in report.sections]
    return _PAGE.render(
        r=report,
        p=report.provenance,
        pngs=pngs,
        style=STYLE,
        json_name=json_name,
        long_table=LONG_TABLE,
        toc_from=TOC_FROM,
        ids=section_ids(report.sections),
        table_cells=table_cells,
        nav=nav_line(report.kind, report.slug, siblings, index_href),
    )


def twin(report: Report, html_name: str) -> dict[str, Any]:
    return jsonable(
        {
            "kind": report.kind,
            "title": report.title,
            "slug": report.slug,
            "html": html_name,
            "summary": report.summary,
            "tables": [
                {
                    "section": s.title,
                    "title": t.title,
                    "columns": t.columns,
                    "rows": t.rows,
                    "note": t.note,
                }
                for s in report.sections
                for t in s.tables
            ],
            "data": report.data,
            "provenance": report.provenance,
        }
    )

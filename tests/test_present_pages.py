"""Page navigation and text rules: a table of contents whose anchors are the section ids,
sibling links among the four reports of one pair (only those that exist), index summaries
cut at a word boundary, the claims table's "1 seed" and links, escaping kept."""

import re

from interp.analysis.claims import Claim
from interp.present.claims import claims_table
from interp.present.html import PAIR_KINDS, Report, Section, Table
from interp.present.index import render_index
from interp.present.text import seeds_label, shorten
from interp.present.write import write_report
from interp.runs.provenance import provenance


def page(kind="attention", slug="a_vs_b", n_sections=4, summary="Short summary."):
    return Report(
        kind=kind,
        slug=slug,
        title="T",
        summary=[summary],
        sections=[
            Section(f"Part <{i}> & more", [f"p{i}"], tables=[Table("t", ["x"], [[0.5]])])
            for i in range(n_sections)
        ]
        + [Section("Part <0> & more")],  # a repeated title still gets its own anchor
        data={},
        provenance=provenance("prog", [], [], {}, 0.0),
    )


def test_toc_anchors_match_section_ids(tmp_path):
    html = write_report(page(), tmp_path).read_text()
    toc = re.search(r'<nav class="toc".*?</nav>', html, re.S).group(0)
    hrefs = re.findall(r'href="#([^"]+)"', toc)
    ids = re.findall(r'<h2 id="([^"]+)"', html)
    assert hrefs == ids and len(ids) == 5 and len(set(ids)) == 5
    assert "Part &lt;1&gt; &amp; more" in toc  # titles escaped in the contents too


def test_short_pages_have_no_toc(tmp_path):
    html = write_report(page(n_sections=1), tmp_path).read_text()
    assert 'class="toc"' not in html


def nav(html):
    return re.search(r"<!--siblings-->(.*?)<!--/siblings-->", html, re.S).group(1)


def test_siblings_linked_only_when_present_and_relinked_when_written(tmp_path):
    first = write_report(page("attention"), tmp_path)
    line = nav(first.read_text())
    assert 'href="../index.html"' in line and "<strong>attention</strong>" in line
    assert not any(f'href="../{k}/' in line for k in PAIR_KINDS)
    second = write_report(page("surgery"), tmp_path)
    assert 'href="../attention/a_vs_b.html"' in nav(second.read_text())
    # the page written first now links the second, and nothing else of it changed
    relinked = first.read_text()
    assert 'href="../surgery/a_vs_b.html"' in nav(relinked)
    assert 'href="../patching/' not in nav(relinked) and relinked.count("<h2 id=") == 5
    other = write_report(page("surgery", slug="c_vs_d"), tmp_path)  # another pair
    assert "a_vs_b" not in nav(other.read_text())
    assert "c_vs_d" not in nav((tmp_path / "attention" / "a_vs_b.html").read_text())


def test_other_kinds_have_no_sibling_links(tmp_path):
    line = nav(write_report(page("mechanistic", slug="seed0"), tmp_path).read_text())
    assert "all reports" in line and "mechanistic" in line and '<a href="../' in line
    assert "<strong>" not in line


def test_shorten_keeps_the_first_sentence_or_cuts_at_a_word():
    s = "A and B attend alike on the test prompts: the total variation is 0.025. Second one."
    assert (
        shorten(s, 300) == "A and B attend alike on the test prompts: the total variation is 0.025."
    )
    cut = shorten(s, 68)
    assert cut.endswith("…") and s.startswith(cut[:-1])
    assert not re.search(r"\d", cut)  # never just before (or inside) the number
    long = "word " * 100 + "tail"
    out = shorten(long, 50)
    assert len(out) <= 50 and out[:-1].split() == ["word"] * len(out[:-1].split())


def test_index_summary_is_shortened_at_a_word_boundary(tmp_path):
    text = "alpha " * 80 + "is 50.5% here."
    write_report(page(summary=text), tmp_path)
    index = render_index(tmp_path)
    shown = re.search(r'<td style="text-align:left">(.*?)</td>', index, re.S).group(1)
    assert shown.endswith("…") and "alph…" not in shown and len(shown) <= 300


def claim(values, links):
    return Claim("F9", "c", "cs", "stat", values, ["holds"] * len(values), links=links)


def test_claims_table_says_one_seed_and_links_every_report():
    one = claims_table([claim([0.5], ["mech/seed0.html", "attention/a_vs_b.html"])], prefix="")
    assert one.columns[3] == "measured here (1 seed)" and "±" not in one.rows[0][3]
    assert [link.href for link in one.rows[0][6]] == ["mech/seed0.html", "attention/a_vs_b.html"]
    many = claims_table([claim([0.5, 0.6], [])])
    assert "95% CI" in many.columns[3] and many.rows[0][6] is None
    assert seeds_label(1) == "1 seed" and seeds_label(3) == "3 seeds"


def test_claim_links_render_as_escaped_relative_links(tmp_path):
    r = page("paper", slug="paper")
    r.sections = [
        Section("Claims", tables=[claims_table([claim([1.0], ["x/<y>.html"])], prefix="")])
    ]
    html = write_report(r, tmp_path, top_level=True).read_text()
    assert 'href="x/&lt;y&gt;.html"' in html and "<y>" not in html

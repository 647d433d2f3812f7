import dataclasses
import json

import numpy as np
import pytest
import torch

import interp.runs.sources as sources
from interp.analysis.geometry import (
    ches,
    displacement_point,
    first_difference,
    mass_by_kind,
    ood_leaves,
    run_geometry,
    sequence_hidden_sums,
    top_ood,
    unembedding,
)
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import EOS, PRESETS, NumberLine, make_dataset
from interp.core.sampling import ResponseTree, enumerate_responses
from interp.core.stats import pearson, spearman
from interp.geometry import main
from interp.present.pages.geometry import NO_JUDGE, build_report, findings

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)
# the layout of the JSON twin's data (a file format: order matters)
TWIN_KEYS = [
    "a",
    "b",
    "ref",
    "tokens",
    "unembedding",
    "unembedding_shift",
    "single",
    "pairs",
    "ches",
    "preferred_change",
    "ches_spearman",
    "displacement",
    "mass",
    "exact_threshold",
    "checkpoints",
    "not_computable",
    "findings",
]
DISPLACEMENT_KEYS = [
    "step",
    "logp_chosen",
    "logp_rejected",
    "ood_mass",
    "top_ood",
    "logp_top_ood",
    "share_ood_above_chosen",
]


class Unjudged(NumberLine):
    """The tiny number line, but a task that cannot judge its responses."""

    def judge(self, prompts, tokens, lengths):
        return None


UNJUDGED = Unjudged(**dataclasses.asdict(PRESETS["tiny"]))


def test_ches_hand_computed():
    hp = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 0.0]])
    hn = torch.tensor([[1.0, 1.0], [-1.0, 3.0], [5.0, 5.0]])
    # <H+, H-> - |H+|^2
    assert ches(hp, hn).tolist() == [0.0, (-2 + 3) - 5, 0.0]


def test_hidden_sums_match_the_cache_by_hand():
    model = build_model(SPEC, seed=1)
    split = make_dataset("tiny", 0).test
    sums, lens = sequence_hidden_sums(model, split)
    i = 5
    toks = split.tokens[i : i + 1]
    _, cache = model.run_with_cache(toks)
    h = cache["unembed.hook_in"][0]
    start = int(split.response_mask[i].float().argmax())
    n = int(split.response_mask[i].sum())
    assert int(lens[i]) == n
    assert torch.allclose(sums[i], h[start - 1 : start - 1 + n].sum(0), atol=1e-5)


def test_rank_correlations_against_numpy():
    g = np.random.default_rng(0)
    x = g.integers(0, 6, 200).astype(float)  # plenty of ties
    y = x + g.normal(0, 2, 200)

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):
            r[v == val] = r[v == val].mean()
        return r

    want = np.corrcoef(ranks(x), ranks(y))[0, 1]
    assert spearman(torch.tensor(x), torch.tensor(y)) == pytest.approx(want, abs=1e-9)
    assert pearson(torch.tensor(x), torch.tensor(y)) == pytest.approx(
        np.corrcoef(x, y)[0, 1], abs=1e-9
    )
    assert spearman(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 1.0])) is None


def test_first_difference_known_pairs():
    split = make_dataset("sweep", 0).train
    pq, k, w, l = first_difference(split)
    seen = {}
    for i in range(split.n_pairs):
        s = int(split.seq_prompt[split.chosen[i]])
        yw, yl = (
            int(split.seq_response[split.chosen[i]]),
            int(split.seq_response[split.rejected[i]]),
        )
        seen[(s, yw, yl)] = (int(k[i]), int(w[i]), int(l[i]), int(pq[i]))
    s = int(split.prompts[0])  # a 3-digit prompt
    for yw, yl in [(s, s + 1), (s - 1, s - 2)]:
        sw, sl = f"{yw}.", f"{yl}."
        j = next(i for i in range(min(len(sw), len(sl))) if sw[i] != sl[i])
        kk, tw, tl, q = seen[(s, yw, yl)]
        assert kk == j and tw == int(sw[j]) and tl == int(sl[j]) and q == 4 + j - 1


def test_unembedding_is_raw_w_u():
    m = build_model(SPEC, seed=1)
    W = unembedding(m, make_dataset("tiny").task.response_tokens)
    assert W.shape == (11, 32) and torch.equal(W[10], m.W_U[:, EOS])


def test_response_kinds():
    task = make_dataset("sweep").task
    rows = ["305.", "30.", "3.", ".", "12.", "3050.", "400.", "305", "3=."]
    toks = torch.full((len(rows), 6), 12)
    lens = torch.tensor([len(r) for r in rows])
    vocab = "0123456789=."
    for i, r in enumerate(rows):
        toks[i, : len(r)] = torch.tensor([vocab.index(c) for c in r])
    kinds = task.response_kinds(torch.full((len(rows),), 305), toks, lens)
    assert kinds == [
        "in the window",
        "the first 2 digits of s",
        "the first 1 digit of s",
        "unparseable: empty",
        "shorter than s, other",
        "longer than s",
        "same length, outside the window",
        "unparseable: no EOS within the limit",
        "unparseable: a non-digit token",
    ]


def test_mass_by_kind_sums_to_one_and_top_ood():
    model = build_model(SPEC, seed=1)
    data = make_dataset("tiny", 0)
    tree = enumerate_responses(model, data.task, data.test.prompts[:5], 6, 1e-3)
    mass = mass_by_kind(tree, data.task)
    assert sum(mass.values()) == pytest.approx(1.0, abs=1e-5)
    hand = ResponseTree(
        prompts=torch.tensor([100]),
        leaf_prompt=torch.tensor([0, 0, 0]),
        tokens=torch.tensor(
            [[1, 0, 0, 11, 12, 12], [11, 12, 12, 12, 12, 12], [5, 11, 12, 12, 12, 12]]
        ),
        lengths=torch.tensor([4, 1, 2]),
        logp=torch.tensor([[0.5], [0.3], [0.2]]).log(),
        residual=torch.zeros(1),
        threshold=0.0,
    )
    assert float(top_ood(hand, ood_leaves(hand, data.task))[0]) == pytest.approx(0.3)


def test_cli(tiny_root, tmp_path, capsys):
    args = ["--checkpoints", str(tiny_root), "--reports", str(tmp_path), "--no-progress"]
    assert (
        main(["--a", "tiny/beta0.1", "--b", "tiny/beta1.0", "--exact-threshold", "0.01", *args])
        == 0
    )
    assert (tmp_path / "geometry" / "tiny-beta0.1_vs_tiny-beta1.0.html").exists()
    assert (tmp_path / "index.html").exists()
    data = json.loads((tmp_path / "geometry" / "tiny-beta0.1_vs_tiny-beta1.0.json").read_text())
    assert list(data["data"]) == TWIN_KEYS
    assert list(data["data"]["displacement"]["A"]) == DISPLACEMENT_KEYS
    assert data["data"]["findings"] == data["summary"]
    assert all(v is not None for v in data["data"]["displacement"]["A"]["ood_mass"])
    capsys.readouterr()
    assert main(["--a", "tiny/beta0.1", "--exact-threshold", "2", *args]) == 2


def test_spearman_drops_missing_and_nan_and_ci():
    import math

    from interp.core.stats import mean_ci

    nan = float("nan")
    x = torch.tensor([1.0, 2.0, nan, 4.0, 5.0])
    assert spearman(x, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])) == pytest.approx(1.0)
    assert spearman([1, None, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    m, h, n = mean_ci([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and h == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert mean_ci([5.0]) == (5.0, None, 1) and mean_ci([None]) == (None, None, 0)


def test_without_a_judge_the_ood_numbers_are_not_computable():
    model = build_model(SPEC, seed=1)
    split = UNJUDGED.dataset(0).train
    tree = enumerate_responses(model, UNJUDGED, split.prompts[:3], 6, 1e-2)
    assert ood_leaves(tree, UNJUDGED) is None
    p = displacement_point(model, split, 7, 1e-2)
    assert p.step == 7 and p.logp_chosen < 0 and p.logp_rejected < 0
    assert (p.ood_mass, p.top_ood, p.logp_top_ood, p.share_ood_above_chosen) == (None,) * 4
    judged = displacement_point(model, make_dataset("tiny", 0).train, 7, 1e-2)
    assert judged.logp_chosen == pytest.approx(p.logp_chosen)
    assert judged.ood_mass is not None and judged.share_ood_above_chosen is not None


def test_run_geometry_without_a_judge(tiny_root, monkeypatch):
    monkeypatch.setattr(sources, "make_dataset", lambda preset, seed: UNJUDGED.dataset(seed))
    res = run_geometry("tiny/beta0.1", "tiny/beta1.0", tiny_root, 1e-2, progress=False)
    assert res.tokens == [str(d) for d in range(10)] + ["."]
    for who in ("A", "B"):
        assert len(res.displacement[who]) >= 2
        assert all(p.ood_mass is None and p.top_ood is None for p in res.displacement[who])
    lines = findings(res)
    assert NO_JUDGE in lines[1] and NO_JUDGE in lines[3]
    assert sum(res.mass["A"].values()) == pytest.approx(1.0, abs=1e-5)
    report = build_report(res, {})
    data = report.data
    assert list(data) == TWIN_KEYS and data["findings"] == report.summary == lines
    assert data["displacement"]["A"]["ood_mass"] == [None] * len(res.displacement["A"])
    assert list(data["single"]) == ["inner_pos_neg", "k", "predicted", "others", "A", "B"]

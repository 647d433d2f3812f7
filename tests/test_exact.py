"""Exact enumeration, kl_exact, kl_mc and OOD mass against slower, independent paths."""

import itertools

import pytest
import torch

from interp.core.metrics import exact_metrics, kl_mc
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import (
    EOS,
    PAD,
    get_task,
    make_dataset,
    parse_batch,
    parse_response,
    prompt_ids,
)
from interp.core.sampling import enumerate_responses, greedy

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)

TASK = get_task("sweep")


def brute_force(model, s, limit):
    """Every response up to `limit` tokens with its log-prob, by one full forward each."""
    out = {}
    for n in range(1, limit + 1):
        for body in itertools.product(range(13), repeat=n - 1):
            if EOS in body:
                continue
            ends = [EOS] if n < limit else range(13)
            for last in ends:
                resp = [*body, last]
                toks = torch.tensor([prompt_ids(s) + resp])
                with torch.no_grad():
                    lp = torch.log_softmax(model(toks)[0].double(), -1)
                p = len(prompt_ids(s))
                out[tuple(resp)] = float(sum(lp[p - 1 + i, t] for i, t in enumerate(resp)))
    return out


def test_tree_matches_brute_force():
    pol, ref = build_model(SPEC, seed=1), build_model(SPEC, seed=2)
    prompts = [7, 123]
    tree = enumerate_responses(pol, TASK, prompts, 3, threshold=0.0, score_with=[ref])
    assert float(tree.residual.max()) == 0.0
    for i, s in enumerate(prompts):
        want_p, want_r = brute_force(pol, s, 3), brute_force(ref, s, 3)
        rows = (tree.leaf_prompt == i).nonzero().flatten()
        got = {
            tuple(tree.tokens[r, : tree.lengths[r]].tolist()): tree.logp[r].tolist() for r in rows
        }
        assert got.keys() == want_p.keys()
        for k, (lp, lr) in got.items():
            assert lp == pytest.approx(want_p[k], abs=1e-4)
            assert lr == pytest.approx(want_r[k], abs=1e-4)
        kl = sum(torch.tensor(want_p[k]).exp() * (want_p[k] - want_r[k]) for k in want_p)
        assert float(tree.per_prompt(tree.logp[:, 0] - tree.logp[:, 1])[i]) == pytest.approx(
            float(kl), abs=1e-4
        )
        assert float(kl) >= 0


def test_masses_sum_to_one_minus_residual():
    pol = build_model(SPEC, seed=1)
    data = make_dataset("tiny", 0)
    tree = enumerate_responses(pol, TASK, data.test.prompts, 6, threshold=1e-3)
    assert float(tree.residual.min()) > 0  # the threshold did drop something
    total = tree.mass() + tree.residual
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)


def test_kl_exact_zero_for_identical_models_and_positive_otherwise():
    data = make_dataset("tiny", 0)
    pol, ref = build_model(SPEC, seed=1), build_model(SPEC, seed=2)
    same = exact_metrics(
        enumerate_responses(pol, TASK, data.test.prompts, 6, 1e-4, [pol]), data.task
    )
    assert same["kl_exact"] == 0.0
    diff = exact_metrics(
        enumerate_responses(pol, TASK, data.test.prompts, 6, 1e-4, [ref]), data.task
    )
    assert diff["kl_exact"] > 0


def test_kl_mc_agrees_with_kl_exact():
    data = make_dataset("tiny", 0)
    pol, ref = build_model(SPEC, seed=1), build_model(SPEC, seed=2)
    prompts = data.test.prompts[:10]
    tree = enumerate_responses(pol, TASK, prompts, 3, 0.0, [ref])  # complete: residual 0
    exact = exact_metrics(tree, data.task)
    assert exact["exact_residual"] == 0.0
    mean, se = kl_mc(pol, ref, TASK, prompts, 3, n_samples=400, seed=0)
    assert se > 0
    assert abs(mean - exact["kl_exact"]) < 4 * se
    assert kl_mc(pol, pol, TASK, prompts, 3, n_samples=8) == (0.0, 0.0)


def test_greedy_is_the_mode_when_the_mode_is_a_majority():
    # A response with probability > 1/2 has every token's conditional > 1/2, so greedy
    # decoding must produce it: checkable wherever the exact tree has such a response.
    # Sharpening a random model's unembedding makes many such prompts.
    model = build_model(SPEC, seed=5)
    with torch.no_grad():
        model.unembed.W_U.mul_(6.0)
    data = make_dataset("tiny", 0)
    tree = enumerate_responses(model, TASK, data.test.prompts, 6, 1e-4)
    g = greedy(model, TASK, data.test.prompts, 6)
    checked = 0
    for i in range(len(data.test.prompts)):
        rows = (tree.leaf_prompt == i).nonzero().flatten()
        top = rows[tree.logp[rows, 0].argmax()]
        if float(tree.logp[top, 0].exp()) > 0.5:
            checked += 1
            n = int(tree.lengths[top])
            assert tree.tokens[top, :n].tolist() == g.tokens[i, : g.lengths[i]].tolist()
    assert checked >= 5


def test_parse_batch_matches_parse_response():
    gen = torch.Generator().manual_seed(0)
    toks = torch.randint(0, 13, (3000, 6), generator=gen)
    toks[::3, 2] = EOS  # plenty of short, well-formed responses
    toks[1::7, 0] = EOS
    lengths = torch.randint(1, 7, (3000,), generator=gen)
    keep = torch.arange(6)[None] < lengths[:, None]
    toks = torch.where(keep, toks, torch.full_like(toks, PAD))
    ok, val = parse_batch(toks, lengths)
    for i in range(3000):
        want = parse_response(toks[i, : lengths[i]])
        assert (want is not None) == bool(ok[i]), toks[i]
        if want is not None:
            assert want == int(val[i])
    assert ok.sum() > 100


def test_ood_mass_counts_ood_leaves():
    data = make_dataset("tiny", 0)
    pol = build_model(SPEC, seed=1)
    tree = enumerate_responses(pol, TASK, data.test.prompts, 6, 1e-3)
    ood = data.task.judge(tree.prompts[tree.leaf_prompt], tree.tokens, tree.lengths).ood
    by_hand = 0.0
    for r in range(len(tree.leaf_prompt)):
        v = parse_response(tree.tokens[r, : tree.lengths[r]])
        s = int(tree.prompts[tree.leaf_prompt[r]])
        is_ood = v is None or abs(v - s) > data.task.window
        assert is_ood == bool(ood[r])
        by_hand += float(tree.logp[r, 0].exp()) * is_ood
    got = exact_metrics(tree, data.task)["ood_mass"]
    assert got == pytest.approx(by_hand / len(tree.prompts), abs=1e-6)


def test_gold_reward_is_minus_the_expected_error_by_hand():
    data = make_dataset("tiny", 0)
    pol = build_model(SPEC, seed=2)
    tree = enumerate_responses(pol, TASK, data.test.prompts, 6, 1e-3)
    spread = data.task.unparsed_error
    by_hand = 0.0
    for r in range(len(tree.leaf_prompt)):
        v = parse_response(tree.tokens[r, : tree.lengths[r]])
        s = int(tree.prompts[tree.leaf_prompt[r]])
        err = spread if v is None else abs(v - s)
        by_hand -= float(tree.logp[r, 0].exp()) * err
    got = exact_metrics(tree, data.task)["gold_reward"]
    assert got == pytest.approx(by_hand / len(tree.prompts), abs=1e-5)
    assert got <= 0

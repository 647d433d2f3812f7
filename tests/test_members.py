"""Member-batched evaluation = `evaluate` member by member (fast path = slow path)."""

import pytest
import torch

from interp.core.lean import Lean
from interp.core.members import (
    enumerate_members,
    evaluate_members,
    forest_logprobs,
    greedy_members,
)
from interp.core.metrics import evaluate
from interp.core.numberline import make_dataset
from interp.core.sampling import enumerate_responses, greedy
from interp.core.scoring import greedy_kl, split_logprobs
from interp.runs.names import PolicyKey
from interp.runs.store import find_run


@pytest.fixture
def setup(tiny_root):
    """Trained tiny policies: the reference (as every run at step 0), and DPO runs along
    their training, so the trees are those of real policies, not of random models."""
    data = make_dataset("tiny", 0)
    ref = find_run(PolicyKey("tiny", "sft"), tiny_root).checkpoint().model
    members = [ref]
    for beta in (0.1, 1.0):
        run = find_run(PolicyKey("tiny", "dpo", beta), tiny_root)
        members += [run.checkpoint(s).model for s in run.steps()[1:]]
    return data, ref, members


def test_forest_scoring_equals_split_logprobs(setup):
    data, _, members = setup
    got = forest_logprobs(Lean.of(members), data.test)
    for e, m in enumerate(members):
        torch.testing.assert_close(got[e], split_logprobs(m, data.test), atol=1e-5, rtol=0)


def test_greedy_members_equal_greedy(setup):
    data, _, members = setup
    task = data.task
    ref = members[0]
    got, ratio = greedy_members(
        Lean.of(members), task, data.test.prompts, task.max_new_tokens, Lean.of([ref])
    )
    for e, m in enumerate(members):
        want = greedy(m, task, data.test.prompts, task.max_new_tokens)
        assert torch.equal(got[e].tokens, want.tokens) and torch.equal(got[e].lengths, want.lengths)
        torch.testing.assert_close(ratio[e], greedy_kl(m, ref, task, want), atol=1e-5, rtol=0)
    assert torch.equal(ratio[0], torch.zeros_like(ratio[0]))  # the reference against itself


def test_evaluate_members_equals_evaluate(setup):
    data, ref, members = setup
    betas = [0.5] * len(members)
    got = evaluate_members(Lean.of(members), Lean.of([ref]), data.test, betas, 1e-3)
    for e, m in enumerate(members):
        want = evaluate(m, data.test, ref, betas[e], exact_threshold=1e-3)
        assert got[e].keys() == want.keys()
        # float rounding can move a prefix across the enumeration threshold: its mass then
        # moves between the leaves and the residual, and the exact metrics by as much
        moved = abs(got[e]["exact_residual"] - want["exact_residual"]) + 1e-6
        assert moved < 1e-3, e
        spread = {"gold_reward": data.task.unparsed_error, "ood_mass": 1.0, "kl_exact": 10.0}
        for k, v in want.items():
            tol = 2 * moved * spread[k] if k in spread else 1e-5
            assert got[e][k] == pytest.approx(v, abs=tol, rel=1e-4), (e, k)
    same = got[0]  # the reference itself: log-ratios exactly 0, ties count as misses
    assert same["kl_exact"] == 0.0 and same["kl_greedy"] == 0.0
    assert same["acc"] == 0.0 and same["margin"] == 0.0


def _leaves(tree):
    """Each leaf keyed by (prompt, tokens), with its log-probs."""
    keys = [
        (int(tree.prompts[r]), tuple(t.tolist())) for r, t in zip(tree.leaf_prompt, tree.tokens)
    ]
    return dict(zip(keys, tree.logp))


def test_enumerate_members_equals_one_tree_at_a_time(setup):
    data, ref, members = setup
    task, prompts = data.task, data.test.prompts
    got = enumerate_members(
        Lean.of(members), Lean.of([ref]), task, prompts, task.max_new_tokens, 1e-3
    )
    for e, m in enumerate(members):
        want = enumerate_responses(m, task, prompts, task.max_new_tokens, 1e-3, score_with=[ref])
        g, w = _leaves(got[e]), _leaves(want)
        assert g.keys() == w.keys(), e  # the same leaves (no prefix here sits at the threshold)
        torch.testing.assert_close(
            torch.stack([g[k] for k in w]), torch.stack(list(w.values())), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(got[e].residual, want.residual, atol=1e-6, rtol=0)
    assert torch.equal(got[0].logp[:, 0], got[0].logp[:, 1])  # the reference is its own scorer

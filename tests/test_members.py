"""Member-batched evaluation = `evaluate` member by member (fast path = slow path)."""

import pytest
import torch

from interp.core.lean import Lean
from interp.core.members import evaluate_members, forest_logprobs, greedy_members
from interp.core.metrics import evaluate
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import make_dataset
from interp.core.sampling import greedy
from interp.core.scoring import split_logprobs

SPEC = ModelSpec(d_model=32, n_heads=2, d_mlp=32)


@pytest.fixture(scope="module")
def setup():
    data = make_dataset("tiny", 0)
    ref = build_model(SPEC, seed=1)
    members = [build_model(SPEC, seed=1)]  # member 0 is the reference, as every run at step 0
    for seed, scale in ((2, 0.05), (3, 0.3)):
        m = build_model(SPEC, seed=1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g))
        members.append(m)
    return data, ref, members


def test_forest_scoring_equals_split_logprobs(setup):
    data, _, members = setup
    got = forest_logprobs(Lean.of(members), data.test)
    for e, m in enumerate(members):
        torch.testing.assert_close(got[e], split_logprobs(m, data.test), atol=1e-5, rtol=0)


def test_greedy_members_equal_greedy(setup):
    data, _, members = setup
    task = data.task
    got = greedy_members(Lean.of(members), task, data.test.prompts, task.max_new_tokens)
    for e, m in enumerate(members):
        want = greedy(m, task, data.test.prompts, task.max_new_tokens)
        assert torch.equal(got[e].tokens, want.tokens) and torch.equal(got[e].lengths, want.lengths)


def test_evaluate_members_equals_evaluate(setup):
    data, ref, members = setup
    betas = [0.1, 0.5, 1.0]
    got = evaluate_members(Lean.of(members), Lean.of([ref]), data.test, betas, 1e-3)
    for e, m in enumerate(members):
        want = evaluate(m, data.test, ref, betas[e], exact_threshold=1e-3)
        assert got[e].keys() == want.keys()
        for k, v in want.items():
            assert got[e][k] == pytest.approx(v, abs=1e-5, rel=1e-4), (e, k)
    same = got[0]  # the reference itself: log-ratios exactly 0, ties count as misses
    assert same["kl_exact"] == 0.0 and same["kl_greedy"] == 0.0
    assert same["acc"] == 0.0 and same["margin"] == 0.0

import pytest
import torch

from interp.core.data import pad_sequences
from interp.core.metrics import evaluate, pair_rewards
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import encode, make_dataset, prompt_ids
from interp.core.scoring import model_logprobs

from .test_sampling import naive_greedy


def test_judge_known_cases():
    task = make_dataset("sweep").task  # W = 10, unparsed error 400
    texts = ["305.", "315.", "316.", ".", "290.", "30", "3=5."]
    rows = [encode(t) for t in texts]
    tokens = pad_sequences(rows, task.pad, task.max_new_tokens)
    lengths = torch.tensor([len(r) for r in rows])
    prompts = torch.full((len(texts),), 305)
    verdict = task.judge(prompts, tokens, lengths)
    assert verdict.ood.tolist() == [False, False, True, True, True, True, True]
    assert verdict.error.tolist() == [0, 10, 11, 400, 15, 400, 400]


@torch.no_grad()
def slow_logp(model, s, response):
    toks = prompt_ids(s) + response
    logp = torch.log_softmax(model(torch.tensor([toks]))[0], -1)
    n = len(prompt_ids(s))
    return sum(float(logp[n - 1 + i, t]) for i, t in enumerate(response))


def test_evaluate_against_slow_path():
    data = make_dataset("tiny", 0)
    pol = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=1)
    ref = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=2)
    ev = evaluate(pol, data.test, ref, beta=0.5)
    kls = []
    for s in data.test.prompts.tolist():
        y = naive_greedy(pol, s, data.task.max_new_tokens)
        kls.append(slow_logp(pol, s, y) - slow_logp(ref, s, y))
    assert ev["kl_greedy"] == pytest.approx(sum(kls) / len(kls), abs=1e-4)
    # Acc / Margin by hand from per-sequence log-probs
    sp = data.test
    r = []
    for i in range(sp.n_pairs):

        def ratio(j):
            s, y = int(sp.seq_prompt[j]), int(sp.seq_response[j])
            resp = [int(t) for t in f"{y}"] + [11]
            return slow_logp(pol, s, resp) - slow_logp(ref, s, resp)

        r.append(0.5 * (ratio(int(sp.chosen[i])) - ratio(int(sp.rejected[i]))))
    assert ev["margin"] == pytest.approx(sum(r) / len(r), abs=1e-4)
    assert ev["acc"] == pytest.approx(sum(x > 0 for x in r) / len(r))


def test_policy_against_itself():
    data = make_dataset("tiny", 0)
    m = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=1)
    ev = evaluate(m, data.test, m, beta=1.0)
    assert ev["kl_greedy"] == 0.0 and ev["margin"] == 0.0 and ev["acc"] == 0.0


def test_pair_rewards_indexing():
    data = make_dataset("tiny", 0)
    sp = data.test
    pol = torch.arange(len(sp.seq_prompt), dtype=torch.float)
    r_w, r_l = pair_rewards(pol, torch.zeros_like(pol), sp, 2.0)
    assert torch.equal(r_w, 2.0 * sp.chosen.float()) and torch.equal(r_l, 2.0 * sp.rejected.float())


def test_model_logprobs_chunking_is_invisible():
    data = make_dataset("tiny", 0)
    m = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=1)
    a = model_logprobs(m, data.test.tokens, data.test.response_mask, batch_size=7)
    b = model_logprobs(m, data.test.tokens, data.test.response_mask)
    assert torch.allclose(a, b, atol=1e-5)

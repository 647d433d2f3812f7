import dataclasses
import math

import pytest
import torch

from interp.core.data import encode_pairs
from interp.core.losses import (
    LOSSES,
    PairLogps,
    dpo_loss,
    dponll_loss,
    ipo_loss,
    kto_loss,
    orpo_loss,
    reward_stats,
    sequence_logprobs,
    sft_loss,
    simpo_loss,
)
from interp.core.model import ModelSpec, build_model
from interp.core.numberline import PAD, get_task

TASK = get_task("sweep")


def pairs(pc, pr, rc, rr, lc=1.0, lr=1.0, kl=None):
    t = lambda v: torch.tensor([float(v)])  # noqa: E731
    return PairLogps(
        t(pc), t(pr), t(rc), t(rr), t(lc), t(lr), None if kl is None else torch.tensor(kl)
    )


def test_dpo_is_log2_when_policy_is_reference():
    lp = PairLogps(*(torch.randn(5),) * 4, torch.ones(5), torch.ones(5))
    for beta in (0.01, 0.1, 1.0):
        assert torch.allclose(dpo_loss(lp, beta), torch.full((5,), math.log(2)))


def test_dpo_hand_computed():
    # log-ratio chosen +1, rejected -1, beta 0.5: -log sigmoid(1) = log(1 + e^-1)
    got = dpo_loss(pairs(-1, -3, -2, -2), 0.5)
    assert got.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)


def test_ipo_hand_computed():
    # (2 - 1/(2*0.5))^2 = 1; zero exactly at the target gap 1/(2 beta)
    assert ipo_loss(pairs(-1, -3, -2, -2), 0.5).item() == pytest.approx(1.0)
    assert ipo_loss(pairs(0.5, 0.0, 0.0, 0.0), 1.0).item() == pytest.approx(0.0)


def test_simpo_hand_computed():
    # average log-probs -1 and -2: gap 1; beta 2, gamma 1: -log sigmoid(1); no reference used
    lp = pairs(-2, -6, 123.0, -55.0, lc=2, lr=3)
    assert simpo_loss(lp, 2.0).item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)


def test_orpo_hand_computed():
    # mean probs 0.5 (odds 1) and 0.2 (odds 1/4): NLL log 2 + log(1 + 1/4)
    lp = pairs(2 * math.log(0.5), 3 * math.log(0.2), 9.0, 9.0, lc=2, lr=3)
    assert orpo_loss(lp, 1.0).item() == pytest.approx(math.log(2) + math.log(1.25), abs=1e-5)


def test_kto_hand_computed():
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    lp = pairs(-1, -3, -2, -2, kl=[0.5, -0.1])  # z0 = 0.2
    want = ((1 - sig(1 - 0.2)) + (1 - sig(0.2 + 1))) / 2
    assert kto_loss(lp, 1.0).item() == pytest.approx(want, abs=1e-6)
    lp = pairs(-1, -3, -2, -2, kl=[-0.5, -0.1])  # z0 clamps at 0
    assert kto_loss(lp, 1.0).item() == pytest.approx(((1 - sig(1)) + (1 - sig(1))) / 2, abs=1e-6)
    with pytest.raises(ValueError):
        kto_loss(pairs(-1, -3, -2, -2), 1.0)


def test_dponll_adds_length_normalised_nll():
    lp = pairs(-4, -3, -2, -2, lc=2)
    assert dponll_loss(lp, 0.5).item() == pytest.approx(dpo_loss(lp, 0.5).item() + 2.0)


def test_losses_accept_a_beta_per_ensemble_member():
    lp = PairLogps(
        *(torch.randn(3, 4) for _ in range(4)),
        torch.ones(3, 4),
        torch.ones(3, 4),
        kl_logratio=torch.randn(3, 4),
    )
    betas = torch.tensor([[0.1], [0.5], [1.0]])
    for name, fn in LOSSES.items():
        got = fn(lp, betas)
        for e in range(3):
            one = PairLogps(*(getattr(lp, f.name)[e] for f in dataclasses.fields(lp)))
            assert torch.allclose(got[e], fn(one, betas[e].item()), atol=1e-6), name


def test_reward_stats():
    st = reward_stats(pairs(-1, -3, -2, -2), 0.5)
    assert st["rewards/chosen"].item() == pytest.approx(0.5)
    assert st["rewards/rejected"].item() == pytest.approx(-0.5)
    assert st["rewards/margins"].item() == pytest.approx(1.0)
    assert st["rewards/accuracies"].item() == 1.0


def test_sequence_logprobs_uniform_logits():
    tokens, mask = encode_pairs(TASK, [305, 7], [303, 12])
    logits = torch.zeros(*tokens.shape, 13)
    got = sequence_logprobs(logits, tokens, mask)
    assert torch.allclose(got, torch.tensor([-4 * math.log(13), -3 * math.log(13)]))


def _predicts_response(mask):
    """[batch, pos] True where logits[:, t] predict a response token."""
    out = torch.zeros_like(mask)
    out[:, :-1] = mask[:, 1:]
    return out


def test_losses_ignore_prompt_and_pad_positions():
    tokens, mask = encode_pairs(TASK, [305, 99, 100, 7], [303, 100, 99, 12])
    logits = torch.randn(*tokens.shape, 13)
    used = _predicts_response(mask)
    noise = torch.randn_like(logits) * 10
    moved = torch.where(used[..., None], logits, logits + noise)
    assert torch.equal(sft_loss(logits, tokens, mask), sft_loss(moved, tokens, mask))
    base = sequence_logprobs(logits, tokens, mask)
    alt = sequence_logprobs(moved, tokens, mask)
    lp = lambda x: PairLogps(x[:2], x[2:], base[:2] * 0, base[2:] * 0, torch.ones(2), torch.ones(2))  # noqa: E731
    assert torch.equal(dpo_loss(lp(base), 0.1), dpo_loss(lp(alt), 0.1))
    # ...and a response position does count (the guard above could not pass vacuously)
    b, t = used.nonzero()[0]
    poked = logits.clone()
    poked[b, t] += noise[b, t]
    assert not torch.equal(sft_loss(poked, tokens, mask), sft_loss(logits, tokens, mask))


def test_pad_tokens_do_not_change_the_model_logprob():
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=0)
    tokens, mask = encode_pairs(TASK, [305], [3])  # "305=3." padded nowhere: add pads by hand
    padded = torch.cat([tokens, torch.full((1, 3), PAD)], dim=1)
    other = torch.cat([tokens, torch.tensor([[4, 10, 11]])], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.bool)], dim=1)
    a = sequence_logprobs(model(padded), padded, pmask)
    b = sequence_logprobs(model(other), other, pmask)
    c = sequence_logprobs(model(tokens), tokens, mask)
    assert torch.allclose(a, b) and torch.allclose(a, c, atol=1e-6)

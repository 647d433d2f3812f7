import torch

from interp.core.model import ModelSpec, build_model
from interp.core.numberline import EOS, encode, get_task, prompt_ids
from interp.core.sampling import cut_at_eos, greedy, sample

TASK = get_task("sweep")


def naive_greedy(model, s, limit):
    toks = prompt_ids(s)
    out = []
    for _ in range(limit):
        logits = model(torch.tensor([toks]))[0, -1]
        nxt = int(logits.argmax())
        out.append(nxt)
        toks.append(nxt)
        if nxt == EOS:
            break
    return out


def test_greedy_matches_one_prompt_at_a_time():
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=3)
    prompts = [5, 55, 105, 123, 9, 99]  # three prompt lengths in one call
    resp = greedy(model, TASK, prompts, 6)
    for i, s in enumerate(prompts):
        want = naive_greedy(model, s, 6)
        assert resp.tokens[i, : resp.lengths[i]].tolist() == want
        assert resp.lengths[i] == len(want)


def test_finish_cuts_after_first_eos():
    gen = torch.tensor([encode("12.3."), encode("12345"), encode(".1234")])
    toks, n = cut_at_eos(TASK, gen)
    assert n.tolist() == [3, 5, 1]
    assert toks[0].tolist()[3:] == [12, 12]


def test_responses_values_and_sequences():
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=3)
    resp = greedy(model, TASK, [7, 300], 6)
    toks, mask = resp.sequences(TASK)
    for i in range(2):
        assert toks[i][mask[i]].tolist() == resp.tokens[i, : resp.lengths[i]].tolist()


def test_sampling_is_seeded_and_follows_the_distribution():
    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32), seed=1)
    a = sample(model, TASK, [305], 1, n_samples=4000, seed=0)
    b = sample(model, TASK, [305], 1, n_samples=4000, seed=0)
    assert torch.equal(a.tokens, b.tokens)
    probs = torch.softmax(model(torch.tensor([prompt_ids(305)]))[0, -1], -1)
    freq = torch.bincount(a.tokens[:, 0], minlength=13).float() / 4000
    assert (freq - probs).abs().max() < 0.03


def test_context_must_hold_prompt_and_full_response():
    import pytest

    from interp.core.sampling import enumerate_responses

    model = build_model(ModelSpec(d_model=32, n_heads=2, d_mlp=32, n_ctx=9), seed=0)
    for call in (
        lambda: greedy(model, TASK, [305], 6),
        lambda: enumerate_responses(model, TASK, [305], 6),
    ):
        with pytest.raises(ValueError, match="exceeds n_ctx 9"):
            call()
    assert greedy(model, TASK, [30], 6).tokens.shape == (1, 6)  # 3 + 6 fits

import pytest
import torch

from interp.core.numberline import (
    EOS,
    PAD,
    PRESETS,
    VOCAB,
    decode,
    encode,
    make_dataset,
    parse_response,
    split_prompts,
)


def test_tokenizer_round_trip():
    text = "0123456789=."
    ids = encode(text)
    assert ids == list(range(12))
    assert decode(ids) == text
    assert decode(ids + [PAD, PAD]) == text
    assert len(VOCAB) == 13 and VOCAB[EOS] == "." and VOCAB[PAD] == "<pad>"
    with pytest.raises(ValueError):
        encode("12a=")


@pytest.mark.parametrize(
    "text,value",
    [
        ("305.", 305),
        ("7.", 7),
        ("0300.", 300),
        (".", None),
        ("30", None),
        ("3=0.", None),
        ("12.34.", 12),
    ],
)
def test_parse_response(text, value):
    assert parse_response(encode(text)) == value


def test_parse_rejects_pad_inside():
    assert parse_response([3, PAD, EOS]) is None


@pytest.mark.parametrize("preset", ["sweep", "grokking", "tiny"])
def test_dataset_invariants(preset):
    ds = make_dataset(preset, seed=3)
    task = ds.task
    train_p, test_p = set(ds.train.prompts.tolist()), set(ds.test.prompts.tolist())
    assert not train_p & test_p
    assert train_p | test_p == set(task.prompts)
    for split in (ds.train, ds.test):
        s = split.seq_prompt[split.chosen]
        assert torch.equal(s, split.seq_prompt[split.rejected])
        w, l = split.seq_response[split.chosen], split.seq_response[split.rejected]
        assert ((w - s).abs() < (l - s).abs()).all()  # preferred is closer
        assert ((w - l).abs() == 1).all()  # adjacent
        for y in (w, l):
            assert ((y - s).abs() <= task.window).all() and (y >= 0).all()
        assert set(s.tolist()) <= set(split.prompts.tolist())


def test_tokens_spell_the_sequences():
    ds = make_dataset("grokking", seed=0)
    sp = ds.test
    for i in range(0, len(sp.seq_prompt), 37):
        s, y = int(sp.seq_prompt[i]), int(sp.seq_response[i])
        assert decode(sp.tokens[i]) == f"{s}={y}."
        assert decode(sp.tokens[i][sp.response_mask[i]]) == f"{y}."


def test_pair_counts():
    # 2W adjacent pairs per prompt; the grokking window is cut at 0 for s < W.
    ds = make_dataset("sweep", 0)
    assert ds.train.n_pairs + ds.test.n_pairs == 401 * 20
    assert (len(ds.train.prompts), len(ds.test.prompts)) == (201, 200)
    g = make_dataset("grokking", 0)
    assert g.train.n_pairs + g.test.n_pairs == 99 * 10 - (4 + 3 + 2 + 1)
    assert len(g.test.prompts) == 30


def test_split_depends_on_seed_only():
    task = PRESETS["sweep"]
    assert split_prompts(task, 1) == split_prompts(task, 1)
    assert split_prompts(task, 1) != split_prompts(task, 2)


def test_data_cli_prints_counts(capsys):
    from interp.data import main

    assert main(["--preset", "sweep"]) == 0
    out = capsys.readouterr().out
    assert "4020" in out and "4000" in out


def test_split_tensors_usable_with_autograd_after_inference_mode():
    ds = make_dataset("tiny", 0)
    with torch.inference_mode():
        _ = ds.train.tokens  # first touch inside inference mode
    assert not ds.train.tokens.is_inference()

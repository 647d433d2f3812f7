"""PreferenceTask and the preference-file reader, on tiny local tokenizers and files."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from interp.core.numberline import PRESETS
from interp.core.preference import PreferenceTask
from interp.core.task import MAX_ENUMERABLE_VOCAB
from interp.core.tokenizer import char_tokenizer
from interp.errors import DataError, UserError
from interp.runs.preference_file import extract_prompt, preference_task, read_preference_rows

CHARS = ("a", "b", "c", "=", ".", "<pad>")  # ids 0..5; EOS "." = 4, pad = 5
A, B, C, EQ, EOS, PAD = range(6)


@pytest.fixture
def chars() -> PreTrainedTokenizerFast:
    return char_tokenizer(CHARS, EOS, PAD)


def word_tokenizer(words: list[str], bos: bool = True) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with "<s>" (0) and "</s>" (1), a BOS added when `bos`, no pad."""
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<s>", "</s>", *words])}))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 0)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")


ROWS_TRAIN = [("ab=", "a", "b"), ("ab=", "a", "c"), ("ba=", "c", "a")]
ROWS_TEST = [("cc=", "a", "bb")]


def write_jsonl(path, objs) -> str:
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n")
    return str(path)


def test_keys_ids_and_splits(chars):
    task = PreferenceTask(ROWS_TRAIN, ROWS_TEST, chars, name="t")
    assert task.prompt_strings == ["ab=", "ba=", "cc="]  # deduped, first seen first
    assert task.response_strings == ["a", "b", "c", "bb"]
    assert task.pairs("train") == [(0, 0, 1), (0, 0, 2), (1, 2, 0)]
    assert task.prompt_ids(0) == [A, B, EQ]  # no BOS: the char tokenizer adds none
    assert task.response_ids(3) == [B, B, EOS]  # EOS appended
    assert (task.eos, task.pad, task.vocab, task.max_new_tokens) == (EOS, PAD, CHARS, 3)
    assert task.decode(task.prompt_ids(0) + task.response_ids(3) + [PAD]) == "ab=bb."
    assert task.token_text([A, PAD]) == "a<pad>"
    assert task.encode("ab") == [A, B] and task.prompt_text(1) == "ba="
    assert task.judge(torch.tensor([0]), torch.tensor([[A, EOS]]), torch.tensor([2])) is None
    assert task.reference_response(0) is None

    ds = task.dataset(seed=7)
    assert ds.seed == 7 and ds.train.prompts.tolist() == [0, 1] and ds.test.prompts.tolist() == [2]
    train = ds.train
    assert train.n_pairs == 3 and len(train.seq_prompt) == 5  # ("ab=", "a") is scored once
    for i, (p, w, l) in enumerate(ROWS_TRAIN):
        for seq, text in ((train.chosen[i], w), (train.rejected[i], l)):
            row = train.tokens[seq][: len(p) + len(text) + 1]
            assert task.decode(row) == p + text + "."
            mask = train.response_mask[seq]
            assert mask.tolist() == [False] * len(p) + [True] * (len(text) + 1) + [False] * (
                train.tokens.shape[1] - len(p) - len(text) - 1
            )


def test_bos_and_pad_is_eos():
    tok = word_tokenizer(["x", "y", "z"])
    task = PreferenceTask([("x y", "z", "y z")], [("y", "x", "z")], tok, max_new_tokens=5)
    assert task.prompt_ids(0) == [0, 2, 3]  # BOS, x, y
    assert task.response_ids(1) == [3, 4, 1]  # no BOS on responses, EOS appended
    assert task.pad == task.eos == 1 and task.max_new_tokens == 5
    assert task.eos in task.response_tokens  # EOS stays a response token when it pads
    assert task.decode(task.prompt_ids(0) + task.response_ids(1)) == "<s> x y y z"  # EOS dropped
    no_bos = PreferenceTask(
        [("x y", "z", "y")], [("x y", "z", "y")], word_tokenizer(["x", "y", "z"], bos=False)
    )
    assert no_bos.prompt_ids(0) == [2, 3]


def test_enumerable():
    assert PRESETS["tiny"].enumerable and MAX_ENUMERABLE_VOCAB == 64
    big = PreferenceTask(
        [("w0", "w1", "w2")], [("w0", "w1", "w2")], word_tokenizer([f"w{i}" for i in range(98)])
    )
    assert len(big.vocab) == 100 and not big.enumerable


@pytest.mark.parametrize(
    "train,test,tokenizer,match",
    [
        ([], ROWS_TEST, None, "no train rows"),
        (ROWS_TRAIN, [("", "a", "b")], None, "test row 0"),
        (ROWS_TRAIN, [("a", "a", "")], None, "test row 0"),
        (ROWS_TRAIN, ROWS_TEST, "no-eos", "no EOS"),
    ],
)
def test_construction_errors(chars, train, test, tokenizer, match):
    if tokenizer == "no-eos":
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0})))
    with pytest.raises(ValueError, match=match) as e:
        PreferenceTask(train, test, tokenizer or chars)
    assert "\n" not in str(e.value)


def test_extract_prompt():
    assert extract_prompt("The sky is blue.", "The sky is green.") == (
        "The sky is",
        " blue.",
        " green.",
    )
    assert extract_prompt("ab=a", "ab=c") == ("ab=", "a", "c")
    assert extract_prompt("abc", "xbc") is None and extract_prompt("ab", "abc") is None


def test_jsonl(tmp_path, chars):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "ab=", "chosen": "a", "rejected": "b", "extra": 1},
            "",
            {"chosen": "ba=c", "rejected": "ba=a"},  # implicit prompt
        ],
    )
    rows = read_preference_rows(path)
    assert rows.train == rows.test == [("ab=", "a", "b"), ("ba=", "c", "a")]
    assert rows.train_where == ["line 1", "line 3"] and "train = test" in rows.source
    task = preference_task(path, chars, n_ctx=6)
    assert task.name == "pairs.jsonl" and task.pairs("test") == [(0, 0, 1), (1, 2, 0)]

    split = write_jsonl(
        tmp_path / "split.jsonl",
        [
            {"prompt": "ab=", "chosen": "a", "rejected": "b", "split": "train"},
            {"prompt": "ba=", "chosen": "c", "rejected": "a", "split": "test"},
        ],
    )
    rows = read_preference_rows(split)
    assert rows.train == [("ab=", "a", "b")] and rows.test == [("ba=", "c", "a")]


def test_datasets_folders(tmp_path, chars):
    datasets = pytest.importorskip("datasets")
    one = datasets.Dataset.from_dict({"prompt": ["ab="], "chosen": ["a"], "rejected": ["b"]})
    one.save_to_disk(str(tmp_path / "one"))
    rows = read_preference_rows(tmp_path / "one")
    assert rows.train == rows.test == [("ab=", "a", "b")]
    test = datasets.Dataset.from_dict({"chosen": ["ba=c"], "rejected": ["ba=a"], "x": [0]})
    datasets.DatasetDict({"train": one, "test": test}).save_to_disk(str(tmp_path / "dict"))
    task = preference_task(tmp_path / "dict", chars)
    assert task.prompt_strings == ["ab=", "ba="] and task.pairs("test") == [(1, 2, 0)]
    assert read_preference_rows(tmp_path / "dict").test_where == ["test row 0"]
    bad = datasets.Dataset.from_dict({"prompt": ["ab="], "good": ["a"], "bad": ["b"]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"bad: the data has no column 'chosen'"):
        read_preference_rows(tmp_path / "bad")


ROW = {"prompt": "ab=", "chosen": "a", "rejected": "b"}


@pytest.mark.parametrize(
    "lines,match",
    [
        (None, "no such file"),
        ([], "no rows"),
        ([ROW, "{not json"], "line 2 is not JSON"),
        ([ROW, "[1, 2]"], "line 2 is not a JSON object"),
        ([{"prompt": "ab=", "chosen": "a"}], "line 1 has no 'rejected' column"),
        ([{**ROW, "chosen": 3}], "line 1: column 'chosen' is int, not a string"),
        ([{**ROW, "rejected": ""}], "line 1: column 'rejected' is empty"),
        ([{**ROW, "split": "dev"}], "line 1: unknown split 'dev'"),
        ([{**ROW, "split": "test"}], "no row has split 'train'"),
        ([{**ROW, "chosen": [{"role": "user", "content": "hi"}]}], "line 1: .*conversational"),
        ([{"chosen": "abc", "rejected": "bbc"}], "line 1: no implicit prompt"),
        ([{**ROW, "rejected": ROW["chosen"]}], "line 1: chosen and rejected are the same"),
        ([ROW, {"prompt": "abab=", "chosen": "a", "rejected": "b"}], "line 2: prompt .*n_ctx 6"),
        (
            [{"prompt": "a z", "chosen": "a", "rejected": "b"}],
            "cannot tokenize 'a z': WordLevel error",
        ),
    ],
)
def test_file_errors(tmp_path, chars, lines, match):
    path = tmp_path / "bad.jsonl"
    if lines is not None:
        write_jsonl(path, lines) if lines else path.write_text("\n\n")
    with pytest.raises(DataError, match=match) as e:
        preference_task(path, chars, n_ctx=6)
    message = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in message and str(path) in message

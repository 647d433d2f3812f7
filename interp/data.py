"""The synthetic number-line preference task and its tokenizer.

A prompt is the decimal digits of an integer s followed by `=` ("305="); a response is
the digits of an integer y followed by `.`, which doubles as end-of-sequence ("303.").
There is no BOS token; sequences are right-padded with `<pad>`.

Preferences: for every prompt s in S and every pair of adjacent integers (y, y+1) with
both inside the window [s - W, s + W] and both >= 0, one pair whose preferred response
is the one closer to s (adjacent integers are never equally close). The train/test split
is by prompt, drawn from a seed, so that no prompt appears in both splits.

Presets follow the case study (§3.2): `sweep` has S = 100..500, W = 10 and half of the
prompts in test; `grokking` has S = 1..99, W = 5 and 30% of the prompts in test.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.cli import option, parse

VOCAB: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "=", ".", "<pad>")
EQ, EOS, PAD = 10, 11, 12
DIGITS = range(10)


def encode(text: str) -> list[int]:
    """Token ids of a string over `0123456789=.` (one character per token)."""
    try:
        return [VOCAB.index(ch) for ch in text]
    except ValueError:
        raise ValueError(
            f"cannot tokenize {text!r}: only the characters 0-9, '=' and '.'"
        ) from None


def decode(ids: Sequence[int] | Tensor) -> str:
    """The string of a token sequence; pad tokens are dropped."""
    return "".join(VOCAB[int(i)] for i in ids if int(i) != PAD)


def tokens(text: str) -> Int[Tensor, "1 pos"]:
    """A [1, pos] LongTensor of a string such as "305=" or "305=303.", ready for a model."""
    return torch.tensor([encode(text)])


def prompt_ids(s: int) -> list[int]:
    return encode(f"{s}=")


def response_ids(y: int) -> list[int]:
    return encode(f"{y}.")


def parse_response(ids: Sequence[int] | Tensor) -> int | None:
    """The integer a generated response denotes, or None if it does not parse.

    `ids` are the generated tokens (at most the generation limit). A response parses when
    it is a non-empty run of digits ended by EOS.
    """
    digits: list[int] = []
    for i in ids:
        i = int(i)
        if i == EOS:
            return int("".join(map(str, digits))) if digits else None
        if i not in DIGITS:
            return None
        digits.append(i)
    return None  # no EOS within the limit


def parse_batch(
    tokens: Int[Tensor, "batch max_new"], lengths: Int[Tensor, " batch"]
) -> tuple[Bool[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Vectorised `parse_response` of right-padded responses: (parses, value; 0 where not)."""
    n, width = tokens.shape
    pos = torch.arange(width)[None, :]
    eos = (tokens == EOS) & (pos < lengths[:, None])
    lengths = torch.where(eos.any(1), eos.float().argmax(1) + 1, lengths)  # cut at the first EOS
    body = pos < (lengths - 1)[:, None]  # the tokens before the last one
    last = tokens.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
    is_digit = tokens < 10
    ok = (lengths >= 2) & (last == EOS) & (is_digit | ~body).all(1)
    digits = torch.where(body & is_digit, tokens, torch.zeros_like(tokens))
    # place value of the digit at position i is 10 ** (lengths - 2 - i)
    power = (lengths[:, None] - 2 - pos).clamp(min=0)
    value = (digits * torch.where(body, 10**power, torch.zeros_like(power))).sum(1)
    return ok, torch.where(ok, value, torch.zeros_like(value))


@dataclass(frozen=True)
class Task:
    """One preset of the number-line task."""

    name: str
    s_min: int
    s_max: int
    window: int
    test_fraction: float
    max_new_tokens: int = 6  # generation limit, EOS included; the longest response is 4

    @property
    def prompts(self) -> range:
        return range(self.s_min, self.s_max + 1)

    @property
    def unparsed_error(self) -> int:
        """Error charged to a response that does not parse: max S - min S."""
        return self.s_max - self.s_min


PRESETS: dict[str, Task] = {
    "sweep": Task("sweep", s_min=100, s_max=500, window=10, test_fraction=0.5),
    "grokking": Task("grokking", s_min=1, s_max=99, window=5, test_fraction=0.3),
    # not in the case study: a small task for tests and smoke runs
    "tiny": Task("tiny", s_min=100, s_max=159, window=3, test_fraction=0.5),
}

# What the case study reports (§3.2), for the comparison printed by `python -m interp.data`.
PAPER_COUNTS = {"sweep": (3754, 3755), "grokking": (337, 145)}


def get_task(name: str) -> Task:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def preference_triples(task: Task, prompts: Sequence[int]) -> list[tuple[int, int, int]]:
    """(s, preferred, dispreferred) for every adjacent pair in each prompt's window."""
    out = []
    for s in prompts:
        for y in range(max(s - task.window, 0), s + task.window):
            a, b = y, y + 1
            out.append((s, a, b) if abs(a - s) < abs(b - s) else (s, b, a))
    return out


def split_prompts(task: Task, seed: int) -> tuple[list[int], list[int]]:
    """(train prompts, test prompts), each sorted; the split depends on the seed only."""
    prompts = np.array(task.prompts)
    order = np.random.default_rng(seed).permutation(len(prompts))
    n_test = int(round(task.test_fraction * len(prompts)))
    test = sorted(prompts[order[:n_test]].tolist())
    train = sorted(prompts[order[n_test:]].tolist())
    return train, test


def encode_prompts(prompts: Sequence[int] | Tensor) -> Int[Tensor, "batch pos"]:
    """Tokens of prompts that all have the same length ("305=" …) as a [batch, pos] tensor."""
    rows = [prompt_ids(int(s)) for s in prompts]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("encode_prompts needs prompts of one length; group them first")
    return torch.tensor(rows, dtype=torch.long)


def pad_sequences(seqs: Sequence[Sequence[int]], length: int | None = None) -> Tensor:
    """Right-pad token lists into a [batch, pos] LongTensor."""
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def encode_pairs(
    prompts: Sequence[int], responses: Sequence[int]
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """Tokens of "s=y." for each (s, y), right-padded, and the mask of response tokens."""
    seqs, masks = [], []
    for s, y in zip(prompts, responses, strict=True):
        p, r = prompt_ids(s), response_ids(y)
        seqs.append(p + r)
        masks.append([0] * len(p) + [1] * len(r))
    tokens = pad_sequences(seqs)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, m in enumerate(masks):
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return tokens, mask


@dataclass(frozen=True)
class Split:
    """One side of the train/test split.

    Each distinct (prompt, response) sequence is tokenized once; pairs index into them, so
    the log-probability of a sequence shared by two pairs is computed once.
    """

    name: str
    task: Task
    prompts: Int[Tensor, " n_prompts"]
    seq_prompt: Int[Tensor, " n_seqs"]
    seq_response: Int[Tensor, " n_seqs"]
    chosen: Int[Tensor, " n_pairs"]  # index into the sequences
    rejected: Int[Tensor, " n_pairs"]

    @cached_property
    def _encoded(self) -> tuple[Tensor, Tensor]:
        # cached for the split's lifetime: never as inference tensors, whoever asks first
        with torch.inference_mode(False):
            return encode_pairs(self.seq_prompt.tolist(), self.seq_response.tolist())

    @property
    def tokens(self) -> Int[Tensor, "n_seqs pos"]:
        return self._encoded[0]

    @property
    def response_mask(self) -> Bool[Tensor, "n_seqs pos"]:
        return self._encoded[1]

    @property
    def n_pairs(self) -> int:
        return len(self.chosen)

    @property
    def pair_prompt(self) -> Int[Tensor, " n_pairs"]:
        return self.seq_prompt[self.chosen]

    @classmethod
    def from_triples(cls, name: str, task: Task, prompts: Sequence[int], triples) -> Split:
        index: dict[tuple[int, int], int] = {}
        for s, w, l in triples:
            index.setdefault((s, w), len(index))
            index.setdefault((s, l), len(index))
        keys = list(index)
        return cls(
            name=name,
            task=task,
            prompts=torch.tensor(list(prompts), dtype=torch.long),
            seq_prompt=torch.tensor([k[0] for k in keys], dtype=torch.long),
            seq_response=torch.tensor([k[1] for k in keys], dtype=torch.long),
            chosen=torch.tensor([index[(s, w)] for s, w, _ in triples], dtype=torch.long),
            rejected=torch.tensor([index[(s, l)] for s, _, l in triples], dtype=torch.long),
        )


@dataclass(frozen=True)
class Dataset:
    task: Task
    seed: int
    train: Split
    test: Split


def make_dataset(preset: str | Task = "sweep", seed: int = 0) -> Dataset:
    """The preference dataset of a preset, split by prompt with `seed`."""
    task = preset if isinstance(preset, Task) else get_task(preset)
    train_p, test_p = split_prompts(task, seed)
    return Dataset(
        task=task,
        seed=seed,
        train=Split.from_triples("train", task, train_p, preference_triples(task, train_p)),
        test=Split.from_triples("test", task, test_p, preference_triples(task, test_p)),
    )


@dataclass
class DataOptions:
    preset: str = option("sweep", help="task preset", choices=sorted(PRESETS))
    seed: int = option(0, help="seed of the train/test split")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.data`: print the size of a preset's dataset."""
    opts = parse(
        DataOptions, argv, "python -m interp.data", "Print the size of a preset's dataset."
    )
    ds = make_dataset(opts.preset, opts.seed)
    t = ds.task
    print(f"preset {t.name}: S = {t.s_min}..{t.s_max}, W = {t.window}, seed {ds.seed}")
    print(f"{'split':<6} {'prompts':>8} {'pairs':>7} {'sequences':>10}")
    for sp in (ds.train, ds.test):
        print(f"{sp.name:<6} {len(sp.prompts):>8} {sp.n_pairs:>7} {len(sp.seq_prompt):>10}")
    if t.name in PAPER_COUNTS:
        paper = PAPER_COUNTS[t.name]
        print(
            f"case study reports {paper[0]} train / {paper[1]} test pairs (see README, 'Dataset')"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The synthetic number-line preference task: the one `Task` implementation today.

A prompt is the decimal digits of an integer s followed by `=` ("305="); a response is
the digits of an integer y followed by `.`, which doubles as end-of-sequence ("303.").
There is no BOS token; sequences are right-padded with `<pad>`. Prompt and response keys
are the integers s and y themselves.

Preferences: for every prompt s in S and every pair of adjacent integers (y, y+1) with
both inside the window [s - W, s + W] and both >= 0, one pair whose preferred response
is the one closer to s (adjacent integers are never equally close). The train/test split
is by prompt, drawn from a seed, so that no prompt appears in both splits.

The judge (§3.4): a response parses when it is a non-empty run of digits ended by EOS
within the generation limit. OOD(Y, s): Y does not parse, or |Y − s| > W. Error(Y, s):
|Y − s|, or max S − min S when Y does not parse.

Presets follow the case study (§3.2): `sweep` has S = 100..500, W = 10 and half of the
prompts in test; `grokking` has S = 1..99, W = 5 and 30% of the prompts in test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.core.data import Dataset, Split
from interp.core.task import Judgement, Task

VOCAB: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "=", ".", "<pad>")


EQ, EOS, PAD = 10, 11, 12


DIGITS = range(10)
# the names of a prompt's digit positions, by its number of digits
PLACES = {1: ["units"], 2: ["tens", "units"], 3: ["hundreds", "tens", "units"]}


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
class NumberLine(Task):
    """One preset of the number-line task."""

    name: str
    s_min: int
    s_max: int
    window: int
    test_fraction: float
    max_new_tokens: int = 6  # generation limit, EOS included; the longest response is 4

    vocab: ClassVar[tuple[str, ...]] = VOCAB
    eos: ClassVar[int] = EOS
    pad: ClassVar[int] = PAD

    @property
    def prompts(self) -> range:
        return range(self.s_min, self.s_max + 1)

    @property
    def unparsed_error(self) -> int:
        """Error charged to a response that does not parse: max S - min S."""
        return self.s_max - self.s_min

    def encode(self, text: str) -> list[int]:
        return encode(text)

    def prompt_ids(self, prompt: int) -> list[int]:
        return prompt_ids(prompt)

    def response_ids(self, response: int) -> list[int]:
        return response_ids(response)

    response_tokens: ClassVar[tuple[int, ...]] = (*DIGITS, EOS)

    def reference_response(self, prompt: int) -> int:
        """The identity answer: y = s is always in the window, at distance 0."""
        return prompt

    def prompt_places(self, prompt: int) -> list[str]:
        n = len(str(prompt))
        return list(PLACES.get(n, [f"s{i}" for i in range(n)]))

    def position_labels(self, prompt: int, n_response: int) -> list[str]:
        return self.prompt_places(prompt) + ["="] + [f"y{i}" for i in range(n_response)]

    def corrupt(self, prompt: int, place: int, generator: torch.Generator) -> int:
        """`prompt` with digit `place` replaced by another digit drawn with `generator`; a
        leading digit stays non-zero so the prompt keeps its length."""
        digits = [int(c) for c in str(prompt)]
        choices = [d for d in range(1 if place == 0 else 0, 10) if d != digits[place]]
        digits[place] = choices[int(torch.randint(len(choices), (1,), generator=generator))]
        return int("".join(map(str, digits)))

    def response_kinds(
        self,
        prompts: Int[Tensor, " batch"],
        tokens: Int[Tensor, "batch max_new"],
        lengths: Int[Tensor, " batch"],
    ) -> list[str]:
        """What each response is relative to its prompt s: in the window, the first digits
        of s, shorter or longer than s, or why it does not parse."""
        ok, value = parse_batch(tokens, lengths)
        out = []
        for i in range(len(tokens)):
            s = int(prompts[i])
            if not ok[i]:
                row = tokens[i, : int(lengths[i])].tolist()
                if row == [EOS]:
                    out.append("unparseable: empty")
                elif EOS not in row:
                    out.append("unparseable: no EOS within the limit")
                else:
                    out.append("unparseable: a non-digit token")
                continue
            ys, ss = str(int(value[i])), str(s)
            if abs(int(value[i]) - s) <= self.window:
                out.append("in the window")
            elif len(ys) < len(ss) and ss.startswith(ys):
                out.append(f"the first {len(ys)} digit{'s' if len(ys) > 1 else ''} of s")
            elif len(ys) < len(ss):
                out.append("shorter than s, other")
            elif len(ys) > len(ss):
                out.append("longer than s")
            else:
                out.append("same length, outside the window")
        return out

    def dataset(self, seed: int) -> Dataset:
        train_p, test_p = split_prompts(self, seed)
        return Dataset(
            task=self,
            seed=seed,
            train=Split.from_triples("train", self, train_p, preference_triples(self, train_p)),
            test=Split.from_triples("test", self, test_p, preference_triples(self, test_p)),
        )

    @property
    def has_judge(self) -> bool:
        return True

    def judge(
        self,
        prompts: Int[Tensor, " batch"],
        tokens: Int[Tensor, "batch max_new"],
        lengths: Int[Tensor, " batch"],
    ) -> Judgement:
        ok, value = parse_batch(tokens, lengths)
        distance = (value - prompts).abs()
        return Judgement(
            ood=~ok | (distance > self.window),
            error=torch.where(ok, distance, torch.full_like(distance, self.unparsed_error)).float(),
        )


PRESETS: dict[str, NumberLine] = {
    "sweep": NumberLine("sweep", s_min=100, s_max=500, window=10, test_fraction=0.5),
    "grokking": NumberLine("grokking", s_min=1, s_max=99, window=5, test_fraction=0.3),
    # not in the case study: a small task for tests and smoke runs
    "tiny": NumberLine("tiny", s_min=100, s_max=159, window=3, test_fraction=0.5),
}


# What the case study reports (§3.2), for the comparison printed by `python -m interp.data`.
PAPER_COUNTS = {"sweep": (3754, 3755), "grokking": (337, 145)}


def get_task(name: str) -> NumberLine:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None


def preference_triples(task: NumberLine, prompts: Sequence[int]) -> list[tuple[int, int, int]]:
    """(s, preferred, dispreferred) for every adjacent pair in each prompt's window."""
    out = []
    for s in prompts:
        for y in range(max(s - task.window, 0), s + task.window):
            a, b = y, y + 1
            out.append((s, a, b) if abs(a - s) < abs(b - s) else (s, b, a))
    return out


def split_prompts(task: NumberLine, seed: int) -> tuple[list[int], list[int]]:
    """(train prompts, test prompts), each sorted; the split depends on the seed only."""
    prompts = np.array(task.prompts)
    order = np.random.default_rng(seed).permutation(len(prompts))
    n_test = int(round(task.test_fraction * len(prompts)))
    test = sorted(prompts[order[:n_test]].tolist())
    train = sorted(prompts[order[n_test:]].tolist())
    return train, test


def make_dataset(preset: str | Task = "sweep", seed: int = 0) -> Dataset:
    """The preference dataset of a preset (or any task), split by prompt with `seed`."""
    task = preset if isinstance(preset, Task) else get_task(preset)
    return task.dataset(seed)

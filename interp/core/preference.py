"""A task built from preference rows of strings, tokenized with a Hugging Face tokenizer.

The rows are TRL's *standard* preference format: each row is three strings, a prompt,
a chosen (preferred) response and a rejected one, e.g.
("The sky is", " blue.", " green."). Train and test rows are given separately; reading
them from a file is `interp.runs.preference_file`'s job (this module does no file IO).

Keys. A prompt key is the index of a distinct prompt string and a response key the index
of a distinct response string (chosen and rejected share one index space), both in order
of first appearance over the train rows and then the test rows. A response shared by two
pairs is one key, so `Split` scores the sequence once.

Tokenization follows the per-part convention of TRL's `DPOTrainer.tokenize_row` (TRL
0.x), with TRL 1.16's rules for special tokens and EOS (`DPOTrainer._prepare_dataset`):
- prompt tokens = `tokenizer(prompt)`: with the tokenizer's own special tokens, so a BOS
  when the tokenizer adds one;
- response tokens = `tokenizer(response, add_special_tokens=False)` + [eos_token_id],
  EOS appended only when the tokens do not already end with it (TRL 1.16 `add_eos`).
TRL 1.16 itself tokenizes prompt + response as one string and cuts at the common token
prefix (`tokenize_fn`, `common_prefix_length`); where a BPE merge crosses the boundary its
response tokens differ from ours. Tokenizing the parts separately is what makes a response
key's tokens independent of the prompt. End prompts on a token boundary (e.g. a response
that starts with a space) and the two agree.

Conventions: `pad` is the tokenizer's pad token, or its EOS if it has none (as TRL does).
When pad == EOS a padded sequence's end is marked by its length (and `Split.response_mask`),
never by looking for pad: `decode` drops pad tokens and so drops EOS too, and EOS stays a
response token. `max_new_tokens` is the longest tokenized response (EOS included) unless
given. `dataset(seed)` returns the given rows as they are: the seed is only recorded.
There is no judge unless one is given (no OOD or Error: metrics that need them are
reported as not computable) and no reference response. A BPE vocabulary is too large to
enumerate responses over (`Task.enumerable` is False: no kl_exact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jaxtyping import Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from interp.core.data import Dataset, Split
from interp.core.task import Judgement, Task

PreferenceRow = tuple[str, str, str]  # (prompt, chosen, rejected)
Judge = Callable[[Tensor, Tensor, Tensor], Judgement | None]  # the signature of Task.judge


class PreferenceTask(Task):
    """Preference pairs of strings with a Hugging Face tokenizer (see the module docstring)."""

    def __init__(
        self,
        train: Sequence[PreferenceRow],
        test: Sequence[PreferenceRow],
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str = "preference",
        max_new_tokens: int | None = None,
        judge: Judge | None = None,
    ) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token first")
        for side, rows in (("train", train), ("test", test)):
            if not rows:
                raise ValueError(f"no {side} rows: give at least one (prompt, chosen, rejected)")
            for i, row in enumerate(rows):
                if len(row) != 3 or not all(isinstance(t, str) and t for t in row):
                    raise ValueError(f"{side} row {i}: need three non-empty strings, got {row!r}")
        self.name = name
        self.tokenizer = tokenizer
        self.eos = int(tokenizer.eos_token_id)
        self.pad = self.eos if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)
        n_vocab = len(tokenizer)
        self.vocab = tuple(
            t if t is not None else f"<id {i}>"
            for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(n_vocab))))
        )
        self._judge = judge

        self.prompt_strings: list[str] = []  # key -> string
        self.response_strings: list[str] = []
        prompt_key: dict[str, int] = {}
        response_key: dict[str, int] = {}
        self._triples: dict[str, list[tuple[int, int, int]]] = {}
        for side, rows in (("train", train), ("test", test)):
            self._triples[side] = [
                (
                    _key(prompt_key, self.prompt_strings, p),
                    _key(response_key, self.response_strings, w),
                    _key(response_key, self.response_strings, l),
                )
                for p, w, l in rows
            ]
        self._teacher: dict[int, int] = {}  # prompt -> its first pair's preferred response
        for s, w, _ in self._triples["train"] + self._triples["test"]:
            self._teacher.setdefault(s, w)

        self._prompt_ids = [self._tokenize(p, special=True) for p in self.prompt_strings]
        for s, ids in enumerate(self._prompt_ids):
            if not ids:
                raise ValueError(f"prompt {self.prompt_strings[s]!r} tokenizes to no tokens")
        self._response_ids = [self._tokenize_response(y) for y in self.response_strings]
        longest = max(len(r) for r in self._response_ids)
        self.max_new_tokens = longest if max_new_tokens is None else int(max_new_tokens)
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")

    def _tokenize(self, text: str, special: bool) -> list[int]:
        try:
            return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])
        except Exception as e:  # the Rust tokenizers raise a bare Exception
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"cannot tokenize {text!r}: {first}") from None

    def _tokenize_response(self, text: str) -> list[int]:
        ids = self.encode(text)
        return ids if ids and ids[-1] == self.eos else [*ids, self.eos]

    # ------------------------------------------------------------------ the Task interface

    def encode(self, text: str) -> list[int]:
        """Token ids of a string, no special tokens added."""
        return self._tokenize(text, special=False)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The string of a token sequence; pad tokens are dropped (EOS too when pad == EOS)."""
        kept = [int(i) for i in ids if int(i) != self.pad]
        return self.tokenizer.decode(kept, skip_special_tokens=False)

    def token_text(self, ids: Sequence[int] | Tensor) -> str:
        """Generated tokens as a string, every token kept."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def teacher_response(self, prompt: int) -> int | None:
        """The preferred response of the prompt's first pair (train rows, then test)."""
        return self._teacher.get(prompt)

    def hf_tokenizer(self) -> PreTrainedTokenizerFast:
        return self.tokenizer  # type: ignore[return-value]  # any PreTrainedTokenizerBase works

    def prompt_ids(self, prompt: int) -> list[int]:
        return list(self._prompt_ids[prompt])

    def response_ids(self, response: int) -> list[int]:
        return list(self._response_ids[response])

    def pairs(self, side: str) -> list[tuple[int, int, int]]:
        """(prompt, chosen, rejected) keys of the "train" or "test" rows, in row order."""
        return list(self._triples[side])

    def dataset(self, seed: int) -> Dataset:
        """The given train and test rows as splits; `seed` is recorded, not used."""
        splits = {}
        for side, triples in self._triples.items():
            prompts = list(dict.fromkeys(s for s, _, _ in triples))
            splits[side] = Split.from_triples(side, self, prompts, triples)
        return Dataset(task=self, seed=seed, train=splits["train"], test=splits["test"])

    @property
    def response_tokens(self) -> tuple[int, ...]:
        """Every token but pad; EOS stays in even when it doubles as pad."""
        return tuple(i for i in range(len(self.vocab)) if i != self.pad or i == self.eos)

    @property
    def has_judge(self) -> bool:
        return self._judge is not None

    def judge(
        self,
        prompts: Int[Tensor, " batch"],
        tokens: Int[Tensor, "batch max_new"],
        lengths: Int[Tensor, " batch"],
    ) -> Judgement | None:
        return None if self._judge is None else self._judge(prompts, tokens, lengths)


def _key(index: dict[str, int], names: list[str], text: str) -> int:
    """The key of `text`, a new one the first time it is seen."""
    if text not in index:
        index[text] = len(names)
        names.append(text)
    return index[text]

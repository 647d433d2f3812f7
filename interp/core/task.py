"""The Task seam: everything above `core` sees a task only through this interface.

A task says how text becomes tokens and back, which prompts and preference pairs exist,
how long a response may be, and — optionally — how to judge a response (OOD and Error).
Prompts and responses are named by integer keys: the number-line task uses the integers
themselves (prompt 305 is "305="), a task read from a preference file would use row
indices. Analyses hold keys in tensors and ask the task for tokens or text.

The number line (`interp.core.numberline`) is the one implementation today. A task
without a judge returns None from `judge`: metrics that need one are then reported as not
computable, never silently dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformers import PreTrainedTokenizerFast

from interp.core.tokenizer import char_tokenizer

if TYPE_CHECKING:  # core.data builds on Task; the annotation alone needs Dataset
    from interp.core.data import Dataset

# The most response tokens for which a task's response tree may be enumerated (kl_exact,
# where-the-mass-goes tables): the number line has 11; a BPE vocabulary (tens of thousands)
# branches too widely for enumeration to cover the mass, so analyses report those metrics
# as not computable instead.
MAX_ENUMERABLE_VOCAB = 64


@dataclass(frozen=True)
class Judgement:
    """What a judge says of each response: out of distribution, and how far off."""

    ood: Bool[Tensor, " batch"]
    error: Float[Tensor, " batch"]


class Task(ABC):
    """A preference task: tokenizer, prompts, pairs, generation limit, optional judge."""

    name: str
    vocab: tuple[str, ...]
    eos: int  # ends a response
    pad: int  # right-pads sequences; never a real token of a prompt or response
    max_new_tokens: int  # generation limit, EOS included

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of a string."""

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The string of a token sequence; pad tokens are dropped."""
        return "".join(self.vocab[int(i)] for i in ids if int(i) != self.pad)

    def tokens(self, text: str) -> Int[Tensor, "1 pos"]:
        """A [1, pos] LongTensor of a string, ready for a model."""
        return torch.tensor([self.encode(text)])

    def token_text(self, ids: Sequence[int] | Tensor) -> str:
        """Generated tokens as a string, a generated pad token shown as such."""
        return "".join(self.vocab[int(i)] for i in ids)

    def hf_tokenizer(self) -> PreTrainedTokenizerFast:
        """The Hugging Face tokenizer a loaded model carries (character-level by default;
        a task with another tokenizer returns its own)."""
        return char_tokenizer(tuple(self.vocab), self.eos, self.pad)

    @abstractmethod
    def prompt_ids(self, prompt: int) -> list[int]:
        """The tokens of the prompt with key `prompt`."""

    @abstractmethod
    def response_ids(self, response: int) -> list[int]:
        """The tokens of the response with key `response`, EOS included."""

    def prompt_text(self, prompt: int) -> str:
        return self.decode(self.prompt_ids(prompt))

    @abstractmethod
    def dataset(self, seed: int) -> Dataset:
        """The preference pairs, split into train and test by prompt with `seed`."""

    # ------------------------------------------------------------------ optional hooks
    # What a task may know beyond tokens and pairs. Analyses that need one of these ask for
    # it and report "not computable" when the task answers None or nothing.

    @property
    def response_tokens(self) -> tuple[int, ...]:
        """The tokens a response may contain (EOS included)."""
        return tuple(i for i in range(len(self.vocab)) if i != self.pad)

    @property
    def enumerable(self) -> bool:
        """Whether the response space is small enough to enumerate (at most
        `MAX_ENUMERABLE_VOCAB` response tokens); when False, say "kl_exact not computable:
        the response space is too large to enumerate"."""
        return len(self.response_tokens) <= MAX_ENUMERABLE_VOCAB

    @property
    def has_judge(self) -> bool:
        """Whether `judge` answers (OOD rate, Error and OOD mass are computable)."""
        return False

    def reference_response(self, prompt: int) -> int | None:
        """The key of the response a perfect policy gives, if the task knows one."""
        return None

    def teacher_response(self, prompt: int) -> int | None:
        """The response analyses teacher-force after the prompt (attention maps, patching
        probes): the reference response where the task knows one (a task of preference
        pairs answers with the prompt's first preferred response)."""
        return self.reference_response(prompt)

    def position_labels(self, prompt: int, n_response: int) -> list[str]:
        """Names of the positions of the prompt followed by `n_response` response tokens."""
        n = len(self.prompt_ids(prompt))
        return [f"p{i}" for i in range(n)] + [f"r{i}" for i in range(n_response)]

    def prompt_places(self, prompt: int) -> list[str]:
        """Names of the prompt positions `corrupt` can change (none by default)."""
        return []

    def corrupt(self, prompt: int, place: int, generator: torch.Generator) -> int | None:
        """Another prompt of the same token length that differs from `prompt` only at
        position `place`, drawn with `generator`; None if the task cannot make one."""
        return None

    def response_kinds(
        self,
        prompts: Int[Tensor, " batch"],
        tokens: Int[Tensor, "batch max_new"],
        lengths: Int[Tensor, " batch"],
    ) -> list[str]:
        """A short name for what each response is (for where-the-mass-goes tables)."""
        verdict = self.judge(prompts, tokens, lengths)
        if verdict is None:
            return ["response"] * len(prompts)
        return ["out of distribution" if o else "in distribution" for o in verdict.ood.tolist()]

    def judge(
        self,
        prompts: Int[Tensor, " batch"],
        tokens: Int[Tensor, "batch max_new"],
        lengths: Int[Tensor, " batch"],
    ) -> Judgement | None:
        """OOD and Error of each generated response (tokens right-padded, `lengths` with EOS
        included); None for a task that cannot judge its responses."""
        return None

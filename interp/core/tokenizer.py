"""A task's vocabulary as a Hugging Face tokenizer, so TransformerLens's string helpers work.

TransformerLens does its string work (`to_tokens`, `to_str_tokens`, `to_string`,
`to_single_token`, `generate` on a string, `utils.test_prompt`) through a Hugging Face
`PreTrainedTokenizerFast`. A task whose tokens are single characters (the number line:
`0`-`9`, `=`, `.`, and a pad token) gets one here, built offline with the `tokenizers`
library: a word-level model over the task's vocabulary whose pre-tokenizer cuts the text
into characters, and a decoder that joins them with no spaces. Token ids are the task's ids
(`task.hf_tokenizer()("305=").input_ids == task.encode("305=")`).

Conventions: EOS is the task's EOS and pad its pad; there is no BOS and no unknown token
(a character outside the vocabulary is an error, as in `Task.encode`), and sequences are
padded on the right, as the task pads them. Whitespace is dropped before tokenizing (the
vocabulary has no space), so `utils.test_prompt("305=", "303.", model)`, which puts a
space before the answer, reads the answer "303.". EOS and pad are special tokens, so
TransformerLens's `generate` leaves them out of the strings it returns ("305=303"), as it
does for every model; `return_type="tokens"` keeps them. A task whose tokenizer is not
character-level brings its own `PreTrainedTokenizerFast` instead (`Task.hf_tokenizer`).
"""

from __future__ import annotations

from functools import cache

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast


@cache  # one per vocabulary: models of one task share it
def char_tokenizer(vocab: tuple[str, ...], eos: int, pad: int) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over `vocab` (every entry one character, except the pad
    token's, which is a special token matched whole): ids are positions in `vocab`."""
    singles = [t for i, t in enumerate(vocab) if i != pad]
    if any(len(t) != 1 for t in singles):
        raise ValueError(f"a character-level vocabulary needs one character per token: {singles}")
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}))
    core.normalizer = normalizers.Replace(Regex(r"\s"), "")  # the vocabulary has no space
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=vocab[eos],
        pad_token=vocab[pad],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )

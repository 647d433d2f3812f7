"""The single doorway to TransformerLens.

Every other module of `interp` imports TransformerLens names from here, never from
`transformer_lens` directly (a test checks this). The suite is pinned to
`transformer-lens>=3.9,<4`: 4.x removed `HookedTransformer` in favour of
`TransformerBridge`. Moving to 4.x means rewriting this module alone: build the model,
expose its config type, the activation cache, the hook-name helper and the patching
utilities under the same names.

A model leaves this module with a Hugging Face tokenizer attached (`attach_tokenizer`), so
it behaves like any TransformerLens model in IPython: `to_tokens`, `to_str_tokens`,
`to_string`, `to_single_token`, `generate` and `transformer_lens.utils.test_prompt` work.
The tokenizer is also what makes `generate`'s key/value cache work: with a tokenizer,
`generate` builds an attention mask and takes each new token's positional embedding from
it; without one, TransformerLens 3.9 slices `W_pos[past : past + whole sequence]` at every
step after the first, which runs off the end of `n_ctx` (a shape error). No BOS: the
tasks have none, so `cfg.default_prepend_bos` is False and `to_tokens("305=")` is exactly
the task's ids. A Hugging Face folder's tokenizer may prepend a BOS itself (Llama's does);
then `to_tokens` keeps it, as the model was trained with it.

Hugging Face weights become TransformerLens weights through TransformerLens's own
conversion functions (`convert_hf_weights`), never a copy of them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from transformer_lens import ActivationCache, HookedTransformer, HookedTransformerConfig, patching
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.hook_points import HookPoint
from transformer_lens.pretrained.weight_conversions import (
    convert_gpt2_weights,
    convert_llama_weights,
    convert_neox_weights,
)
from transformer_lens.utilities import get_act_name
from transformers import PreTrainedTokenizerBase

__all__ = [
    "ActivationCache",
    "HookPoint",
    "HookedTransformer",
    "HookedTransformerConfig",
    "attach_tokenizer",
    "convert_hf_weights",
    "HF_ARCHITECTURES",
    "get_act_name",
    "KVCache",
    "new_model",
    "patching",
]

KVCache = TransformerLensKeyValueCache


def new_model(cfg: HookedTransformerConfig) -> HookedTransformer:
    """A freshly initialised HookedTransformer for `cfg` (no tokenizer, weights from TL's init).

    TransformerLens 3.x warns on every construction that HookedTransformer goes away in
    4.0; we know (see the module docstring), so that one warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated")
        return HookedTransformer(cfg)


def attach_tokenizer(model: HookedTransformer, tokenizer: PreTrainedTokenizerBase) -> None:
    """In place: give `model` a tokenizer that pads on the right and adds either nothing
    (the tasks' tokenizers: `to_tokens` adds no BOS) or only its own BOS in front (Llama's:
    `to_tokens` keeps it, `prepend_bos=False` drops it).

    Not through `model.set_tokenizer`: it would make EOS the BOS token of a tokenizer that
    has none, and on a second model try to reload the (shared) tokenizer from the Hugging
    Face hub by name to get one "with BOS"."""
    added = tokenizer.encode("")
    bos = tokenizer.bos_token_id
    if tokenizer.padding_side != "right" or not (
        added == [] or (bos is not None and added == [bos])
    ):
        raise ValueError("the tokenizer must pad on the right and add no token but a BOS")
    prepends = bool(added)
    model.tokenizer = tokenizer
    model.cfg.tokenizer_prepends_bos = prepends
    model.cfg.default_prepend_bos = prepends


_CONVERTERS = {
    "gpt2": convert_gpt2_weights,
    "gpt_neox": convert_neox_weights,
    "llama": convert_llama_weights,
}


def convert_hf_weights(
    architecture: str, hf_model: torch.nn.Module, cfg: HookedTransformerConfig
) -> dict[str, torch.Tensor]:
    """A Hugging Face causal LM's weights as a HookedTransformer state dict (raw: no
    folding or centering), by TransformerLens's converter for `architecture` (a config
    `model_type`: one of `HF_ARCHITECTURES`). Grouped-query K/V come out once per KV head
    as `_W_K`/`_W_V`/`_b_K`/`_b_V`; buffers (masks, rotary tables) are not in it."""
    return _CONVERTERS[architecture](hf_model, cfg)


HF_ARCHITECTURES = tuple(_CONVERTERS)


def new_kv_cache(model: HookedTransformer, batch_size: int) -> KVCache:
    """An empty key/value cache for incremental decoding of `batch_size` rows."""
    return KVCache.init_cache(model.cfg, model.cfg.device, batch_size)


def forward_cached(model: HookedTransformer, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Logits of `tokens` appended to what `cache` holds (the cache is extended in place).

    Rows are never padded here, so the attention mask is all ones; TransformerLens needs it
    spelled out because the model has no tokenizer to infer it from.
    """
    return model(tokens, past_kv_cache=cache, attention_mask=torch.ones_like(tokens))


def select_kv_rows_(cache: KVCache, rows: torch.Tensor) -> None:
    """Keep (and repeat, and reorder) the cache's batch rows in place: row i becomes rows[i]."""
    for entry in cache.entries:
        entry.past_keys = entry.past_keys[rows.to(entry.past_keys.device)]
        entry.past_values = entry.past_values[rows.to(entry.past_values.device)]
    mask = cache.previous_attention_mask
    cache.previous_attention_mask = mask[rows.to(mask.device)]


@contextlib.contextmanager
def quiet_patching() -> Iterator[None]:
    """Silence the progress bar `transformer_lens.patching` draws for every call (it has no
    switch); restored on exit."""
    saved = patching.tqdm
    patching.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        patching.tqdm = saved

"""Policies from Hugging Face model folders, loaded offline as raw HookedTransformers.

A Hugging Face model folder is what `model.save_pretrained(path)` and
`tokenizer.save_pretrained(path)` write: `config.json` (the architecture's settings; its
`model_type` names the architecture), the weights as `model.safetensors` or, when large,
as shards listed by `model.safetensors.index.json`, the tokenizer's files
(`tokenizer.json`, `tokenizer_config.json`, …) and, after a TRL/`Trainer` run,
`trainer_state.json` (whose `global_step` is the step this policy was saved at).

Architectures (`SUPPORTED`, keyed by `model_type`): `gpt2`, `gpt_neox` (Pythia) and
`llama` (also with grouped-query attention). Loading never goes to the hub and runs no
code from the folder (`trust_remote_code=False`, `auto_map` refused): transformers
builds the Hugging Face model from the local files only, reading safetensors only (never a
pickle: `pytorch_model.bin` is refused), and TransformerLens's own conversion functions
(through `interp.lens.convert_hf_weights`) turn it into a HookedTransformer state dict.
The HookedTransformerConfig is built here by hand per architecture, as TransformerLens's
`convert_hf_model_config` maps the fields (that function resolves names on the hub, so it
is not called; a test checks the two agree field by field):

- gpt2: d_model `n_embd`, heads `n_head`, d_mlp `n_inner` (else 4·n_embd), `n_positions`
  as n_ctx, LayerNorm with `layer_norm_epsilon`, `activation_function` (gelu_new),
  learned positions, `scale_attn_weights`, `scale_attn_by_inverse_layer_idx`.
- gpt_neox: `hidden_size`, `num_attention_heads`, `intermediate_size`,
  `max_position_embeddings`, LayerNorm with `layer_norm_eps`, `hidden_act`, rotary over
  rotary_dim = round(partial_rotary_factor (`rotary_pct`) · d_head) dimensions (halves,
  not adjacent pairs) with base `rope_theta`, attention and MLP in parallel when
  `use_parallel_residual`.
- llama: the same sizes, RMSNorm (also the final norm) with `rms_norm_eps`, gated MLP
  with `hidden_act` (silu), rotary over the whole head (halves) with base `rope_theta`
  (llama3 rope scaling as NTK-by-parts), and `num_key_value_heads` when it is fewer
  than the query heads: grouped-query attention, where each K/V head is stored once per
  group as TransformerLens's `_W_K`/`_W_V` (`_b_K`/`_b_V`) of `n_key_value_heads` heads
  and shared by the `n_heads / n_key_value_heads` query heads of its group.

Nothing is processed: no fold_ln, no centering, no folded value biases — geometry needs
raw W_U. Every parameter comes from the converted state dict (gpt2 has no unembedding
bias, so `b_U` is zero, as it is in the Hugging Face model); only the buffers the config
determines (causal mask, rotary tables) keep what construction gave them. The tokenizer
is the folder's own, padding on the right, its pad token EOS when it has none (as TRL does).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from interp.errors import CheckpointError, PolicyNotFound, UnsupportedModel
from interp.lens import (
    HF_ARCHITECTURES,
    HookedTransformer,
    HookedTransformerConfig,
    attach_tokenizer,
    convert_hf_weights,
    new_model,
)
from interp.runs.files import one_line

SUPPORTED = {
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
    "llama": "LlamaForCausalLM",
}
assert set(SUPPORTED) <= set(HF_ARCHITECTURES)

CONVERT = (
    "convert it in an environment you trust: AutoModelForCausalLM.from_pretrained(path)"
    ".save_pretrained(path, safe_serialization=True)"
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass(frozen=True)
class FolderInfo:
    """What a loaded folder was: where, which architecture, the sha256 of its weights (of
    the shards' bytes in index order when sharded), its training step and parameter count."""

    path: Path
    architecture: str
    sha256: str
    step: int
    n_params: int


def is_hf_folder(name: str) -> bool:
    """Whether `name` is a path to a folder holding config.json (else: a run name)."""
    try:
        return (Path(name).expanduser() / "config.json").is_file()
    except (OSError, ValueError):
        return False


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({one_line(e)}); {what}") from None


def _read_config(folder: Path) -> dict[str, Any]:
    raw = _read_json(folder / "config.json", "re-save the model with save_pretrained")
    if not isinstance(raw, dict) or not isinstance(raw.get("model_type"), str):
        raise CheckpointError(
            f"{folder / 'config.json'} is not a model config (a JSON object with a "
            "model_type); re-save the model with save_pretrained"
        )
    if "auto_map" in raw:
        raise UnsupportedModel(
            f"{folder} needs custom code (auto_map in config.json), and models are loaded "
            "without trust_remote_code; use a folder of a supported architecture: "
            + ", ".join(SUPPORTED)
        )
    if raw["model_type"] not in SUPPORTED:
        raise UnsupportedModel(
            f"{folder} holds a {raw['model_type']!r} model; supported model_types: "
            + ", ".join(SUPPORTED)
        )
    return raw


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a folder, shards in index order."""
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        raw = _read_json(index, "re-save the model with save_pretrained")
        weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map; re-save the model")
        names = list(dict.fromkeys(weight_map.values()))
        for name in names:
            if not isinstance(name, str) or Path(name).name != name:
                raise CheckpointError(f"{index} names a shard outside the folder: {name!r}")
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder} is incomplete: shard {name} is missing")
        return [folder / n for n in names]
    if any(folder.glob("pytorch_model*.bin")):
        raise UnsupportedModel(
            f"{folder} has only pickled weights (pytorch_model.bin), which are never "
            f"loaded; {CONVERT}"
        )
    raise CheckpointError(f"{folder} holds no model.safetensors; re-save it with save_pretrained")


def _check_weights(files: list[Path]) -> None:
    """Each safetensors file opens and its header fits the file (read before any model is
    built, so a damaged file gets one clear line)."""
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for k in f.keys():
                    f.get_slice(k).get_shape()
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{path} cannot be read ({one_line(e)}); it is corrupt or truncated: "
                "copy or save it again"
            ) from None


def _rope(hf: Any) -> tuple[float, dict[str, Any]]:
    """rope_theta and rope settings (transformers 5 keeps them in `rope_parameters`)."""
    params = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    theta = getattr(hf, "rope_theta", None) or params.get("rope_theta", 10000.0)
    return float(theta), dict(params)


def tl_config(hf: Any, name: str, device: str, dtype: torch.dtype) -> HookedTransformerConfig:
    """The HookedTransformerConfig of a Hugging Face config, field by field (see the
    module docstring); UnsupportedModel for variants the conversion does not handle."""
    arch = hf.model_type
    if arch == "gpt2":
        d: dict[str, Any] = {
            "d_model": hf.n_embd, "d_head": hf.n_embd // hf.n_head, "n_heads": hf.n_head,
            "d_mlp": hf.n_inner or 4 * hf.n_embd, "n_layers": hf.n_layer,
            "n_ctx": hf.n_positions, "eps": hf.layer_norm_epsilon, "d_vocab": hf.vocab_size,
            "act_fn": hf.activation_function,
            "use_attn_scale": getattr(hf, "scale_attn_weights", True),
            "scale_attn_by_inverse_layer_idx": hf.scale_attn_by_inverse_layer_idx,
            "normalization_type": "LN",
        }  # fmt: skip
    elif arch == "gpt_neox":
        if not getattr(hf, "attention_bias", True):
            raise UnsupportedModel(f"{name}: gpt_neox without attention biases is not supported")
        theta, rope = _rope(hf)
        pct = rope.get("partial_rotary_factor", getattr(hf, "rotary_pct", None) or 1.0)
        d_head = hf.hidden_size // hf.num_attention_heads
        d = {
            "d_model": hf.hidden_size, "d_head": d_head, "n_heads": hf.num_attention_heads,
            "d_mlp": hf.intermediate_size, "n_layers": hf.num_hidden_layers,
            "n_ctx": hf.max_position_embeddings, "eps": hf.layer_norm_eps,
            "d_vocab": hf.vocab_size, "act_fn": hf.hidden_act,
            "parallel_attn_mlp": getattr(hf, "use_parallel_residual", True),
            "positional_embedding_type": "rotary", "rotary_adjacent_pairs": False,
            "rotary_dim": round(pct * d_head), "rotary_base": theta,
            "normalization_type": "LN",
        }  # fmt: skip
    else:  # llama
        if getattr(hf, "attention_bias", False) or getattr(hf, "mlp_bias", False):
            raise UnsupportedModel(f"{name}: llama with attention or MLP biases is not supported")
        theta, rope = _rope(hf)
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind not in ("default", "llama3"):
            raise UnsupportedModel(f"{name}: rope scaling {kind!r} is not supported")
        d_head = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
        n_kv = hf.num_key_value_heads or hf.num_attention_heads
        d = {
            "d_model": hf.hidden_size, "d_head": d_head, "n_heads": hf.num_attention_heads,
            "d_mlp": hf.intermediate_size, "n_layers": hf.num_hidden_layers,
            "n_ctx": hf.max_position_embeddings, "eps": hf.rms_norm_eps,
            "d_vocab": hf.vocab_size, "act_fn": hf.hidden_act,
            "n_key_value_heads": n_kv if n_kv != hf.num_attention_heads else None,
            "normalization_type": "RMS", "positional_embedding_type": "rotary",
            "rotary_adjacent_pairs": False, "rotary_dim": d_head, "rotary_base": theta,
            "final_rms": True, "gated_mlp": True,
        }  # fmt: skip
        if kind == "llama3":  # NTK-by-parts, as TransformerLens's _apply_llama3_rope_scaling
            d |= {
                "use_NTK_by_parts_rope": True,
                "NTK_original_ctx_len": rope.get(
                    "original_max_position_embeddings", hf.max_position_embeddings
                ),
                "NTK_by_parts_low_freq_factor": rope.get("low_freq_factor", 1.0),
                "NTK_by_parts_high_freq_factor": rope.get("high_freq_factor", 4.0),
                "NTK_by_parts_factor": rope.get("factor", 1.0),
            }
    d |= {
        "model_name": name, "original_architecture": SUPPORTED[arch], "device": device,
        "dtype": dtype, "init_weights": False, "default_prepend_bos": False,
    }  # fmt: skip
    try:
        return HookedTransformerConfig(**d)
    except (ValueError, AssertionError, TypeError) as e:
        raise UnsupportedModel(f"{name}: its config cannot be converted ({one_line(e)})") from None


def _hf_model(folder: Path) -> Any:
    """The folder's Hugging Face model, float32, loaded offline from its safetensors (key
    renames and tied weights as transformers does them); CheckpointError when a tensor is
    missing or its shape is not the config's. Tensors the model has no place for are
    ignored, as transformers ignores them."""
    import transformers
    from transformers import AutoModelForCausalLM

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        model, report = AutoModelForCausalLM.from_pretrained(
            folder,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=True,
            dtype=torch.float32,
            ignore_mismatched_sizes=True,  # reported below, in one line
            output_loading_info=True,
        )
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as e:
        raise CheckpointError(f"{folder} cannot be loaded ({one_line(e)}); re-save it") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if report["mismatched_keys"]:
        k, *shapes = sorted(report["mismatched_keys"])[0]
        raise CheckpointError(
            f"{folder}: the weights do not match config.json ({k} has shape "
            f"{tuple(shapes[0])}, config says {tuple(shapes[1])}); re-save the model"
        )
    if report["missing_keys"]:
        k = sorted(report["missing_keys"])[0]
        raise CheckpointError(f"{folder}: the weights lack {k}; re-save the model")
    return model.eval()


def _tokenizer(folder: Path, d_vocab: int) -> Any:
    from transformers import AutoTokenizer

    fix = "save the tokenizer into it: tokenizer.save_pretrained(path)"
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise CheckpointError(f"{folder} holds no tokenizer; {fix}")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(
            f"{folder}: its tokenizer cannot be loaded ({one_line(e)}); {fix}"
        ) from None
    tok.padding_side = "right"
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise CheckpointError(f"{folder}: the tokenizer has neither pad nor EOS token; {fix}")
        tok.pad_token = tok.eos_token  # as TRL does
    if len(tok) > d_vocab:
        raise CheckpointError(
            f"{folder}: the tokenizer has {len(tok)} tokens but the model only {d_vocab}; "
            "save the tokenizer the model was trained with"
        )
    return tok


def load_folder(
    path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[HookedTransformer, FolderInfo]:
    """A Hugging Face model folder as a raw HookedTransformer (eval mode, its tokenizer
    attached, `cfg.model_name` the folder's name) and what it was (FolderInfo)."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise PolicyNotFound(
            f"{path} is not a folder; give a Hugging Face model folder or a run name"
        )
    if not (folder / "config.json").is_file():
        raise PolicyNotFound(f"{folder} has no config.json; give the folder save_pretrained wrote")
    raw = _read_config(folder)
    files = _weight_files(folder)
    _check_weights(files)
    hf = _hf_model(folder)
    cfg = tl_config(hf.config, folder.name, device, dtype)
    tok = _tokenizer(folder, cfg.d_vocab)
    with torch.no_grad():
        state = convert_hf_weights(raw["model_type"], hf, cfg)
        model = new_model(cfg)
        params = dict(model.named_parameters())
        if "unembed.b_U" not in state:  # gpt2's lm_head has no bias
            state["unembed.b_U"] = torch.zeros(cfg.d_vocab)
        result = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False)
        unset = sorted(k for k in result.missing_keys if k in params)
        if unset or result.unexpected_keys:  # a converter/config mismatch: a bug, not the user's
            raise RuntimeError(
                f"conversion left {unset} unset, gave unexpected {result.unexpected_keys}"
            )
    model.to(dtype, print_details=False)
    model.to(device, print_details=False)
    model.eval()
    try:
        attach_tokenizer(model, tok)
    except ValueError as e:  # e.g. a tokenizer that appends EOS to every text
        raise UnsupportedModel(
            f"{folder}: its tokenizer cannot be used as is ({e}); save one that adds at most a "
            "BOS in front (e.g. add_eos_token=False) to the folder"
        ) from None
    info = FolderInfo(
        path=folder,
        architecture=raw["model_type"],
        sha256=_sha256(files),
        step=_step(folder),
        n_params=sum(p.numel() for p in model.parameters()),
    )
    return model, info


def _sha256(files: list[Path]) -> str:
    """sha256 of the files' bytes one after another (of the one file, when unsharded)."""
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _step(folder: Path) -> int:
    """`global_step` of trainer_state.json, 0 without one."""
    step = folder_step(folder)
    return 0 if step is None else step


def folder_step(folder: Path) -> int | None:
    """`global_step` of the folder's trainer_state.json; None without one."""
    path = Path(folder) / "trainer_state.json"
    if not path.is_file():
        return None
    raw = _read_json(path, "delete or fix trainer_state.json")
    step = raw.get("global_step", 0) if isinstance(raw, dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: global_step is not a step number; delete or fix the file")
    return step

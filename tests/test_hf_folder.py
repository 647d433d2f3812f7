"""Hugging Face model folders load as raw HookedTransformers that compute what the
Hugging Face model computes (tiny random models built from config, saved offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from interp.errors import CheckpointError, PolicyNotFound, UnsupportedModel, UserError
from interp.runs.files import sha256_file
from interp.runs.hf_folder import SUPPORTED, FolderInfo, is_hf_folder, load_folder

SYMBOLS = ["<pad>", "<s>", "</s>", *"0123456789", "=", ".", "+", "a", "b", "c"]
VOCAB = 24  # a little larger than the tokenizer, as real models often are
TEXT = "1 2 + 3 = 4 5 . a b"


def tokenizer(bos: bool) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over SYMBOLS (split on spaces); with `bos`, it prepends <s>."""
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SYMBOLS)}, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        core.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
        )
    extra = {"bos_token": "<s>"} if bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", **extra)


CONFIGS = {
    "gpt2": lambda: GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=None
    ),
    "gpt_neox": lambda: GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        rotary_pct=0.5,
        rope_theta=5000.0,
    ),
    "llama": lambda: LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
    ),
}


def save_folder(tmp: Path, arch: str, *, bos: bool | None = None, step: int | None = None):
    """A tiny random model of `arch` saved with its tokenizer; returns (folder, hf model)."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch]()).eval()
    with torch.no_grad():  # random biases and norm weights too: nothing is left at 0 or 1
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln" in name:
                p.normal_(0.0, 0.1).add_(1.0 if name.endswith("weight") else 0.0)
    folder = tmp / arch
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer(arch == "llama" if bos is None else bos).save_pretrained(folder)
    if step is not None:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder, model


def one_line_naming(err: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("arch", list(SUPPORTED))
def test_logits_match_hugging_face(tmp_path: Path, arch: str) -> None:
    folder, hf = save_folder(tmp_path, arch, step=42)
    model, info = load_folder(folder)
    tokens = model.to_tokens([TEXT, "a b c = 7"], padding_side="right")
    # the same ids Hugging Face's own tokenizer gives (with BOS exactly when it adds one)
    assert tokens[0].tolist() == model.tokenizer(TEXT).input_ids
    assert (tokens[0, 0].item() == 1) == (arch == "llama")
    tokens = tokens[:1]
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(tokens).logits
    err = (ours - theirs).abs().max().item()
    print(f"{arch}: max abs logit difference {err:.3g}")
    assert err < 1e-4
    assert model.to_str_tokens("1 2 =", prepend_bos=False) == ["1", "2", "="]
    assert model.cfg.model_name == arch and not model.training
    assert info == FolderInfo(
        path=folder.resolve(),
        architecture=arch,
        sha256=sha256_file(folder / "model.safetensors"),
        step=42,
        n_params=sum(p.numel() for p in model.parameters()),
    )


@pytest.mark.parametrize("arch", list(SUPPORTED))
def test_every_parameter_comes_from_the_file(tmp_path: Path, arch: str) -> None:
    """Two loads (each starting from a differently seeded init) agree on every parameter,
    so none was left at its initial value; raw weights: no folding or centering."""
    folder, hf = save_folder(tmp_path, arch)
    torch.manual_seed(1)
    a, _ = load_folder(folder)
    torch.manual_seed(2)
    b, _ = load_folder(folder)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert torch.equal(a.W_E, hf.get_input_embeddings().weight)
    assert torch.equal(a.W_U, hf.get_output_embeddings().weight.T)  # not centred
    assert not a.cfg.default_prepend_bos or arch == "llama"


@pytest.mark.parametrize("arch", list(SUPPORTED))
def test_config_matches_transformer_lens(
    tmp_path_factory: pytest.TempPathFactory, arch: str
) -> None:
    """Our hand-built HookedTransformerConfig equals the one TransformerLens's own
    `convert_hf_model_config` makes from the same local folder (no hub: it reads a path),
    field by field. The folder's name must not contain "llama" (TransformerLens would
    then guess the config from the name)."""
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    tmp = tmp_path_factory.mktemp("tlcfg")
    folder, _ = save_folder(tmp, arch)
    folder = folder.rename(tmp / "model")
    model, _ = load_folder(folder)
    if arch == "gpt2":  # transformers 5 dropped GPT2Config.n_ctx, which TransformerLens reads
        edit_config(folder, n_ctx=model.cfg.n_ctx)
    theirs = convert_hf_model_config(str(folder))
    theirs.pop("tokenizer_name")
    ours = model.cfg.to_dict()
    assert {k: ours[k] for k in theirs} == theirs
    assert ours["default_prepend_bos"] == (arch == "llama")
    if arch == "gpt_neox":
        assert (ours["rotary_dim"], ours["rotary_base"]) == (4, 5000.0)  # half of d_head 8
    if arch == "llama":
        assert (ours["n_key_value_heads"], ours["rotary_base"]) == (2, 500.0)


def test_grouped_query_heads_are_stored_once_per_group(tmp_path: Path) -> None:
    folder, hf = save_folder(tmp_path, "llama")
    model, _ = load_folder(folder)
    attn = model.blocks[0].attn
    assert model.cfg.n_key_value_heads == 2 and attn._W_K.shape == (2, 32, 8)
    k = hf.model.layers[0].self_attn.k_proj.weight  # (kv heads · d_head, d_model)
    assert torch.equal(attn._W_K[1], k[8:16].T)
    assert torch.equal(attn.W_K[2], attn._W_K[1]) and torch.equal(attn.W_K[3], attn._W_K[1])


def test_sharded_weights_hash_in_index_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(CONFIGS["gpt2"]()).eval()
    folder = tmp_path / "sharded"
    hf.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    tokenizer(False).save_pretrained(folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = list(dict.fromkeys(index["weight_map"].values()))
    assert len(shards) > 1
    model, info = load_folder(folder)
    import hashlib

    assert (
        info.sha256
        == hashlib.sha256(b"".join((folder / s).read_bytes() for s in shards)).hexdigest()
    )
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        assert (model(tokens) - hf(tokens).logits).abs().max() < 1e-4


def test_dtype(tmp_path: Path) -> None:
    folder, hf = save_folder(tmp_path, "llama")
    model, _ = load_folder(folder, dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        assert (model(tokens).float() - hf(tokens).logits).abs().max() < 1e-4


def test_is_hf_folder(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    assert is_hf_folder(str(folder))
    assert not is_hf_folder(str(tmp_path)) and not is_hf_folder("beta0.1")
    assert not is_hf_folder(str(folder / "config.json"))


def test_pad_token_defaults_to_eos(tmp_path: Path) -> None:
    model, _ = load_folder(save_folder(tmp_path, "gpt2")[0])
    assert model.tokenizer.pad_token == "</s>" and model.tokenizer.padding_side == "right"


# ---- what a user can get wrong: one line, the right error, the fix named ----


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PolicyNotFound) as e:
        load_folder(tmp_path / "nowhere")
    one_line_naming(e, "not a folder")
    with pytest.raises(PolicyNotFound) as e:
        load_folder(tmp_path)
    one_line_naming(e, "no config.json")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"vocab_size": 3}'])
def test_config_not_a_config(tmp_path: Path, text: str) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "config.json", "save")


def edit_config(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(cfg | changes))


def test_unsupported_model_type(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    edit_config(folder, model_type="bert")
    with pytest.raises(UnsupportedModel) as e:
        load_folder(folder)
    one_line_naming(e, "'bert'", "gpt2", "gpt_neox", "llama")


def test_custom_code_refused(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    edit_config(folder, auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    with pytest.raises(UnsupportedModel) as e:
        load_folder(folder)
    one_line_naming(e, "trust_remote_code", "auto_map")


def test_pickled_weights_refused(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnsupportedModel) as e:
        load_folder(folder)
    one_line_naming(e, "pytorch_model.bin", "safe_serialization=True")


def test_missing_weights(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "no model.safetensors", "save_pretrained")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights(tmp_path: Path, damage: str) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    f = folder / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 64)
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "corrupt", "save it again")


def test_missing_shard(tmp_path: Path) -> None:
    hf = AutoModelForCausalLM.from_config(CONFIGS["gpt2"]())
    folder = tmp_path / "sharded"
    hf.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    next(folder.glob("model-00001-*.safetensors")).unlink()
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "missing")


@pytest.mark.parametrize("arch", list(SUPPORTED))
def test_shapes_do_not_match_config(tmp_path: Path, arch: str) -> None:
    folder, _ = save_folder(tmp_path, arch)
    key = "intermediate_size" if arch != "gpt2" else "n_inner"
    edit_config(folder, **{key: 40})
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "do not match config.json", "shape")


def test_missing_tensor(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder, _ = save_folder(tmp_path, "llama")
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "up_proj", "re-save")


def test_no_tokenizer(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    for f in folder.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            f.unlink()
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "no tokenizer", "tokenizer.save_pretrained")


def test_bad_trainer_state(tmp_path: Path) -> None:
    folder, _ = save_folder(tmp_path, "gpt2")
    (folder / "trainer_state.json").write_text('{"global_step": "ten"}')
    with pytest.raises(CheckpointError) as e:
        load_folder(folder)
    one_line_naming(e, "global_step")


def test_attach_tokenizer_refuses_other_added_tokens(tmp_path: Path) -> None:
    """A BOS in front is accepted (above); a tokenizer that appends EOS is not."""
    from interp.lens import attach_tokenizer

    model, _ = load_folder(save_folder(tmp_path, "gpt2")[0])
    tok = tokenizer(False)
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 2)]
    )
    with pytest.raises(ValueError, match="no token but a BOS"):
        attach_tokenizer(model, tok)


@pytest.mark.parametrize("arch", sorted(SUPPORTED))
def test_partitions_of_converted_models_cover_every_parameter_once(tmp_path, arch):
    """The parameter groups of each architecture as converted (not just as configured)."""
    from interp.core.params import coverage, partitions

    folder, _ = save_folder(tmp_path, arch)
    model, _ = load_folder(folder)
    parts = partitions(model)
    for name, groups in parts.items():
        for pname, count in coverage(model, groups).items():
            assert (count == 1).all(), (arch, name, pname, count.unique())
    kv = [g for g in parts["heads"] if "KV" in g]
    assert len(kv) == (4 if arch == "llama" else 0)  # 2 layers x 2 shared key/value heads

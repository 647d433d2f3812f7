"""Bring your own policies: Hugging Face folders and a TRL-format preference file, from
folder to report, through the same commands as the suite's own runs.

Tiny random models of each supported architecture are saved offline (`save_folder`); A
is the reference with large noise added, B with small noise. Known answers: swapping every
parameter of A for B's gives B's numbers; the swapped-nothing rows are A's; what needs a
judge or an enumerable vocabulary is listed as not computable, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

from interp import load
from interp.attention import main as attention_main
from interp.geometry import main as geometry_main
from interp.patching import main as patching_main
from interp.surgery import main as surgery_main
from tests.test_hf_folder import save_folder

ROWS = [
    ("1 2 +", "3 4", "a b"),
    ("5 6 +", "7", "c c c"),
    ("8 +", "9 0", "b"),
    ("1 +", "2", "a"),
    ("3 4 +", "5 6", "7 8"),
    ("2 +", "3", "c"),
]


def write_prefs(path: Path, rows=ROWS) -> Path:
    with open(path, "w") as f:
        for p, c, r in rows:
            f.write(json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n")
    return path


def _noisy(folder: Path, scale: float, seed: int) -> None:
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale * p.abs().mean())
    model.save_pretrained(folder, safe_serialization=True)


def policies(tmp: Path, arch: str) -> dict[str, str]:
    """ref, A (far from ref) and B (near it) of one architecture, and a preference file."""
    out = {}
    for name, scale in (("ref", 0.0), ("a", 1.0), ("b", 0.05)):
        folder, _ = save_folder(tmp / name, arch)
        if scale:
            _noisy(folder, scale, seed=len(name) + int(scale * 10))
        out[name] = str(folder)
    out["data"] = str(write_prefs(tmp / "prefs.jsonl"))
    return out


def args(p: dict[str, str], tmp: Path, *extra: str) -> list[str]:
    return [
        *("--a", p["a"], "--b", p["b"], "--ref", p["ref"], "--data", p["data"]),
        *("--checkpoints", str(tmp / "ck"), "--reports", str(tmp / "reports")),
        *extra,
    ]


FAST = ("--exact-threshold", "0.01")  # a small response tree: fast, still exact when B = A


def twin(tmp: Path, kind: str) -> dict:
    """The data of the report of `kind` written last."""
    path = max((tmp / "reports" / kind).glob("*.json"), key=lambda f: f.stat().st_mtime_ns)
    return json.loads(path.read_text())["data"]


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama"])
def test_surgery_on_folders_swap_everything_gives_b(tmp_path, arch, capsys):
    p = policies(tmp_path, arch)
    argv = args(
        p, tmp_path, "--groups", "model", "attention", "--beta", "0.1", "--no-progress", *FAST
    )
    assert surgery_main([*argv, "--mc-samples", "4", "--alphas", "3"]) == 0
    out = capsys.readouterr().out
    assert (
        "Not computable here: ood_rate, error, ood_mass, gold_reward "
        "(the task prefs.jsonl has no judge" in out
    )
    data = twin(tmp_path, "surgery")
    assert set(data["not_computable"]) == {"ood_rate", "error", "ood_mass", "gold_reward"}
    traj = data["trajectory"]
    everything = traj["A[model←B]"]
    for m in ("kl_greedy", "kl_exact", "acc", "margin"):
        assert traj["A"][m][0] is not None and traj["B"][m][0] is not None
        assert everything[m][0] == pytest.approx(traj["B"][m][0], abs=1e-5), m
    assert traj["A"]["ood_rate"] == [None] and data["beta"] == 0.1
    assert data["weights"]["A_delta"][0] > data["weights"]["B_delta"][0] > 0  # A moved further
    assert data["claims"] == []  # the case study's claims need the OOD rate
    # the reference against itself: KL 0
    assert surgery_main([*args({**p, "b": "ref"}, tmp_path), "--no-progress", *FAST]) == 0
    assert twin(tmp_path, "surgery")["trajectory"]["B"]["kl_exact"] == [pytest.approx(0, abs=1e-7)]


def test_every_analysis_on_folders(tmp_path, capsys):
    p = policies(tmp_path, "llama")  # grouped-query attention
    assert attention_main([*args(p, tmp_path), "--no-progress", *FAST]) == 0
    assert patching_main([*args(p, tmp_path), "--max-prompts", "4"]) == 0
    assert geometry_main([*args(p, tmp_path), "--no-progress", *FAST]) == 0
    att, pat, geo = (twin(tmp_path, k) for k in ("attention", "patching", "geometry"))
    assert att["a"] == p["a"] and att["n_prompts"] >= 1
    assert pat["cross"] is not None  # A's and B's greedy answers differ somewhere
    assert len(pat["cross"]["sites"]) > 0 and pat["within"] is None
    assert set(geo["not_computable"]) >= {"ood_rate", "ood_mass"}
    assert len(geo["tokens"]) == len(geo["unembedding"]["ref"]["norm"])
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "attention" in index and "geometry" in index


def test_a_large_vocabulary_is_not_enumerated(tmp_path, capsys):
    """A BPE-sized vocabulary (here 90 tokens, above MAX_ENUMERABLE_VOCAB): kl_exact is
    reported as not computable, with why, and every other number is there."""
    words = ["<pad>", "</s>", *(f"w{i}" for i in range(88))]
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(words)}, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>")
    folders = {}
    for name, scale in (("ref", 0.0), ("a", 1.0), ("b", 0.05)):
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=90, n_positions=16, n_embd=16, n_layer=1, n_head=2)
        model = AutoModelForCausalLM.from_config(cfg)
        model.save_pretrained(tmp_path / name, safe_serialization=True)
        tok.save_pretrained(tmp_path / name)
        if scale:
            _noisy(tmp_path / name, scale, seed=3)
        folders[name] = str(tmp_path / name)
    rows = [("w1 w2", "w3", "w4 w5"), ("w6", "w7 w8", "w9"), ("w10 w11", "w12", "w13")]
    folders["data"] = str(write_prefs(tmp_path / "big.jsonl", rows))
    assert surgery_main([*args(folders, tmp_path), "--no-progress", "--mc-samples", "4"]) == 0
    data = twin(tmp_path, "surgery")
    assert "too large to enumerate" in data["not_computable"]["kl_exact"]
    assert "margin" in data["not_computable"]  # no --beta: Margin needs β; Acc does not
    a = data["trajectory"]["A"]
    assert a["kl_exact"] == [None] and a["margin"] == [None]
    assert a["kl_greedy"][0] is not None and a["acc"][0] is not None
    assert data["kl_mc"]["A"]["mean"] is not None
    assert geometry_main([*args(folders, tmp_path), "--no-progress"]) == 0
    geo = twin(tmp_path, "geometry")
    assert geo["mass"] == {} and "kl_exact" in geo["not_computable"]
    assert set(geo["tokens"]) <= {f"w{i}" for i in range(14)} | {"</s>"}  # response tokens only


def test_float64_agrees_with_float32(tmp_path):
    p = policies(tmp_path, "gpt2")
    base = args(p, tmp_path, "--no-progress", "--mc-samples", "0", "--alphas", "2", *FAST)
    assert surgery_main(base) == 0
    f32 = twin(tmp_path, "surgery")["trajectory"]
    assert surgery_main([*base, "--dtype", "float64"]) == 0
    f64 = twin(tmp_path, "surgery")["trajectory"]
    for m in ("kl_greedy", "kl_exact", "acc"):
        assert f64["A"][m][0] == pytest.approx(f32["A"][m][0], rel=1e-4, abs=1e-6)


def test_load_a_folder_in_ipython(tmp_path):
    folder, hf = save_folder(tmp_path, "gpt2", step=7)
    model = load(str(folder))
    assert model.cfg.model_name == f"{folder}@step7"
    toks = model.to_tokens("1 2 + 3")
    assert torch.allclose(model(toks), hf(toks).logits, atol=1e-4)


@pytest.mark.parametrize(
    "change,words",
    [
        ({"ref": None}, ["is a folder: name its reference with --ref"]),
        ({"data": "missing.jsonl"}, ["missing.jsonl"]),
        ({"data": None}, ["tokenizer is not the number line's", "--data FILE"]),
        ({"b": "other"}, ["different architectures"]),
        ({"device": "nonsense"}, ["--device 'nonsense'"]),
        ({"device": "cuda:99"}, ["--device 'cuda:99' is not usable here"]),
        ({"b": "other-tokenizer"}, ["different tokenizers"]),
    ],
    ids=[
        "no-ref",
        "no-data-file",
        "no-data-other-tokenizer",
        "other-architecture",
        "device",
        "no-such-gpu",
        "other-tokenizer",
    ],
)
def test_bad_requests_are_one_line(tmp_path, capsys, change, words):
    p = policies(tmp_path, "gpt2")
    if change.get("b") == "other":
        p["b"] = str(save_folder(tmp_path / "other", "llama")[0])
    if change.get("b") == "other-tokenizer":  # same sizes, a tokenizer of other words
        folder, _ = save_folder(tmp_path / "other", "gpt2")
        core = Tokenizer(models.WordLevel({f"t{i}": i for i in range(19)}, unk_token=None))
        core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=core, eos_token="t2").save_pretrained(folder)
        p["b"] = str(folder)
    if change.get("data") == "missing.jsonl":
        p["data"] = str(tmp_path / "missing.jsonl")
    argv = args(p, tmp_path, "--no-progress")
    for flag in ("ref", "data"):
        if flag in change and change[flag] is None:
            i = argv.index(f"--{flag}")
            del argv[i : i + 2]
    if "device" in change:
        argv += ["--device", change["device"]]
    capsys.readouterr()  # what building the folders printed
    assert surgery_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not (tmp_path / "reports" / "surgery").exists()


def test_each_folder_is_converted_once_per_comparison(tmp_path, monkeypatch):
    from interp.analysis.interventions import check_pair
    from interp.runs import hf_folder, sources

    p = policies(tmp_path, "gpt2")
    calls = []
    real = hf_folder.load_folder
    monkeypatch.setattr(hf_folder, "load_folder", lambda *a: calls.append(a[0]) or real(*a))
    opts = sources.SourceOptions(ref=p["ref"], data=p["data"])
    pair = sources.resolve(p["a"], p["b"], tmp_path, opts)  # reads A's tokenizer for the data
    check_pair(pair)
    pair.a.checkpoint().model, pair.b.checkpoint(-1).model  # noqa: B018 - asked for again
    assert sorted(map(str, calls)) == sorted([p["a"], p["b"], p["ref"]])

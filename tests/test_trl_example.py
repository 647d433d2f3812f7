"""examples/trl_numberline.py: TRL's SFTTrainer then DPOTrainer save three Hugging Face
folders (ref, beta0.01, beta1.0) that load offline.

The fast test runs the example on the `tiny` preset for one SFT epoch and a tenth of a DPO
epoch (a few seconds) and skips the reports; the slow one runs it in full (the case
study's preset and hyper-parameters) and writes the suite's four reports on the folders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.core.numberline import EOS, PAD, encode

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trl_numberline.py"
FOLDERS = ("ref", "beta0.01", "beta1.0")


def run_example(argv: list[str]) -> dict[str, dict[str, float]]:
    spec = importlib.util.spec_from_file_location("trl_numberline", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def check_folders(out: Path) -> None:
    for name in FOLDERS:
        folder = out / name
        for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
            assert (folder / f).is_file(), folder / f
        assert not (folder / "training_args.bin").exists()  # no pickles in a policy folder
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
        cfg = model.config
        sizes = (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_positions)
        assert sizes == (1, 128, 4, 128, 10)
        assert (cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
            13, None, EOS, PAD
        )  # fmt: skip
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        assert tok("305=303.").input_ids == encode("305=303.")


def test_example_quick(tmp_path, capsys):
    metrics = run_example(
        ["--out", str(tmp_path), "--preset", "tiny", "--sft-epochs", "1", "--dpo-epochs", "0.1"]
        + ["--no-report"]
    )
    check_folders(tmp_path)
    assert set(metrics) == {"beta0.01", "beta1.0"}
    assert f"python -m interp.surgery --a {tmp_path}/beta0.01" in capsys.readouterr().out


@pytest.mark.slow
def test_example_full(tmp_path):
    reports = tmp_path / "reports"
    metrics = run_example(["--out", str(tmp_path), "--reports", str(reports)])
    check_folders(tmp_path)
    for name in ("beta0.01", "beta1.0"):  # DPO learnt the preferences, at both β
        assert metrics[name]["rewards/accuracies"] > 0.5, metrics
        assert metrics[name]["rewards/margins"] > 0, metrics
    for kind in ("surgery", "attention", "patching", "geometry"):  # the suite's reports
        (twin,) = (reports / kind).glob("*.json")
        data = json.loads(twin.read_text())["data"]
        assert data["not_computable"] == {}  # the number line's judge: everything computable
    surgery = json.loads(next((reports / "surgery").glob("*.json")).read_text())["data"]
    assert surgery["beta"] == 0.01 and len(surgery["claims"]) > 0

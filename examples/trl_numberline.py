"""Train the number-line policies with TRL, then analyse them with the suite.

What it does, step by step:
1. Data: the suite's preset (default: the case study's `sweep`) through
   `make_dataset(preset, seed)`; its train split as TRL's standard formats. SFT rows are
   prompt/completion (prompt, preferred response); DPO rows are prompt/chosen/rejected.
   Prompts are "305="; responses are the digits alone ("303"): TRL appends the
   tokenizer's EOS, which is the task's "." token, so the trained sequence is "305=303.".
2. Tokenizer: the task's own character tokenizer (`task.hf_tokenizer()`), 13 tokens, EOS
   "." and pad "<pad>", no BOS. `check_tokens` runs one row through each trainer's own
   preprocessing and asserts the prompt and response ids equal `task.prompt_ids(s)` and
   `task.response_ids(y)` (so no BOS is added and EOS is the task's).
3. Model: the case study's architecture in GPT-2's layout (`gpt2_config`): 1 layer,
   d_model 128, 4 heads, MLP width 128, GeLU, LayerNorm, learned positions, a context of
   10; untied unembedding, as in the suite's models (GPT-2's LM head has no bias, so the
   converted b_U is zero); dropout off, since the suite trains without it.
4. SFT with `trl.SFTTrainer` from a seeded random initialisation → `<out>/ref`.
5. DPO with `trl.DPOTrainer` from `ref` at β = 0.01 and β = 1.0 (sigmoid loss), the
   reference being `ref` itself, frozen → `<out>/beta0.01`, `<out>/beta1.0`.
   Each folder holds `model.safetensors`, `config.json` and the tokenizer files (the
   trainers' own scratch output goes to `<out>/.trainer/`).
6. Analyse the folders with the suite, exactly as a user would from the shell: the
   surgery, attention, patching and geometry reports of beta0.01 (A) against beta1.0 (B)
   with `--ref <out>/ref` and `--beta 0.01`; the folders' tokenizer is the number line's,
   so the number-line task (its `sweep` split, seed `--seed`) and its judge are used
   (`--no-report` skips this step).

Hyper-parameters are the preset's (`interp.runs.config.STAGES`): optimizer, learning
rate, batch size, epochs; a constant learning rate with no warm-up and no gradient
clipping unless the preset clips, as the suite trains. What TRL does differently: its SFT
loss is the mean over all completion tokens of the batch (the suite's is the per-sequence
sum averaged over the batch: the same minimiser, a gradient ~4x smaller, which Adam
mostly normalises away); the order of examples is Hugging Face's seeded shuffle, not
`interp.runs.trainer.epoch_order`; the initialisation is GPT-2's (normal, std 0.02), not
TransformerLens's; Hugging Face's weight decay (grokking preset only) skips biases and
LayerNorm weights, the suite's does not. So the policies are not bit-identical to the
suite's runs, only trained the same way.

    python examples/trl_numberline.py --out runs-trl/        # ~30 s on two CPU cores
    python examples/trl_numberline.py --preset tiny --sft-epochs 1 --dpo-epochs 0.1 --no-report
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, set_seed
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from interp.core.numberline import get_task, make_dataset
from interp.runs.config import STAGES, Hyper
from interp.runs.names import DEFAULT_PRESET

BETAS = (0.01, 1.0)
# Hugging Face's optimizer names; adamw_torch at weight decay 0 is Adam
OPTIM = {"adam": "adamw_torch", "adamw": "adamw_torch", "rmsprop": "rmsprop"}
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def gpt2_config(tokenizer, n_layer=1, n_embd=128, n_head=4, n_inner=128, n_positions=10):
    """The case study's model in GPT-2's layout; special-token ids from the tokenizer."""
    return GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, n_inner=n_inner, activation_function="gelu", tie_word_embeddings=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip


def sft_rows(split) -> Dataset:
    """(prompt, preferred) of every training pair, the response without its EOS."""
    s, w = split.seq_prompt[split.chosen].tolist(), split.seq_response[split.chosen].tolist()
    return Dataset.from_dict({"prompt": [f"{a}=" for a in s], "completion": [str(y) for y in w]})


def dpo_rows(split) -> Dataset:
    """(prompt, chosen, rejected) of every training pair, responses without their EOS."""
    s = split.seq_prompt[split.chosen].tolist()
    w, l = split.seq_response[split.chosen].tolist(), split.seq_response[split.rejected].tolist()
    return Dataset.from_dict(
        {
            "prompt": [f"{a}=" for a in s],
            "chosen": [str(y) for y in w],
            "rejected": [str(y) for y in l],
        }
    )


def common_args(h: Hyper, epochs: float, out: Path, seed: int, device: str) -> dict:
    return dict(
        output_dir=str(out.parent / ".trainer" / out.name), num_train_epochs=epochs,
        learning_rate=h.lr, per_device_train_batch_size=h.batch_size, optim=OPTIM[h.optimizer],
        weight_decay=h.weight_decay, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=h.grad_clip or 0.0, seed=seed, data_seed=seed, bf16=False, fp16=False,
        use_cpu=device == "cpu", report_to="none", push_to_hub=False, save_strategy="no",
        logging_strategy="epoch", disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip


def check_tokens(task, row: dict, prompt: str, responses: list[str]) -> None:
    """The trainer's tokens of one row are the suite's: no BOS, the task's EOS appended."""
    s = int(prompt.rstrip("="))
    if "prompt_ids" in row:  # DPOTrainer: prompt_ids, chosen_ids, rejected_ids
        assert row["prompt_ids"] == task.prompt_ids(s), row
        for key, y in zip(("chosen_ids", "rejected_ids"), responses):
            assert row[key] == task.response_ids(int(y)), (key, row)
    else:  # SFTTrainer: input_ids, and labels that are -100 on the prompt (no loss there)
        p, r = task.prompt_ids(s), task.response_ids(int(responses[0]))
        assert row["input_ids"] == p + r, row
        assert row["labels"] == [-100] * len(p) + r, row


def save(trainer, tokenizer, folder: Path) -> None:
    trainer.save_model(str(folder))  # model.safetensors + config.json
    tokenizer.save_pretrained(str(folder))
    trainer.state.save_to_json(str(folder / "trainer_state.json"))  # its global_step: the step
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; nothing needs it


def last_epoch_metrics(trainer) -> dict[str, float]:
    logs = [e for e in trainer.state.log_history if METRICS[0] in e]
    return {k: logs[-1][k] for k in METRICS} if logs else {}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs-trl"), help="where ref/, beta*/ go")
    ap.add_argument("--seed", type=int, default=0, help="data split, initialisation and shuffling")
    ap.add_argument(
        "--preset", default=DEFAULT_PRESET, help="the task preset (sweep, grokking, tiny)"
    )
    ap.add_argument("--sft-epochs", type=float, help="override the preset's SFT epochs")
    ap.add_argument(
        "--dpo-epochs", type=float, help="override the preset's DPO epochs (fractions ok)"
    )
    ap.add_argument("--device", default="cpu", help="cpu, or anything else for accelerate's choice")
    ap.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the suite's four reports on the trained folders",
    )
    ap.add_argument("--reports", type=Path, help="report folder (default: the suite's reports/)")
    args = ap.parse_args(argv)
    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    task, split = get_task(args.preset), make_dataset(args.preset, args.seed).train
    tokenizer = copy.deepcopy(task.hf_tokenizer())  # the suite's is cached: TRL must not edit it
    assert tokenizer.bos_token is None and tokenizer.eos_token == "." and len(tokenizer) == 13
    sft_h, dpo_h = STAGES[args.preset]["sft"], STAGES[args.preset]["pref"]
    sft_epochs = args.sft_epochs if args.sft_epochs is not None else sft_h.epochs
    dpo_epochs = args.dpo_epochs if args.dpo_epochs is not None else dpo_h.epochs

    # SFT: a seeded random GPT-2-layout model → ref
    set_seed(args.seed)
    model = GPT2LMHeadModel(gpt2_config(tokenizer))
    sft_data = sft_rows(split)
    cfg = SFTConfig(**common_args(sft_h, sft_epochs, args.out / "ref", args.seed, args.device))
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=sft_data, processing_class=tokenizer)
    check_tokens(task, trainer.train_dataset[0], sft_data[0]["prompt"], [sft_data[0]["completion"]])
    trainer.train()
    save(trainer, tokenizer, args.out / "ref")
    print(f"ref: SFT {sft_epochs} epochs, loss {trainer.state.log_history[-1]['train_loss']:.4f}")

    # DPO from ref at each β, with ref (frozen) as the reference
    dpo_data, metrics = dpo_rows(split), {}
    for beta in BETAS:
        name = f"beta{beta}"
        policy = GPT2LMHeadModel.from_pretrained(args.out / "ref", local_files_only=True)
        ref = GPT2LMHeadModel.from_pretrained(args.out / "ref", local_files_only=True)
        cfg = DPOConfig(
            **common_args(dpo_h, dpo_epochs, args.out / name, args.seed, args.device),
            beta=beta, loss_type=["sigmoid"],
        )  # fmt: skip
        trainer = DPOTrainer(
            model=policy,
            ref_model=ref,
            args=cfg,
            train_dataset=dpo_data,
            processing_class=tokenizer,
        )
        r = dpo_data[0]
        check_tokens(task, trainer.train_dataset[0], r["prompt"], [r["chosen"], r["rejected"]])
        trainer.train()
        save(trainer, tokenizer, args.out / name)
        metrics[name] = last_epoch_metrics(trainer)
        print(f"{name}: last epoch " + ", ".join(f"{k} {v:+.4f}" for k, v in metrics[name].items()))

    print(f"trained in {time.perf_counter() - t0:.0f} s")
    o = args.out
    pair = ["--a", f"{o}/beta0.01", "--b", f"{o}/beta1.0", "--ref", f"{o}/ref"]
    pair += ["--beta", "0.01", "--preset", args.preset, "--split-seed", str(args.seed)]
    pair += [] if args.reports is None else ["--reports", str(args.reports)]
    for cmd in ("surgery", "attention", "patching", "geometry"):
        print(f"$ python -m interp.{cmd} " + " ".join(pair))
        if args.report and importlib.import_module(f"interp.{cmd}").main(pair) != 0:
            raise SystemExit(f"interp.{cmd} failed")
    return metrics


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    main()

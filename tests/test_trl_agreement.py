"""The suite's preference losses agree with TRL 1.16's on the same log-probabilities.

TRL's losses are computed by TRL's own code: the trainers' loss methods called unbound,
with a `SimpleNamespace` standing in for the trainer (only the attributes the method
reads), and, where the loss lives inside `_compute_loss`, a stand-in model whose
"fused LM head" output returns prescribed per-token log-probabilities whose row sums are
the random sequence log-probabilities (TRL sums them over the sequence, as the suite does).

Compared, per example unless said otherwise (TRL → suite):
- DPO sigmoid: `trl.trainer.dpo_trainer.DPOTrainer._compute_loss`, loss_type ["sigmoid"]
  → `dpo_loss`; and its logged rewards/chosen, rejected, margins, accuracies →
  `reward_stats`.
- IPO: the same, loss_type ["ipo"] → `ipo_loss` on per-token-averaged log-probabilities
  (see `test_ipo`).
- DPO+NLL (RPO): the same, loss_type ["sigmoid", "sft"], weights [1, NLL_WEIGHT] →
  `dponll_loss` (one pair per call: TRL's NLL term pools the tokens of the batch).
- SimPO: `trl.experimental.cpo.CPOTrainer.cpo_loss`, loss_type "simpo", simpo_gamma =
  SIMPO_GAMMA_RATIO·β, on length-averaged log-probabilities → `simpo_loss`.
- ORPO: `trl.experimental.orpo.ORPOTrainer.odds_ratio_loss` → the odds-ratio term of
  `orpo_loss` (TRL returns +β·log σ(log odds ratio), a quantity to maximise; its loss is
  NLL − mean of it).
- KTO: `trl.trainer.kto_trainer.KTOTrainer._compute_loss`, loss_type "kto" with the KL
  term (z₀ from mismatched pairs, clamped at 0) → `kto_loss`, as a batch mean.

Not compared: ORPO's NLL term (TRL computes it inside `concatenated_forward` from the
logits, as a cross-entropy pooled over the batch's chosen tokens; it is the same
−log π_w/|y_w| for a batch of one). The last test checks the other half of the
agreement: the suite's sequence log-probabilities of a GPT-2-layout model equal TRL's
own (`DPOTrainer.compute_ref_log_probs`, the code `_compute_loss` runs on the policy;
TRL 1.16's DPOTrainer has no `concatenated_forward`).
"""

from __future__ import annotations

import copy
import importlib.util
import types
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2LMHeadModel, set_seed
from trl import DPOConfig, DPOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer
from trl.trainer.kto_trainer import KTOTrainer

from interp.core.data import encode_pairs
from interp.core.losses import (
    NLL_WEIGHT,
    SIMPO_GAMMA_RATIO,
    PairLogps,
    dpo_loss,
    dponll_loss,
    ipo_loss,
    kto_loss,
    orpo_loss,
    reward_stats,
    simpo_loss,
)
from interp.core.numberline import get_task, make_dataset
from interp.core.scoring import model_logprobs
from interp.runs.hf_folder import load_folder

BETAS = (0.01, 0.1, 1.0)
B, PROMPT = 12, 2  # pairs per batch; prompt length of the stand-in sequences
TOL = 1e-6
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "trl_numberline.py"


def random_pairs(g: torch.Generator, kl: float = 0.0) -> PairLogps:
    """Log-probabilities of B pairs in float64, responses of 1 to 5 tokens (the number
    line's are 2 to 4), and 2B mismatched log-ratios around `kl` for KTO."""
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, generator=g, dtype=torch.float64)  # noqa: E731
    lens = lambda: torch.randint(1, 6, (B,), generator=g).double()  # noqa: E731
    kl_ratio = kl + torch.randn(2 * B, generator=g, dtype=torch.float64)
    return PairLogps(
        u(-12, -0.05), u(-12, -0.05), u(-12, -0.05), u(-12, -0.05), lens(), lens(), kl_ratio
    )


def per_token(seq_logps: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(completion_mask [N, pos], log_probs [N, pos-1]): a prompt of PROMPT tokens and a
    response of lens[i] tokens; the response's first token carries the whole sequence
    log-probability and the others 0, so TRL's row sum is exact."""
    width = PROMPT + int(lens.max())
    mask = torch.zeros(len(lens), width, dtype=torch.long)
    for i, n in enumerate(lens.long().tolist()):
        mask[i, PROMPT : PROMPT + n] = 1
    logps = torch.zeros(len(lens), width - 1, dtype=seq_logps.dtype)
    logps[:, PROMPT - 1] = seq_logps  # log_probs[:, t] scores token t + 1
    return mask, logps


class Prescribed:
    """A stand-in for a model patched with TRL's fused LM head: input_ids[:, 0] is a row
    of `logps`, and the output carries those per-token log-probabilities."""

    training = True

    def __init__(self, logps: torch.Tensor):
        self.logps = logps

    def __call__(self, input_ids, **kwargs):
        assert kwargs.get("fused_lm_head") is True
        lp = self.logps[input_ids[:, 0], : input_ids.shape[1] - 1]
        zeros = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def inputs_for(masks: list[torch.Tensor], offset: int = 0) -> dict[str, torch.Tensor]:
    mask = torch.cat(masks)
    ids = torch.zeros_like(mask)
    ids[:, 0] = torch.arange(len(mask)) + offset
    return {"input_ids": ids, "attention_mask": torch.ones_like(mask), "completion_mask": mask}


def trainer_stub(beta: float, **attrs) -> SimpleNamespace:
    identity = lambda x: x  # noqa: E731  (one process: gathering is the identity)
    accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather=identity, gather_for_metrics=identity
    )
    return SimpleNamespace(
        beta=beta, model=SimpleNamespace(training=True), accelerator=accelerator,
        aux_loss_enabled=False, precompute_ref_logps=True, _total_train_tokens=0, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, **attrs,
    )  # fmt: skip


def trl_dpo(lp: PairLogps, beta: float, loss_types: list[str], weights: list[float]):
    """TRL's DPOTrainer loss of the batch, and the stub (for its logged metrics)."""
    stub = trainer_stub(
        beta, ld_alpha=None, f_divergence_type="reverse_kl", loss_types=loss_types,
        loss_weights=weights, use_weighting=False, label_smoothing=0.0,
    )  # fmt: skip
    mw, lw = per_token(lp.policy_chosen, lp.len_chosen)
    ml, ll = per_token(lp.policy_rejected, lp.len_rejected)
    width = max(mw.shape[1], ml.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    inputs = inputs_for([pad(mw), pad(ml)])
    inputs |= {"ref_chosen_logps": lp.ref_chosen, "ref_rejected_logps": lp.ref_rejected}
    model = Prescribed(torch.cat([pad(lw), pad(ll)]))
    return DPOTrainer._compute_loss(stub, model, inputs, False), stub


def rows(lp: PairLogps):
    for i in range(B):
        sl = slice(i, i + 1)
        yield PairLogps(
            lp.policy_chosen[sl], lp.policy_rejected[sl], lp.ref_chosen[sl], lp.ref_rejected[sl],
            lp.len_chosen[sl], lp.len_rejected[sl],
        )  # fmt: skip


@pytest.mark.parametrize("beta", BETAS)
def test_dpo_sigmoid(beta):
    lp = random_pairs(torch.Generator().manual_seed(1))
    for one in rows(lp):
        trl, _ = trl_dpo(one, beta, ["sigmoid"], [1.0])
        assert abs(float(trl) - float(dpo_loss(one, beta))) < TOL
    trl, stub = trl_dpo(lp, beta, ["sigmoid"], [1.0])
    assert abs(float(trl) - float(dpo_loss(lp, beta).mean())) < TOL
    ours = reward_stats(lp, beta)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert abs(stub._metrics["train"][key][-1] - float(ours[key])) < TOL, key


@pytest.mark.parametrize("beta", BETAS)
def test_ipo(beta):
    """TRL divides each summed log-ratio by its response length before IPO's square; the
    suite keeps the paper's summed form. So the suite's formula is given the quantities
    TRL uses: log-probabilities averaged per token (policy and reference alike, so each
    log-ratio is the per-token average) — then the two are the same function."""
    lp = random_pairs(torch.Generator().manual_seed(2))
    for one in rows(lp):
        trl, _ = trl_dpo(one, beta, ["ipo"], [1.0])
        averaged = PairLogps(
            one.policy_chosen / one.len_chosen, one.policy_rejected / one.len_rejected,
            one.ref_chosen / one.len_chosen, one.ref_rejected / one.len_rejected,
            torch.ones(1), torch.ones(1),
        )  # fmt: skip
        assert abs(float(trl) - float(ipo_loss(averaged, beta))) < TOL * max(1.0, float(trl))
        # and on summed log-ratios they differ unless every response has one token
        if one.len_chosen.item() > 1 and one.len_rejected.item() > 1:
            assert abs(float(trl) - float(ipo_loss(one, beta))) > TOL


@pytest.mark.parametrize("beta", BETAS)
def test_dponll_is_trl_sigmoid_plus_sft(beta):
    lp = random_pairs(torch.Generator().manual_seed(3))
    for one in rows(lp):
        trl, _ = trl_dpo(one, beta, ["sigmoid", "sft"], [1.0, NLL_WEIGHT])
        assert abs(float(trl) - float(dponll_loss(one, beta))) < TOL


@pytest.mark.parametrize("beta", BETAS)
def test_simpo(beta):
    lp = random_pairs(torch.Generator().manual_seed(4))
    stub = trainer_stub(beta, alpha=0.0, loss_type="simpo", label_smoothing=0.0)
    stub.simpo_gamma = SIMPO_GAMMA_RATIO * beta  # TRL's margin γ; the suite's γ/β ratio
    # CPOTrainer computes SimPO's log-probabilities as per-token averages
    trl, _, _ = CPOTrainer.cpo_loss(
        stub, lp.policy_chosen / lp.len_chosen, lp.policy_rejected / lp.len_rejected
    )
    assert (trl - simpo_loss(lp, beta)).abs().max() < TOL


@pytest.mark.parametrize("beta", BETAS)
def test_orpo_odds_ratio_term(beta):
    lp = random_pairs(torch.Generator().manual_seed(5))
    stub = trainer_stub(beta)
    mean_w, mean_l = lp.policy_chosen / lp.len_chosen, lp.policy_rejected / lp.len_rejected
    # TRL returns +β·log σ(log odds ratio) (maximised: its loss is NLL − mean of this);
    # it works in float32, hence the conversion back
    trl, *_ = ORPOTrainer.odds_ratio_loss(stub, mean_w, mean_l)
    ours = orpo_loss(lp, beta) - (-mean_w)  # the suite's loss less its NLL term
    assert (-trl.double() - ours).abs().max() < TOL


@pytest.mark.parametrize("kl", [2.0, -2.0])  # z0 > 0, and z0 clamped at 0
@pytest.mark.parametrize("beta", BETAS)
def test_kto(beta, kl):
    """TRL's KTO is unpaired: a batch of B desirable then B undesirable examples, each with
    a mismatched (prompt, response) row whose log-ratios average to z₀. The suite's z₀ is
    the mean of `kl_logratio`, so both get the same 2B mismatched log-ratios."""
    lp = random_pairs(torch.Generator().manual_seed(6), kl=kl)
    stub = trainer_stub(
        beta, calculate_KL=True, loss_type="kto", desirable_weight=1.0, undesirable_weight=1.0
    )
    stub._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stub)
    mw, lw = per_token(
        torch.cat([lp.policy_chosen, lp.policy_rejected]),
        torch.cat([lp.len_chosen, lp.len_rejected]),
    )
    kl_policy = (
        torch.randn(2 * B, generator=torch.Generator().manual_seed(7), dtype=torch.float64) - 5
    )
    mk, lk = per_token(kl_policy, torch.full((2 * B,), 3.0))
    batch = inputs_for([mw])
    batch |= {f"KL_{k}": v for k, v in inputs_for([mk], offset=2 * B).items()}
    batch |= {
        "label": torch.tensor([True] * B + [False] * B),
        "ref_logps": torch.cat([lp.ref_chosen, lp.ref_rejected]),
        "ref_KL_logps": kl_policy - lp.kl_logratio,
    }
    model = Prescribed(torch.cat([lw, torch.nn.functional.pad(lk, (0, lw.shape[1] - lk.shape[1]))]))
    trl = KTOTrainer._compute_loss(stub, model, batch, False)
    assert abs(float(trl) - float(kto_loss(lp, beta).mean())) < TOL
    assert abs(stub._metrics["train"]["kl"][-1] - max(float(lp.kl_logratio.mean()), 0.0)) < TOL


def load_example():
    spec = importlib.util.spec_from_file_location("trl_numberline", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sequence_logprobs_equal_trl(tmp_path):
    """TRL's summed response log-probabilities (DPOTrainer.compute_ref_log_probs, the same
    code as the policy's half of `_compute_loss`, which also logs their mean) equal the
    suite's scoring (`model_logprobs`) of the saved policy converted to a HookedTransformer
    (`load_folder`), on the suite's own tokens of the same pairs."""
    example = load_example()
    task = get_task("sweep")
    split = make_dataset("sweep", 0).train
    data = example.dpo_rows(split).select(range(0, 40, 10))  # 4 pairs, mixed lengths
    tokenizer = copy.deepcopy(task.hf_tokenizer())  # the suite caches it; TRL may edit it
    set_seed(0)
    config = example.gpt2_config(tokenizer, n_embd=32, n_head=2, n_inner=32)
    model, ref = GPT2LMHeadModel(config), GPT2LMHeadModel(config)
    args = DPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False,
        per_device_train_batch_size=4, disable_tqdm=True,
    )  # fmt: skip
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tokenizer
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trl_w, trl_l = trainer.compute_ref_log_probs(trainer.model, batch)

    prompts = [int(p.rstrip("=")) for p in data["prompt"]]
    chosen, rejected = [int(y) for y in data["chosen"]], [int(y) for y in data["rejected"]]
    # the policy as the suite sees it: saved as TRL saves it, converted to a HookedTransformer
    trainer.save_model(str(tmp_path / "policy"))
    tokenizer.save_pretrained(tmp_path / "policy")
    hooked, _ = load_folder(tmp_path / "policy")
    with torch.no_grad():
        for resp, theirs in ((chosen, trl_w), (rejected, trl_l)):
            tokens, mask = encode_pairs(task, prompts, resp)
            ours = model_logprobs(hooked, tokens, mask)
            assert (ours - theirs).abs().max() < 1e-5, (ours, theirs)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        trainer.model.eval()
        trainer._compute_loss(trainer.model, batch, False)
    logged = trainer._metrics["eval"]["logps/chosen"][-1]  # eval: the model is in eval mode
    assert abs(logged - float(trl_w.mean())) < 1e-5

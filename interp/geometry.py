"""Token-unembedding geometry, CHES and likelihood displacement; `python -m interp.geometry`.

Following Razin et al. ("Unintentional unalignment: likelihood displacement in direct
preference optimization"), a preference update moves the log-probability of other tokens
according to the geometry of the unembedding, and of whole responses according to the
geometry of the hidden states that predict them.

Conventions
- W_U is TransformerLens's raw [d_model, d_vocab] unembedding: no LayerNorm folding, no
  centering (checkpoints store raw weights for this reason); W_z = W_U[:, z]. The tokens
  studied are the response tokens: digits 0-9 and EOS.
- Single-token quantities, for a pair whose responses first differ at token k (shared
  prefix y<k, tokens y⁺_k ≠ y⁻_k): ⟨W_{y⁺_k}, W_{y⁻_k}⟩, and for every other response
  token z the predicted direction of its log-probability change ⟨W_z, W_{y⁺_k} − W_{y⁻_k}⟩,
  set against the observed change log π(z | x, y<k) − log π_ref(z | x, y<k). W is the
  reference's.
- CHES (centered hidden embedding similarity) of a pair, on the reference:
  ⟨H⁺, H⁻⟩ − ‖H⁺‖², H± = Σ_k h(x, y±<k) summed over the positions that predict the
  response's tokens (EOS included), h being the input to the unembedding
  (`unembed.hook_in`: after the final LayerNorm). The length-normalised form uses the
  means H±/|y±| instead. Higher CHES predicts more likelihood displacement: a lower
  log π(y⁺) after training.
- Likelihood displacement over training, on the training pairs (the data DPO saw): mean
  log π(y⁺), log π(y⁻), the exact OOD mass, and the probability of the single most
  probable OOD response, at every saved step — the case study's hypothesis is
  π(y_OOD) > π(y⁺) > π(y⁻).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.checkpoints import resolve_pair
from interp.cli import option, parse, run_comparison
from interp.data import EOS, VOCAB, Split, Task, make_dataset, parse_batch
from interp.lens import HookedTransformer
from interp.metrics import EXACT_THRESHOLD, ood_flags, split_logprobs
from interp.report import Folders, pair_slug
from interp.sampling import ResponseTree, enumerate_responses
from interp.stats import pearson, spearman

TOKENS = list(range(10)) + [EOS]  # the response tokens
TOKEN_NAMES = [VOCAB[t] for t in TOKENS]


def unembedding(model: HookedTransformer) -> Tensor:
    """Raw unembedding vectors of the response tokens, one row per token: [11, d_model]."""
    return model.W_U[:, TOKENS].T.detach().float()


def gram(W: Tensor) -> dict[str, Tensor]:
    n = W.norm(dim=1)
    inner = W @ W.T
    return {"norm": n, "inner": inner, "cosine": inner / (n[:, None] * n[None, :])}


# ----------------------------------------------------------------------------- CHES


@torch.inference_mode()
def sequence_hidden_sums(model: HookedTransformer, split: Split) -> tuple[Tensor, Tensor]:
    """Σ of the unembedding inputs over the positions that predict each sequence's response
    tokens, [n_seqs, d_model], and the response lengths [n_seqs]."""
    predicts = torch.zeros_like(split.response_mask)
    predicts[:, :-1] = split.response_mask[:, 1:]  # position t predicts token t + 1
    sums = []
    for toks, m in zip(split.tokens.split(2048), predicts.split(2048)):
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n == "unembed.hook_in")
        sums.append((cache["unembed.hook_in"].float() * m[..., None]).sum(1))
    return torch.cat(sums), split.response_mask.sum(1)


def ches(h_pos: Tensor, h_neg: Tensor) -> Tensor:
    """CHES per pair from the summed (or mean) hidden states of the two responses."""
    return (h_pos * h_neg).sum(-1) - (h_pos * h_pos).sum(-1)


def ches_scores(model: HookedTransformer, split: Split) -> dict[str, Tensor]:
    sums, lens = sequence_hidden_sums(model, split)
    hp, hn = sums[split.chosen], sums[split.rejected]
    lp, ln = lens[split.chosen, None].float(), lens[split.rejected, None].float()
    return {"ches": ches(hp, hn), "ches_normalised": ches(hp / lp, hn / ln)}


# ----------------------------------------------------------------------------- single tokens


def first_difference(split: Split) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For every pair: the position (in the sequence) predicting the first differing
    response token, that position's index k within the response, and the two tokens."""
    w, l = split.tokens[split.chosen], split.tokens[split.rejected]
    resp = split.response_mask[split.chosen]
    differ = (w != l) & resp
    pos = differ.float().argmax(1)  # first differing token (sequence position)
    start = resp.float().argmax(1)
    rows = torch.arange(len(w))
    return pos - 1, pos - start, w[rows, pos], l[rows, pos]


@torch.inference_mode()
def next_token_logprobs(model: HookedTransformer, split: Split, query: Tensor) -> Tensor:
    """log π(· | prefix) at each pair's query position, over the response tokens: [pairs, 11]."""
    toks = split.tokens[split.chosen]
    out = []
    for t, q in zip(toks.split(2048), query.split(2048)):
        logits = model(t)[torch.arange(len(t)), q].float().log_softmax(-1)
        out.append(logits[:, TOKENS])
    return torch.cat(out)


def single_token(
    ref: HookedTransformer, models: dict[str, HookedTransformer], split: Split
) -> dict[str, Any]:
    """Predicted vs observed changes of the other tokens' log-probabilities (see docstring)."""
    query, k, tok_w, tok_l = first_difference(split)
    W = unembedding(ref)
    idx = {t: i for i, t in enumerate(TOKENS)}
    iw = torch.tensor([idx[int(t)] for t in tok_w])
    il = torch.tensor([idx[int(t)] for t in tok_l])
    inner = (W[iw] * W[il]).sum(-1)
    predicted = W @ (W[iw] - W[il]).T  # [token, pair]
    predicted = predicted.T  # [pair, token]
    others = torch.ones_like(predicted, dtype=torch.bool)
    others[torch.arange(len(iw)), iw] = False
    others[torch.arange(len(il)), il] = False
    base = next_token_logprobs(ref, split, query)
    out: dict[str, Any] = {"inner_pos_neg": inner, "k": k, "predicted": predicted, "others": others}
    for who, m in models.items():
        obs = next_token_logprobs(m, split, query) - base
        out[who] = {
            "observed": obs,
            "spearman_others": spearman(predicted[others], obs[others]),
            "pearson_others": pearson(predicted[others], obs[others]),
            "preferred_change": obs[torch.arange(len(iw)), iw],
            "spearman_inner_vs_preferred": spearman(inner, obs[torch.arange(len(iw)), iw]),
        }
    return out


# ----------------------------------------------------------------------------- where the mass goes


def response_kind(tokens: Tensor, lengths: Tensor, prompts: Tensor, task: Task) -> list[str]:
    """A name for what each response is, relative to its prompt s."""
    ok, value = parse_batch(tokens, lengths)
    out = []
    for i in range(len(tokens)):
        s = int(prompts[i])
        if not ok[i]:
            n = int(lengths[i])
            row = tokens[i, :n].tolist()
            if row == [EOS]:
                out.append("unparseable: empty")
            elif EOS not in row:
                out.append("unparseable: no EOS within the limit")
            else:
                out.append("unparseable: a non-digit token")
            continue
        y = int(value[i])
        ys, ss = str(y), str(s)
        if abs(y - s) <= task.window:
            out.append("in the window")
        elif len(ys) < len(ss) and ss.startswith(ys):
            out.append(f"the first {len(ys)} digit{'s' if len(ys) > 1 else ''} of s")
        elif len(ys) < len(ss):
            out.append("shorter than s, other")
        elif len(ys) > len(ss):
            out.append("longer than s")
        else:
            out.append("same length, outside the window")
    return out


def mass_by_kind(tree: ResponseTree, task: Task) -> dict[str, float]:
    kinds = response_kind(tree.tokens, tree.lengths, tree.prompts[tree.leaf_prompt], task)
    names = sorted(set(kinds))
    out = {}
    for name in names:
        flag = torch.tensor([k == name for k in kinds], dtype=torch.float64)
        out[name] = float(tree.per_prompt(flag).mean())
    out["(not enumerated)"] = float(tree.residual.mean())
    return out


def top_ood(tree: ResponseTree, task: Task) -> Tensor:
    """Per prompt, the probability of its single most probable OOD response (0 if none)."""
    ood = ood_flags(tree.tokens, tree.lengths, tree.prompts[tree.leaf_prompt], task)
    p = torch.where(ood, tree.logp[:, 0].double().exp(), torch.zeros(len(ood), dtype=torch.float64))
    out = torch.zeros(len(tree.prompts), dtype=torch.float64)
    return out.scatter_reduce(0, tree.leaf_prompt, p, reduce="amax")


# ----------------------------------------------------------------------------- the analysis


@dataclass
class GeometryResult:
    a: str
    b: str
    ref: str
    tokens: list[str]
    unembedding: dict[str, dict[str, Tensor]]  # ref / A / B -> norm, inner, cosine
    unembedding_shift: dict[str, Tensor]  # A / B -> ‖W_z − W_ref,z‖ per token
    single: dict[str, Any]
    pairs: list[
        tuple[int, int, int]
    ]  # training pairs (s, y⁺, y⁻), the index of every per-pair array
    ches: dict[str, Tensor]
    preferred_change: dict[str, Tensor]  # A / B -> log π(y⁺) − log π_ref(y⁺) per training pair
    ches_spearman: dict[str, dict[str, float | None]]
    displacement: dict[str, dict[str, list[float]]]  # A / B -> metric -> per step
    mass: dict[str, dict[str, float]]  # ref / A / B -> response kind -> mean probability
    exact_threshold: float
    checkpoints: list[dict[str, Any]]
    findings: list[str] = field(default_factory=list)


def run_geometry(
    a: str,
    b: str,
    root: Path | None = None,
    exact_threshold: float = EXACT_THRESHOLD,
    progress: bool = True,
) -> GeometryResult:
    pair = resolve_pair(a, b, root)
    ref_ck = pair.ref.checkpoint()
    ref = ref_ck.model
    finals = {"A": pair.a.checkpoint(), "B": pair.b.checkpoint()}
    models = {k: c.model for k, c in finals.items()}
    data = make_dataset(pair.a.key.preset, pair.a.key.seed)
    train, task = data.train, data.task

    W = {"ref": unembedding(ref)} | {k: unembedding(m) for k, m in models.items()}
    geo = {k: gram(w) for k, w in W.items()}
    shift = {k: (W[k] - W["ref"]).norm(dim=1) for k in models}

    single = single_token(ref, models, train)
    scores = ches_scores(ref, train)
    ref_seq = split_logprobs(ref, train)
    change = {k: (split_logprobs(m, train) - ref_seq)[train.chosen] for k, m in models.items()}
    ches_rho = {k: {name: spearman(scores[name], change[k]) for name in scores} for k in models}

    used = [ref_ck]
    disp: dict[str, dict[str, list[float]]] = {}
    prompt_row = {int(s): i for i, s in enumerate(train.prompts)}
    pair_row = torch.tensor([prompt_row[int(s)] for s in train.pair_prompt])  # pair -> prompt
    for who, r in (("A", pair.a), ("B", pair.b)):
        rows: dict[str, list[float]] = {
            k: []
            for k in (
                "step",
                "logp_chosen",
                "logp_rejected",
                "ood_mass",
                "top_ood",
                "logp_top_ood",
                "share_ood_above_chosen",
            )
        }
        for c in tqdm(
            r.trajectory(),
            desc=f"displacement {who}",
            disable=None if progress else True,
            leave=False,
        ):
            m = c.model
            lp = split_logprobs(m, train)
            tree = enumerate_responses(m, train.prompts, task.max_new_tokens, exact_threshold)
            top = top_ood(tree, task)
            ood = ood_flags(tree.tokens, tree.lengths, tree.prompts[tree.leaf_prompt], task)
            # per prompt: the mean preferred-response probability of its pairs
            pw = torch.zeros(len(train.prompts), dtype=torch.float64).index_add_(
                0, pair_row, lp[train.chosen].double().exp()
            ) / torch.bincount(pair_row, minlength=len(train.prompts))
            rows["step"].append(c.step)
            rows["logp_chosen"].append(float(lp[train.chosen].mean()))
            rows["logp_rejected"].append(float(lp[train.rejected].mean()))
            rows["ood_mass"].append(float(tree.per_prompt(ood.double()).mean()))
            rows["top_ood"].append(float(top.mean()))
            # over the prompts that have an OOD response at all (a floor would swamp the mean)
            has = top > 0
            rows["logp_top_ood"].append(float(top[has].log().mean()) if bool(has.any()) else None)
            rows["share_ood_above_chosen"].append(float((top > pw).double().mean()))
            used.append(c)
        disp[who] = rows

    mass = {}
    for k, m in ({"ref": ref} | models).items():
        mass[k] = mass_by_kind(
            enumerate_responses(m, train.prompts, task.max_new_tokens, exact_threshold), task
        )
    res = GeometryResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        tokens=TOKEN_NAMES,
        unembedding=geo,
        unembedding_shift=shift,
        single=single,
        pairs=list(
            zip(
                train.pair_prompt.tolist(),
                train.seq_response[train.chosen].tolist(),
                train.seq_response[train.rejected].tolist(),
            )
        ),
        ches=scores,
        preferred_change=change,
        ches_spearman=ches_rho,
        displacement=disp,
        mass=mass,
        exact_threshold=exact_threshold,
        checkpoints=[{"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in used],
    )
    res.findings = findings(res)
    return res


def _f(x: float | None, spec: str = "+.2f") -> str:
    return "n/a" if x is None else format(x, spec)


def findings(res: GeometryResult) -> list[str]:
    out = []
    for who, name in (("A", res.a), ("B", res.b)):
        s = res.single[who]
        ch = res.preferred_change[who]
        d = res.displacement[who]
        out.append(
            f"{who} ({name}): log π(y⁺) fell on {float((ch < 0).double().mean()):.0%} of the "
            "training "
            f"pairs (mean change {float(ch.mean()):+.2f} nats). CHES on the reference ranks that "
            f"change with Spearman {_f(res.ches_spearman[who]['ches'])} (length-normalised "
            f"{_f(res.ches_spearman[who]['ches_normalised'])}; displacement theory predicts a "
            "negative "
            "value). Single-token geometry: ⟨W_z, W_y⁺ − W_y⁻⟩ ranks the observed change of the "
            "other "
            f"tokens with Spearman {_f(s['spearman_others'])}."
        )
        out.append(
            f"{who} over training: mean log π(y⁺) {d['logp_chosen'][0]:.2f} → "
            f"{d['logp_chosen'][-1]:.2f}, "
            f"log π(y⁻) {d['logp_rejected'][0]:.2f} → {d['logp_rejected'][-1]:.2f}; OOD mass "
            f"{d['ood_mass'][0]:.1%} → {d['ood_mass'][-1]:.1%}. At the end, the most probable OOD "
            "response outweighs the average preferred response on "
            f"{d['share_ood_above_chosen'][-1]:.0%} "
            "of the training prompts."
        )
    gains = {k: res.mass["A"][k] - res.mass["ref"].get(k, 0.0) for k in res.mass["A"]}
    top = sorted(gains.items(), key=lambda kv: -kv[1])[:2]
    out.append(
        "Where A's extra mass went (probability, averaged over training prompts, A − ref): "
        + "; ".join(f"{k} {v:+.1%}" for k, v in top)
        + "."
    )
    return out


def build_report(res: GeometryResult, prov: dict[str, Any]):
    from interp import plots
    from interp.report import FigureBlock, Report, Section, Table, jsonable

    toks = res.tokens
    geo_rows = []
    for who in ("ref", "A", "B"):
        g = res.unembedding[who]
        for i, t in enumerate(toks):
            shift = None if who == "ref" else float(res.unembedding_shift[who][i])
            geo_rows.append([who, t, float(g["norm"][i]), shift])
    cos_rows = [
        [who, t] + [float(x) for x in res.unembedding[who]["cosine"][i]]
        for who in ("ref", "A", "B")
        for i, t in enumerate(toks)
    ]
    geometry = Section(
        "Unembedding geometry of the response tokens",
        ["Raw W_U columns of the digits and EOS. Cosines of ref, A, B and the change A − ref."],
        [FigureBlock(plots.unembedding_panels(res))],
        [
            Table(
                "Norms and shift from the reference",
                ["model", "token", "‖W_z‖", "‖W_z − W_ref,z‖"],
                geo_rows,
            ),
            Table("Cosine similarities", ["model", "token"] + toks, cos_rows),
        ],
    )
    single_rows = [
        [
            who,
            res.single[who]["spearman_others"],
            res.single[who]["pearson_others"],
            res.single[who]["spearman_inner_vs_preferred"],
        ]
        for who in ("A", "B")
    ]
    single = Section(
        "Single-token predictions",
        [
            "For every training pair, at the first token where the two responses differ: the "
            "predicted direction ⟨W_z, W_y⁺ − W_y⁻⟩ (reference's W) for every other response "
            "token z, against the observed change of log π(z | prompt, shared prefix) from the "
            "reference. Right: ⟨W_y⁺, W_y⁻⟩ against the change of the preferred token itself."
        ],
        [FigureBlock(plots.single_token_scatter(res))],
        [
            Table(
                "Rank agreement",
                [
                    "model",
                    "Spearman (other tokens)",
                    "Pearson (other tokens)",
                    "Spearman ⟨W+,W−⟩ vs Δ log π(y⁺_k)",
                ],
                single_rows,
            )
        ],
    )
    ches_rows = [
        [who, kind, res.ches_spearman[who][kind]] for who in ("A", "B") for kind in res.ches
    ]
    n = len(res.ches["ches"])
    top = res.ches["ches"].argsort(descending=True)[:10].tolist()
    ches_section = Section(
        "CHES and the change of the preferred response",
        [
            f"CHES of each of the {n} training pairs, computed on the reference, against "
            "log π(y⁺) after training minus before."
        ],
        [FigureBlock(plots.ches_scatter(res))],
        [
            Table("Spearman correlation", ["model", "score", "Spearman"], ches_rows),
            Table(
                "The ten highest-CHES training pairs",
                [
                    "prompt",
                    "y⁺",
                    "y⁻",
                    "CHES",
                    "CHES (normalised)",
                    "Δ log π(y⁺) A",
                    "Δ log π(y⁺) B",
                ],
                [
                    [
                        *res.pairs[i],
                        float(res.ches["ches"][i]),
                        float(res.ches["ches_normalised"][i]),
                    ]
                    + [float(res.preferred_change[w][i]) for w in ("A", "B")]
                    for i in top
                ],
            ),
        ],
    )
    disp_rows = []
    for who in ("A", "B"):
        d = res.displacement[who]
        for i, s in enumerate(d["step"]):
            disp_rows.append(
                [who, s]
                + [
                    d[k][i]
                    for k in (
                        "logp_chosen",
                        "logp_rejected",
                        "ood_mass",
                        "top_ood",
                        "share_ood_above_chosen",
                    )
                ]
            )
    disp = Section(
        "Likelihood displacement over training (training pairs)",
        [
            "Mean log-probability of the preferred and dispreferred training responses, the exact "
            "OOD mass on the training prompts, and the probability of each prompt's single most "
            "probable OOD response, at every saved step."
        ],
        [FigureBlock(plots.displacement_lines(res))],
        [
            Table(
                "Per step",
                [
                    "run",
                    "step",
                    "mean log π(y⁺)",
                    "mean log π(y⁻)",
                    "OOD mass",
                    "top OOD response (mean prob.)",
                    "share: top OOD > mean π(y⁺)",
                ],
                disp_rows,
            )
        ],
    )
    kinds = sorted({k for m in res.mass.values() for k in m})
    mass = Section(
        "Which responses gained the probability",
        ["Probability by kind of response, averaged over training prompts (exact enumeration)."],
        [FigureBlock(plots.mass_bars(res.mass, kinds))],
        [
            Table(
                "Mass by kind",
                ["kind", "ref", "A", "B", "A − ref", "B − ref"],
                [
                    [
                        k,
                        res.mass["ref"].get(k, 0.0),
                        res.mass["A"].get(k, 0.0),
                        res.mass["B"].get(k, 0.0),
                        res.mass["A"].get(k, 0.0) - res.mass["ref"].get(k, 0.0),
                        res.mass["B"].get(k, 0.0) - res.mass["ref"].get(k, 0.0),
                    ]
                    for k in kinds
                ],
            )
        ],
    )
    return Report(
        kind="geometry",
        slug=pair_slug(res.a, res.b),
        title=f"Unembedding geometry and likelihood displacement: {res.a} (A), {res.b} (B)",
        summary=res.findings,
        sections=[geometry, single, ches_section, disp, mass],
        data=jsonable(res),
        provenance=prov,
    )


@dataclass
class GeometryOptions(Folders):
    a: str = option("beta0.01", help="policy A (the OOD one)")
    b: str = option("beta1.0", help="policy B (the in-distribution one)")
    exact_threshold: float = option(
        EXACT_THRESHOLD, help="exact enumeration: expand prefixes this probable"
    )
    progress: bool = option(True, help="show progress bars")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.geometry`: unembedding geometry, CHES and likelihood displacement."""
    from interp.cli import UserError

    prog = "python -m interp.geometry"
    opts = parse(
        GeometryOptions, argv, prog, "Unembedding geometry, CHES and likelihood displacement."
    )

    def validate() -> None:
        if not 0 <= opts.exact_threshold < 1:
            raise UserError("--exact-threshold must be in [0, 1)")

    def compute(root: Path) -> GeometryResult:
        return run_geometry(opts.a, opts.b, root, opts.exact_threshold, opts.progress)

    return run_comparison(
        prog, argv, opts, "geometry", compute, build_report, lambda r: r.findings, validate
    )


if __name__ == "__main__":
    sys.exit(main())

"""Attention-pattern analysis; `python -m interp.attention`.

`pattern(model, "305=303")` gives the attention of every head on one token string:
`pattern[layer, head, query, key]` is how much the query position attends to the key
position (each row sums to 1 over the causal window). Query position t predicts token
t + 1, so on "305=303" the row of `=` is where the first response digit is chosen.
Patterns come from TransformerLens's `hook_pattern` via `run_with_cache`.

For comparisons across models the input is fixed: each test prompt s followed by the
identity response, "s=s" teacher-forced (EOS dropped), so every model attends over the
same tokens and positions line up across prompts of one length. The query rows that
matter are those that predict response tokens: `=` and each response digit.

Summaries per head, over those rows and the test prompts:
- entropy of the attention distribution (nats);
- where the attention goes: each prompt digit (hundreds, tens, units), `=`, or earlier
  response tokens ("response");
- drift from another model: the total variation distance ½ Σ_k |p(k) − q(k)| between the
  two attention distributions of a row (0 = identical, 1 = disjoint), averaged.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from interp.checkpoints import Checkpoint, resolve_pair
from interp.cli import UserError, option, parse, run_comparison
from interp.data import VOCAB, encode, make_dataset, prompt_ids
from interp.lens import HookedTransformer
from interp.metrics import ood_and_error
from interp.report import Folders, pair_slug
from interp.sampling import greedy
from interp.stats import spearman

PLACES = {1: ["units"], 2: ["tens", "units"], 3: ["hundreds", "tens", "units"]}


@dataclass(frozen=True)
class Pattern:
    """Attention of every layer and head on one sequence, with its token labels."""

    text: str
    tokens: list[str]
    values: Float[Tensor, "layer head_index query_pos key_pos"]

    def __getitem__(self, idx: Any) -> Tensor:
        return self.values[idx]

    def frame(self, layer: int = 0, head: int = 0):
        """One head's pattern as a pandas DataFrame: rows = queries, columns = keys."""
        import pandas as pd

        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        return pd.DataFrame(self.values[layer, head].numpy(), index=labels, columns=labels)


def _patterns(model: HookedTransformer, tokens: Tensor) -> Float[Tensor, "batch layer head q k"]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    return torch.stack([cache["pattern", l] for l in range(model.cfg.n_layers)], dim=1).float()


@torch.inference_mode()
def pattern(
    model: HookedTransformer | str, text: str, step: int | None = None, root: Path | None = None
) -> Pattern:
    """Attention of every head of a model (or a policy name: `pattern("beta0.01", "305=303")`)
    on a string over 0-9, '=' and '.'."""
    if isinstance(model, str):
        from interp.checkpoints import load

        model = load(model, step=step, root=root)
    toks = torch.tensor([encode(text)])
    return Pattern(text, [VOCAB[i] for i in toks[0].tolist()], _patterns(model, toks)[0])


def identity_inputs(prompts: Tensor) -> tuple[Tensor, list[str]]:
    """ "s=s" (EOS dropped) for prompts of one digit count, and generic position labels."""
    width = {len(str(int(s))) for s in prompts}
    if len(width) != 1:
        raise ValueError("identity_inputs needs prompts with one number of digits")
    n = width.pop()
    toks = torch.tensor([prompt_ids(int(s)) + [int(c) for c in str(int(s))] for s in prompts])
    labels = PLACES.get(n, [f"s{i}" for i in range(n)]) + ["="] + [f"y{i}" for i in range(n)]
    return toks, labels


def modal_prompts(prompts: Tensor) -> Tensor:
    """The prompts with the most common number of digits (all of them for `sweep`)."""
    digits = Counter(len(str(int(s))) for s in prompts)
    n = digits.most_common(1)[0][0]
    return prompts[torch.tensor([len(str(int(s))) == n for s in prompts])]


def response_rows(labels: list[str]) -> list[int]:
    """Query positions that predict response tokens: '=' and each response digit."""
    return list(range(labels.index("="), len(labels)))


def parts_of(labels: list[str]) -> tuple[list[str], list[list[int]]]:
    """Key groups: each prompt digit, '=', and the response so far."""
    eq = labels.index("=")
    names = labels[:eq] + ["=", "response"]
    groups = [[i] for i in range(eq)] + [[eq], list(range(eq + 1, len(labels)))]
    return names, groups


@dataclass
class HeadStats:
    """Per-head summaries over the response rows of identity inputs."""

    entropy: Float[Tensor, "layer head"]
    parts: Float[Tensor, "layer head part"]
    drift: Float[Tensor, "layer head"] | None = None  # total variation from the baseline


def head_stats(pats: Tensor, labels: list[str], baseline: Tensor | None = None) -> HeadStats:
    """`pats` [batch, layer, head, q, k] on identity inputs; `baseline`: another model's."""
    rows = response_rows(labels)
    p = pats[:, :, :, rows, :]  # [batch, layer, head, row, k]
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    _, groups = parts_of(labels)
    mass = torch.stack([p[..., g].sum(-1) for g in groups], dim=-1)  # [..., row, part]
    drift = None
    if baseline is not None:
        drift = 0.5 * (p - baseline[:, :, :, rows, :]).abs().sum(-1).mean(dim=(0, 3))
    return HeadStats(ent.mean(dim=(0, 3)), mass.mean(dim=(0, 3)), drift)


# ----------------------------------------------------------------------------- the analysis


@dataclass
class AttentionResult:
    a: str
    b: str
    ref: str
    positions: list[str]
    parts: list[str]
    n_prompts: int
    mean: dict[str, Tensor]  # ref / A / B -> [layer, head, q, k], averaged over test prompts
    final: dict[
        str, dict[str, Any]
    ]  # ref / A / B -> entropy, parts, drift (from ref), [layer, head]
    a_vs_b: Tensor  # [layer, head] drift between A and B at the final step
    examples: list[dict[str, Any]]  # single prompts where A is OOD and B is not
    trajectory: dict[
        str, dict[str, Any]
    ]  # A / B -> steps, entropy, parts, drift, kl_exact, ood_rate
    checkpoints: list[dict[str, Any]]
    findings: list[str] = field(default_factory=list)


def run_attention(
    a: str, b: str, root: Path | None = None, n_examples: int = 3, progress: bool = True
) -> AttentionResult:
    """Attention of ref, A and B on the test prompts, and its drift along both trajectories."""
    pair = resolve_pair(a, b, root)
    ref_ck = pair.ref.checkpoint()
    data = make_dataset(pair.a.key.preset, pair.a.key.seed)
    task = data.task
    prompts = modal_prompts(data.test.prompts)
    toks, labels = identity_inputs(prompts)
    ref_p = _patterns(ref_ck.model, toks)
    used: list[Checkpoint] = [ref_ck]

    traj: dict[str, dict[str, Any]] = {}
    for who, r in (("A", pair.a), ("B", pair.b)):
        rows: dict[str, list] = {
            k: [] for k in ("steps", "entropy", "parts", "drift", "kl_exact", "ood_rate")
        }
        for c in tqdm(
            r.trajectory(), desc=f"attention {who}", disable=None if progress else True, leave=False
        ):
            st = head_stats(_patterns(c.model, toks), labels, ref_p)
            rows["steps"].append(c.step)
            rows["entropy"].append(st.entropy)
            rows["parts"].append(st.parts)
            rows["drift"].append(st.drift)
            rows["kl_exact"].append(c.eval.get("kl_exact"))
            rows["ood_rate"].append(c.eval.get("ood_rate"))
            used.append(c)
        traj[who] = {
            k: (torch.stack(v) if k in ("entropy", "parts", "drift") else v)
            for k, v in rows.items()
        }

    models = {"ref": ref_ck.model, "A": pair.a.checkpoint().model, "B": pair.b.checkpoint().model}
    pats = {k: (ref_p if k == "ref" else _patterns(m, toks)) for k, m in models.items()}
    final = {}
    for k, p in pats.items():
        st = head_stats(p, labels, ref_p)
        final[k] = {"entropy": st.entropy, "parts": st.parts, "drift": st.drift}
    a_vs_b = head_stats(pats["A"], labels, pats["B"]).drift

    answers = {k: greedy(m, prompts, task.max_new_tokens) for k, m in models.items()}
    ood = {k: ood_and_error(r.values, prompts, task)[0] for k, r in answers.items()}
    picks = (ood["A"] & ~ood["B"]).nonzero().flatten().tolist()[:n_examples]
    examples = [
        {
            "prompt": int(prompts[i]),
            "text": "".join(VOCAB[t] for t in toks[i].tolist()),
            "answers": {k: answers[k].text(i) for k in models},
            "patterns": {k: pats[k][i] for k in models},
        }
        for i in picks
    ]
    res = AttentionResult(
        a=pair.a.name,
        b=pair.b.name,
        ref=pair.ref.name,
        positions=labels,
        parts=parts_of(labels)[0],
        n_prompts=len(prompts),
        mean={k: p.mean(0) for k, p in pats.items()},
        final=final,
        a_vs_b=a_vs_b,
        examples=examples,
        trajectory=traj,
        checkpoints=[{"policy": c.policy, "step": c.step, "sha256": c.sha256} for c in used],
    )
    res.findings = findings(res)
    return res


SIMILAR = 0.1  # mean total variation below which two models "attend alike"


def findings(res: AttentionResult) -> list[str]:
    """Plain-language conclusions with their numbers."""
    L, H = res.a_vs_b.shape
    heads = [f"L{l}H{h}" for l in range(L) for h in range(H)]
    ab = res.a_vs_b.flatten()
    da, db = res.final["A"]["drift"].flatten(), res.final["B"]["drift"].flatten()
    ta, tb = res.trajectory["A"], res.trajectory["B"]
    alike = "attend almost alike" if float(ab.mean()) < SIMILAR else "attend differently"
    out = [
        f"A ({res.a}) and B ({res.b}) {alike} on the test prompts: the total variation between "
        f"their attention rows is {ab.mean():.3f} on average over heads (largest {ab.max():.3f}, "
        f"{heads[int(ab.argmax())]}), while A answers out of distribution on "
        f"{ta['ood_rate'][-1]:.1%} of the prompts and B on {tb['ood_rate'][-1]:.1%}.",
        f"Drift from the reference at the end of training: A {da.mean():.3f} (largest "
        f"{da.max():.3f}, {heads[int(da.argmax())]}), B {db.mean():.3f} (largest {db.max():.3f}).",
    ]
    drift_a = ta["drift"].flatten(1).mean(1).tolist()
    rho_kl = spearman(drift_a, ta["kl_exact"])
    if rho_kl is not None and float(db.mean()) > 0 and tb["ood_rate"][-1] > 0:
        trend = "rises" if rho_kl > 0.5 else "falls" if rho_kl < -0.5 else "shows no clear trend"
        out.append(
            f"Along A's training its mean drift {trend} with its KL (Spearman {rho_kl:+.2f}), but "
            "both grow with the training step, so that alone does not tie them. Across the two "
            f"runs: A is {ta['ood_rate'][-1] / tb['ood_rate'][-1]:.1f}× as often OOD as B at the "
            f"end, with {float(da.mean()) / float(db.mean()):.2f}× B's attention drift."
        )
    return out


# ----------------------------------------------------------------------------- report


def build_report(res: AttentionResult, prov: dict[str, Any]):
    from interp import plots
    from interp.report import FigureBlock, Report, Section, Table, jsonable

    L, H = res.a_vs_b.shape
    heads = [(l, h) for l in range(L) for h in range(H)]
    diffs = {
        "A − ref": res.mean["A"] - res.mean["ref"],
        "B − ref": res.mean["B"] - res.mean["ref"],
        "A − B": res.mean["A"] - res.mean["B"],
    }
    mean_rows = {k: res.mean[k] for k in ("ref", "A", "B")} | diffs
    mean_section = Section(
        "Mean attention on the test prompts",
        [
            f"Every model runs on the same {res.n_prompts} inputs: each test prompt followed by "
            "the "
            "identity answer, teacher-forced. Rows are query positions (a row predicts the next "
            "token), columns keys; values averaged over prompts. The last three rows of panels are "
            "differences (red: more attention than the other model)."
        ],
        [FigureBlock(plots.attention_grid(mean_rows, res.positions, diverging=set(diffs)))],
        [
            Table(
                "Per head at the final step",
                ["head", "model", "entropy (nats)"]
                + [f"to {p}" for p in res.parts]
                + ["drift from ref"],
                [
                    [f"L{l}H{h}", k, float(res.final[k]["entropy"][l, h])]
                    + [float(x) for x in res.final[k]["parts"][l, h]]
                    + [float(res.final[k]["drift"][l, h])]
                    for (l, h) in heads
                    for k in ("ref", "A", "B")
                ],
                note="entropy and shares over the rows that predict response tokens; drift = "
                "mean total variation from the reference's rows.",
            ),
            Table(
                "A against B at the final step",
                ["head", "mean total variation A vs B"],
                [[f"L{l}H{h}", float(res.a_vs_b[l, h])] for (l, h) in heads],
            ),
        ],
    )
    ex_figs, ex_text = [], []
    for ex in res.examples:
        ex_text.append(
            f"{ex['prompt']}=: A answers {ex['answers']['A']!r}, B {ex['answers']['B']!r}, "
            f"the reference {ex['answers']['ref']!r}; patterns on {ex['text']!r}."
        )
        rows = {k: ex["patterns"][k] for k in ("ref", "A", "B")} | {
            "A − B": ex["patterns"]["A"] - ex["patterns"]["B"]
        }
        ex_figs.append(
            FigureBlock(
                plots.attention_grid(rows, list(ex["text"]), diverging={"A − B"}),
                f"prompt {ex['prompt']}",
            )
        )
    if not res.examples:
        ex_text = ["No test prompt has A out of distribution and B in it at the final step."]
    traj_rows = []
    for who in ("A", "B"):
        t = res.trajectory[who]
        for i, s in enumerate(t["steps"]):
            traj_rows.append(
                [who, s, t["kl_exact"][i], t["ood_rate"][i]]
                + [float(t["drift"][i][l, h]) for (l, h) in heads]
                + [float(t["entropy"][i][l, h]) for (l, h) in heads]
            )
    traj_section = Section(
        "Does attention drift as the policy goes out of distribution?",
        [
            "Per head, over each run's saved steps: drift from the reference's attention "
            "(total variation) beside the run's kl_exact and OOD rate; and where A's attention "
            "goes."
        ],
        [FigureBlock(plots.attention_drift(res)), FigureBlock(plots.attention_parts(res, "A"))],
        [
            Table(
                "Drift and entropy per step",
                ["run", "step", "kl_exact", "OOD rate"]
                + [f"drift L{l}H{h}" for (l, h) in heads]
                + [f"entropy L{l}H{h}" for (l, h) in heads],
                traj_rows,
            )
        ],
    )
    return Report(
        kind="attention",
        slug=pair_slug(res.a, res.b),
        title=f"Attention: {res.a} (A) and {res.b} (B) against {res.ref}",
        summary=res.findings,
        sections=[
            mean_section,
            Section("Single prompts where A is OOD and B is not", ex_text, ex_figs),
            traj_section,
        ],
        data=jsonable(res),
        provenance=prov,
    )


@dataclass
class AttentionOptions(Folders):
    a: str = option("beta0.01", help="policy A (the OOD one)")
    b: str = option("beta1.0", help="policy B (the in-distribution one); 'ref' = A's reference")
    examples: int = option(3, help="single prompts to show where A is OOD and B is not")
    progress: bool = option(True, help="show progress bars")


def main(argv: list[str] | None = None) -> int:
    """`python -m interp.attention`: the attention report for policies A and B."""
    prog = "python -m interp.attention"
    opts = parse(AttentionOptions, argv, prog, "Compare the attention patterns of two policies.")

    def validate() -> None:
        if opts.examples < 0:
            raise UserError("--examples must be 0 or more")

    def compute(root: Path) -> AttentionResult:
        return run_attention(opts.a, opts.b, root, opts.examples, opts.progress)

    return run_comparison(
        prog, argv, opts, "attention", compute, build_report, lambda r: r.findings, validate
    )


if __name__ == "__main__":
    sys.exit(main())

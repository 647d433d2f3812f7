"""What a surgery run measured: the models it evaluated (A, B, A with a group from B) at
each of A's steps, where A's weight change goes, every group swapped alone, the
interpolation curves, kl_mc, an attention example, samples and the claims' verdicts.
`SurgeryResult.to_json` gives the layout of the report's JSON twin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float
from torch import Tensor

from interp.runs.store import CheckpointRef

METRICS = ("kl_greedy", "kl_exact", "ood_rate", "ood_mass", "error", "acc", "margin")
TRACKED = (*METRICS, "exact_residual")  # what is kept at every step
COARSE = ("attention", "non-attention", "qk", "ov", "mlp", "embed", "pos", "unembed", "ln")


@dataclass(frozen=True)
class Variant:
    """A model the surgery evaluates: A, B, or A with `group` taken from B."""

    role: str  # "A", "B" or "swap"
    group: str | None = None

    @property
    def label(self) -> str:
        return f"A[{self.group}←B]" if self.role == "swap" else self.role


A, B = Variant("A"), Variant("B")


@dataclass
class Series:
    """One model's evaluation at each of A's saved steps (None: not computable)."""

    variant: Variant
    values: dict[str, list[float | None]]  # metric (TRACKED) -> one value per step

    def __getitem__(self, metric: str) -> list[float | None]:
        return self.values[metric]


@dataclass
class WeightChange:
    """WeightDelta of A and B from the reference at each step, and attention's part of it."""

    a_delta: list[float]
    a_frac_attention: list[float]
    b_delta: list[float]
    b_frac_attention: list[float]


@dataclass
class SingleSwap:
    """A with one group from B at the table step, relative to A."""

    group: str
    partition: str  # the first partition the group belongs to ("" for none)
    param_share: float
    frac_weight_delta: float  # the group's part of A's weight change from the reference
    delta: dict[str, float | None]  # metric -> D(A′) − D(A)
    gap_closed_kl_exact: float | None
    gap_closed_ood_rate: float | None


@dataclass
class Interpolation:
    alphas: list[float]
    curves: dict[str, dict[str, list[float | None]]]  # group -> metric -> one value per alpha


@dataclass
class MonteCarloKL:
    variant: Variant
    mean: float
    se: float
    n_per_prompt: int


@dataclass
class AttentionExample:
    """Attention of ref, A and B on a prompt where A is OOD and B is not, all run on the
    prompt followed by B's answer (teacher-forced, EOS dropped)."""

    prompt: int
    text: str
    tokens: list[str]
    responses: dict[str, str]  # "A" / "B" -> greedy answer
    patterns: dict[str, Float[Tensor, "layer head_index query_pos key_pos"]]  # ref / A / B


@dataclass
class Sample:
    prompt: str
    answers: list[tuple[Variant, str, bool]]  # (model, greedy answer, OOD)


@dataclass
class ClaimCheck:
    """One of the case study's surgery claims, measured, with its verdict."""

    claim: str
    case_study: str
    measured: str
    numbers: dict[str, float | None]  # the measured values the verdict rests on
    verdict: str
    group: str | None = None  # the group swapped in from B (F4's two halves)


@dataclass
class SurgeryResult:
    a: str
    b: str
    ref: str
    beta: float | None  # A's β: the implicit reward (Acc, Margin) of every model; None: unknown
    pair: str
    groups: list[str]
    exact_threshold: float
    steps: list[int]
    donor_steps: list[int]
    series: list[Series]  # A, B, then A with each group from B
    weights: WeightChange
    param_share: dict[str, float]  # group -> share of the parameters
    table_step: int
    table_donor_step: int
    single: list[SingleSwap]
    interpolation: Interpolation
    kl_mc: list[MonteCarloKL]
    example: AttentionExample | None
    samples: list[Sample]
    checkpoints: list[CheckpointRef]
    claims: list[ClaimCheck] = field(default_factory=list)
    not_computable: dict[str, str] = field(default_factory=dict)  # metric -> why not

    def of(self, variant: Variant) -> Series | None:
        return next((s for s in self.series if s.variant == variant), None)

    @property
    def table_index(self) -> int:
        return self.steps.index(self.table_step)

    def at_table_step(self, variant: Variant, metric: str) -> float | None:
        s = self.of(variant)
        return None if s is None else s[metric][self.table_index]

    def to_json(self) -> dict[str, Any]:
        """The report's data, in the layout of its JSON twin."""
        w = self.weights
        return {
            "a": self.a,
            "b": self.b,
            "ref": self.ref,
            "beta": self.beta,
            "not_computable": self.not_computable,
            "pair": self.pair,
            "groups": self.groups,
            "exact_threshold": self.exact_threshold,
            "steps": self.steps,
            "donor_steps": self.donor_steps,
            "trajectory": {s.variant.label: s.values for s in self.series},
            "weights": {
                "A_delta": w.a_delta,
                "A_frac_attention": w.a_frac_attention,
                "B_delta": w.b_delta,
                "B_frac_attention": w.b_frac_attention,
            },
            "param_share": self.param_share,
            "table_step": self.table_step,
            "table_donor_step": self.table_donor_step,
            "single": [
                {
                    "group": r.group,
                    "partition": r.partition,
                    "param_share": r.param_share,
                    "frac_weight_delta": r.frac_weight_delta,
                    **{f"d_{m}": v for m, v in r.delta.items()},
                    "gap_closed_kl_exact": r.gap_closed_kl_exact,
                    "gap_closed_ood_rate": r.gap_closed_ood_rate,
                }
                for r in self.single
            ],
            "interpolation": {"alpha": self.interpolation.alphas, **self.interpolation.curves},
            "kl_mc": {
                m.variant.label: {"mean": m.mean, "se": m.se, "n_per_prompt": m.n_per_prompt}
                for m in self.kl_mc
            },
            "example": None
            if self.example is None
            else {
                "prompt": self.example.prompt,
                "text": self.example.text,
                "tokens": self.example.tokens,
                "responses": self.example.responses,
                "patterns": self.example.patterns,
            },
            "samples": [
                {"prompt": s.prompt}
                | {k: v for var, text, ood in s.answers for k, v in _sample_cells(var, text, ood)}
                for s in self.samples
            ],
            "checkpoints": self.checkpoints,
            "claims": [
                {
                    "claim": c.claim,
                    "case_study": c.case_study,
                    "measured": c.measured,
                    **c.numbers,
                    "verdict": c.verdict,
                }
                for c in self.claims
            ],
        }


def _sample_cells(variant: Variant, text: str, ood: bool) -> list[tuple[str, Any]]:
    return [(variant.label, text), (f"{variant.label} OOD", ood)]

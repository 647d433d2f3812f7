"""Training configurations: the case study's hyper-parameters, the checkpoint schedule,
and the specification of one run.

Every default a run depends on is defined here once: the stage settings per preset
(§3.3), the number of checkpoints after step 0, the default policies of the main job.
The exact-metrics threshold is the enumeration's own default
(`interp.core.sampling.EXACT_THRESHOLD`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from interp.core.model import CASE_STUDY, ModelSpec
from interp.core.sampling import EXACT_THRESHOLD
from interp.runs.names import PolicyKey, round_beta

N_CHECKPOINTS = 30  # saved after step 0, evenly spaced up to the last step


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings of one training stage."""

    epochs: int
    optimizer: str  # adam | adamw | rmsprop
    lr: float
    batch_size: int
    grad_clip: float | None = None
    weight_decay: float = 0.0


# The case study's settings (§3.3). AdamW's "standard weight decay" is torch's 0.01.
STAGES: dict[str, dict[str, Hyper]] = {
    "sweep": {
        "sft": Hyper(epochs=10, optimizer="adam", lr=1e-3, batch_size=16),
        "pref": Hyper(epochs=3, optimizer="rmsprop", lr=5e-5, batch_size=16),
    },
    "grokking": {
        "sft": Hyper(100, "adamw", 1e-4, 512, grad_clip=5.0, weight_decay=0.01),
        "pref": Hyper(100, "adamw", 1e-4, 512, grad_clip=5.0, weight_decay=0.01),
    },
    # for tests and smoke runs: seconds, not minutes
    "tiny": {
        "sft": Hyper(epochs=4, optimizer="adam", lr=3e-3, batch_size=16),
        "pref": Hyper(epochs=2, optimizer="rmsprop", lr=3e-4, batch_size=16),
    },
}


DEFAULT_POLICIES = ("ref", "beta0.01", "beta1.0")


def paper_betas() -> list[float]:
    """The case study's 30 β values, log-spaced in [0.01, 1] (three significant digits)."""
    return [round_beta(b) for b in np.logspace(-2, 0, 30)]


@dataclass(frozen=True)
class RunSpec:
    key: PolicyKey
    hyper: Hyper
    model: ModelSpec = CASE_STUDY
    n_checkpoints: int = N_CHECKPOINTS
    exact_threshold: float | None = EXACT_THRESHOLD  # None: no exact metrics at checkpoints

    @classmethod
    def for_key(
        cls,
        key: PolicyKey,
        model: ModelSpec = CASE_STUDY,
        n_checkpoints: int = N_CHECKPOINTS,
        exact_threshold: float | None = EXACT_THRESHOLD,
    ) -> RunSpec:
        stage = "sft" if key.is_ref else "pref"
        return cls(key, STAGES[key.preset][stage], model, n_checkpoints, exact_threshold)


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """Step 0 and `n_checkpoints` evenly spaced steps ending at the last one."""
    return sorted({int(round(x)) for x in np.linspace(0, total_steps, n_checkpoints + 1)})

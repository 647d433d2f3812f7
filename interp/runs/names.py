"""Policy names: what identifies a training run, and how a name is written and read.

A policy is `ref` (the SFT model) or `[loss-]beta<β>`, with `-s<seed>` for seeds other
than 0 and `<preset>/` in front for presets other than `sweep`: `beta0.01`,
`ipo-beta0.1-s2`, `grokking/beta0.5`. β is written with three significant digits and
matched numerically, so `beta1`, `beta1.0` and `beta=1.0` are one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interp.core.losses import LOSSES
from interp.errors import PolicyNotFound

DEFAULT_PRESET = "sweep"


REF = "ref"


def round_beta(beta: float) -> float:
    return float(f"{beta:.3g}")


def format_beta(beta: float) -> str:
    return repr(round_beta(beta))


@dataclass(frozen=True)
class PolicyKey:
    """What identifies a run: preset, loss (`sft` for the reference), β and seed."""

    preset: str = DEFAULT_PRESET
    loss: str = "dpo"
    beta: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.beta is None) != (self.loss == "sft"):
            raise ValueError(f"a {self.loss} run needs β exactly when it is not SFT: {self!r}")
        if self.beta is not None:
            object.__setattr__(self, "beta", round_beta(self.beta))

    @property
    def is_ref(self) -> bool:
        return self.loss == "sft"

    @property
    def local_name(self) -> str:
        """The name within its preset (also the run folder's name)."""
        base = REF if self.is_ref else f"beta{format_beta(self.beta)}"
        if not self.is_ref and self.loss != "dpo":
            base = f"{self.loss}-{base}"
        return base + (f"-s{self.seed}" if self.seed else "")

    @property
    def name(self) -> str:
        prefix = "" if self.preset == DEFAULT_PRESET else f"{self.preset}/"
        return prefix + self.local_name

    @property
    def reference(self) -> PolicyKey:
        """The reference (SFT) policy a preference run starts from: same preset and seed."""
        return PolicyKey(self.preset, "sft", None, self.seed)

    def __str__(self) -> str:
        return self.name


_NUM = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


_NAME_RE = re.compile(
    rf"^(?:(?P<preset>[a-z][a-z0-9_]*)/)?(?:(?P<loss>[a-z]+)-)?"
    rf"(?:(?P<ref>ref)|beta[=_:]?(?P<beta>{_NUM}))(?:-s(?P<seed>\d+))?$",
    re.IGNORECASE,
)


def parse_policy(name: str) -> PolicyKey:
    """The key a policy name denotes; raises PolicyNotFound for a malformed name."""
    m = _NAME_RE.match(name.strip())
    loss = (m.group("loss") or "dpo").lower() if m else None
    if not m or (m.group("ref") and m.group("loss")) or (loss not in LOSSES and not m.group("ref")):
        raise PolicyNotFound(
            f"cannot read policy name {name!r}: expected ref, beta<β> or <loss>-beta<β> "
            f"(losses: {', '.join(LOSSES)}), optionally -s<seed> and a <preset>/ prefix"
        )
    preset = (m.group("preset") or DEFAULT_PRESET).lower()
    seed = int(m.group("seed") or 0)
    if m.group("ref"):
        return PolicyKey(preset, "sft", None, seed)
    return PolicyKey(preset, loss, float(m.group("beta")), seed)


def policy_sort_key(name: str) -> tuple:
    k = parse_policy(name)
    return (k.preset != DEFAULT_PRESET, k.preset, not k.is_ref, k.loss, k.beta or 0.0, k.seed)

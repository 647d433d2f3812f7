"""Settings shared by several analyses, declared once with their help text.

A command's options class inherits these dataclasses (`interp.options.option` fields
become flags), and an analysis receives the options object whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.core.sampling import EXACT_THRESHOLD
from interp.errors import UserError
from interp.options import option


@dataclass
class ExactSettings:
    """How far exact enumeration expands the response tree (kl_exact, OOD mass)."""

    exact_threshold: float = option(
        EXACT_THRESHOLD, help="exact metrics: expand response prefixes at least this probable"
    )

    def validate(self) -> None:
        if not 0 <= self.exact_threshold < 1:
            raise UserError("--exact-threshold must be in [0, 1)")

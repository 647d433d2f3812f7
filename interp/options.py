"""Settings as dataclass fields that carry their own help text.

An analysis declares its knobs as a dataclass whose fields come from `option(default,
help=...)`; a command's options class inherits them, and `interp.cli` turns the fields
into flags. So each default and its explanation is written once, beside the code that
uses it, and the options object is passed whole. This module is a bottom layer: it
imports nothing from `interp`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

SEED_LIMIT = 2**32  # seeds are 0 … 2**32 - 1: what every generator here (numpy, torch) accepts


def option(default: Any = dataclasses.MISSING, *, help: str, **argparse_kw: Any) -> Any:
    """A dataclass field that becomes a command-line flag (`help` and argparse keywords
    such as `choices` travel in its metadata)."""
    meta = {"help": help, **argparse_kw}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=default: list(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _shown(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "…"


def seed_error(value: int) -> str | None:
    """Why `value` is not a seed, or None if it is one."""
    if 0 <= value < SEED_LIMIT:
        return None
    return f"a seed must be a whole number from 0 to {SEED_LIMIT - 1}, not {_shown(str(value))}"


def seed_value(text: str) -> int:
    """The argparse type of a seed flag: a whole number in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a seed must be a whole number from 0 to {SEED_LIMIT - 1}, not {_shown(text)!r}"
        ) from None
    why = seed_error(value)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return value


def seed_option(default: int | list[int], *, help: str) -> Any:
    """An `option` holding a seed (or, with a list default, seeds): bounded on the command
    line to what numpy and torch accept."""
    return option(default, help=help, type=seed_value)

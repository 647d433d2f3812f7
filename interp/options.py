"""Settings as dataclass fields that carry their own help text.

An analysis declares its knobs as a dataclass whose fields come from `option(default,
help=...)`; a command's options class inherits them, and `interp.cli` turns the fields
into flags. So each default and its explanation is written once, beside the code that
uses it, and the options object is passed whole. This module is a bottom layer: it
imports nothing from `interp`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any = dataclasses.MISSING, *, help: str, **argparse_kw: Any) -> Any:
    """A dataclass field that becomes a command-line flag (`help` and argparse keywords
    such as `choices` travel in its metadata)."""
    meta = {"help": help, **argparse_kw}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=default: list(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)

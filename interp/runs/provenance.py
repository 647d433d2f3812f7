"""Provenance: which code, packages, checkpoints and seeds produced a file.

Checkpoints record the git commit of the code that wrote them; every report carries the
full record (`provenance`) in its footer and JSON twin.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports git_commit from here
    from interp.runs.store import CheckpointRef


@cache
def git_commit() -> str | None:
    """The commit of the code that wrote a file ("+dirty" if the tree had changes)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for pkg in ("interp", "torch", "transformer-lens", "numpy", "seaborn", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def provenance(
    prog: str,
    argv: list[str] | None,
    checkpoints: Sequence[CheckpointRef],
    seeds: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    """Command line, code version, package versions, checkpoints (name, step, sha256),
    seeds and wall time: the footer of every report."""
    args = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join([prog, *map(shlex.quote, args)]),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "checkpoints": checkpoints,
        "seeds": seeds,
        "wall_time_s": round(time.time() - started, 2),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }

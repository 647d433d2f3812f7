"""Command-line plumbing shared by every `python -m interp.<tool>`.

Each tool declares one dataclass of options; every field carries its help string in
`option(...)`. `parse` turns the dataclass into an argparse parser, `run` calls the tool's
body and converts a `UserError` (a mistake in what was asked: unknown policy, bad flag
value, unwritable folder…) into one line on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from interp.errors import UserError
from interp.options import option
from interp.present.html import default_reports_root, ensure_writable, write_report
from interp.runs.config import DEFAULT_POLICIES
from interp.runs.ensure import ensure_default_policies
from interp.runs.provenance import provenance
from interp.runs.store import default_root

T = TypeVar("T")


@dataclass
class Folders:
    """The options every report command shares: where checkpoints and reports live."""

    checkpoints: str = option(str(default_root()), help="checkpoint root folder")
    reports: str = option(str(default_reports_root()), help="report root folder")


@dataclass
class PairOptions(Folders):
    """The options of every A-vs-B report command: the two policies and the folders."""

    a: str = option(DEFAULT_POLICIES[1], help="policy A (the one that goes out of distribution)")
    b: str = option(
        DEFAULT_POLICIES[2], help="policy B (in distribution); 'ref' means A's reference"
    )


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build_parser(options: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=prog, description=description)
    hints = typing.get_type_hints(options)
    for f in dataclasses.fields(options):
        kw = dict(f.metadata)
        flag = "--" + f.name.replace("_", "-")
        tp = _unwrap_optional(hints[f.name])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **kw)
            continue
        if typing.get_origin(tp) is list:
            kw.setdefault("nargs", "+")
            tp = typing.get_args(tp)[0]
        if default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = default
            if default is not None and "nargs" not in kw:
                kw["help"] += f" (default: {default})"
        parser.add_argument(flag, type=tp, dest=f.name, **kw)
    return parser


def parse(options: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    ns = build_parser(options, prog, description).parse_args(argv)
    return options(**vars(ns))


def run(body: Callable[[], int | None], prog: str) -> int:
    """Run a tool's body; a UserError becomes one line on stderr and exit status 2."""
    try:
        return body() or 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def run_comparison(
    prog: str,
    argv: Sequence[str] | None,
    opts: Any,
    kind: str,
    compute: Callable[[Any], Any],
    build: Callable[[Any, dict], Any],
    summary: Callable[[Any], list[str]],
    validate: Callable[[], None] | None = None,
    seeds: dict[str, Any] | None = None,
) -> int:
    """The body of every A-vs-B report command, in the order that keeps mistakes cheap:
    check the options, check the report folder can be written, train whichever default
    policy (ref, beta0.01, beta1.0) is missing — after checking any other name exists —
    then compute, write `<reports>/<kind>/…html` + `.json`, and print the path and summary.

    `opts` needs `a`, `b`, `checkpoints` and `reports`; `compute(root)` returns a result
    with a `checkpoints` list (name, step, sha256) for the provenance footer.
    """

    def body() -> int:
        started = time.time()
        if validate is not None:
            validate()
        root, reports = Path(opts.checkpoints), Path(opts.reports)
        ensure_writable(reports / kind)
        ensure_default_policies([n for n in (opts.a, opts.b) if n.strip().lower() != "ref"], root)
        res = compute(root)
        prov = provenance(
            prog, None if argv is None else list(argv), res.checkpoints, seeds or {}, started
        )
        path = write_report(build(res, prov), reports)
        print(path)
        for line in summary(res):
            print("- " + line)
        return 0

    return run(body, prog)

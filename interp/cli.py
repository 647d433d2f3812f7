"""Command-line plumbing shared by every `python -m interp.<tool>`.

Each tool declares one dataclass of options; every field carries its help string in
`option(...)`. `parse` turns the dataclass into an argparse parser, `run` calls the tool's
body and converts a `UserError` (a mistake in what was asked: unknown policy, bad flag
value, unwritable folder…) or an `OSError` (disk full, a file in the way…) into one line
on stderr and exit status 2, and Ctrl-C (or SIGTERM) into one line saying what was kept
and exit status 130 (143), with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import signal
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from interp.errors import UserError
from interp.options import option
from interp.present.text import not_computable_lines
from interp.present.write import default_reports_root, ensure_reports, write_report
from interp.runs.config import DEFAULT_POLICIES
from interp.runs.ensure import ensure_default_policies
from interp.runs.files import default_root
from interp.runs.hf_folder import is_hf_folder
from interp.runs.provenance import provenance
from interp.runs.sources import SourceOptions

T = TypeVar("T")


@dataclass
class Folders:
    """The options every report command shares: where checkpoints and reports live."""

    checkpoints: str = option(str(default_root()), help="checkpoint root folder")
    reports: str = option(str(default_reports_root()), help="report root folder")


@dataclass
class Pair:
    """Policies A and B of an A-vs-B command."""

    a: str = option(
        DEFAULT_POLICIES[1],
        help="policy A (the one that goes out of distribution): a run name or a Hugging Face "
        "model folder",
    )
    b: str = option(
        DEFAULT_POLICIES[2],
        help="policy B (in distribution): a run name or a folder; 'ref' means A's reference",
    )


@dataclass
class PairOptions(SourceOptions, Folders, Pair):
    """The options of every A-vs-B report command: the two policies, the folders, and where
    the policies and the data come from (`interp.runs.sources`); flags in that order."""


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
        kw.setdefault("type", tp)  # an option may bring its own (a seed's checks its range)
        parser.add_argument(flag, dest=f.name, **kw)
    return parser


def parse(options: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    ns = build_parser(options, prog, description).parse_args(argv)
    return options(**vars(ns))


_OS_HINTS = {
    errno.ENOSPC: "free some disk space, then rerun the same command",
    errno.EDQUOT: "free some disk space, then rerun the same command",
    errno.EACCES: "check its permissions, or choose another folder",
    errno.EPERM: "check its permissions, or choose another folder",
    errno.EROFS: "choose a folder on a writable disk",
    errno.EISDIR: "a folder is in the way: move it, or choose another folder",
    errno.ENOTDIR: "a file is in the way of a folder: move it, or choose another folder",
    errno.EEXIST: "something is in the way: move it, or choose another folder",
}


def os_error_message(e: OSError) -> str:
    """One line for a failed file operation: what failed, on which path, and what to do."""
    where = e.filename2 if e.filename2 is not None else e.filename  # rename: the target
    what = e.strerror or str(e) or type(e).__name__
    hint = _OS_HINTS.get(e.errno or 0, "check the path, then rerun the same command")
    return f"{what}: {where}; {hint}" if where is not None else f"{what}; {hint}"


def check_folder(path: Path, flag: str) -> None:
    """UserError unless `path` is a folder or could become one (no file in the way)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and not p.is_dir():
        where = f"{path} is a file" if p == path else f"{p} (in {path}) is a file"
        raise UserError(f"{flag}: {where}, not a folder; give a folder")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler's time limit) while a tool runs: handled like Ctrl-C,
    so whatever was being written is removed and the exit says what was kept."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the body runs (main thread only), then put the
    previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    body: Callable[[], int | None],
    prog: str,
    interrupted: str | Callable[[], str] = "nothing was written",
) -> int:
    """Run a tool's body. A UserError, or an OSError (disk full, a file where a folder
    should be…), becomes one line on stderr and exit status 2; Ctrl-C becomes one line
    saying what was kept (`interrupted`, or what it returns) and exit status 130 (143 for
    SIGTERM, which is handled the same way)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a path that is not UTF-8 prints escaped, as on stderr
        reconfigure(errors="backslashreplace")
    try:
        with _terminate_as_interrupt():
            return body() or 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout left (`… | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:
        print(f"{prog}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        kept = interrupted() if callable(interrupted) else interrupted
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"{prog}: {how}; {kept}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


def _new_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    out = []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


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
    policies: Sequence[str] | None = None,
) -> int:
    """The body of every A-vs-B report command, in the order that keeps mistakes cheap:
    check the options, check the report folder can be written, train whichever default
    policy (ref, beta0.01, beta1.0) is missing — after checking any other name exists —
    then compute, write `<reports>/<kind>/…html` + `.json`, and print the path and summary.
    A command that fails leaves no report folder it created behind (empty).

    `opts` needs `a`, `b`, `checkpoints` and `reports`; `compute(root)` returns a result
    with a `checkpoints` list (name, step, sha256) for the provenance footer. A report of
    other policies than an A and a B (the training logs) names them in `policies`: then
    `opts` needs no `a` and `b`, and `ref` is a policy like any other.
    """
    root, reports = Path(opts.checkpoints), Path(opts.reports)

    def body() -> int:
        started = time.time()
        if validate is not None:
            validate()
        if isinstance(opts, SourceOptions):
            opts.validate_sources()
        check_folder(root, "--checkpoints")
        created = _new_folders(reports / kind)
        try:
            ensure_reports(reports, kind)
            names = (
                [
                    n
                    for n in (opts.a, opts.b, getattr(opts, "ref", None))
                    if n and n.strip().lower() != "ref"
                ]
                if policies is None
                else list(policies)
            )
            # folders are never trained, and beside a folder A nothing is trained on demand
            a = getattr(opts, "a", None)
            names = [] if a and is_hf_folder(a) else [n for n in names if not is_hf_folder(n)]
            ensure_default_policies(names, root)
            res = compute(root)
            prov = provenance(
                prog, None if argv is None else list(argv), res.checkpoints, seeds or {}, started
            )
            path = write_report(build(res, prov), reports)
        except BaseException:
            for folder in created:  # deepest first; a folder something else was put in stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        print(path)
        for line in summary(res) + not_computable_lines(getattr(res, "not_computable", {})):
            print("- " + line)
        return 0

    return run(
        body,
        prog,
        f"no report was written; the checkpoints trained so far are kept in {root}: rerun "
        "the same command to resume",
    )

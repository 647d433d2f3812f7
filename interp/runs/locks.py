"""One lock per run: two processes never train the same run at once.

The lock is a file beside the run's folder, `<root>/<preset>/.<policy>.lock`, held (with
the `filelock` library) for as long as a process trains the run. A second process that
wants to train it fails at once with one line naming the lock, instead of the two writing
over each other's checkpoints. Reading a run needs no lock: every file is renamed into
place whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from interp.errors import UserError
from interp.runs.files import run_dir
from interp.runs.names import PolicyKey


def lock_path(key: PolicyKey, root: Path | None = None) -> Path:
    """The lock file of a run: `<root>/<preset>/.<policy>.lock`, beside its folder."""
    d = run_dir(key, root)
    return d.parent / f".{d.name}.lock"


def check_free(keys: Iterable[PolicyKey], root: Path | None = None) -> None:
    """UserError (one line) if another process holds the lock of any of these runs: asked
    before announcing what will be trained. Only a courtesy — `lock_runs` is the guard."""
    with lock_runs(keys, root):
        pass


@contextmanager
def lock_runs(keys: Iterable[PolicyKey], root: Path | None = None) -> Iterator[None]:
    """Hold the locks of these runs while training them; UserError at once (one line) if
    another process holds one. Taken in a fixed order, so two processes cannot deadlock."""
    with ExitStack() as stack:
        for key in sorted(set(keys), key=lambda k: str(lock_path(k, root))):
            path = lock_path(key, root)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise UserError(
                    f"{key.name} is being trained by another process right now (it holds "
                    f"{path}); wait for that process to finish, then run this again"
                ) from None
            stack.callback(lock.release)
        yield

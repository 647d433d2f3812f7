"""The files of a run folder: where they live, how they are written, how they are read.

    <root>/<preset>/<policy>/
        run.json                 the run: loss, β, seed, reference, hyper-parameters, status
        log.json                 per-step training log (columns)
        step_000025/
            model.safetensors    raw HookedTransformer parameters (no weight processing)
            config.json          the HookedTransformerConfig fields that rebuild the model
            meta.json            policy, loss, β, seed, step, epoch, preset, reference, git
                                 commit, sha256 of model.safetensors (and of the optimizer
                                 state, if saved with it), vocabulary, evaluation
            optimizer.safetensors  only in the newest checkpoint of an unfinished run (in
                                 an ensemble, also in the one before until every member
                                 has saved the newest)

Every write goes to a hidden temporary name (`TEMP_PREFIXES`) in the same folder and is
renamed into place, so an interrupted write never leaves a half file under its real name;
removal goes the other way (renamed to a hidden name, then deleted). Files and folders get
the permissions the umask gives, like any tool's.

Every JSON file is validated against its schema (`interp.runs.schema`) when read, and a
file that is not valid is named in a one-line CheckpointError that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from interp.errors import CheckpointError
from interp.runs.names import PolicyKey
from interp.runs.schema import ConfigFile, LogFile, MetaFile, RunFile

MODEL_FILE, CONFIG_FILE, META_FILE, OPTIM_FILE = (
    "model.safetensors",
    "config.json",
    "meta.json",
    "optimizer.safetensors",
)


RUN_FILE, LOG_FILE = "run.json", "log.json"


ROOT_ENV = "INTERP_CHECKPOINTS"


def project_dir() -> Path | None:
    """The repository this package runs from (the folder above `interp/` that holds
    pyproject.toml), or None for an installed copy."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() and (here / "interp").is_dir() else None


def default_root() -> Path:
    """The checkpoint root: $INTERP_CHECKPOINTS if set, else `checkpoints/` in the project's
    repository (whatever the working directory, so a notebook in `notebooks/` finds the
    same policies as `make report`), else `./checkpoints` for an installed package. Always
    absolute, so error messages name the folder searched."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).expanduser().resolve()
    project = project_dir()
    return (project / "checkpoints") if project is not None else Path("checkpoints").resolve()


# Hidden names of what a write in progress (or a killed one) leaves in a run folder.
TEMP_PREFIXES = (".step_", f".{RUN_FILE}.", f".{LOG_FILE}.", ".trash.")


def _temp_name(parent: Path, name: str) -> Path:
    return parent / f".{name}.{secrets.token_hex(4)}"


def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def write_json(path: Path, obj: Any, indent: int | None = 1) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename). The file
    gets the permissions the umask gives (0644 under umask 022), as any tool's would.
    `indent=None` writes it on one line, twice as fast (json's C encoder): for files that
    only programs read and that are rewritten often, such as a training log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path.parent, path.name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(obj, indent=indent, allow_nan=True))
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_new(path: Path, data: bytes) -> None:
    """Create `path` (which must not exist) holding `data`, with the umask's permissions
    (safetensors' own writer creates its files 0600 whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_temp_dir(parent: Path, name: str) -> Path:
    """A new hidden folder beside `parent / name` (mode from the umask, like `mkdir`)."""
    while True:
        tmp = _temp_name(parent, name)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def discard(path: Path) -> None:
    """Remove a folder or file: first renamed to a hidden temporary (atomic), then deleted,
    so a kill midway never leaves a half folder under its real name."""
    trash = path.parent / f".trash.{path.name}.{secrets.token_hex(4)}"
    os.replace(path, trash)
    shutil.rmtree(trash) if trash.is_dir() else trash.unlink()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {one_line(e)}; {advice(path)}") from None


def _run_folder(path: Path) -> Path:
    """The run folder a run file or checkpoint file sits in."""
    return path.parent.parent if re.fullmatch(r"step_\d{6}", path.parent.name) else path.parent


def advice(path: Path) -> str:
    return f"delete the run folder {_run_folder(path)} and retrain it"


def read_run_file(path: Path) -> RunFile:
    """run.json, validated (CheckpointError naming the file if it is not valid)."""
    return RunFile.parse(read_json(path), path, advice(path))


def read_meta(path: Path) -> MetaFile:
    """A checkpoint's meta.json, validated."""
    return MetaFile.parse(read_json(path), path, advice(path))


def read_config(path: Path) -> ConfigFile:
    """A checkpoint's config.json, validated: sizes within the suite's limits."""
    return ConfigFile.parse(read_json(path), path, advice(path))


def read_log(path: Path) -> LogFile:
    """A run's log.json, validated."""
    return LogFile.parse(read_json(path), path, advice(path))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def step_dirname(step: int) -> str:
    return f"step_{step:06d}"


def saved_steps(run_path: Path) -> list[int]:
    """Steps with a complete checkpoint folder in a run folder, in order."""
    out = []
    for p in run_path.glob("step_*"):
        if p.is_dir() and re.fullmatch(r"step_\d{6}", p.name) and (p / META_FILE).exists():
            out.append(int(p.name[5:]))
    return sorted(out)


def run_dir(key: PolicyKey, root: Path | None = None) -> Path:
    """Where the run of `key` lives (or will live)."""
    root = Path(root) if root is not None else default_root()
    return root / key.preset / key.local_name

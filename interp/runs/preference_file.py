"""Reading a TRL-format preference file into a `PreferenceTask`.

Two kinds of file are read:
- JSONL: one JSON object per line with string columns `prompt`, `chosen` and `rejected`
  (other columns are ignored, blank lines skipped). A row may carry
  `"split": "train"` or `"split": "test"`; a row without one belongs to both splits.
- a `datasets` folder written by `save_to_disk`: a `Dataset`, or a `DatasetDict` whose
  `train` and `test` splits are used (a `DatasetDict` of one split: that split for both).

A file with one split is evaluation data: train = test = all its rows (training on it
then evaluates on what it trained on; give a split column or a DatasetDict to separate).

TRL's *implicit prompt* format (no `prompt` column: the prompt is the shared start of
`chosen` and `rejected`) is read as TRL's `extract_prompt` does: the prompt is the longest
common prefix of the two strings, less a final space, which goes to the responses
("The sky is blue." / "The sky is green." -> "The sky is", " blue.", " green.").
Where TRL's loop leaves odd results (no common prefix, or one string a prefix of the
other) this module refuses the row instead. TRL's *conversational* format (lists of
{role, content} messages) is refused: apply the chat template first.

Every mistake in a file is a `DataError` whose one line names the file, the line (JSONL)
or row (datasets) and what to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from interp.core.preference import Judge, PreferenceRow, PreferenceTask
from interp.errors import DataError

COLUMNS = ("prompt", "chosen", "rejected")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class PreferenceRows:
    """The rows of a preference file, split, with where each came from ("line 3")."""

    train: list[PreferenceRow]
    test: list[PreferenceRow]
    source: str  # e.g. "pairs.jsonl (JSONL, 12 rows, one split: train = test)"
    train_where: list[str] = field(default_factory=list)
    test_where: list[str] = field(default_factory=list)


def extract_prompt(chosen: str, rejected: str) -> PreferenceRow | None:
    """(prompt, chosen, rejected) from an implicit-prompt pair; None when the two strings
    share no prefix or one is a prefix of the other."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    if k == len(chosen) or k == len(rejected):
        return None
    if k > 0 and chosen[k - 1] == " ":  # the space before the responses stays with them
        k -= 1
    return (chosen[:k], chosen[k:], rejected[k:]) if k > 0 else None


def _row(path: Path, where: str, obj: Any) -> PreferenceRow:
    """One checked row of strings from a JSON object or a datasets row."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} is not a JSON object; write one object per line")
    needed = COLUMNS if "prompt" in obj else COLUMNS[1:]  # no prompt: an implicit one
    for col in needed:
        if col not in obj:
            raise DataError(f"{path}: {where} has no {col!r} column; give {', '.join(COLUMNS)}")
        value = obj[col]
        if isinstance(value, list):
            raise DataError(
                f"{path}: {where}: column {col!r} is a list of messages (TRL's conversational "
                "format), which is not supported yet; apply the chat template to make strings first"
            )
        if not isinstance(value, str):
            raise DataError(
                f"{path}: {where}: column {col!r} is {type(value).__name__}, not a string"
            )
        if not value:
            raise DataError(f"{path}: {where}: column {col!r} is empty; give a non-empty string")
    if obj["chosen"] == obj["rejected"]:
        raise DataError(
            f"{path}: {where}: chosen and rejected are the same response, which prefers nothing; "
            "remove the row"
        )
    if "prompt" in needed:
        return obj["prompt"], obj["chosen"], obj["rejected"]
    row = extract_prompt(obj["chosen"], obj["rejected"])
    if row is None:
        raise DataError(
            f"{path}: {where}: no implicit prompt (chosen and rejected share no prefix, or one "
            "contains the other); add a 'prompt' column"
        )
    return row


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield f"line {n}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}: line {n} is not JSON ({e.msg}); fix or remove it"
                    ) from None


def _split(
    path: Path, records: Iterable[tuple[str, Any]]
) -> tuple[dict[str, list[PreferenceRow]], dict[str, list[str]], bool]:
    """Rows of each split (a row without `split` in both) and whether any row named one."""
    rows: dict[str, list[PreferenceRow]] = {s: [] for s in SPLITS}
    where: dict[str, list[str]] = {s: [] for s in SPLITS}
    named = False
    for at, obj in records:
        row = _row(path, at, obj)
        side = obj.get("split")
        if side is not None and side not in SPLITS:
            raise DataError(f"{path}: {at}: unknown split {side!r}; use 'train' or 'test'")
        named |= side is not None
        for s in SPLITS if side is None else (side,):
            rows[s].append(row)
            where[s].append(at)
    for s in SPLITS:
        if named and not rows[s]:
            raise DataError(
                f"{path}: no row has split {s!r}; give some, or drop the split column to "
                "use every row for both"
            )
    return rows, where, named


def _read_datasets(path: Path) -> PreferenceRows:
    try:
        import datasets  # lazily: only a datasets folder needs it
    except ImportError:
        raise DataError(
            f"{path}: reading a datasets folder needs the datasets package: pip install datasets"
        ) from None
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:  # whatever the cause, the folder is unreadable
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a datasets save_to_disk folder ({why})") from None
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        if all(s in data for s in SPLITS):
            parts = {s: data[s] for s in SPLITS}
        elif len(names) == 1:
            parts = {s: data[names[0]] for s in SPLITS}
        else:
            raise DataError(f"{path}: splits {names}; name two of them 'train' and 'test'")
    else:
        parts = {s: data for s in SPLITS}
    one = parts["train"] is parts["test"]
    rows: dict[str, list[PreferenceRow]] = {}
    where: dict[str, list[str]] = {}
    for s, part in parts.items():
        name = "" if one else f"{s} "
        missing = [c for c in COLUMNS[1:] if c not in part.column_names]
        if missing:
            raise DataError(
                f"{path}: the {name}data has no column {', '.join(map(repr, missing))} "
                f"(it has {part.column_names}); give {', '.join(COLUMNS)}"
            )
        recs = (
            (f"{name}row {i}", {c: r[c] for c in COLUMNS if c in r}) for i, r in enumerate(part)
        )
        got, at, _ = _split(path, recs)
        rows[s], where[s] = got[s], at[s]
        if not rows[s]:
            raise DataError(f"{path}: the {name}data has no rows")
    kind = "one split: train = test" if one else "train and test splits"
    source = f"{path} (datasets folder, {len(rows['train'])}/{len(rows['test'])} rows, {kind})"
    return PreferenceRows(rows["train"], rows["test"], source, where["train"], where["test"])


def read_preference_rows(path: str | Path) -> PreferenceRows:
    """The (prompt, chosen, rejected) rows of a JSONL file or a datasets folder."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; give a JSONL file or a datasets folder")
    if path.is_dir():
        return _read_datasets(path)
    try:
        rows, where, named = _split(path, _jsonl(path))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it ({e}); give a UTF-8 JSONL file") from None
    if not rows["train"]:
        raise DataError(f"{path}: no rows; write one JSON object per line")
    kind = "train and test splits" if named else "one split: train = test"
    source = f"{path} (JSONL, {len(rows['train'])}/{len(rows['test'])} rows, {kind})"
    return PreferenceRows(rows["train"], rows["test"], source, where["train"], where["test"])


def preference_task(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    max_new_tokens: int | None = None,
    judge: Judge | None = None,
    n_ctx: int | None = None,
) -> PreferenceTask:
    """The task of a preference file; with `n_ctx`, every prompt followed by a response of
    the generation limit (or its own longer one) must fit the context."""
    data = read_preference_rows(path)
    path = Path(path)
    try:
        task = PreferenceTask(
            data.train,
            data.test,
            tokenizer,
            name=path.name,  # "prefs.jsonl": never a preset's name, so no stored evaluation matches
            max_new_tokens=max_new_tokens,
            judge=judge,
        )
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    if n_ctx is not None:
        for side, where in (("train", data.train_where), ("test", data.test_where)):
            for (s, w, l), at in zip(task.pairs(side), where, strict=True):
                p = len(task.prompt_ids(s))
                r = max(task.max_new_tokens, len(task.response_ids(w)), len(task.response_ids(l)))
                if p + r > n_ctx:
                    raise DataError(
                        f"{path}: {at}: prompt ({p} tokens) + response ({r} tokens) exceeds "
                        f"n_ctx {n_ctx}; shorten the row or use a model with a longer context"
                    )
    return task

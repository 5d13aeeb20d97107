"""Check every row of a data file the way the training loader will, before it is registered.

    validate("chat.jsonl", {"formatting": "sharegpt"}, stage="sft") -> {"rows": 1000, "bad_rows": 3, ...}

The file is streamed (one row in memory at a time, whatever its size). Each row goes through the loader's own
reader (core.data.readers) and conversion (core.data.converter.convert_row) for the stage, so a row reported here
is exactly a row the loader would stop on (or skip with `skip_bad_rows: true`), and a file that validates clean
loads. Each problem is located (row, raw column) and says what is wrong and how to fix it.
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data.converter import NEEDS, convert_row
from core.data.readers import iter_rows
from core.data.registry import (
    DATASET_INFO,
    PAIRWISE_STAGES,
    DataError,
    DatasetAttr,
    RowError,
    check_stage,
    entry_attr,
    get_dataset_attr,
    load_dataset_info,
)

# detect()'s kinds, accepted as stages.
STAGE_OF_KIND = {"sft": "sft", "pairwise": "dpo", "kto": "kto", "pt": "pt"}
# How to fix a kind of problem when the message does not say.
FIXES = {
    "bad_json": "Each line must be one JSON object.",
    "not_object": "Make the row a JSON object of columns.",
    "not_utf8": "Save the file as UTF-8 (or fix that row).",
    "csv_fields": "Quote fields that contain commas.",
    "bad_history": "Give history as a list of [question, answer] pairs.",
    "not_messages": "Give the messages as a list of objects.",
    "no_prompt": "Start the conversation with a user turn.",
    "role_order": "Turns must alternate user -> assistant.",
    "bad_message": "Check tags.role_tag / tags.content_tag in the mapping.",
}
PROGRESS_SECONDS = 0.1
MAX_BAD_ROW_NUMBERS = 1_000_000

Progress = Callable[[int, int, int], None]


def stage_for(entry: dict[str, Any], path: str | os.PathLike | None = None) -> str:
    """The stage a dataset is checked for when none is given: dpo for ranking data, kto for labelled data, pt for
    plain text (a .txt file, or alpaca columns mapping only the prompt), else sft."""
    columns = entry.get("columns") or {}
    if entry.get("ranking"):
        return "dpo"
    if columns.get("kto_tag"):
        return "kto"
    alpaca = entry.get("formatting", "alpaca") == "alpaca"
    txt = path is not None and str(path).lower().endswith(".txt")
    only_prompt = columns.get("prompt") and not any(columns.get(k) for k in ("query", "response", "history", "chosen"))
    if alpaca and (txt or only_prompt):
        return "pt"
    return "sft"


def _need(stage: str) -> str | None:
    if stage in NEEDS:
        return NEEDS[stage]
    if stage in PAIRWISE_STAGES:
        return "pair"
    raise DataError(f"stage: received {stage!r} — use one of {', '.join([*NEEDS, *STAGE_OF_KIND])}.")


def _problem(err: RowError, row: int, where: str, file: Path, multi: bool) -> dict[str, Any]:
    kind = getattr(err, "kind", "bad_row")
    what = getattr(err, "what", "") or str(err)
    problem = {
        "row": row,
        "where": where,
        "column": getattr(err, "column", None),
        "kind": kind,
        "what": what,
        "fix": getattr(err, "fix", "") or FIXES.get(kind, "Fix or remove that row."),
        "message": str(err),
    }
    if multi:
        problem["file"] = str(file)
    return problem


def check_rows(
    attr: DatasetAttr,
    files: list[Path],
    stage: str,
    *,
    progress: Progress | None = None,
    max_problems: int = 1000,
) -> dict[str, Any]:
    """Run every row of `files` through the reader and convert_row for `stage`; see `validate` for the result."""
    started = time.monotonic()
    stage = STAGE_OF_KIND.get(stage, stage)
    need = _need(stage)
    check_stage(attr, stage)
    total = sum(f.stat().st_size for f in files)
    rows = bad = 0
    done_before = 0  # bytes of the files already read
    counts: Counter = Counter()
    problems: list[dict[str, Any]] = []
    bad_numbers: list[int] = []
    fatal = None
    last = started
    handle: list[Any] = []

    def report(file_done: int) -> None:
        if progress is not None:
            progress(min(done_before + file_done, total), total, rows)

    for file in files:
        handle.clear()
        size = file.stat().st_size
        try:
            for where, raw in iter_rows(file, bad_rows="yield", on_open=handle.append):
                try:
                    if isinstance(raw, RowError):
                        raise raw
                    convert_row(raw, attr, where, str(file), need)
                except RowError as err:
                    bad += 1
                    counts[getattr(err, "kind", "bad_row")] += 1
                    if len(bad_numbers) < MAX_BAD_ROW_NUMBERS:
                        bad_numbers.append(rows)
                    if len(problems) < max_problems:
                        problems.append(_problem(err, rows, where, file, len(files) > 1))
                rows += 1
                if progress is not None and not rows & 255 and (now := time.monotonic()) - last >= PROGRESS_SECONDS:
                    last = now
                    report(handle[0].buffer.tell() if handle else 0)
        except DataError as err:  # the file itself cannot be read on (a broken JSON array, a damaged parquet)
            fatal = str(err)
            counts["unreadable_file"] += 1
            break
        except UnicodeDecodeError as err:
            fatal = f"{file}: not UTF-8 text ({err.reason}). Save the file as UTF-8."
            counts["unreadable_file"] += 1
            break
        done_before += size
    if fatal is None and rows == bad:
        fatal = f"{attr.name}: no usable rows ({rows} read, {bad} with problems)."
    report(0)
    return {
        "rows": rows,
        "bad_rows": bad,
        "good_rows": rows - bad,
        "bad_row_numbers": bad_numbers,
        "bad_row_numbers_capped": bad > len(bad_numbers),
        "counts": dict(counts.most_common()),
        "problems": problems,
        "fatal": fatal,
        "stage": stage,
        "bytes": total,
        "seconds": round(time.monotonic() - started, 3),
    }


def validate(
    path: str | os.PathLike,
    entry: dict[str, Any],
    *,
    stage: str | None = None,
    progress: Progress | None = None,
    max_problems: int = 1000,
    name: str = "new_dataset",
) -> dict[str, Any]:
    """Check a file (or a folder of files) against a proposed entry (`file_name` is ignored) for `stage` (a stage
    name or a detect() kind; default: stage_for(entry)).

    -> {"rows", "bad_rows", "good_rows", "bad_row_numbers" (0-based, sorted, capped at MAX_BAD_ROW_NUMBERS),
        "bad_row_numbers_capped", "counts": {kind: n}, "problems": [{"row", "where", "column", "kind", "what", "fix",
        "message"} ...] (at most `max_problems`), "fatal": str | None (the file cannot be loaded even without its
        bad rows), "stage", "bytes", "seconds"}.
    `progress(done_bytes, total_bytes, rows)` is called at most every PROGRESS_SECONDS, and once at the end.
    Raises DataError for an entry that cannot work (unknown formatting, wrong stage) or a missing file.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise DataError(f"{path}: no such file. Check the path.")
    entry = {k: v for k, v in entry.items() if k != "file_name"}
    attr = entry_attr(name, {**entry, "file_name": str(path)}, path.parent, path.parent / DATASET_INFO)
    files = attr.files()
    return check_rows(attr, files, stage or stage_for(entry, path), progress=progress, max_problems=max_problems)


def validate_dataset(
    dataset_dir: str | os.PathLike,
    name: str,
    *,
    stage: str | None = None,
    progress: Progress | None = None,
    max_problems: int = 1000,
) -> dict[str, Any]:
    """`validate` for a registered dataset (every file of a folder dataset)."""
    attr = get_dataset_attr(name, dataset_dir)
    if attr.load_from != "file":
        raise DataError(
            f"{attr.info_file}: dataset '{name}' is on the Hugging Face Hub; only local files are checked."
        )
    entry = load_dataset_info(dataset_dir)[name]
    stage = stage or stage_for(entry, attr.dataset_name)
    return check_rows(attr, attr.files(), stage, progress=progress, max_problems=max_problems)

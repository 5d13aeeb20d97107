"""Copy a data file into a dataset_dir and register it in that folder's dataset_info.json, safely.

    add_dataset("data", "my_chat", "/downloads/chat.jsonl", {"formatting": "sharegpt"})

- The source file is never altered: it is copied (or, with `skip_rows`, rewritten without those rows) to a new file
  in the dataset_dir, written to a temporary name and renamed into place.
- dataset_info.json is backed up to dataset_info.json.bak, then rewritten through a temporary file and a rename, under
  a lock so that two adds at once do not lose one. The new entry is spliced into the file's text: every other
  entry keeps its exact bytes (formatting, key order, even a name given twice).
- A name that exists is refused (NameTaken) unless `replace=True`.

Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from core.data.readers import count_rows, file_type, iter_rows
from core.data.registry import DATASET_INFO, DataError, load_dataset_info
from core.paths import DEMO_DATA_DIR, resolve_dataset_dir

BACKUP_SUFFIX = ".bak"
_BAD_NAME_CHARS = set(",/\\\n\r\t")


class NameTaken(DataError):
    """A dataset of that name is already registered (pass replace=True to overwrite it)."""


def check_name(name: str) -> str:
    """`name` if it can be a dataset name (it is listed in comma-separated `dataset:` values), else DataError."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise DataError(f"name: received {name!r} — give a non-empty name without leading or trailing spaces.")
    bad = sorted(_BAD_NAME_CHARS & set(name))
    if bad:
        raise DataError(
            f"name: received {name!r} — a dataset name cannot hold {' '.join(repr(c) for c in bad)} "
            "(names are listed comma-separated). Use letters, digits, '_', '-' or '.'."
        )
    return name


def _target_dir(dataset_dir: str | os.PathLike) -> Path:
    root = resolve_dataset_dir(dataset_dir)
    if root.resolve() == DEMO_DATA_DIR.resolve():
        raise DataError(
            f"dataset_dir: {root} holds the packaged demo datasets, which are not written to. "
            "Give your own folder (the board's default is 'data')."
        )
    if root.exists() and not root.is_dir():
        raise DataError(f"dataset_dir: {root} is a file, not a folder. Give a folder.")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold dataset_info.json's lock (a sibling .lock file) while reading and rewriting it."""
    lock = root / f".{DATASET_INFO}.lock"
    with lock.open("a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; adds are rare enough
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, write: Callable[[Path], Any]) -> Any:
    """Run `write(tmp)` on a temporary file next to `path`, flush it to disk, and rename it onto `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        result = write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def _write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _os_errors(function: Callable) -> Callable:
    """OSError (a read-only folder, a full disk) -> DataError naming the path, so the CLI and the board show one
    line instead of a traceback."""

    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except OSError as err:
            where = err.filename or (args[0] if args else "")
            raise DataError(
                f"{where}: cannot be written or read ({err.strerror or err}). Check the folder's permissions and free "
                "space, or give another dataset_dir."
            ) from None

    return wrapped


# The registry's text


def _entry_spans(text: str, path: Path) -> dict[str, tuple[int, int]]:
    """{name: (start, end)} of each top-level value in the JSON object `text` (the last one of a repeated name)."""
    decoder = json.JSONDecoder()
    pos = text.index("{") + 1
    spans: dict[str, tuple[int, int]] = {}

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    while pos < len(text) and text[pos] != "}":
        key, pos = decoder.raw_decode(text, pos)
        pos = skip(pos)
        if text[pos] != ":":
            raise DataError(f"{path}: expected ':' after {key!r}.")
        start = skip(pos + 1)
        _, end = decoder.raw_decode(text, start)
        spans[key] = (start, end)
        pos = skip(end)
        if text[pos] == ",":
            pos = skip(pos + 1)
    return spans


def _entry_text(entry: dict[str, Any]) -> str:
    return json.dumps(entry, indent=2, ensure_ascii=False).replace("\n", "\n  ")


def spliced(text: str, name: str, entry: dict[str, Any], path: Path) -> str:
    """`text` (a dataset_info.json) with `name` set to `entry`: replaced in place when present, else appended.
    Every other byte of the file stays as it was."""
    if not text.strip():
        return "{\n  " + json.dumps(name, ensure_ascii=False) + ": " + _entry_text(entry) + "\n}\n"
    spans = _entry_spans(text, path)
    if name in spans:
        start, end = spans[name]
        return text[:start] + _entry_text(entry) + text[end:]
    close = text.rindex("}")
    body_end = len(text[:close].rstrip())
    comma = "" if text[:body_end].endswith("{") else ","
    item = f"{comma}\n  {json.dumps(name, ensure_ascii=False)}: {_entry_text(entry)}"
    tail = text[body_end:close]
    return text[:body_end] + item + (tail if "\n" in tail else "\n") + text[close:]


@_os_errors
def register_entry(dataset_dir: str | os.PathLike, name: str, entry: dict[str, Any], *, replace: bool = False) -> Path:
    """Set `name` to `entry` in dataset_dir/dataset_info.json (backup, temp file + rename, other entries untouched).
    Raises NameTaken when it exists and `replace` is False, DataError when the file is malformed (it is then left
    as it is: fix it first). Returns the path of dataset_info.json."""
    check_name(name)
    root = _target_dir(dataset_dir)
    info_file = root / DATASET_INFO
    with _locked(root):
        info = load_dataset_info(root)  # refuses a malformed file before anything is written
        if name in info and not replace:
            raise NameTaken(_taken_message(info_file, name, info[name]))
        text = info_file.read_text(encoding="utf-8-sig") if info_file.is_file() else ""
        new_text = spliced(text, name, entry, info_file)
        expected = {**info, name: entry}
        if json.loads(new_text) != expected:  # never write a registry that does not read back as intended
            raise DataError(f"{info_file}: could not add '{name}' without changing other entries; nothing written.")
        if info_file.is_file():
            backup = info_file.with_name(DATASET_INFO + BACKUP_SUFFIX)
            _write_atomic(backup, lambda tmp: shutil.copyfile(info_file, tmp))
        _write_text(info_file, new_text)
    return info_file


def _taken_message(info_file: Path, name: str, entry: dict[str, Any]) -> str:
    where = entry.get("file_name") or entry.get("hf_hub_url") or "?"
    return (
        f"{info_file}: a dataset named '{name}' already exists ({where}). "
        "Pick another name, or choose to replace it (--replace)."
    )


# The data file


def _file_name(root: Path, name: str, suffix: str, info: dict[str, Any], replace: bool, source: Path) -> str:
    """A file name in `root` for the new data: `<name><suffix>`, or with -2, -3, ... when taken by a file that is
    not the replaced entry's own (or is the source itself)."""
    old = info.get(name, {}).get("file_name") if replace else None
    others = {e.get("file_name") for n, e in info.items() if n != name}
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    number = 1
    while True:
        candidate = f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}"
        path = root / candidate
        free = not path.exists() or (candidate == old and candidate not in others)
        if free and not (path.exists() and path.resolve() == source.resolve()):
            return candidate
        number += 1


def _copy_lines(source: Path, tmp: Path, skip: Collection[int]) -> tuple[int, int]:
    """Copy a jsonl or txt file line by line, leaving out blank lines and the rows (0-based, counting non-blank
    lines as the reader does) in `skip`. Returns (rows written, rows skipped)."""
    rows = skipped = index = 0
    opts = {"encoding": "utf-8", "errors": "surrogateescape"}
    with source.open("r", **{**opts, "encoding": "utf-8-sig"}) as src, tmp.open("w", newline="\n", **opts) as dst:
        for line in src:
            if not line.strip():
                continue
            if index in skip:
                skipped += 1
            else:
                dst.write(line if line.endswith("\n") else line + "\n")
                rows += 1
            index += 1
    return rows, skipped


def _copy_rows(source: Path, tmp: Path, kind: str, skip: Collection[int]) -> tuple[int, int]:
    """Copy the rows of a json, csv or parquet file not in `skip` (0-based, as the reader numbers them)."""
    rows = skipped = 0
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source)
        with pq.ParquetWriter(tmp, parquet.schema_arrow) as writer:
            start = 0
            for batch in parquet.iter_batches(batch_size=4096):
                keep = [i for i in range(batch.num_rows) if start + i not in skip]
                skipped += batch.num_rows - len(keep)
                rows += len(keep)
                if keep:
                    writer.write_table(pa.Table.from_batches([batch]).take(keep))
                start += batch.num_rows
        return rows, skipped
    with tmp.open("w", encoding="utf-8", newline="" if kind == "csv" else "\n") as dst:
        writer = None
        if kind == "csv":
            csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
            with source.open("r", encoding="utf-8-sig", newline="") as f:
                header = next(csv.reader(f), [])
            writer = csv.DictWriter(dst, fieldnames=header)
            writer.writeheader()
        for index, (_, row) in enumerate(iter_rows(source, bad_rows="yield")):
            if index in skip or isinstance(row, Exception):
                skipped += 1
                continue
            if writer is not None:
                writer.writerow(row)
            else:
                dst.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
    return rows, skipped


def copy_data(source: Path, target: Path, skip_rows: Collection[int] | None = None) -> tuple[int | None, int]:
    """Write `source`'s rows to `target` (atomically), without the rows in `skip_rows`. A json array comes out as
    JSON Lines when rows are skipped (give `target` a .jsonl name then). Returns (rows or None if not counted,
    skipped)."""
    kind = file_type(source)
    skip = set(skip_rows or ())
    if not skip:
        _write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))
        return count_rows(target), 0
    if kind in ("jsonl", "txt"):
        return _write_atomic(target, lambda tmp: _copy_lines(source, tmp, skip))
    return _write_atomic(target, lambda tmp: _copy_rows(source, tmp, kind, skip))


@_os_errors
def add_dataset(
    dataset_dir: str | os.PathLike,
    name: str,
    source: str | os.PathLike,
    entry: dict[str, Any],
    *,
    replace: bool = False,
    skip_rows: Collection[int] | None = None,
    copy: bool = True,
    move: bool = False,
) -> dict[str, Any]:
    """Copy `source` into dataset_dir (without the 0-based rows in `skip_rows`) and register it as `name` with
    `entry` (its "file_name" is set here). `copy=False` registers a file already inside dataset_dir where it is;
    `move=True` renames `source` into place instead of copying it (for files this package just wrote).

    -> {"name", "file_name", "rows" (None when counting would mean parsing a large file), "skipped", "info_file"}
    """
    check_name(name)
    source = Path(source)
    if not source.is_file():
        raise DataError(f"{source}: no such file. Check the path.")
    kind = file_type(source)
    root = _target_dir(dataset_dir)
    info = load_dataset_info(root)
    if name in info and not replace:
        raise NameTaken(_taken_message(root / DATASET_INFO, name, info[name]))
    entry = {k: v for k, v in entry.items() if k != "file_name"}
    if not copy:
        if skip_rows:
            raise DataError("skip_rows needs a copy: rows are never removed from a file in place.")
        try:
            file_name = source.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise DataError(f"{source}: not inside the dataset_dir {root}; copy it there (copy=True).") from None
        rows, skipped, created = count_rows(source), 0, None
    else:
        suffix = ".jsonl" if skip_rows and kind == "json" else source.suffix.lower()
        file_name = _file_name(root, name, suffix, info, replace, source)
        target = root / file_name
        created = None if target.exists() else target
        if move:
            os.replace(source, target)
            rows, skipped = count_rows(target), 0
        else:
            rows, skipped = copy_data(source, target, skip_rows)
    try:
        info_file = register_entry(root, name, {"file_name": file_name, **entry}, replace=replace)
    except DataError:
        if created is not None:
            created.unlink(missing_ok=True)
        raise
    return {"name": name, "file_name": file_name, "rows": rows, "skipped": skipped, "info_file": str(info_file)}

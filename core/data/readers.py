"""Streaming readers for json, jsonl, csv, parquet and txt files: rows come out one at a time with their place
in the file ("line 17", "record 3"), so an error can point at the row and a preview never reads the whole file.

Pure: no torch, transformers or datasets (parquet needs pyarrow, imported only when a parquet file is read).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.data.registry import FILE_TYPES, DataError, RowError

_CHUNK = 1 << 16
# Counting rows means reading the whole file: lines are cheap to count, JSON and CSV records must be parsed.
# Above these sizes a preview says "unknown" instead of spending more than a fraction of a second.
COUNT_LIMIT_BYTES = 64 << 20
PARSED_COUNT_LIMIT_BYTES = 8 << 20
# Deeper cells are refused: no dataset column needs them, and the tokenizer, Arrow and json.dumps would fail on
# them deep inside their own code.
MAX_DEPTH = 64
# Text files are opened with surrogateescape, so a byte that is not UTF-8 becomes one of U+DC80..U+DCFF and the
# row holding it can be named (and skipped) instead of the whole file failing to decode.
_BAD_BYTE = re.compile("[\udc80-\udcff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def file_type(path: Path) -> str:
    kind = FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'. Use one of {', '.join(FILE_TYPES)}.")
    return kind


def iter_rows(
    path: str | Path, start: int = 0, bad_rows: str = "raise", on_open: Callable[[Any], None] | None = None
) -> Iterator[tuple[str, Any]]:
    """Yield `(where, row)` for every row from index `start` on; `where` is e.g. "line 17" (1-based).

    Rows before `start` are skipped without being parsed where the format allows (jsonl, txt, csv). A row that
    cannot be parsed on its own (a broken jsonl line, a non-object record) raises RowError, or with
    `bad_rows="yield"` comes out as `(where, RowError)` so that the caller can count it and go on.
    `on_open(f)` is called with the opened text file (not for parquet), e.g. to follow `f.buffer.tell()`.
    """
    for where, row in _iter_any(Path(path), start, on_open):
        if isinstance(row, RowError) and bad_rows == "raise":
            raise row
        yield where, row


def _iter_any(path: Path, start: int, on_open: Callable[[Any], None] | None = None) -> Iterator[tuple[str, Any]]:
    kind = file_type(path)
    if kind == "parquet":
        yield from _iter_parquet(path, start)
        return
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="" if kind == "csv" else None) as f:
        if on_open is not None:
            on_open(f)
        if kind == "jsonl":
            yield from _iter_jsonl(path, f, start)
        elif kind == "txt":
            yield from _iter_txt(path, f, start)
        elif kind == "csv":
            yield from _iter_csv(path, f, start)
        else:
            yield from _iter_json(path, f, start)


def count_rows(path: str | Path) -> int | None:
    """Number of rows, or None when that would mean reading a file bigger than COUNT_LIMIT_BYTES."""
    path = Path(path)
    kind = file_type(path)
    if kind == "parquet":
        return _parquet_file(path).metadata.num_rows
    size = path.stat().st_size
    if kind in ("jsonl", "txt"):
        if size > COUNT_LIMIT_BYTES:
            return None
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if size > PARSED_COUNT_LIMIT_BYTES:
        return None
    return sum(1 for _ in _iter_any(path, 0))


def _not_object(path: Path, where: str, value: Any) -> RowError:
    what = f"a row must be a JSON object of columns, got {type(value).__name__} {str(value)[:60]!r}"
    return RowError(f"{path}, {where}: {what}.", kind="not_object", what=what, fix="Make the row a JSON object.")


def _encodes(text: str) -> bool:
    """Whether `text` holds no escaped byte (no surrogate): encoding runs in C, ~20x faster than a regex scan."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_text(path: Path, where: str, raw: str, row: Any, columns: bool = True) -> RowError | None:
    """A row whose raw text holds bytes that are not UTF-8, or whose values hold a lone surrogate (`"\\ud800"`) or
    nest deeper than MAX_DEPTH: the error naming it, else None. Cheap for ordinary rows (two substring scans)."""
    bad = None if raw.isascii() or _encodes(raw) else _BAD_BYTE.search(raw)
    if bad:
        what = f"byte 0x{ord(bad.group()) - 0xDC00:02x}" + (f" at column {bad.start() + 1}" if columns else "")
        what += " is not UTF-8"
        fix = "Save the file as UTF-8 (or fix that row)."
        return RowError(f"{path}, {where}: {what}. {fix}", kind="not_utf8", what=what, fix=fix)
    if "\\u" not in raw and raw.count("[") + raw.count("{") <= MAX_DEPTH:
        return None
    problem = _deep_or_surrogate(row, 0)
    if problem:
        return RowError(
            f"{path}, {where}: {problem}. Fix that row.", kind="bad_value", what=problem, fix="Fix that row."
        )
    return None


def _deep_or_surrogate(value: Any, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return f"a value nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        lone = _SURROGATE.search(value)
        return f"a lone surrogate escape (\\u{ord(lone.group()):04x}) in a string: not text" if lone else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        problem = _deep_or_surrogate(key, depth + 1) if isinstance(key, str) else None
        problem = problem or _deep_or_surrogate(item, depth + 1)
        if problem:
            return problem
    return None


def _too_deep(path: Path, where: str) -> str:
    return (
        f"{path}, {where}: nested deeper than Python's JSON reader follows (more than "
        f"{sys.getrecursionlimit()} levels). Fix that row."
    )


def _iter_jsonl(path: Path, f, start: int) -> Iterator[tuple[str, Any]]:
    index = 0
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        index += 1
        if index <= start:
            continue
        where = f"line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            what, fix = f"not valid JSON at column {err.colno}: {err.msg}", "Each line must be one JSON object."
            yield where, RowError(f"{path}, {where}: {what}. {fix}", kind="bad_json", what=what, fix=fix)
            continue
        except RecursionError:
            yield (
                where,
                RowError(_too_deep(path, where), kind="bad_value", what="nested too deep", fix="Fix that row."),
            )
            continue
        if not isinstance(row, dict):
            yield where, _not_object(path, where, row)
            continue
        yield where, _bad_text(path, where, line, row) or row


def _iter_txt(path: Path, f, start: int) -> Iterator[tuple[str, dict[str, Any]]]:
    index = 0
    for number, line in enumerate(f, 1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        index += 1
        if index <= start:
            continue
        where = f"line {number}"
        yield where, _bad_text(path, where, text, text) or {"text": text}


def _iter_csv(path: Path, f, start: int) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.DictReader(f)
    for index, row in enumerate(reader):
        if index < start:
            continue
        where = f"line {reader.line_num}"
        if None in row:
            what = f"more fields than the header's {len(reader.fieldnames or [])} columns"
            fix = "Quote fields that contain commas."
            yield where, RowError(f"{path}, {where}: {what}. {fix}", kind="csv_fields", what=what, fix=fix)
            continue
        raw = "\x00".join(value for value in row.values() if isinstance(value, str))
        yield where, _bad_text(path, where, raw, row, columns=False) or row


def _parquet_file(path: Path):
    """The opened pyarrow ParquetFile, or DataError naming the file when it is empty or not parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes), not a parquet file. Write the data again or remove it.")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            f"{path}: not a readable parquet file ({err}). Write it again with pandas / pyarrow `to_parquet`, or "
            "give the data as .jsonl."
        ) from None


def _iter_parquet(path: Path, start: int) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa

    index = 0
    batches = _parquet_file(path).iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as err:  # a damaged row group
            raise DataError(f"{path}, from row {index + 1}: cannot be read ({err}).") from None
        if index + batch.num_rows <= start:
            index += batch.num_rows
            continue
        for row in batch.to_pylist():
            if index >= start:
                yield f"row {index + 1}", row
            index += 1


def _iter_json(path: Path, f, start: int) -> Iterator[tuple[str, Any]]:
    """A JSON array of objects, decoded object by object; a .json file holding JSON Lines works too."""
    buf = f.read(_CHUNK)
    pos = len(buf) - len(buf.lstrip())
    while pos == len(buf):
        more = f.read(_CHUNK)
        if not more:
            return  # an empty file has no rows
        buf += more
        pos = len(buf) - len(buf.lstrip())
    if buf[pos] != "[":
        f.seek(0)
        yield from _iter_jsonl(path, f, start)
        return
    decoder = json.JSONDecoder()
    line = 1 + buf.count("\n", 0, pos)  # line number at `pos`
    pos += 1
    index = 0
    eof = False
    first = True

    def refill() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        more = f.read(max(_CHUNK, len(buf)))
        if not more:
            eof = True
            return False
        buf = buf[pos:] + more
        pos = 0
        return True

    def skip_space() -> bool:
        nonlocal pos, line
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or not refill():
                return pos < len(buf)

    while True:
        if not skip_space():
            raise DataError(f"{path}: the JSON array is not closed with ']' (the file ends at line {line}).")
        if buf[pos] == "]":
            return
        if not first:
            if buf[pos] != ",":
                raise DataError(f"{path}, line {line}: expected ',' or ']' between records, got {buf[pos]!r}.")
            pos += 1
            if not skip_space():
                raise DataError(f"{path}: the JSON array is not closed with ']' (the file ends at line {line}).")
        first = False
        while True:
            try:
                obj, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as err:
                if refill():
                    continue
                bad_line = line + buf.count("\n", pos, err.pos)
                raise DataError(f"{path}, line {bad_line}: not valid JSON: {err.msg}.") from None
            except RecursionError:
                raise DataError(_too_deep(path, f"record {index + 1} (line {line})")) from None
        where = f"record {index + 1} (line {line})"
        raw = buf[pos:end]
        line += buf.count("\n", pos, end)
        pos = end
        index += 1
        if index <= start:
            continue
        if not isinstance(obj, dict):
            yield where, _not_object(path, where, obj)
            continue
        yield where, _bad_text(path, where, raw, obj) or obj

"""Reading the small YAML and JSON files a user hands us (argument files, dataset_info.json), safely. Pure.

One loader for the CLI, the core and the board, so a file is refused the same way everywhere, in a fraction of
a second and with a message naming the file and the line:
- not text: a NUL byte or bytes that are not UTF-8 (the message gives the line and column);
- larger than `MAX_BYTES`, nested deeper than Python can follow, or an alias bomb (anchors that expand to more
  than `MAX_NODES` values, refused before anything walks the whole expansion);
- YAML tags that build Python objects (safe_load only).
A key given twice in one mapping is not an error (YAML and JSON readers keep the later one) but it is almost
always a mistake: the loaders return a warning for it that names both lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileFormatError(UserError, ValueError):
    """A file that cannot be read as the text, YAML or JSON it should be; the message names it and the place."""


def read_text(path: str | os.PathLike, max_bytes: int | None = MAX_BYTES, what: str = "file") -> str:
    """The UTF-8 text of a small file (a BOM is dropped); FileFormatError for a missing, binary or huge file."""
    path = Path(path)
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise FileFormatError(
                f"{path}: larger than {max_bytes // 1024} KiB; {'an' if what[0] in 'aeiou' else 'a'} {what} is a "
                "few lines of text — check that this is the right file."
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileFormatError(f"{path}: file not found — check the path (relative to {Path.cwd()}).") from None
    except IsADirectoryError:
        raise FileFormatError(f"{path}: is a folder, not a file — give the file's path.") from None
    except OSError as err:
        raise FileFormatError(f"{path}: cannot be read ({err.strerror or err}).") from None
    return decode_text(data, str(path))


def decode_text(data: bytes, name: str) -> str:
    """`data` as UTF-8 text, or FileFormatError naming the line and column of the first NUL or undecodable byte."""
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _place(data, nul)
        raise FileFormatError(
            f"{name}: not a text file (a NUL byte at line {line}, column {column}) — give a YAML or JSON text file."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line, column = _place(data, err.start)
        raise FileFormatError(
            f"{name}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, column {column}) — save the "
            "file as UTF-8."
        ) from None


def _place(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


class _DuplicateKeyLoader(_SAFE_LOADER):  # type: ignore[misc, valid-type]
    """safe_load, noting every key given twice in one mapping with both lines."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[Any, int, int]] = []

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` overrides on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                continue
            if first != key_node.start_mark.line + 1:
                self.duplicates.append((key, first, key_node.start_mark.line + 1))
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, name: str) -> tuple[Any, list[str]]:
    """(data, warnings) of YAML text; FileFormatError for anything but plain data (see the module docstring)."""
    if len(text) > MAX_BYTES:
        raise FileFormatError(f"{name}: larger than {MAX_BYTES // 1024} KiB; an argument file is a few lines.")
    if "\x00" in text:
        raise FileFormatError(f"{name}: holds a NUL character — give YAML text.")
    loader = _DuplicateKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.constructor.ConstructorError as err:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}" if mark else ""
        raise FileFormatError(f"{name}{where}: {err.problem} — only plain YAML data is read (no tags).") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        what = getattr(err, "problem", None) or str(err)
        raise FileFormatError(f"{name}:{where} {what} — fix the YAML (each line is `key: value`)") from None
    except RecursionError:
        raise FileFormatError(f"{name}: nested too deeply to read — an argument file is flat `key: value`.") from None
    finally:
        loader.dispose()
    count_nodes(data, name)
    return data, [_duplicate(name, key, first, again) for key, first, again in loader.duplicates]


def load_json_text(text: str, name: str) -> tuple[Any, list[str]]:
    """(data, warnings) of JSON text; FileFormatError naming the line and column of a syntax error."""
    duplicated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicated.append(key)
            result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{name}: line {err.lineno}, column {err.colno}: {err.msg} — fix the JSON") from None
    except RecursionError:
        raise FileFormatError(f"{name}: nested too deeply to read.") from None
    found = json_duplicate_keys(text) if duplicated else []
    return data, [_duplicate(name, key, first, again) for key, first, again in found]


def _duplicate(name: str, key: Any, first: int, again: int) -> str:
    where = f"twice on line {first}" if first == again else f"on line {first} and again on line {again}"
    return f"{name}: {key!r} is given {where}; the later value is used — remove or rename one of them"


def json_duplicate_keys(text: str) -> list[tuple[str, int, int]]:
    """(key, first line, repeated line) for every key given twice in one JSON object of `text` (valid JSON)."""
    found: list[tuple[str, int, int]] = []
    stack: list[dict[str, int] | None] = []  # one entry per open object (its keys) or array (None)
    expect_key = False
    line, i, n = 1, 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if expect_key and stack and stack[-1] is not None:
                key = json.loads(text[i : j + 1])
                keys = stack[-1]
                if key in keys:
                    found.append((key, keys[key], line))
                keys[key] = line
                expect_key = False
            i = j + 1
            continue
        if char == "\n":
            line += 1
        elif char == "{":
            stack.append({})
            expect_key = True
        elif char == "[":
            stack.append(None)
        elif char in "]}":
            if stack:
                stack.pop()
        elif char == ",":
            expect_key = bool(stack) and stack[-1] is not None
        i += 1
    return found


def count_nodes(data: Any, name: str, limit: int = MAX_NODES) -> None:
    """FileFormatError when `data` holds more than `limit` values (an alias bomb), without walking all of them."""
    budget = [limit]

    def walk(value: Any) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise FileFormatError(
                f"{name}: expands to more than {limit} values (anchors and aliases nested into each other?) — an "
                "argument file is a flat list of `key: value`."
            )
        if isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    try:
        walk(data)
    except RecursionError:
        raise FileFormatError(f"{name}: nested too deeply to read.") from None


def load_file(path: str | os.PathLike, max_bytes: int | None = MAX_BYTES) -> tuple[Any, list[str]]:
    """(data, warnings) of a YAML file, or a JSON one by its .json suffix."""
    path = Path(path)
    text = read_text(path, max_bytes)
    if path.suffix.lower() == ".json":
        return load_json_text(text, str(path))
    return load_yaml_text(text, str(path))

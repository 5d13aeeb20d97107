"""Data files and registries that cannot be read as given: each is one error naming the file and, where there is
one, the row; bad rows are skipped and counted with skip_bad_rows instead (issue 19, items 5 and 6)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from datahelp import write_dataset_dir

from core.data import preview
from core.data.loader import load_rows
from core.data.readers import MAX_DEPTH, count_rows
from core.data.registry import DataError, get_dataset_attr, load_dataset_info

GOOD = {"instruction": "q", "output": "a"}
GOOD_LINE = json.dumps(GOOD)


def _load(ddir, name="ds", skip=False, need="response"):
    data_args = SimpleNamespace(skip_bad_rows=skip, max_samples=None)
    return load_rows(get_dataset_attr(name, ddir), need, data_args, seed=0)


def _dir_with(tmp_path, file_name: str, data: bytes, entry: dict | None = None):
    ddir = write_dataset_dir(tmp_path / "d", {"ds": {"file_name": file_name, **(entry or {})}}, {})
    (ddir / file_name).write_bytes(data)
    return ddir


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# Every kind of unreadable row, in every text file type that can hold it: (file name, bytes, row, what is said).
BAD_ROWS = [
    ("a.jsonl", f'{GOOD_LINE}\n{{"instruction": "caf\xe9", "output": "a"}}\n'.encode("latin-1"), "line 2", "0xe9"),
    ("a.json", f'[{GOOD_LINE},\n{{"instruction": "\xff", "output": "a"}}]'.encode("latin-1"), "record 2", "0xff"),
    ("a.csv", b"instruction,output\nq,a\n\xfe\xff,a\n", "line 3", "0xfe"),
    ("a.jsonl", f'{GOOD_LINE}\n{{"instruction": "x\\ud800y", "output": "a"}}\n'.encode(), "line 2", "surrogate"),
    ("a.json", f'[{GOOD_LINE},\n{{"instruction": "\\udfff", "output": "a"}}]'.encode(), "record 2", "surrogate"),
    ("a.jsonl", f'{GOOD_LINE}\n{{"instruction": "q", "output": {_deep(5000)}}}\n'.encode(), "line 2", "nested"),
    (
        "a.jsonl",
        f'{GOOD_LINE}\n{{"instruction": "q", "output": {_deep(MAX_DEPTH + 5)}}}\n'.encode(),
        "line 2",
        "nested",
    ),
    ("a.json", f'[{GOOD_LINE},\n{{"instruction": "q", "h": {_deep(MAX_DEPTH + 5)}}}]'.encode(), "record 2", "nested"),
]


@pytest.mark.parametrize(
    ("file_name", "data", "row", "said"),
    BAD_ROWS,
    ids=[
        "jsonl-latin1",
        "json-latin1",
        "csv-latin1",
        "jsonl-surrogate",
        "json-surrogate",
        "jsonl-deep-5000",
        "jsonl-deep-69",
        "json-deep-69",
    ],  # fmt: skip
)
def test_unreadable_rows_name_file_and_row_or_are_skipped(tmp_path, file_name, data, row, said):
    ddir = _dir_with(tmp_path, file_name, data)
    with pytest.raises(DataError) as err:
        _load(ddir)
    message = str(err.value)
    assert f"{file_name}, {row}" in message and said in message and "skip_bad_rows" in message
    assert _load(ddir, skip=True) == _load(_dir_with(tmp_path / "good", file_name, _only_good(file_name)))


def _only_good(file_name: str) -> bytes:
    if file_name.endswith(".csv"):
        return b"instruction,output\nq,a\n"
    return f"[{GOOD_LINE}]".encode() if file_name.endswith(".json") else f"{GOOD_LINE}\n".encode()


def test_a_record_too_deep_to_parse_in_a_json_array_names_the_record(tmp_path):
    ddir = _dir_with(tmp_path, "a.json", f'[{GOOD_LINE},\n{{"output": {_deep(5000)}}}]'.encode())
    with pytest.raises(DataError, match=r"a\.json, record 2 \(line 2\): nested deeper"):
        _load(ddir)


def test_invalid_utf8_in_a_txt_file_names_the_line(tmp_path):
    ddir = _dir_with(tmp_path, "a.txt", b"hello\nbad \xc3\x28 byte\nworld\n")
    with pytest.raises(DataError, match=r"a\.txt, line 2: byte 0xc3 at column 5 is not UTF-8"):
        _load(ddir, need=None)
    assert [row["_prompt"][0]["content"] for row in _load(ddir, skip=True, need=None)] == ["hello", "world"]


def test_valid_surrogate_pairs_and_a_bom_still_read(tmp_path):
    ddir = _dir_with(tmp_path, "a.jsonl", b'\xef\xbb\xbf{"instruction": "\\ud83d\\ude00", "output": "a"}\n')
    assert _load(ddir)[0]["_prompt"][0]["content"] == "\U0001f600"


@pytest.mark.parametrize(
    ("data", "said"), [(b"", "empty (0 bytes)"), (b"not parquet at all", "not a readable parquet")]
)
def test_an_empty_or_foreign_parquet_file_is_named(tmp_path, data, said):
    ddir = _dir_with(tmp_path, "a.parquet", data)
    # training, counting, and the board's preview (which shows a DataError as its message)
    for read in (lambda: _load(ddir), lambda: count_rows(ddir / "a.parquet"), lambda: preview.preview(ddir, "ds")):
        with pytest.raises(DataError) as err:
            read()
        assert "a.parquet" in str(err.value) and said in str(err.value)


SHAREGPT = {"file_name": "s.json", "formatting": "sharegpt"}
OPENAI = {"file_name": "s.json", "formatting": "openai"}


@pytest.mark.parametrize(
    ("entry", "bad_message", "said"),
    [
        (SHAREGPT, {"from": "gpt"}, "message 1 (gpt) in 'conversations' has no 'value'"),
        (SHAREGPT, {"from": "gpt", "value": None}, "has no 'value' (it is null)"),
        (SHAREGPT, {"from": "human"}, "message 0 (human) in 'conversations' has no 'value'"),
        (OPENAI, {"role": "assistant"}, "message 1 (assistant) in 'messages' has no 'content'"),
        (OPENAI, {"role": "assistant", "content": None}, "has no 'content' (it is null)"),
    ],
)
def test_a_message_without_its_text_is_a_located_error_or_skipped(tmp_path, entry, bad_message, caplog, said):
    turns = {"sharegpt": ("from", "value", "human", "gpt", "conversations"), "openai": ("role", "content", "user",
             "assistant", "messages")}[entry["formatting"]]  # fmt: skip
    role, content, user, assistant, column = turns
    good = {column: [{role: user, content: "hi"}, {role: assistant, content: "hello"}]}
    bad_turns = [{role: user, content: "hi"}, bad_message] if bad_message.get(role) != user else [bad_message]
    if len(bad_turns) == 1:
        bad_turns.append({role: assistant, content: "hello"})
    files = {"s.json": [good, {column: bad_turns}]}
    ddir = write_dataset_dir(tmp_path / "d", {"ds": entry}, files)
    with pytest.raises(DataError) as err:
        _load(ddir)
    assert "s.json, record 2" in str(err.value) and said in str(err.value)
    with caplog.at_level(logging.WARNING, logger="core"):
        rows = _load(ddir, skip=True)
    assert len(rows) == 1 and "skipped 1 bad row" in caplog.text


def test_a_dataset_name_given_twice_in_dataset_info_warns_with_both_lines(tmp_path, caplog):
    ddir = tmp_path / "d"
    ddir.mkdir()
    (ddir / "dataset_info.json").write_text(
        '{\n  "ds": {"file_name": "a.jsonl"},\n  "other": {"file_name": "b.jsonl",\n'
        '    "columns": {"prompt": "q", "prompt": "question"}},\n  "ds": {"file_name": "c.jsonl"}\n}\n'
    )
    with caplog.at_level(logging.WARNING, logger="core"):
        info = load_dataset_info(ddir)
    assert info["ds"] == {"file_name": "c.jsonl"}  # the later one wins, as before, but not silently
    assert "'ds' is given on line 2 and again on line 5" in caplog.text
    assert "'prompt' is given twice on line 4" in caplog.text


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b'{"ds": {"file_name": "caf\xe9.json"}}', "not UTF-8 text (byte 0xe9 at line 1, column 26)"),
        (b'{"ds": \x00}', "not a text file"),
        (('{"ds": ' + _deep(5000) + "}").encode(), "nested too deeply"),
    ],
    ids=["latin-1", "binary", "deep"],
)
def test_an_unreadable_dataset_info_is_named(tmp_path, data, said):
    ddir = tmp_path / "d"
    ddir.mkdir()
    (ddir / "dataset_info.json").write_bytes(data)
    with pytest.raises(DataError) as err:
        load_dataset_info(ddir)
    assert "dataset_info.json" in str(err.value) and said in str(err.value)

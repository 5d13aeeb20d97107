"""Dataset studio, validating: every row goes through the loader's own checks, problems are located and counted,
the loader stops on (or skips) exactly the rows reported, and a big file is streamed with progress."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from datahelp import data_args

from core.data import validate as validate_module
from core.data.loader import load_rows
from core.data.register import add_dataset
from core.data.registry import DataError, get_dataset_attr
from core.data.validate import stage_for, validate, validate_dataset

ENTRY = {"columns": {"prompt": "question", "response": "answer"}}
GOOD = {"question": "q", "answer": "a"}
LINES = [
    json.dumps(GOOD),
    '{"question": "q", "answer": ',  # row 1: broken JSON
    json.dumps(GOOD),
    json.dumps(["q", "a"]),  # row 3: not an object
    "",  # blank lines are not rows
    json.dumps({"question": "q"}),  # row 4: no answer
    json.dumps({"question": "q", "answer": {"text": "a"}}),  # row 5: not text
    json.dumps(GOOD),
]


@pytest.fixture
def bad_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def test_problems_are_located_counted_and_explained(bad_file):
    result = validate(bad_file, ENTRY, stage="sft")
    assert (result["rows"], result["bad_rows"], result["good_rows"]) == (7, 4, 3)
    assert result["bad_row_numbers"] == [1, 3, 4, 5]
    assert result["counts"] == {"bad_json": 1, "not_object": 1, "missing_column": 1, "not_text": 1}
    by_row = {p["row"]: p for p in result["problems"]}
    assert by_row[1]["where"] == "line 2" and "not valid JSON" in by_row[1]["what"]
    assert by_row[4]["where"] == "line 6" and by_row[4]["column"] == "answer"
    assert "missing" in by_row[4]["what"] and "columns.response" in by_row[4]["fix"]
    assert by_row[5]["column"] == "answer" and "must be text" in by_row[5]["what"] and by_row[5]["fix"]
    assert all(p["fix"] for p in result["problems"]) and result["fatal"] is None


def test_the_loader_stops_on_the_first_reported_row_and_skips_exactly_the_rest(bad_file, tmp_path):
    result = validate(bad_file, ENTRY, stage="sft")
    root = tmp_path / "d"
    add_dataset(root, "raw", bad_file, ENTRY)
    attr = get_dataset_attr("raw", root)
    with pytest.raises(DataError) as caught:
        load_rows(attr, "response", data_args(dataset_dir=str(root)), seed=1)
    first = result["problems"][0]["message"].replace(str(bad_file), str(root / "raw.jsonl"))
    assert str(caught.value).startswith(first)  # the same row, the same words
    skipped = load_rows(attr, "response", data_args(dataset_dir=str(root), skip_bad_rows=True), seed=1)
    assert len(skipped) == result["good_rows"]
    clean = add_dataset(root, "clean", bad_file, ENTRY, skip_rows=result["bad_row_numbers"])
    assert (clean["rows"], clean["skipped"]) == (3, 4)
    rows = load_rows(get_dataset_attr("clean", root), "response", data_args(dataset_dir=str(root)), seed=1)
    assert len(rows) == 3
    assert validate_dataset(root, "clean")["bad_rows"] == 0


def test_sharegpt_problems_and_the_stage(tmp_path):
    human, gpt = {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}
    rows = [
        {"conversations": [human, gpt]},
        {"conversations": [gpt, human]},  # roles out of order
        {"conversations": [human, {"from": "robot", "value": "a"}]},  # unknown role
        {"conversations": [human, {"from": "gpt", "value": None}]},  # empty message
        {"conversations": [human]},  # no answer: fine for ppo, not for sft
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    entry = {"formatting": "sharegpt"}
    sft = validate(path, entry)
    assert sft["stage"] == "sft"
    assert sft["counts"] == {"role_order": 1, "unknown_role": 1, "empty_message": 1, "no_answer": 1}
    assert {p["column"] for p in sft["problems"]} == {"conversations"}
    assert validate(path, entry, stage="ppo")["bad_row_numbers"] == [1, 2, 3]
    with pytest.raises(DataError, match="no chosen/rejected pairs"):
        validate(path, entry, stage="dpo")
    with pytest.raises(DataError, match="stage"):
        validate(path, entry, stage="chat")


def test_a_file_that_cannot_load_is_fatal(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"question": "q", "answer": "a"}, {"question": ')
    result = validate(path, ENTRY)
    assert result["fatal"] and "broken.json" in result["fatal"] and result["counts"] == {"unreadable_file": 1}
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text('{"question": "q"}\n')
    assert "no usable rows" in validate(only_bad, ENTRY)["fatal"]


def test_stage_for_entries():
    assert stage_for({"ranking": True}) == "dpo"
    assert stage_for({"columns": {"kto_tag": "label"}}) == "kto"
    assert stage_for({"columns": {"prompt": "text"}}) == "pt"
    assert stage_for({}, "notes.txt") == "pt"
    assert stage_for({"formatting": "sharegpt"}) == "sft"


def test_streams_with_progress(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    line = json.dumps({"question": "q" * 200, "answer": "a" * 300}) + "\n"
    path.write_text(line * 6000)  # ~3 MB
    monkeypatch.setattr(validate_module, "PROGRESS_SECONDS", 0.0)
    calls = []
    tracemalloc.start()
    try:
        result = validate(path, ENTRY, progress=lambda done, total, rows: calls.append((done, total, rows)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert result["rows"] == 6000 and result["bad_rows"] == 0
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte file: not streamed"
    assert len(calls) > 3 and calls[-1] == (size, size, 6000)
    dones = [c[0] for c in calls]
    assert dones == sorted(dones) and 0 < dones[0] < size

"""Dataset studio, curating: each operation (length, text match, exact and near duplicates, sample, eval split)
makes a new registered dataset that loads, and the source file and entry are never altered."""

from __future__ import annotations

import json

import pytest
from datahelp import data_args

from core.data.curate import curate, describe, normalise
from core.data.loader import load_rows
from core.data.register import NameTaken
from core.data.registry import DataError, get_dataset_attr

ENTRY = {"columns": {"prompt": "question", "response": "answer"}}


def qa(q, a="ok"):
    return {"question": q, "answer": a, "id": q}


ROWS = [qa("hello world"), qa("Hello, World!"), qa("hello world"), qa("a secret plan"), qa("x" * 300),
        qa("short"), qa(f"row {7}")]  # fmt: skip


@pytest.fixture
def ddir(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    lines = [json.dumps(r) for r in ROWS] + ['{"question": broken']
    (root / "src.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "dataset_info.json").write_text(json.dumps({"src": {"file_name": "src.jsonl", **ENTRY}}, indent=2))
    return root


def loaded(root, name):
    rows = load_rows(get_dataset_attr(name, root), "response", data_args(dataset_dir=str(root)), seed=1)
    return [r["_prompt"][-1]["content"] for r in rows]


@pytest.mark.parametrize(
    "options, kept, dropped",
    [
        ({}, [r["question"] for r in ROWS], {}),
        ({"min_chars": 12}, ["hello world", "Hello, World!", "hello world", "a secret plan", "x" * 300],
         {"too_short": 2}),
        ({"max_chars": 20}, ["hello world", "Hello, World!", "hello world", "a secret plan", "short", "row 7"],
         {"too_long": 1}),
        ({"match": r"(?i)hello"}, ["hello world", "Hello, World!", "hello world"], {"no_match": 4}),
        ({"exclude": "secret|x{10}"}, ["hello world", "Hello, World!", "hello world", "short", "row 7"],
         {"excluded": 2}),
        ({"dedup": "exact"}, ["hello world", "Hello, World!", "a secret plan", "x" * 300, "short", "row 7"],
         {"duplicate": 1}),
        ({"dedup": "near"}, ["hello world", "a secret plan", "x" * 300, "short", "row 7"],
         {"duplicate": 1, "near_duplicate": 1}),
    ],
)  # fmt: skip
def test_each_filter(ddir, options, kept, dropped):
    source = (ddir / "src.jsonl").read_bytes()
    result = curate(ddir, "src", "out", **options)
    assert result["rows_in"] == 8 and result["rows_out"] == len(kept)
    assert result["dropped"] == {"bad_row": 1, **dropped}
    assert result["names"] == ["out"] and result["files"] == ["out.jsonl"]
    assert loaded(ddir, "out") == kept
    assert (ddir / "src.jsonl").read_bytes() == source  # the source file, untouched
    info = json.loads((ddir / "dataset_info.json").read_text())
    assert info["src"] == {"file_name": "src.jsonl", **ENTRY} and info["out"] == {"file_name": "out.jsonl", **ENTRY}
    first = json.loads((ddir / "out.jsonl").read_text().splitlines()[0])
    assert first == ROWS[[r["question"] for r in ROWS].index(kept[0])]  # the source's own columns, "id" too


def test_sample_and_eval_split(ddir):
    result = curate(ddir, "src", "part", sample=5, eval_size=0.4, seed=3)
    assert (result["rows_out"], result["eval_rows"], result["dropped"]) == (3, 2, {"bad_row": 1, "sampled_out": 2})
    assert result["names"] == ["part", "part_eval"]
    train, held = loaded(ddir, "part"), loaded(ddir, "part_eval")
    assert len(train) == 3 and len(held) == 2
    ids = [json.loads(line)["id"] for name in ("part", "part_eval") for line in (ddir / f"{name}.jsonl").open()]
    assert len(set(ids)) == 5  # disjoint, drawn from distinct rows
    again = curate(ddir, "src", "part2", sample=5, eval_size=2, seed=3)
    assert loaded(ddir, "part2") == train and loaded(ddir, "part2_eval") == held  # the seed decides
    other = curate(ddir, "src", "part3", sample=5, seed=4)
    assert other["rows_out"] == 5 and again["eval_rows"] == 2


def test_refusals(ddir):
    info_before = (ddir / "dataset_info.json").read_text()
    with pytest.raises(DataError, match="match: received '\\('"):
        curate(ddir, "src", "out", match="(")
    with pytest.raises(DataError, match="source itself"):
        curate(ddir, "src", "src", replace=True)
    with pytest.raises(DataError, match="no row is left"):
        curate(ddir, "src", "out", min_chars=1000)
    with pytest.raises(DataError, match="eval_size"):
        curate(ddir, "src", "out", eval_size=7)
    with pytest.raises(DataError, match="dedup"):
        curate(ddir, "src", "out", dedup="fuzzy")
    assert (ddir / "dataset_info.json").read_text() == info_before
    assert {p.name for p in ddir.iterdir()} - {".dataset_info.json.lock"} == {"dataset_info.json", "src.jsonl"}
    curate(ddir, "src", "out")
    with pytest.raises(NameTaken):
        curate(ddir, "src", "out")
    assert curate(ddir, "src", "out", max_chars=20, replace=True)["rows_out"] == 6


def test_text_files_stay_pretraining_data(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "notes.txt").write_text("one\ntwo\none\n")
    (root / "dataset_info.json").write_text(json.dumps({"notes": {"file_name": "notes.txt"}}))
    curate(root, "notes", "notes_clean", dedup="exact")
    rows = load_rows(get_dataset_attr("notes_clean", root), None, data_args(dataset_dir=str(root)), seed=1)
    assert [r["_prompt"][0]["content"] for r in rows] == ["one", "two"]


def test_normalise_and_describe(ddir):
    assert normalise("  Hello,\tWORLD!! ") == normalise("hello world") == "hello world"
    assert normalise("Ｈｅｌｌｏ") == "hello"  # full-width forms
    text = describe(curate(ddir, "src", "out", eval_size=1))
    assert "8 rows in, 6 out, 1 for eval" in text and "bad_row: 1" in text and "'out_eval'" in text

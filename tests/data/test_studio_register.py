"""Dataset studio, registering: the file is copied and the entry added atomically after a backup, other entries
keep their exact bytes, a taken name is refused unless replaced, and the result loads with the training loader."""

from __future__ import annotations

import json
import threading

import pytest
from datahelp import data_args

from core.data.loader import load_rows
from core.data.register import NameTaken, add_dataset, register_entry
from core.data.registry import DataError, get_dataset_attr, list_datasets

# Hand-written: 4-space indent, unicode, a key order json.dumps would not produce.
ORIGINAL = """{
    "mine":   {"file_name": "mine.json", "columns": {"response": "output", "prompt": "instruction"}},
    "中文": {
        "file_name": "zh.jsonl"
    }
}
"""
ROWS = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(6)]
ENTRY = {"columns": {"prompt": "question", "response": "answer"}}


@pytest.fixture
def ddir(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "dataset_info.json").write_text(ORIGINAL, encoding="utf-8")
    return root


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "upload" / "qa.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_add_copies_registers_and_loads(ddir, source):
    before = source.read_bytes()
    result = add_dataset(ddir, "qa", source, ENTRY)
    assert result == {"name": "qa", "file_name": "qa.jsonl", "rows": 6, "skipped": 0,
                      "info_file": str(ddir / "dataset_info.json")}  # fmt: skip
    assert source.read_bytes() == before and (ddir / "qa.jsonl").read_bytes() == before
    text = (ddir / "dataset_info.json").read_text(encoding="utf-8")
    assert text.startswith(ORIGINAL[: ORIGINAL.rindex("}")].rstrip())  # the other entries, byte for byte
    assert (ddir / "dataset_info.json.bak").read_text(encoding="utf-8") == ORIGINAL
    assert json.loads(text)["qa"] == {"file_name": "qa.jsonl", **ENTRY}
    assert "qa" in list_datasets(ddir, "sft")
    rows = load_rows(get_dataset_attr("qa", ddir), "response", data_args(dataset_dir=str(ddir)), seed=1)
    assert [r["_response"][0]["content"] for r in rows] == [f"a{i}" for i in range(6)]


def test_a_taken_name_is_refused_and_nothing_changes(ddir, source):
    with pytest.raises(NameTaken, match=r"dataset_info.json: a dataset named 'mine' already exists.*--replace"):
        add_dataset(ddir, "mine", source, ENTRY)
    assert (ddir / "dataset_info.json").read_text(encoding="utf-8") == ORIGINAL
    assert sorted(p.name for p in ddir.iterdir()) == ["dataset_info.json"]
    assert issubclass(NameTaken, DataError)


def test_replace_rewrites_only_that_entry_and_reuses_its_file(ddir, source):
    add_dataset(ddir, "qa", source, ENTRY)
    after_first = (ddir / "dataset_info.json").read_text(encoding="utf-8")
    result = add_dataset(ddir, "qa", source, ENTRY, replace=True, skip_rows=[0, 5])
    assert (result["file_name"], result["rows"], result["skipped"]) == ("qa.jsonl", 4, 2)
    assert sorted(p.name for p in ddir.iterdir() if not p.name.startswith(".")) == [
        "dataset_info.json", "dataset_info.json.bak", "qa.jsonl"]  # fmt: skip
    assert (ddir / "dataset_info.json.bak").read_text(encoding="utf-8") == after_first
    text = (ddir / "dataset_info.json").read_text(encoding="utf-8")
    assert text.startswith(ORIGINAL[: ORIGINAL.rindex("}")].rstrip())
    mine = register_entry(ddir, "mine", {"file_name": "other.json"}, replace=True)
    text = mine.read_text(encoding="utf-8")
    assert '"中文": {\n        "file_name": "zh.jsonl"\n    }' in text  # the neighbour, untouched
    assert json.loads(text)["mine"] == {"file_name": "other.json"}
    assert list(json.loads(text)) == ["mine", "中文", "qa"]


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet", ".txt"])
def test_skip_rows_in_every_file_type(tmp_path, suffix):
    src = tmp_path / f"in{suffix}"
    if suffix == ".json":
        src.write_text(json.dumps(ROWS), encoding="utf-8")
    elif suffix == ".csv":
        src.write_text("question,answer\n" + "".join(f'"{r["question"]}, x",{r["answer"]}\n' for r in ROWS))
    elif suffix == ".txt":
        src.write_text("\n\n".join(r["question"] for r in ROWS) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), src)
    entry = {"columns": {"prompt": "text"}} if suffix == ".txt" else ENTRY
    result = add_dataset(tmp_path / "d", "x", src, entry, skip_rows={1, 2})
    assert (result["rows"], result["skipped"]) == (4, 2)
    assert result["file_name"] == ("x.jsonl" if suffix == ".json" else f"x{suffix}")
    rows = load_rows(get_dataset_attr("x", tmp_path / "d"), None, data_args(dataset_dir=str(tmp_path / "d")), seed=1)
    assert [r["_prompt"][-1]["content"].split(",")[0] for r in rows] == ["q0", "q3", "q4", "q5"]


def test_refusals_leave_everything_as_it_was(ddir, source, tmp_path):
    for bad in ("", " qa", "a,b", "a/b"):
        with pytest.raises(DataError, match="name"):
            add_dataset(ddir, bad, source, ENTRY)
    with pytest.raises(DataError, match="demo datasets"):
        add_dataset("demo", "qa", source, ENTRY)
    with pytest.raises(DataError, match="no such file"):
        add_dataset(ddir, "qa", tmp_path / "nope.json", ENTRY)
    broken = '{"mine": {"file_name": "mine.json"},}'
    (ddir / "dataset_info.json").write_text(broken)
    with pytest.raises(DataError, match="line 1"):
        add_dataset(ddir, "qa", source, ENTRY)
    assert (ddir / "dataset_info.json").read_text() == broken
    assert not (ddir / "qa.jsonl").exists()


def test_a_new_folder_and_a_file_already_there(tmp_path, source):
    root = tmp_path / "fresh"
    add_dataset(root, "qa", source, ENTRY)
    assert json.loads((root / "dataset_info.json").read_text()) == {"qa": {"file_name": "qa.jsonl", **ENTRY}}
    assert not (root / "dataset_info.json.bak").exists()
    (root / "sub").mkdir()
    (root / "sub" / "in_place.jsonl").write_bytes(source.read_bytes())
    result = add_dataset(root, "here", root / "sub" / "in_place.jsonl", ENTRY, copy=False)
    assert result["file_name"] == "sub/in_place.jsonl"
    before = (root / "qa.jsonl").read_bytes()
    again = add_dataset(root, "qa", root / "qa.jsonl", ENTRY, replace=True, skip_rows=[0])
    assert (again["file_name"], again["rows"]) == ("qa-2.jsonl", 5)  # never written over its own source
    assert (root / "qa.jsonl").read_bytes() == before


def test_concurrent_adds_keep_every_entry(ddir, source):
    errors = []

    def add(i):
        try:
            register_entry(ddir, f"n{i}", {"file_name": "qa.jsonl"})
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(json.loads((ddir / "dataset_info.json").read_text())) == {"mine", "中文", *(f"n{i}" for i in range(8))}


def test_a_full_disk_is_one_readable_error_and_leaves_nothing(ddir, source, monkeypatch):
    import shutil

    def full(src, dst):
        open(dst, "w").close()  # noqa: SIM115 - a partial temp file, as a full disk leaves one
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(DataError, match="No space left on device"):
        add_dataset(ddir, "qa", source, ENTRY)
    assert (ddir / "dataset_info.json").read_text(encoding="utf-8") == ORIGINAL
    assert {p.name for p in ddir.iterdir()} == {"dataset_info.json"}

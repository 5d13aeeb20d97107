"""Dataset studio, detection: each layout LLaMA-Factory users bring is recognised, and the proposed entry loads
every row with the loader's own conversion for the stage it was detected for."""

from __future__ import annotations

import csv
import json

import pytest

from core.data.converter import NEEDS, convert_row
from core.data.detect import ROLES, detect, make_entry
from core.data.readers import iter_rows
from core.data.registry import DataError, get_dataset_attr

CONV = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
OPENAI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
          {"role": "assistant", "content": "hello"}]  # fmt: skip
GPT_G, GPT_B = {"from": "gpt", "value": "g"}, {"from": "gpt", "value": "b"}
STAGE = {"sft": "sft", "pairwise": "dpo", "kto": "kto", "pt": "pt"}


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".txt":
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    else:
        path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def loads_every_row(tmp_path, path, found):
    """The proposed entry, registered, converts every row of the file for the detected stage."""
    info = {"x": {"file_name": path.name, **found["entry"]}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    attr = get_dataset_attr("x", tmp_path)
    need = NEEDS[STAGE[found["kind"]]]
    return [convert_row(row, attr, where, str(path), need) for where, row in iter_rows(path)]


CASES = {
    "alpaca.json": (
        [{"instruction": "q", "input": "i", "output": "a", "system": "s"}] * 3,
        "sft", "alpaca", {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}, {},
    ),
    "qa.csv": ([{"id": "1", "Question": "q", "Answer": "a"}] * 3, "sft", "alpaca",
               {"prompt": "Question", "response": "Answer"}, {}),
    "pr.jsonl": ([{"prompt": "q", "response": "a"}], "sft", "alpaca",
                 {"prompt": "prompt", "response": "response"}, {}),
    "io.jsonl": ([{"input": "q", "output": "a"}], "sft", "alpaca", {"prompt": "input", "response": "output"}, {}),
    "share.jsonl": ([{"conversations": CONV, "system": "s"}], "sft", "sharegpt",
                    {"messages": "conversations", "system": "system"}, {}),
    "share_roles.jsonl": (
        [{"conversations": [{"role": "USER", "text": "hi"}, {"role": "BOT", "text": "yo"}]}], "sft", "sharegpt",
        {"messages": "conversations"},
        {"role_tag": "role", "content_tag": "text", "user_tag": "USER", "assistant_tag": "BOT"},
    ),
    "openai.jsonl": ([{"messages": OPENAI}], "sft", "openai", {"messages": "messages"}, {}),
    "openai_conv.json": ([{"conversations": OPENAI}], "sft", "openai", {"messages": "conversations"}, {}),
    "pref.json": ([{"instruction": "q", "chosen": "good", "rejected": "bad"}], "pairwise", "alpaca",
                  {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}, {}),
    "pref_list.jsonl": ([{"instruction": "q", "output": ["good", "bad"]}], "pairwise", "alpaca",
                        {"prompt": "instruction", "response": "output"}, {}),
    "pref_share.json": (
        [{"conversations": CONV[:1], "chosen": GPT_G, "rejected": GPT_B}],
        "pairwise", "sharegpt", {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}, {},
    ),
    "kto.jsonl": ([{"conversations": CONV, "kto_tag": True}, {"conversations": CONV, "kto_tag": False}], "kto",
                  "sharegpt", {"messages": "conversations", "kto_tag": "kto_tag"}, {}),
    "kto.csv": ([{"question": "q", "answer": "a", "label": "true"}, {"question": "q", "answer": "b", "label": "0"}],
                "kto", "alpaca", {"prompt": "question", "response": "answer", "kto_tag": "label"}, {}),
    "text.jsonl": ([{"text": "a document"}] * 2, "pt", "alpaca", {"prompt": "text"}, {}),
    "plain.txt": (["line one", "", "line two"], "pt", "alpaca", {"prompt": "text"}, {}),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_detects_each_layout_and_its_entry_loads(tmp_path, name):
    rows, kind, formatting, columns, tags = CASES[name]
    path = write(tmp_path / name, rows)
    found = detect(path)
    assert (found["kind"], found["formatting"]) == (kind, formatting), found["notes"]
    assert {k: v for k, v in found["columns"].items() if v} == columns
    assert set(found["columns"]) == set(ROLES[formatting])
    assert found["ranking"] == (kind == "pairwise")
    assert found.get("entry", {}).get("tags", {}) == tags
    assert found["file_type"] == path.suffix[1:]
    assert found["sample"] and len(found["sample"]) <= 5
    converted = loads_every_row(tmp_path, path, found)
    assert len(converted) == len([r for r in rows if r])
    if kind == "kto":
        assert [c["_kto_tag"] for c in converted] == [True, False]
    if kind == "pairwise":
        assert len(converted[0]["_response"]) == 2


def test_share_tags_are_the_full_set_and_the_entry_only_the_changes(tmp_path):
    path = write(
        tmp_path / "c.jsonl", [{"conversations": [{"role": "USER", "text": "hi"}, {"role": "BOT", "text": "yo"}]}]
    )
    found = detect(path)
    assert found["tags"]["observation_tag"] == "observation"  # defaults filled for the mapping editor
    assert found["entry"]["tags"] == {
        "role_tag": "role",
        "content_tag": "text",
        "user_tag": "USER",
        "assistant_tag": "BOT",
    }


def test_forced_formatting_and_notes(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"instruction": "q", "output": "a", "extra": 3}])
    found = detect(path)
    assert any("extra" in n for n in found["notes"])  # the unused column is named
    forced = detect(path, formatting="sharegpt")
    assert forced["formatting"] == "sharegpt" and any("messages" in n for n in forced["notes"])


def test_make_entry_refuses_roles_of_another_formatting():
    assert make_entry("alpaca", {"prompt": "q", "response": "a", "system": None}) == {
        "columns": {"prompt": "q", "response": "a"}
    }
    with pytest.raises(DataError, match="messages"):
        make_entry("alpaca", {"messages": "conversations"})
    with pytest.raises(DataError, match="formatting"):
        make_entry("chatml", {})


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        detect(tmp_path / "missing.json")
    (tmp_path / "doc.docx").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        detect(tmp_path / "doc.docx")
    (tmp_path / "bad.jsonl").write_text("{not json\n[1, 2]\n")
    with pytest.raises(DataError, match=r"bad.jsonl.*line 1"):
        detect(tmp_path / "bad.jsonl")
    (tmp_path / "u16.jsonl").write_bytes('{"text": "hi"}\n'.encode("utf-16-le"))
    with pytest.raises(DataError, match="u16.jsonl"):
        detect(tmp_path / "u16.jsonl")


def test_a_few_bad_rows_are_noted_not_fatal(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"instruction": "q", "output": "a"}\nnot json\n')
    found = detect(path)
    assert found["kind"] == "sft" and "1 of the first 2 rows" in found["notes"][0]

"""Every format (alpaca, sharegpt, openai; ranking; kto) and file type (json, jsonl, csv, parquet, txt) reads into
the same canonical rows, and every bad row is one error naming the file, the dataset, the row and the fix."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from datahelp import write_dataset_dir

from core.data import readers
from core.data.loader import load_rows
from core.data.registry import DataError, get_dataset_attr


def rows_of(tmp_path, entry, files, need=None, **args):
    ddir = write_dataset_dir(tmp_path / "d", {"ds": entry}, files)
    data_args = SimpleNamespace(**{"skip_bad_rows": False, "max_samples": None, **args})
    return load_rows(get_dataset_attr("ds", ddir), need, data_args, seed=0)


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


ALPACA = [
    {
        "instruction": "Add",
        "input": "1 2",
        "output": "3",
        "system": "Be brief.",
        "history": [["Hi", "Hello"]],
    },
    {"instruction": "Say hi", "output": "hi"},
]
EXPECTED_ALPACA = [
    {
        "_prompt": [user("Hi"), bot("Hello"), user("Add\n1 2")],
        "_response": [bot("3")],
        "_system": "Be brief.",
        "_tools": "",
        "_kto_tag": None,
    },
    {"_prompt": [user("Say hi")], "_response": [bot("hi")], "_system": "", "_tools": "", "_kto_tag": None},
]


def test_alpaca_json_with_history_system_and_query(tmp_path):
    entry = {"file_name": "a.json", "columns": {"system": "system", "history": "history"}}
    assert rows_of(tmp_path, entry, {"a.json": ALPACA}, need="response") == EXPECTED_ALPACA


def test_alpaca_jsonl_and_json_holding_json_lines(tmp_path):
    entry = {"file_name": "a.jsonl", "columns": {"system": "system", "history": "history"}}
    assert rows_of(tmp_path / "1", entry, {"a.jsonl": ALPACA}) == EXPECTED_ALPACA
    lines = "".join(json.dumps(r) + "\n" for r in ALPACA)
    entry = {"file_name": "a.json", "columns": {"system": "system", "history": "history"}}
    assert rows_of(tmp_path / "2", entry, {"a.json": lines}) == EXPECTED_ALPACA


def test_csv_and_parquet_read_like_json(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [
        {"instruction": "Say hi", "input": "", "output": "hi"},
        {"instruction": "Add", "input": "1 2", "output": "3"},
    ]
    expected = [[user("Say hi")], [user("Add\n1 2")]]
    csv_text = 'instruction,input,output\nSay hi,,hi\nAdd,"1 2",3\n'
    assert [r["_prompt"] for r in rows_of(tmp_path / "c", {"file_name": "a.csv"}, {"a.csv": csv_text})] == expected
    ddir = write_dataset_dir(tmp_path / "p", {"ds": {"file_name": "a.parquet"}}, {})
    pq.write_table(pa.Table.from_pylist(flat), ddir / "a.parquet")
    got = load_rows(get_dataset_attr("ds", ddir), None, SimpleNamespace(skip_bad_rows=False, max_samples=None), seed=0)
    assert [r["_prompt"] for r in got] == expected and got[1]["_response"] == [bot("3")]


def test_txt_lines_are_pretraining_texts(tmp_path):
    rows = rows_of(tmp_path, {"file_name": "t.txt"}, {"t.txt": "first line\n\nsecond line\n"})
    assert [r["_prompt"] for r in rows] == [[user("first line")], [user("second line")]]
    assert all(r["_response"] == [] for r in rows)


def test_sharegpt_with_system_turn_and_openai_messages(tmp_path):
    conv = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "q1"},
        {"from": "gpt", "value": "a1"},
        {"from": "human", "value": "q2"},
        {"from": "gpt", "value": "a2"},
    ]
    rows = rows_of(
        tmp_path / "s", {"file_name": "s.jsonl", "formatting": "sharegpt"}, {"s.jsonl": [{"conversations": conv}]}
    )
    assert rows[0]["_prompt"] == [user("q1"), bot("a1"), user("q2")]
    assert rows[0]["_response"] == [bot("a2")] and rows[0]["_system"] == "Be brief."
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    rows = rows_of(tmp_path / "o", {"file_name": "o.jsonl", "formatting": "openai"}, {"o.jsonl": [{"messages": msgs}]})
    assert rows[0] == {"_prompt": [user("q")], "_response": [bot("a")], "_system": "S", "_tools": "", "_kto_tag": None}


def test_sharegpt_custom_tags_and_tool_turns(tmp_path):
    conv = [
        {"speaker": "me", "text": "weather?"},
        {"speaker": "call", "text": {"name": "weather"}},
        {"speaker": "result", "text": "sunny"},
        {"speaker": "ai", "text": "It is sunny."},
    ]
    tags = {
        "role_tag": "speaker",
        "content_tag": "text",
        "user_tag": "me",
        "assistant_tag": "ai",
        "function_tag": "call",
        "observation_tag": "result",
    }
    entry = {"file_name": "t.jsonl", "formatting": "sharegpt", "columns": {"messages": "turns"}, "tags": tags}
    rows = rows_of(tmp_path, entry, {"t.jsonl": [{"turns": conv}]}, need="response")
    roles = [m["role"] for m in rows[0]["_prompt"]]
    assert roles == ["user", "function", "observation"] and rows[0]["_prompt"][1]["content"] == '{"name": "weather"}'


def test_ranking_in_every_layout(tmp_path):
    pair = [bot("good"), bot("bad")]
    entry = {"file_name": "p.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}}
    rows = rows_of(
        tmp_path / "1", entry, {"p.json": [{"instruction": "q", "chosen": "good", "rejected": "bad"}]}, "pair"
    )
    assert rows[0]["_response"] == pair
    entry = {"file_name": "p.json", "ranking": True}
    rows = rows_of(tmp_path / "2", entry, {"p.json": [{"instruction": "q", "output": ["good", "bad"]}]}, "pair")
    assert rows[0]["_response"] == pair
    conv = {
        "conversations": [{"from": "human", "value": "q"}],
        "chosen": {"from": "gpt", "value": "good"},
        "rejected": {"from": "gpt", "value": "bad"},
    }
    entry = {
        "file_name": "p.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"chosen": "chosen", "rejected": "rejected"},
    }
    rows = rows_of(tmp_path / "3", entry, {"p.json": [conv]}, "pair")
    assert rows[0]["_prompt"] == [user("q")] and rows[0]["_response"] == pair


def test_kto_tags_accept_booleans_and_their_spellings(tmp_path):
    data = [{"instruction": "q", "output": "a", "ok": v} for v in (True, False, "true", "False", 1, 0)]
    entry = {"file_name": "k.json", "columns": {"kto_tag": "ok"}}
    rows = rows_of(tmp_path, entry, {"k.json": data}, need="kto")
    assert [r["_kto_tag"] for r in rows] == [True, False, True, False, True, False]


def check_error(tmp_path, entry, files, need, *fragments):
    with pytest.raises(DataError) as err:
        rows_of(tmp_path, entry, files, need=need)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_column_names_file_row_and_column(tmp_path):
    data = [{"instruction": "q", "output": "a"}, {"question": "q", "output": "a"}]
    check_error(
        tmp_path,
        {"file_name": "a.jsonl"},
        {"a.jsonl": data},
        "response",
        "a.jsonl, line 2",
        "dataset 'ds'",
        "column 'instruction' (prompt) is missing (this row has: output, question)",
        "columns.prompt",
        "skip_bad_rows",
    )


def test_row_of_the_wrong_shape(tmp_path):
    entry = {"file_name": "s.json", "formatting": "sharegpt"}
    data = [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"conversations": "hi"},
    ]
    check_error(tmp_path, entry, {"s.json": data}, "response", "record 2 (line", "must be a list of messages, got str")


def test_roles_out_of_order_name_the_message(tmp_path):
    conv = [{"from": "human", "value": "q"}, {"from": "human", "value": "q again"}, {"from": "gpt", "value": "a"}]
    entry = {"file_name": "s.jsonl", "formatting": "sharegpt"}
    check_error(
        tmp_path,
        entry,
        {"s.jsonl": [{"conversations": conv}]},
        "response",
        "s.jsonl, line 1",
        "roles out of order: message 1 is 'user' but a assistant or function turn was expected",
    )


def test_unknown_role_names_the_tags_to_set(tmp_path):
    conv = [{"from": "person", "value": "q"}, {"from": "gpt", "value": "a"}]
    entry = {"file_name": "s.jsonl", "formatting": "sharegpt"}
    check_error(
        tmp_path, entry, {"s.jsonl": [{"conversations": conv}]}, None, "unknown role 'person'", "tags.user_tag"
    )


def test_sft_row_without_an_answer(tmp_path):
    conv = [{"from": "human", "value": "q"}]
    entry = {"file_name": "s.jsonl", "formatting": "sharegpt"}
    check_error(
        tmp_path, entry, {"s.jsonl": [{"conversations": conv}]}, "response", "no assistant answer to learn from"
    )
    assert rows_of(tmp_path / "ok", entry, {"s.jsonl": [{"conversations": conv}]}, need=None)[0]["_response"] == []


def test_broken_jsonl_line_and_broken_json_array(tmp_path):
    text = '{"instruction": "q", "output": "a"}\n\n{"instruction": "q" "output": "a"}\n'
    check_error(tmp_path / "1", {"file_name": "a.jsonl"}, {"a.jsonl": text}, None, "a.jsonl, line 3: not valid JSON")
    text = '[\n{"instruction": "q", "output": "a"},\n{"instruction": "q",, "output": "a"}\n]'
    check_error(tmp_path / "2", {"file_name": "a.json"}, {"a.json": text}, None, "a.json, line 3: not valid JSON")
    text = '[{"instruction": "q", "output": "a"}, 7]'
    check_error(tmp_path / "3", {"file_name": "a.json"}, {"a.json": text}, None, "record 2", "must be a JSON object")


def test_skip_bad_rows_skips_and_reports_the_count(tmp_path, caplog):
    text = '{"instruction": "q1", "output": "a"}\nnot json\n{"output": "a"}\n{"instruction": "q2", "output": "b"}\n'
    with caplog.at_level(logging.WARNING, logger="core.data.loader"):
        rows = rows_of(tmp_path, {"file_name": "a.jsonl"}, {"a.jsonl": text}, need="response", skip_bad_rows=True)
    assert [r["_prompt"][0]["content"] for r in rows] == ["q1", "q2"]
    assert "skipped 2 bad row(s)" in caplog.text and "line 2" in caplog.text


def test_json_array_streams_records_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 7)
    data = [{"instruction": f"q{i} " + "x" * (i * 5), "output": "a"} for i in range(12)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data, indent=2))
    rows = list(readers.iter_rows(path))
    assert [r for _, r in rows] == data
    assert rows[1][0] == "record 2 (line 6)"
    assert [r for _, r in readers.iter_rows(path, start=10)] == data[10:]


def test_max_samples_and_num_samples(tmp_path):
    data = [{"instruction": f"q{i}", "output": "a"} for i in range(10)]
    assert len(rows_of(tmp_path / "1", {"file_name": "a.json"}, {"a.json": data}, max_samples=3)) == 3
    sampled = rows_of(tmp_path / "2", {"file_name": "a.json", "num_samples": 25}, {"a.json": data})
    prompts = [r["_prompt"][0]["content"] for r in sampled]
    assert len(prompts) == 25 and set(prompts) == {f"q{i}" for i in range(10)}  # every row, then repeats


def test_hub_dataset_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    ddir = write_dataset_dir(tmp_path, {"hub": {"hf_hub_url": "nobody/not-cached-anywhere"}}, {})
    with pytest.raises(DataError) as err:
        load_rows(get_dataset_attr("hub", ddir), None, SimpleNamespace(skip_bad_rows=False, max_samples=None), seed=0)
    message = str(err.value)
    assert "lives on the Hugging Face Hub (nobody/not-cached-anywhere)" in message and "offline" in message

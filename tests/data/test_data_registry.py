"""dataset_info.json: parsing, per-stage lists, and errors that name the file and what to fix."""

from __future__ import annotations

import pytest
from datahelp import write_dataset_dir

from core.data.registry import DataError, get_dataset_attr, list_datasets, load_dataset_info

INFO = {
    "sft_a": {"file_name": "a.json"},
    "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt"},
    "pairs": {"file_name": "p.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}},
    "tagged": {"file_name": "k.jsonl", "formatting": "sharegpt", "columns": {"kto_tag": "label"}},
    "hub": {"hf_hub_url": "someone/data"},
}


@pytest.fixture
def ddir(tmp_path):
    return write_dataset_dir(tmp_path / "d", INFO, {"a.json": [{"instruction": "q", "output": "a"}]})


@pytest.mark.parametrize(
    ("stage", "names"),
    [
        (None, ["sft_a", "chat", "pairs", "tagged", "hub"]),
        ("sft", ["sft_a", "chat", "tagged", "hub"]),
        ("pt", ["sft_a", "chat", "tagged", "hub"]),
        ("ppo", ["sft_a", "chat", "tagged", "hub"]),
        ("rm", ["pairs"]),
        ("dpo", ["pairs"]),
        ("orpo", ["pairs"]),
        ("kto", ["tagged"]),
    ],
)
def test_list_datasets_per_stage(ddir, stage, names):
    assert list_datasets(ddir, stage) == names


def test_demo_dir_lists_the_packaged_datasets():
    names = list_datasets("demo")
    assert "demo_sft" in names and list_datasets("demo", "dpo")


def test_missing_dataset_info_means_no_datasets(tmp_path):
    assert load_dataset_info(tmp_path) == {}
    assert list_datasets(tmp_path, "sft") == []


def test_malformed_json_names_file_line_and_column(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{\n  "a": {"file_name": "a.json"}\n  "b": {}\n}\n')
    with pytest.raises(DataError) as err:
        list_datasets(tmp_path, "sft")
    message = str(err.value)
    assert str(tmp_path / "dataset_info.json") in message
    assert "line 3, column 3" in message and "Expecting ',' delimiter" in message
    assert '"b": {}' in message  # the offending line is quoted


def test_entry_that_is_not_an_object(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"a": "a.json"}')
    with pytest.raises(DataError, match=r"dataset 'a' must be an object"):
        load_dataset_info(tmp_path)


def test_unknown_dataset_suggests_the_closest_name(ddir):
    with pytest.raises(DataError, match=r"no dataset named 'sft_b'\. Did you mean 'sft_a'"):
        get_dataset_attr("sft_b", ddir)


def test_attr_defaults_for_each_formatting(ddir):
    alpaca = get_dataset_attr("sft_a", ddir)
    assert alpaca.columns["prompt"] == "instruction" and alpaca.columns["response"] == "output"
    chat = get_dataset_attr("chat", ddir)
    assert chat.columns["messages"] == "conversations" and chat.tags["user_tag"] == "human"
    assert get_dataset_attr("hub", ddir).load_from == "hf_hub"
    assert get_dataset_attr("tagged", ddir).has_kto_tag


def test_openai_formatting_reads_messages_with_role_and_content(tmp_path):
    ddir = write_dataset_dir(tmp_path, {"o": {"file_name": "o.jsonl", "formatting": "openai"}}, {})
    attr = get_dataset_attr("o", ddir)
    assert attr.columns["messages"] == "messages"
    assert (attr.tags["role_tag"], attr.tags["user_tag"], attr.tags["assistant_tag"]) == ("role", "user", "assistant")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"file_name": "a.json", "formatting": "yaml"}, "formatting 'yaml' is not one of alpaca, sharegpt, openai"),
        ({"formatting": "alpaca"}, "needs 'file_name'"),
        ({"file_name": "a.json", "colums": {}}, "unknown key(s) colums"),
        ({"file_name": "a.json", "columns": {"answer": "x"}}, "unknown column key(s) answer"),
        ({"file_name": "a.json", "num_samples": -3}, "num_samples must be a positive integer"),
    ],
)
def test_entry_errors_name_the_dataset(tmp_path, entry, expected):
    ddir = write_dataset_dir(tmp_path, {"bad": entry}, {})
    with pytest.raises(DataError) as err:
        get_dataset_attr("bad", ddir)
    assert "dataset 'bad'" in str(err.value) and expected in str(err.value)


def test_missing_file_and_empty_folder(tmp_path):
    ddir = write_dataset_dir(tmp_path, {"gone": {"file_name": "nope.json"}, "folder": {"file_name": "sub"}}, {})
    with pytest.raises(DataError, match=r"dataset 'gone': file_name points to .*nope\.json, which does not exist"):
        get_dataset_attr("gone", ddir).files()
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"folder .*sub holds no data file"):
        get_dataset_attr("folder", ddir).files()


def test_folder_lists_supported_files_sorted(tmp_path):
    files = {"sub/b.jsonl": "", "sub/a.json": "[]", "sub/notes.md": "x", "sub/deep/c.csv": "instruction\n"}
    ddir = write_dataset_dir(tmp_path, {"f": {"file_name": "sub"}}, files)
    assert [p.name for p in get_dataset_attr("f", ddir).files()] == ["a.json", "b.jsonl", "c.csv"]

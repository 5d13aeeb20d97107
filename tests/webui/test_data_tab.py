"""The Data tab's handlers without a browser (issue 16): a csv with renamed columns is detected, its mapping corrected
and registered, and the Train tab lists it for its stage; a taken name asks for Replace; files outside the roots or
over the upload limit are refused; Validate streams progress and locates problems; Inspect shows the tokens training
sees (from a `data tokens` subprocess on the demo model) and the length histogram; Curate saves a new dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webui.board import Board
from webui.handlers import data as data_handlers
from webui.handlers.events import ALERTS
from webui.manager import Manager

CSV = "nr,antwort,frage\n" + "".join(f'{i},"The sum is {i + 30}.","Add {i} and 30."\n' for i in range(12))


def _values(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "top.lang": "en",
        "top.model_name": "Demo (offline)",
        "top.model_path": "demo",
        "top.template": "chatml",
        "train.stage": "sft",
        "train.per_device_train_batch_size": 4,
        "data.dataset_dir": "data",
        "data.upload": None,
        "data.source_path": "",
        "data.name": "",
        "data.replace": False,
        "data.skip_bad": False,
        "data.file": None,
        "data.formatting": "alpaca",
        "data.ranking": False,
        "data.tags": "{}",
        **{key: "" for key in data_handlers.MAPPING},
    }
    values.update(changes)
    return values


def _alerts(updates: dict[str, Any]) -> list[str]:
    return [text for _, text in updates.get(ALERTS, [])]


@pytest.fixture(scope="module")
def board(board_home: Path) -> Board:
    from webui.paths import board_roots
    from webui.runner import Runner

    (board_home / "data").mkdir(exist_ok=True)
    return Board(Runner(saves_root=board_home / "saves", roots=board_roots()), Manager(), board_home / "saves")


@pytest.fixture(scope="module")
def csv_file(board_home: Path) -> Path:
    path = board_home / "incoming" / "German QA.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CSV, encoding="utf-8")
    return path


def _detected(board: Board, csv_file: Path) -> dict[str, Any]:
    updates = board.data_detect(_values(**{"data.source_path": str(csv_file)}))
    assert not _alerts(updates), _alerts(updates)
    values = _values(**{key: value for key, value in updates.items() if not isinstance(value, dict)})
    values["data.source_path"] = str(csv_file)
    for key in data_handlers.MAPPING:  # the editor's dropdowns: the proposal as their value
        values[key] = updates[key]["value"]
    return values


def test_renamed_csv_columns_are_detected_corrected_registered_and_listed_for_training(board, csv_file, board_home):
    values = _detected(board, csv_file)
    assert values["data.file"] == str(csv_file) and values["data.name"] == "German_QA"
    assert set(board.data_detect(values)["data.col_prompt"]["choices"]) == {"", "nr", "frage", "antwort"}
    # The user maps the renamed columns.
    values.update({"data.col_prompt": "frage", "data.col_response": "antwort", "data.name": "german_qa"})
    updates = board.data_register(values)
    assert "Registered german_qa: 12 rows" in " ".join(_alerts(updates)), _alerts(updates)
    info = json.loads((board_home / "data" / "dataset_info.json").read_text())
    assert info["german_qa"]["columns"] == {"prompt": "frage", "response": "antwort"}
    assert updates["train.dataset_dir"] == "data"
    assert "german_qa" in updates["train.dataset"]["choices"] and updates["train.dataset"]["value"] == ["german_qa"]
    assert updates["data.inspect_dataset"]["value"] == "german_qa"
    assert csv_file.read_text(encoding="utf-8") == CSV  # the source is never altered

    # The same name again asks for Replace; with it ticked the entry is replaced, no other entry touched.
    taken = board.data_register(values)
    assert "already has a dataset named german_qa" in _alerts(taken)[0] and "Replace" in _alerts(taken)[0]
    assert "Registered german_qa" in _alerts(board.data_register({**values, "data.replace": True}))[0]
    # For a stage it cannot train (dpo needs pairs) it is registered but not offered.
    other = board.data_register({**values, "data.name": "german_qa2", "train.stage": "dpo"})
    assert "german_qa2" not in other["train.dataset"]["choices"] and other["train.dataset"]["value"] == []


def test_files_outside_the_roots_or_over_the_limit_are_refused(board, csv_file, tmp_path_factory, monkeypatch):
    outside = tmp_path_factory.mktemp("outside") / "x.csv"
    outside.write_text(CSV)
    for field in ("data.source_path", "data.upload"):
        updates = board.data_detect(_values(**{field: str(outside)}))
        assert _alerts(updates)[0].startswith("Refused") and "data.file" not in updates
    assert "Upload a file or type a file path" in _alerts(board.data_detect(_values()))[0]
    monkeypatch.setattr(data_handlers, "MAX_UPLOAD_BYTES", 100)
    too_big = board.data_detect(_values(**{"data.source_path": str(csv_file)}))
    assert "over the board's 0 MB limit" in _alerts(too_big)[0]


def test_register_needs_a_detected_file_a_name_and_a_writable_folder(board, csv_file):
    assert "Detect the file's format first" in _alerts(board.data_register(_values()))[0]
    values = _detected(board, csv_file)
    values.update({"data.col_prompt": "frage", "data.col_response": "antwort"})
    assert "Give the dataset a name" in _alerts(board.data_register({**values, "data.name": " "}))[0]
    refused = board.data_register({**values, "data.name": "x", "data.dataset_dir": "/usr/share"})
    assert _alerts(refused)[0].startswith("Refused")
    demo = board.data_register({**values, "data.name": "x", "data.dataset_dir": "demo"})
    assert "packaged demo datasets, which are not written to" in _alerts(demo)[0]
    bad_tags = board.data_register({**values, "data.name": "x", "data.tags": "{nope"})
    assert "Message tags: not valid JSON" in _alerts(bad_tags)[0]


def test_formatting_change_proposes_that_formattings_mapping(board, board_home):
    path = board_home / "incoming" / "chat.jsonl"
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}] * 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    detected = board.data_detect(_values(**{"data.source_path": str(path)}))
    assert detected["data.formatting"] == "sharegpt" and detected["data.col_messages"]["value"] == "conversations"
    assert detected["data.col_prompt"]["visible"] is False
    switched = board.data_formatting(_values(**{"data.file": str(path), "data.formatting": "alpaca"}))
    assert switched["data.col_prompt"]["visible"] is True and switched["data.col_messages"]["visible"] is False


def test_validate_streams_progress_then_locates_problems_and_skip_bad_rows_registers_the_rest(board, board_home):
    pytest.importorskip("core.data.validate")
    path = board_home / "incoming" / "some_bad.jsonl"
    good = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(20)]
    lines = [json.dumps(r) for r in good]
    lines[3] = '{"instruction": "q3", "output": '  # broken JSON
    lines[7] = json.dumps({"instruction": "q7", "output": None})
    path.write_text("\n".join(lines) + "\n")
    values = _detected(board, path)
    steps = list(board.data_validate(values))
    last = steps[-1]
    assert 'data-state="failed"' in last["data.validate_info"] and len(steps) >= 2
    assert "2 of 20 rows have problems" in last["data.validate_info"]
    assert list(last["data.problems"]["row"]) == [3, 7] and all(last["data.problems"]["fix"])
    assert last["data.skip_bad"]["visible"] is True
    # Register validates again: without the box ticked nothing is registered, with it the good rows are.
    values["data.name"] = "some_bad"
    refused = board.data_register(values)
    assert "2 of 20 rows have problems" in _alerts(refused)[0] and list(refused["data.problems"]["row"]) == [3, 7]
    assert "some_bad" not in json.loads((board_home / "data" / "dataset_info.json").read_text())
    values["data.skip_bad"] = True
    assert "Registered some_bad: 18 rows (2 skipped)" in _alerts(board.data_register(values))[0]


def test_inspect_shows_the_tokens_training_sees_and_the_length_histogram(board, csv_file):
    values = _values(
        **{
            "data.dataset_dir": "demo",
            "data.inspect_dataset": "demo_sft",
            "data.inspect_stage": "sft",
            "data.inspect_index": 2,
            "data.cutoff_len": 20,
        }
    )
    updates = board.data_inspect(values)
    assert not _alerts(updates), _alerts(updates)
    html = updates["data.token_view"]
    assert "demo_sft, sample 2, as sft training sees it with cutoff_len 20" in html
    assert "lb-tok-loss" in html and "lb-tok-masked" in html and "lb-tok-special" in html
    figure = updates["data.length_plot"]
    assert [trace.name for trace in figure.data] == ["prompt", "answer", "total"]
    assert figure.layout.shapes[0].x0 == 20  # the cutoff line
    assert "cutoff_len 20 truncates" in updates["data.length_info"] and "lb-padtable" in updates["data.length_info"]
    missing = board.data_inspect({**values, "data.inspect_index": 10_000})
    assert "pick 0 to" in _alerts(missing)[0]


def test_curate_saves_a_new_registered_dataset(board, csv_file, board_home):
    pytest.importorskip("core.data.curate")
    values = _detected(board, csv_file)
    values.update({"data.col_prompt": "frage", "data.col_response": "antwort", "data.name": "to_curate"})
    board.data_register(values)
    before = (board_home / "data" / "dataset_info.json").read_text()
    curate = _values(
        **{
            "data.curate_dataset": "to_curate",
            "data.match": "sum is 3[0-5]",
            "data.new_name": "small",
            "data.dedup": "exact",
            "data.eval_size": 2,
        }
    )
    updates = board.data_curate(curate)
    assert "12 rows in, 4 out (dropped: no_match: 6); registered small, small_eval" in _alerts(updates)[0]
    info = json.loads((board_home / "data" / "dataset_info.json").read_text())
    assert {"small", "small_eval", "to_curate"} <= set(info)
    assert json.loads(before)["to_curate"] == info["to_curate"]
    assert "small" in updates["train.dataset"]["choices"]


def test_token_view_html_puts_chosen_and_rejected_side_by_side_and_shows_the_kto_tag():
    from webui.handlers.tokenhtml import token_view_html

    def side(*flags: str) -> dict[str, Any]:
        tokens = [{"id": n, "text": f"t{n}", "flag": flag, "special": n == 0} for n, flag in enumerate(flags)]
        return {"tokens": tokens, "length": 3, "full_length": len(flags), "loss_tokens": flags.count("loss")}

    view = {
        "dataset": "pairs",
        "index": 0,
        "stage": "dpo",
        "cutoff_len": 3,
        "sides": {"chosen": side("masked", "loss", "loss"), "rejected": side("masked", "loss", "loss", "cut")},
    }
    html = token_view_html("en", view)
    assert html.index("Chosen: 3 of 3 tokens") < html.index("Rejected: 3 of 4 tokens")
    assert html.count('class="lb-tokside"') == 2 and html.count("lb-tok-cutmark") == 1
    assert '<span class="lb-tok lb-tok-cut" title="id 3 · cut">t3</span>' in html
    kto = token_view_html("zh", {**view, "stage": "kto", "sides": {"sample": side("loss")}, "kto_tag": False})
    assert "KTO 标签：不期望" in kto and "lb-kto-false" in kto

"""The board's sweeps (webui/handlers/sweep.py) with fake jobs: the Train tab's preview names the runs, Start sweep
queues one run per combination (one at a time on a CPU machine, side by side on disjoint GPUs), the Runs tab groups
them under their sweep, and Abort sweep cancels the waiting members and stops the running one. The 2x2 sweep that
trains the demo model to the end is tests/train/test_sweep_board.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import make_fake_runner

from core import sweep
from webui.handlers.events import ALERTS
from webui.handlers.render import state_name
from webui.manager import alert

GRID = {"train.sweep_key1": "learning_rate", "train.sweep_values1": "1e-2, 1e-4"}
GRID |= {"train.sweep_key2": "lora_rank", "train.sweep_values2": "4,8"}


def form(ui: Any, **values: Any) -> dict[str, Any]:
    manager = ui.board.manager
    current = {key: getattr(manager[key], "value", None) for key in manager}
    return {**current, "top.model_path": "demo", **values}


def board_with(board_home: Path, *options: str, devices: list[str] | None = None) -> Any:
    from webui.app import create_ui

    runner = make_fake_runner(board_home / "saves", *options)
    runner.devices = devices or []
    return create_ui("en", runner=runner)


@pytest.fixture
def stop_all() -> Any:
    boards: list[Any] = []
    yield boards.append
    for ui in boards:
        for run_dir in [*ui.board.runner.queued(), *ui.board.runner.active()]:
            ui.board.runner.abort(run_dir)
        for run_dir in ui.board.runner.active():
            ui.board.runner.wait(run_dir, timeout=15)


def test_preview_names_every_combination_and_says_how_they_run(board_home: Path) -> None:
    ui = board_with(board_home)
    text = ui.board.sweep_preview(form(ui, **GRID, **{"train.output_dir": "lr"}))["train.sweep_preview"]
    assert text.startswith(alert("en", "sweep_count", count=4, name="lr"))
    assert alert("en", "sweep_one_at_a_time") in text
    for name in ("lr-learning_rate-1e-2-lora_rank-4", "lr-learning_rate-1e-4-lora_rank-8"):
        assert f"`{name}`" in text
    bad = ui.board.sweep_preview(form(ui, **{"train.sweep_key1": "learning_rate", "train.sweep_values1": ""}))
    assert "sweep row 1: give both a key and its values" in bad["train.sweep_preview"]
    assert ui.board.sweep_preview(form(ui))["train.sweep_preview"] == alert("en", "sweep_none")
    gpus = board_with(board_home, devices=["0", "1", "2", "3"])
    text = gpus.board.sweep_preview(form(gpus, **GRID, **{"train.output_dir": "lr"}))["train.sweep_preview"]
    assert alert("en", "sweep_side_by_side", groups=4) in text and "(3)" in text


def test_devices_are_split_into_disjoint_groups() -> None:
    assert sweep.split_devices([], 3) == [[], [], []]
    assert sweep.split_devices(["0", "1"], 4) == [["0"], ["1"], ["0"], ["1"]]
    assert sweep.split_devices(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
    assert sweep.split_devices(["0", "1", "2"], 2) == [["0"], ["1"]]


def test_sweep_runs_one_at_a_time_on_cpu_groups_under_its_sweep_and_aborts(board_home: Path, stop_all: Any) -> None:
    ui = board_with(board_home, "--steps", "400", "--interval", "0.05")
    stop_all(ui)
    board = ui.board
    started = board.start_sweep(form(ui, **GRID, **{"train.output_dir": "cpu-sweep"}))
    assert started[ALERTS] == [("info", alert("en", "sweep_started", count=4, name="cpu-sweep"))], started
    folder = board_home / "saves" / "demo" / "lora" / "cpu-sweep"
    record = json.loads((folder / sweep.SWEEP_JSON).read_text())
    runs = [Path(member["run"]) for member in record["members"]]
    assert [member["values"] for member in record["members"]][1] == {"learning_rate": "1e-2", "lora_rank": 8}
    assert started["train.view_run"]["value"] == str(runs[0].resolve())
    assert len(board.runner.active()) == 1 and [p.name for p in board.runner.queued()] == [r.name for r in runs[1:]]
    # Each member's job.yaml holds its own values.
    import yaml

    member = yaml.safe_load((runs[3] / "job.yaml").read_text())
    assert (member["learning_rate"], member["lora_rank"], member["output_dir"]) == ("1e-4", 8, str(runs[3]))

    # The same name again: refused before anything starts.
    again = board.start_sweep(form(ui, **GRID, **{"train.output_dir": "cpu-sweep"}))
    assert again[ALERTS][0][0] == "warning" and "cpu-sweep already exists" in again[ALERTS][0][1]

    # Runs tab: the sweep is offered, picking it keeps only its members in the table and ranks them.
    choices = board.sweep_choices("en")
    assert (
        choices[0] == (alert("en", "sweep_all_runs"), "") and ("demo/lora/cpu-sweep", str(folder.resolve())) in choices
    )
    picked = {"top.lang": "en", "runs.sweep": str(folder.resolve()), "runs.sweep_metric": "eval_loss"}
    table = board.refresh_runs_table(picked)["runs.table"]
    assert sorted(Path(p).name for p in table.iloc[:, -1]) == sorted(r.name for r in runs)
    assert board.pick_sweep({**picked, "runs.sweep_metric": "reward"})["runs.sweep_metric"] == "eval_loss"
    shown = board.show_sweep(picked)
    assert shown["runs.sweep_box"]["visible"] is True and shown["runs.sweep_abort"]["visible"] is True
    summary = shown["runs.sweep_summary"]
    none_picked = board.show_sweep({**picked, "runs.sweep": ""})  # "(all runs)": no empty summary, no Abort
    assert none_picked["runs.sweep_box"]["visible"] is False and none_picked["runs.sweep_abort"]["visible"] is False
    assert list(summary.columns) == ["Rank", "learning_rate", "lora_rank", "Best eval loss", "State", "Run"]
    assert sorted(summary["Run"]) == sorted(run.name for run in runs)
    assert set(summary["State"]) == {state_name("en", "running"), state_name("en", "queued")}

    # Abort sweep (Runs tab): the three waiting members are cancelled, the running one stops.
    aborted = board.abort_sweep({"top.lang": "en", "runs.sweep": str(folder.resolve())})
    assert aborted[ALERTS] == [("info", alert("en", "sweep_aborted", name="cpu-sweep", cancelled=3, stopped=1))]
    for run in runs:
        board.runner.wait(run, timeout=20)
    states = [json.loads((run / "job.json").read_text())["state"] for run in runs]
    assert states == ["aborted"] * 4
    assert board.runner.queued() == [] and board.runner.active() == []
    assert json.loads((folder / sweep.SWEEP_JSON).read_text())["aborted"] is True
    assert not (runs[1] / "trainer_log.jsonl").exists()  # cancelled before it ever ran


def test_sweep_runs_side_by_side_on_disjoint_gpus(board_home: Path, stop_all: Any) -> None:
    ui = board_with(board_home, "--steps", "400", "--interval", "0.05", devices=["0", "1"])
    stop_all(ui)
    started = ui.board.start_sweep(form(ui, **GRID, **{"train.output_dir": "gpu-sweep"}))
    assert started[ALERTS][0][0] == "info", started
    active = ui.board.runner.active()
    assert len(active) == 2 and len(ui.board.runner.queued()) == 2
    held = [json.loads((run / "job.json").read_text())["devices"] for run in active]
    assert sorted(held) == [["0"], ["1"]]
    # With another sweep's runs under saves (the test above), picking this sweep keeps its four only.
    folder = str((board_home / "saves" / "demo" / "lora" / "gpu-sweep").resolve())
    mine = ui.board.refresh_runs_table({"top.lang": "en", "runs.sweep": folder})["runs.table"]
    everything = ui.board.refresh_runs_table({"top.lang": "en", "runs.sweep": ""})["runs.table"]
    assert len(mine) == 4 and len(everything) > 4
    # Abort sweep from the Train tab, with one of its runs shown.
    aborted = ui.board.abort_sweep({"top.lang": "en", "train.view_run": str(active[0])})
    assert aborted[ALERTS] == [("info", alert("en", "sweep_aborted", name="gpu-sweep", cancelled=2, stopped=2))]


def test_start_sweep_refuses_a_bad_member_before_starting_any(board_home: Path) -> None:
    ui = board_with(board_home)
    bad = {"train.sweep_key1": "lora_rank", "train.sweep_values1": "8,-1", "train.output_dir": "bad-sweep"}
    result = ui.board.start_sweep(form(ui, **bad))
    (level, text), *_ = result[ALERTS]
    assert level == "warning" and "bad-sweep-lora_rank--1" in text and "lora_rank" in text.splitlines()[1]
    assert ui.board.runner.active() == [] and not (board_home / "saves" / "demo" / "lora" / "bad-sweep").exists()
    none = ui.board.start_sweep(form(ui, **{"train.output_dir": "no-sweep"}))
    assert none[ALERTS] == [("warning", alert("en", "sweep_none"))]
    nothing = ui.board.abort_sweep({"top.lang": "en", "train.view_run": None})
    assert nothing[ALERTS] == [("warning", alert("en", "sweep_nothing"))]

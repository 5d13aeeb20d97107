"""A 2x2 sweep started from the board (the Train tab's Sweep section, called as its handlers) trains the demo model to
the end through the runner's queue, one member at a time on this CPU machine, and the Runs tab's sweep summary ranks
the members by the chosen metric, with their curves overlaid. The CLI twin is test_sweep.py; the queue, abort and
device placement with fake jobs are tests/webui/test_sweep_form.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core import sweep
from webui.handlers.events import ALERTS


@pytest.fixture
def board(demo_model, tmp_path, monkeypatch):
    from webui.app import create_ui
    from webui.runner import Runner

    monkeypatch.setenv("LLAMABOARD_SAVES", str(tmp_path / "saves"))
    monkeypatch.setenv("LLAMABOARD_ROOTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    runner = Runner(saves_root=tmp_path / "saves", grace_s=10, devices=[])
    ui = create_ui("en", runner=runner)
    yield ui
    for run_dir in [*runner.queued(), *runner.active()]:
        runner.abort(run_dir)
    for run_dir in runner.active():
        runner.wait(run_dir, timeout=30)


@pytest.mark.slow
def test_a_2x2_board_sweep_trains_every_member_and_ranks_them(board, tmp_path):
    manager = board.board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    short = {"max_steps": 4, "eval_strategy": "steps", "eval_steps": 4, "use_cpu": True, "save_strategy": "no"}
    values.update(
        {
            "top.model_path": "demo",
            "top.template": "chatml",
            "train.dataset": ["demo_sft"],
            "train.cutoff_len": 64,
            "train.max_samples": 200,
            "train.per_device_train_batch_size": 8,
            "train.gradient_accumulation_steps": 1,
            "train.val_size": 0.1,
            "train.logging_steps": 2,
            "train.report_to": "none",
            "train.extra_args": json.dumps(short),
            "train.output_dir": "grid",
            "train.sweep_key1": "learning_rate",
            "train.sweep_values1": "1e-2,1e-4",
            "train.sweep_key2": "lora_rank",
            "train.sweep_values2": "4,8",
            "train.sweep_metric": "eval_loss",
        }
    )
    start = time.perf_counter()
    started = board.board.start_sweep(values)
    assert started[ALERTS][0][0] == "info", started[ALERTS]
    runner = board.board.runner
    folder = tmp_path / "saves" / "demo" / "lora" / "grid"
    runs = [Path(member["run"]) for member in sweep.read_record(folder)["members"]]
    assert len(runner.active()) == 1 and len(runner.queued()) == 3  # one at a time on a CPU machine
    for run in runs:
        job = runner.wait(run, timeout=240)
        assert job["state"] == "finished", (run / "job.log").read_text()[-2000:]
    seconds = time.perf_counter() - start
    print(f"2x2 board sweep on the demo model: {seconds:.1f} s")
    # Never two at once: each member started after the one before it ended.
    jobs = [json.loads((run / "job.json").read_text()) for run in runs]
    assert all(later["started"] >= earlier["ended"] for earlier, later in zip(jobs, jobs[1:], strict=False))

    picked = {"top.lang": "en", "runs.sweep": str(folder.resolve()), "runs.sweep_metric": "eval_loss"}
    shown = board.board.show_sweep(picked)
    summary = shown["runs.sweep_summary"]
    losses = [float(value) for value in summary["Best eval loss"]]
    assert losses == sorted(losses) and len(set(losses)) == 4
    assert list(summary["Rank"]) == [1, 2, 3, 4] and set(summary["State"]) == {"Finished"}
    ranked = sweep.summary(folder, "eval_loss")
    assert list(summary["Run"]) == [Path(row["name"]).name for row in ranked]
    assert sorted(trace.name for trace in shown["runs.sweep_plot"].data) == sorted(run.name for run in runs)
    by_train = board.board.show_sweep({**picked, "runs.sweep_metric": "train_loss"})["runs.sweep_summary"]
    train_losses = [float(value) for value in by_train["Final train loss"]]
    assert train_losses == sorted(train_losses)

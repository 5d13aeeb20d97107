"""The live view says under the progress bar when and why a run stopped early and which checkpoint is the best, read
from the job log lines core.train.callbacks writes (the real lines are checked in tests/train/test_early_stopping.py),
and keeps saying it after the log has scrolled past them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from webui.handlers.stopline import parse_stop, stop_html
from webui.manager import alert

LOG = """[WARNING|callbacks] Early stopping: eval_loss 5.59 at step 10 is no better than 5.48 at step 8 (1 of 2 evaluations).
[WARNING|callbacks] Early stopping at step 12: eval_loss has not improved for 2 evaluations (best 5.48 at step 8, early_stopping_patience 2).
[WARNING|callbacks] Best checkpoint: checkpoint-8 (eval_loss 5.48); the final model is its weights.
"""  # noqa: E501


def test_the_progress_bar_says_when_and_why_it_stopped_and_the_best_checkpoint(ui: Any, board_home: Path) -> None:
    run = board_home / "saves" / "demo" / "lora" / "stopped-early"
    run.mkdir(parents=True)
    now = time.time()
    job = {"state": "finished", "stage": "sft", "created": now, "started": now, "ended": now, "pid": None}
    (run / "job.json").write_text(json.dumps(job))
    (run / "job.yaml").write_text("stage: sft\n")
    (run / "trainer_log.jsonl").write_text(json.dumps({"current_steps": 12, "total_steps": 40, "loss": 1.0}) + "\n")
    (run / "job.log").write_text(LOG)
    values = {key: getattr(ui.board.manager[key], "value", None) for key in ui.board.manager}
    shown = ui.board.change_view({**values, "train.view_run": str(run.resolve())})["train.progress"]
    early = alert("en", "early_stopped", step=12, metric="eval_loss", waited=2, patience=2, best="5.48", best_step=8)
    best = alert("en", "best_checkpoint_final", checkpoint="checkpoint-8", metric="eval_loss", value="5.48")
    assert early in shown and best in shown and 'data-stop="early"' in shown
    # In Chinese too, and the line stays after 20,000 characters of later log.
    with (run / "job.log").open("a") as log:
        log.write(("later line\n") * 2500)
    zh = ui.board.change_view({**values, "top.lang": "zh", "train.view_run": str(run.resolve())})
    assert "Best checkpoint" not in zh["train.output_box"]  # scrolled out of the log box
    zh_best = alert("zh", "best_checkpoint_final", checkpoint="checkpoint-8", metric="eval_loss", value="5.48")
    assert zh_best in zh["train.progress"]


def test_nothing_is_said_without_such_lines_and_the_last_step_is_named() -> None:
    assert stop_html("en", parse_stop("step 1\nstep 2\n")) == ""
    info = parse_stop("Best checkpoint: checkpoint-4 (eval loss 0.5); the final model is the last step.")
    assert stop_html("en", info).count("<div>") == 1 and "the final model is the last step" in stop_html("en", info)

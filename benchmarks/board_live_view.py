"""Cost of one live-view poll of the board (`Board.poll` in webui/handlers/live.py: readers, job state, charts)
with 10 and with 100,000 trainer_log records already read, one new record appended before each poll.

    python benchmarks/board_live_view.py [--polls 20]

webui.jobs reads only the appended bytes and webui.plots extends its cached series, so both figures should match.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def record(step: int, total: int) -> dict[str, Any]:
    return {
        "current_steps": step,
        "total_steps": total,
        "percentage": round(100.0 * step / total, 2),
        "epoch": round(step / total, 4),
        "elapsed_time": "0:00:01",
        "remaining_time": "0:10:00",
        "loss": 2.0 / (1 + 1e-3 * step),
        "lr": 1e-4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=20)
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="board-live-view-"))
    os.environ["LLAMABOARD_SAVES"] = str(scratch / "saves")
    os.environ["LLAMABOARD_CACHE"] = str(scratch / "cache")

    from webui.app import create_ui
    from webui.runner import Runner

    board = create_ui("en", runner=Runner(saves_root=scratch / "saves")).board
    values = {key: getattr(board.manager[key], "value", None) for key in board.manager}
    for count in (10, 100_000):
        total = count + options.polls + 100
        run = scratch / "saves" / "demo" / "lora" / f"run_{count}"
        run.mkdir(parents=True)
        now = time.time()
        job = {"state": "running", "pid": os.getpid(), "stage": "sft", "created": now, "started": now}
        (run / "job.json").write_text(json.dumps(job))
        (run / "job.yaml").write_text("stage: sft\n")
        (run / "job.log").write_text("a log line\n" * 2000)
        with (run / "trainer_log.jsonl").open("w") as log:
            log.writelines(json.dumps(record(step, total)) + "\n" for step in range(1, count + 1))

        view = {**values, "train.view_run": str(run)}
        state = board.poll({**view, "train.poll_state": {}})["train.poll_state"]  # the first read of the file
        seconds = []
        for step in range(count + 1, count + options.polls + 1):
            with (run / "trainer_log.jsonl").open("a") as log:
                log.write(json.dumps(record(step, total)) + "\n")
            start = time.perf_counter()
            result = board.poll({**view, "train.poll_state": state})
            seconds.append(time.perf_counter() - start)
            state = result["train.poll_state"]
            assert state["records"] == step
        print(
            f"{count:>7} records read: poll median {1000 * statistics.median(seconds):.1f} ms, "
            f"min {1000 * min(seconds):.1f} ms over {options.polls} polls (load average {os.getloadavg()[0]:.1f})"
        )


if __name__ == "__main__":
    main()

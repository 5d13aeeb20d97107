"""Cost of one board poll (what gr.Timer runs every 2 s) with 10 and with 100,000 log records already read.

    python benchmarks/board_poll.py [--repeat 20]

One poll = TrainerLogReader.poll + LogTail.poll + progress + the three figures (built and serialized to JSON as
gradio sends them), after one new record and one new log line were appended. Prints the median per step count
and the bytes each poll read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from core import runfolder
from webui import jobs, plots


def _record(step: int, total: int) -> str:
    return json.dumps(
        {
            "current_steps": step,
            "total_steps": total,
            "percentage": round(100 * step / total, 2),
            "epoch": round(step / total, 3),
            "elapsed_time": "0:10:00",
            "remaining_time": "0:05:00",
            "elapsed_s": 600.0,
            "remaining_s": 300.0,
            "loss": 2.0 / (1 + 0.001 * step),
            "lr": 1e-4,
            "grad_norm": 1.0,
            "rewards/accuracies": 0.75,
            "rewards/margins": 0.5,
        }
    )


def measure(records_before: int, repeat: int) -> dict[str, float]:
    total = records_before + repeat + 1
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder)
        log_path, text_log = run / runfolder.TRAINER_LOG, run / runfolder.JOB_LOG
        log_path.write_text("".join(_record(step, total) + "\n" for step in range(1, records_before + 1)))
        text_log.write_text("".join(f"step {step}/{total} loss 0.5\n" for step in range(1, records_before + 1)))
        reader, tail = runfolder.TrainerLogReader(log_path), jobs.LogTail(text_log)
        job = {"state": "running", "started": time.time() - 600}
        reader.poll()
        tail.poll()
        plots.loss_figure(reader.records)  # the first poll reads everything once; later polls are measured
        times, read = [], []
        for step in range(records_before + 1, records_before + repeat + 1):
            with log_path.open("a") as handle:
                handle.write(_record(step, total) + "\n")
            with text_log.open("a") as handle:
                handle.write(f"step {step}/{total} loss 0.5\n")
            before = reader.bytes_read + tail.bytes_read
            start = time.perf_counter()
            reader.poll()
            tail.poll()
            jobs.progress(reader.records, job)
            for figure in (
                plots.loss_figure(reader.records),
                plots.lr_figure(reader.records),
                plots.reward_figure(reader.records),
            ):
                figure.to_json()
            times.append(time.perf_counter() - start)
            read.append(reader.bytes_read + tail.bytes_read - before)
    return {"ms": statistics.median(times) * 1000, "bytes": statistics.median(read)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    for count in (10, 100_000):
        result = measure(count, options.repeat)
        print(f"poll with {count:>7,} records read: {result['ms']:6.1f} ms, {result['bytes']:.0f} bytes read")


if __name__ == "__main__":
    main()

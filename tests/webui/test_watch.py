"""The live view of a watched job: health alerts as a banner and toasts, a stalled job flagged with its last log
lines (and one `stalled` webhook) and distinct from a quiet job still loading, system-use and efficiency charts. Run
folders are written by hand here, as a job would write them (tests/train/test_health.py makes real jobs raise each
alert)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import psutil
from test_app import form

from webui.handlers.events import ALERTS
from webui.plots import efficiency_figure, sample_steps, system_figure


def _run(saves: Path, name: str, records: list[dict], samples: list[dict] = (), state: str = "running") -> Path:
    run_dir = saves / "demo" / "lora" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.yaml").write_text("stage: sft\n")
    # This test process stands in for the job's: alive, so the board keeps the job "running".
    job = {
        "id": name,
        "state": state,
        "pid": os.getpid(),
        "pid_create_time": psutil.Process().create_time(),
        "started": time.time() - 600,
        "stage": "sft",
    }
    (run_dir / "job.json").write_text(json.dumps(job))
    (run_dir / "job.log").write_text("".join(f"line {i}\n" for i in range(20)))
    (run_dir / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return run_dir


def _record(step: int, elapsed: float, **extra: Any) -> dict[str, Any]:
    return {"current_steps": step, "total_steps": 100, "percentage": step, "elapsed_s": elapsed, **extra}


DIVERGENCE = {
    "alert": "divergence",
    "level": "error",
    "message": "the smoothed loss is 54.4, above 3x its lowest (6.96) for 3 logging steps: training is diverging",
}


def _poll(ui: Any, run_dir: Path, state: dict) -> dict[str, Any]:
    return ui.board.poll(form(ui, train__view_run=str(run_dir), train__poll_state=state))


def test_a_new_alert_shows_in_the_banner_and_as_a_toast(ui: Any, board_home: Path) -> None:
    saves = Path(ui.board.saves_root)
    records = [_record(5, 10.0, loss=2.0), _record(10, 20.0, loss=1.5)]
    run_dir = _run(saves, "watch-alert", records)
    first = _poll(ui, run_dir, {})
    assert first["train.alert_banner"] == "" and not first.get(ALERTS)

    with (run_dir / "trainer_log.jsonl").open("a") as handle:
        handle.write(json.dumps(_record(15, 30.0, loss=9.0)) + "\n")
        handle.write(json.dumps({**_record(15, 30.0), **DIVERGENCE}) + "\n")
    second = _poll(ui, run_dir, first["train.poll_state"])
    banner = second["train.alert_banner"]
    assert 'data-alert="divergence"' in banner and "Alert at step 15 · Diverging" in banner
    assert "training is diverging" in banner
    [(level, toast)] = second[ALERTS]
    assert level == "warning" and toast.startswith("Alert at step 15 · Diverging: the smoothed loss")
    # The progress bar still reads the training step: the alert record carries the progress keys.
    assert 'data-current="15"' in second["train.progress"]
    # Seen once, toasted once; a browser tab opening the run later sees the banner without a toast.
    assert not _poll(ui, run_dir, second["train.poll_state"]).get(ALERTS)
    fresh = _poll(ui, run_dir, {})
    assert 'data-alert="divergence"' in fresh["train.alert_banner"] and not fresh.get(ALERTS)


def test_a_silent_running_job_is_stalled_with_its_last_lines(ui: Any, webhook_server, monkeypatch) -> None:
    from core.notify import WEBHOOK_ENV

    monkeypatch.setenv(WEBHOOK_ENV, webhook_server.url)
    saves = Path(ui.board.saves_root)
    run_dir = _run(saves, "watch-stall", [_record(5, 10.0, loss=2.0), _record(10, 20.0, loss=1.9)])
    loading = _run(saves, "watch-loading", [])
    old = time.time() - 400  # records came every 10 s; 400 s of silence is past max(5 x 10 s, 180 s)
    for folder in (run_dir, loading):
        for name in ("trainer_log.jsonl", "job.log"):
            os.utime(folder / name, (old, old))

    first = _poll(ui, run_dir, {})
    assert 'data-state="stalled"' in first["train.progress"] and "Stalled" in first["train.progress"]
    banner = first["train.alert_banner"]
    assert 'data-alert="stalled"' in banner and "No new log record for 0:06:" in banner and "line 19" in banner
    second = _poll(ui, run_dir, first["train.poll_state"])
    assert 'data-state="stalled"' in second["train.progress"]
    # A job with no training record yet is loading, not stalled, however quiet; the job's state stays "running".
    shown = _poll(ui, loading, {})["train.progress"]
    assert 'data-state="running"' in shown and '<span class="lb-state">Loading</span>' in shown
    assert "Stalled" not in shown

    from core import notify

    notify.flush(5)
    [post] = [p for p in webhook_server.posts if p["run"] == "watch-stall"]
    assert post["event"] == "stalled" and post["cause"].startswith("no new log record for 0:06:")
    # Activity again: no longer stalled.
    (run_dir / "job.log").write_text("line 20\n")
    again = _poll(ui, run_dir, second["train.poll_state"])["train.progress"]
    assert 'data-state="running"' in again and '<span class="lb-state">Running</span>' in again


def test_system_samples_sit_on_the_loss_charts_step_axis() -> None:
    records = [_record(10, 20.0, loss=2.0, throughput=900.0, mfu=3.5), _record(20, 40.0, loss=1.0)]
    samples = [
        {"time": 1.0, "current_steps": 0, "rss_mb": 500.0},  # before training: no place on the axis
        {"time": 2.0, "elapsed_s": 10.0, "current_steps": 4, "cpu_percent": 95.0, "rss_mb": 1024.0},
        {"time": 3.0, "elapsed_s": 30.0, "current_steps": 10, "cpu_percent": 99.0, "rss_mb": 2048.0,
         "gpus": [{"index": 0, "util": 80.0, "mem_used_mb": 4096.0, "mem_total_mb": 81920.0}]},
    ]  # fmt: skip
    assert sample_steps(samples, records) == [None, 5.0, 15.0]
    figure = system_figure(samples, records)
    names = [trace.name for trace in figure.data]
    assert names == ["CPU %", "RSS GiB", "GPU0 %", "GPU0 GiB"]
    assert list(figure.data[1].y) == [1.0, 2.0] and list(figure.data[3].x) == [15.0]
    efficiency = efficiency_figure(records)
    assert [trace.name for trace in efficiency.data] == ["tokens/s", "MFU %"]
    assert len(system_figure([], []).data) == 0

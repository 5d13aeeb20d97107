"""core.stall: when a running job counts as stalled, and when it is only queued, loading or slow."""

from __future__ import annotations

import os

from core.stall import STALL_MIN_S, last_activity, stall_check, typical_interval


def _records(*elapsed: float) -> list[dict]:
    return [{"current_steps": 10 * (i + 1), "elapsed_s": e, "loss": 1.0} for i, e in enumerate(elapsed)]


def test_typical_interval_is_the_median_gap_of_training_records():
    records = _records(60, 120, 180, 900, 960)  # one slow gap (an evaluation) does not move the median
    records.insert(2, {"alert": "divergence", "elapsed_s": 150.0, "current_steps": 20})
    assert typical_interval(records) == 60
    assert typical_interval(_records(42)) == 42
    assert typical_interval([]) is None


def test_a_job_silent_for_five_intervals_and_three_minutes_is_stalled():
    records = _records(100, 200, 300)  # a record every 100 s: stalled after 500 s of silence
    assert stall_check("running", records, last_active=1000.0, now=1499.0) is None
    assert stall_check("running", records, last_active=1000.0, now=1500.0) == {
        "silent_s": 500.0,
        "typical_s": 100.0,
        "threshold_s": 500.0,
    }


def test_fast_jobs_get_the_minimum_and_other_states_never_stall():
    fast = _records(1, 2, 3)  # a record a second: 5 s of silence is not yet a stall, 3 minutes is
    assert stall_check("running", fast, last_active=0.0, now=60.0) is None
    assert stall_check("running", fast, last_active=0.0, now=STALL_MIN_S)["threshold_s"] == STALL_MIN_S
    assert stall_check("running", [], last_active=0.0, now=10_000.0) is None  # loading: no training record yet
    assert stall_check("queued", fast, last_active=0.0, now=10_000.0) is None
    assert stall_check("finished", fast, last_active=0.0, now=10_000.0) is None


def test_last_activity_reads_the_log_files_not_the_metrics(tmp_path):
    assert last_activity(tmp_path) is None
    (tmp_path / "trainer_log.jsonl").write_text("{}\n")
    (tmp_path / "job.log").write_text("x\n")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    os.utime(tmp_path / "trainer_log.jsonl", (100, 100))
    os.utime(tmp_path / "job.log", (200, 200))
    os.utime(tmp_path / "metrics.jsonl", (900, 900))
    assert last_activity(tmp_path) == 200

"""Is a running job stalled? The rule the board applies to a run folder. Pure (stdlib and core.runfolder).

A job is `stalled` when it is running, has written at least one training record (before that it is `loading`;
`queued` jobs have not started), and neither trainer_log.jsonl nor job.log has grown for

    max(STALL_FACTOR x its typical interval between records, STALL_MIN_S)

The typical interval is the median gap between the `elapsed_s` of its last training records (with one record, that
record's own `elapsed_s`). metrics.jsonl does not count as activity: its sampler thread keeps writing in a process
whose training is hung. A long evaluation pass writes nothing either, so the minimum keeps short runs from being
called stalled while they evaluate; a flag clears by itself when the next record arrives.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from core.runfolder import TRAINER_LOG, log_file

STALL_FACTOR = 5.0
STALL_MIN_S = 180.0
_RECENT = 20


def typical_interval(records: list[dict[str, Any]]) -> float | None:
    """Median seconds between the last training records; None before the first one."""
    times = [
        float(r["elapsed_s"])
        for r in records
        if "alert" not in r and "phase" not in r and isinstance(r.get("elapsed_s"), (int, float))
    ][-_RECENT:]
    if not times:
        return None
    if len(times) == 1:
        return max(times[0], 0.0)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b >= a]
    return statistics.median(gaps) if gaps else None


def last_activity(run_dir: str | os.PathLike) -> float | None:
    """Newest modification time of trainer_log.jsonl and job.log (epoch seconds); None when neither exists."""
    times = []
    for path in (Path(run_dir) / TRAINER_LOG, log_file(run_dir)):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times) if times else None


def stall_check(
    state: str,
    records: list[dict[str, Any]],
    last_active: float | None,
    now: float | None = None,
    factor: float = STALL_FACTOR,
    minimum_s: float = STALL_MIN_S,
) -> dict[str, float] | None:
    """`{"silent_s", "typical_s", "threshold_s"}` when the job is stalled by the rule above, else None."""
    if state != "running" or last_active is None:
        return None
    typical = typical_interval(records)
    if typical is None:
        return None  # still loading
    threshold = max(factor * typical, minimum_s)
    silent = (now if now is not None else time.time()) - last_active
    if silent < threshold:
        return None
    return {"silent_s": round(silent, 1), "typical_s": round(typical, 1), "threshold_s": round(threshold, 1)}

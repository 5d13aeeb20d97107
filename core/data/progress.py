"""Progress of data preparation, so that a long one is never silent.

Every `INTERVAL` seconds (and at the start and the end) `PrepareProgress` logs a line such as

    Preparing the train set: 35,000/100,000 rows (35%), 9,800 rows/s, 0:00:07 left

(the job's log) and appends a record to `<output_dir>/trainer_log.jsonl`:

    {"phase": "prepare", "rows_done", "rows_total" (0: unknown), "percentage", "elapsed_time", "remaining_time",
     "elapsed_s", "remaining_s", "rows_per_s"}

No `current_steps`: whoever reads the last record's step count (a board, a script waiting for step N) sees no
training step yet. The training charts ignore these records (they carry no metric), the board's progress bar shows
them as "Preparing data", and `LogCallback` drops them when training begins. Pure: no torch, transformers, datasets.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from core.runfolder import format_hms

logger = logging.getLogger(__name__)

INTERVAL = 3.0
"""Seconds between two progress lines (and records)."""


class PrepareProgress:
    """Counts the rows of one set as they are prepared; `total` None when it is not known beforehand."""

    def __init__(
        self,
        what: str,
        total: int | None,
        log_file: Path | None = None,
        interval: float = INTERVAL,
        clock=None,
        verbs: tuple[str, str] = ("Preparing", "Prepared"),
    ) -> None:
        self.what = what
        self.verbs = verbs
        self.total = total
        self.log_file = log_file
        self.interval = interval
        self.clock = clock or time.monotonic
        self.start = self.clock()
        self.done = 0
        self._last = self.start
        self._emit(final=False)

    def update(self, rows: int) -> None:
        self.done += rows
        if self.total is not None and self.done > self.total:
            self.total = self.done  # the count beforehand was an estimate
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(final=False)

    def finish(self, samples: int | None = None) -> None:
        """The set is prepared: `samples` rows came out (fewer when some did not fit, other when packed)."""
        self.total = self.done
        self._emit(final=True)
        elapsed = self.clock() - self.start
        out = f" -> {samples:,} samples" if samples is not None else ""
        took = format_hms(elapsed) if elapsed >= 1 else f"{elapsed:.2f} s"
        logger.info(
            "%s the %s: %s rows%s in %s (%s rows/s).",
            self.verbs[1],
            self.what,
            f"{self.done:,}",
            out,
            took,
            f"{self.rate():,.0f}",
        )

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _emit(self, final: bool) -> None:
        elapsed = self.clock() - self.start
        rate = self.rate()
        total = self.total or 0
        remaining = (total - self.done) / rate if rate > 0 and total else 0.0
        record = {
            "phase": "prepare",
            "rows_done": self.done,
            "rows_total": total,
            "percentage": round(100 * self.done / total, 2) if total else 0.0,
            "elapsed_time": format_hms(elapsed),
            "remaining_time": format_hms(remaining),
            "elapsed_s": round(elapsed, 3),
            "remaining_s": round(remaining, 3),
            "rows_per_s": round(rate, 1),
        }
        if self.log_file is not None:
            try:
                with self.log_file.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
            except OSError as err:  # progress must never stop the job
                logger.warning("Could not write data progress to %s: %s", self.log_file, err)
                self.log_file = None
        if final:
            return
        if not self.done:
            count = f"{total:,} rows" if total else "rows"
            logger.info("%s the %s (%s) ...", self.verbs[0], self.what, count)
            return
        of_total = f"/{total:,} rows ({100 * self.done / total:.0f}%)" if total else " rows"
        left = f", {format_hms(remaining)} left" if total else ""
        done = f"{self.done:,}"
        logger.info("%s the %s: %s%s, %s rows/s%s", self.verbs[0], self.what, done, of_total, f"{rate:,.0f}", left)

"""The console of a job, kept in its run folder: `job.log`, as the board's jobs have it, and the closing summary.

The board starts a job with stdout and stderr already going to `<run>/job.log`; a job started by
`llamafactory-cli train` writes its console there itself (and still shows it in the terminal), so the board shows
the log of a run it did not start. `console_log(run_dir)` does nothing when stdout already is that file.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from core.errors import UserError
from core.runfolder import JOB_LOG


class _Tee:
    """A text stream that writes to the console and to the log file."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        self.log.flush()
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno, ...: the console's
        return getattr(self.console, name)


def _is_file(stream: TextIO, path: Path) -> bool:
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), os.stat(path))
    except (OSError, ValueError, AttributeError):  # a stream without a file descriptor (pytest's capture, ...)
        return False


@contextmanager
def console_log(run_dir: str | os.PathLike) -> Iterator[Path | None]:
    """Copy stdout, stderr and our log lines into `<run_dir>/job.log` while the block runs; an error that ends the
    block is written there too (its message for a UserError, else the traceback). Yields the log's path, or None
    when stdout is that file already (a board job)."""
    path = Path(run_dir) / JOB_LOG
    if _is_file(sys.stdout, path) or _is_file(sys.stderr, path):
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
        # Handlers hold the stream they were made with: point ours at the tee too.
        handlers = [
            (handler, handler.stream)
            for handler in logging.getLogger("core").handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream in saved
        ]
        for handler, stream in handlers:
            handler.setStream(sys.stdout if stream is saved[0] else sys.stderr)
        try:
            yield path
        except BaseException as err:
            if isinstance(err, UserError):
                log.write(f"error: {err}\n")
            elif not isinstance(err, (KeyboardInterrupt, SystemExit)):
                log.write("".join(traceback.format_exception(err)))
            raise
        finally:
            for handler, stream in handlers:
                handler.setStream(stream)
            sys.stdout, sys.stderr = saved


def summary(records: list[dict[str, Any]]) -> str | None:
    """`Trained N steps in H:MM:SS: X s/step, Y real tokens/s` from trainer_log.jsonl records (None: no training)."""
    trained = [r for r in records if r.get("throughput") is not None and r.get("current_steps")]
    if not trained:
        return None
    last = trained[-1]
    seconds, steps = float(last.get("elapsed_s") or 0.0), int(last["current_steps"])
    return (
        f"Trained {steps} steps in {last.get('elapsed_time', '?')}: {seconds / steps:.3g} s/step, "
        f"{last['throughput']:,.0f} real tokens/s (padding not counted)"
    )

"""Reading a run folder: its state, the tail of its log, its trainer_log.jsonl records, and lists of runs.

Everything the board shows about a job comes from the job's folder (DESIGN.md section 3), so a job outlives the
browser tab and the board. Readers keep a byte offset and read only what was appended since the last poll, so a
poll costs the same at step 10 and at step 100,000; a half-written last line waits for the next poll.
Run folders written by LLaMA-Factory (training_args.yaml, running_log.txt, trainer_log.jsonl) read too. The file
names and the trainer_log.jsonl reader are core.runfolder's (TrainerLogReader is imported here for the readers' users).
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from core.registry import process_alive  # noqa: F401 (the runner's check too)
from core.runfolder import (
    JOB_JSON,
    JOB_LOG,
    JOB_YAML,
    LF_ARGS,
    LF_LOG,
    RESULT_FILES,
    TRAINER_LOG,
    TrainerLogReader,  # noqa: F401 (the incremental reader of a run folder, with LogTail below)
    format_hms,
    hms_seconds,
    read_args,
    run_kind,
    run_stage,
)

logger = logging.getLogger(__name__)

STATES = ("queued", "running", "finished", "failed", "aborted")
LIVE_STATES = ("queued", "running")

# Weights that make a folder usable as a checkpoint, per finetuning method.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_RANK_PREFIX_RE = re.compile(r"^\[(?:default)?rank\d+\]:\s?(.*)$")
_EXCEPTION_LINE_RE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning|Fault)\b.*")
_TAIL_BYTES = 64 * 1024


# --- Readers -------------------------------------------------------------------------------------------------------


class LogTail:
    """The last `max_chars` characters of a growing text log, reading only appended bytes.

    The first poll of a large file reads only its end. Carriage-return progress bars collapse to their latest
    state, as a terminal would show them.
    """

    def __init__(self, path: str | os.PathLike, max_chars: int = 20000) -> None:
        self.path = Path(path)
        self.max_chars = max_chars
        self.bytes_read = 0
        self._offset = 0
        self._inode: int | None = None
        self._text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def poll(self) -> str:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return self.text
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            self._inode, self._offset, self._text = stat.st_ino, 0, ""
            self._decoder.reset()
        if stat.st_size > self._offset:
            # UTF-8 takes at most 4 bytes a character: this many bytes always hold max_chars characters.
            start = max(self._offset, stat.st_size - 4 * self.max_chars)
            if start > self._offset:
                self._decoder.reset()
            with self.path.open("rb") as handle:
                handle.seek(start)
                chunk = handle.read(stat.st_size - start)
            self.bytes_read += len(chunk)
            self._offset = start + len(chunk)
            self._text = (self._text + self._decoder.decode(chunk))[-self.max_chars :]
        return self.text

    @property
    def end(self) -> int:
        """Bytes of the file read so far: the file position where `text` ends."""
        return self._offset

    @property
    def text(self) -> str:
        if "\r" not in self._text:
            return self._text
        return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in self._text.split("\n"))


def read_tail(path: str | os.PathLike, max_bytes: int = _TAIL_BYTES) -> str:
    """The last `max_bytes` of a text file (decoded leniently); "" when it does not exist."""
    try:
        with Path(path).open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def last_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The last complete JSON record of a trainer_log.jsonl, reading only its end."""
    for line in reversed(read_tail(path).split("\n")):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a half-written last line
        if isinstance(record, dict):
            return record
    return None


def _last_rank_exception(lines: list[str]) -> str:
    """A torchrun worker's own error: its last `[rankN]: XxxError: ...` traceback line, else the last line our CLI
    printed for a problem the user can fix (`error: ...`, printed without a traceback)."""
    for line in reversed(lines):
        match = _RANK_PREFIX_RE.match(line)
        if match and _EXCEPTION_LINE_RE.match(match.group(1)):
            return match.group(1).strip()
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.strip()
    return ""


def error_summary(log_text: str) -> str:
    """One line naming what went wrong, from a job's log: the last exception line of the last traceback, else a
    problem list the log ends with (its heading and first item: the CLI's argument problems), else the last line
    that mentions an error, else ""."""
    lines = [line for line in log_text.splitlines() if line.strip()] if log_text else []
    start = None
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Traceback (most recent call last)"):
            start = index
            break
    if start is not None:
        for line in lines[start + 1 :]:
            if line and not line[0].isspace() and _EXCEPTION_LINE_RE.match(line):
                if "ChildFailedError" in line:
                    # torchrun ends the log with its own traceback; the worker's real error is on `[rankN]: ` lines.
                    rank_error = _last_rank_exception(lines)
                    if rank_error:
                        return rank_error[:300]
                return line.strip()[:300]
    bullets = 0
    while bullets < len(lines) and lines[len(lines) - 1 - bullets].lstrip().startswith("- "):
        bullets += 1
    if bullets and bullets < len(lines):
        heading, first = lines[-bullets - 1].strip(), lines[-bullets].strip()[2:]
        return f"{heading} {first}"[:300]
    for line in reversed(lines):
        if "error" in line.lower():
            return line.strip()[:300]
    return ""


# --- Job state ------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        logger.warning("Cannot read %s: %s", path, err)
        return None
    return data if isinstance(data, dict) else None


def write_job_json(run_dir: str | os.PathLike, job: dict[str, Any]) -> None:
    """Write job.json atomically (temporary file + rename): a reader never sees half a file."""
    path = Path(run_dir) / JOB_JSON
    tmp = path.with_name(f".{JOB_JSON}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(job, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def settled_state(run_dir: Path, job: dict[str, Any]) -> tuple[str, str]:
    """(state, error) of a job whose process ended with nobody there to record it, judged from its files."""
    if job.get("abort_requested"):
        return "aborted", ""
    if any((run_dir / name).exists() for name in RESULT_FILES):
        return "finished", ""
    log = job.get("log") or JOB_LOG
    error = error_summary(read_tail(run_dir / log))
    return "failed", error or "The job ended while no board was watching it, and left no results."


def _recent(created: Any, seconds: float = 60.0) -> bool:
    """Written in the last minute: a queued job between job.json and its process starting."""
    return isinstance(created, (int, float)) and time.time() - created < seconds


def _parse_time(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    return None


def read_job(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """job.json plus derived facts; None when the folder holds no run.

    Derived keys: name, path, stage, log (path of the log file), steps / total_steps (from the last record),
    format ("llamaboard" or "llamafactory"). A "running" job whose process is gone is reported as it ended
    (finished / failed / aborted) from its files; the file itself is left to the runner.
    """
    run_dir = Path(run_dir)
    job = _read_json(run_dir / JOB_JSON)
    if job is not None:
        job.setdefault("format", "llamaboard")
        job.setdefault("log", JOB_LOG)
        # Queued and not yet started: just written, or waiting in the runner's queue (it keeps queue_position).
        waiting = _recent(job.get("created")) or bool(job.get("queue_position"))
        starting = job.get("state") == "queued" and job.get("pid") is None and waiting
        if job.get("state") in LIVE_STATES and not starting and not process_alive(job):
            job["state"], job["error"] = settled_state(run_dir, job)
            job["stale"] = True
    elif (run_dir / LF_ARGS).exists() or (run_dir / LF_LOG).exists():
        finished = any((run_dir / name).exists() for name in RESULT_FILES)
        error = "" if finished else error_summary(read_tail(run_dir / LF_LOG))
        job = {
            "format": "llamafactory",
            "state": "finished" if finished else "failed",
            "error": error,
            "log": LF_LOG,
            "created": (run_dir / LF_ARGS).stat().st_mtime if (run_dir / LF_ARGS).exists() else None,
        }
    elif (run_dir / JOB_YAML).exists() and (run_dir / TRAINER_LOG).exists():
        # A run started from the CLI: no job.json, but the same files.
        finished = any((run_dir / name).exists() for name in RESULT_FILES)
        job = {"format": "cli", "state": "finished" if finished else "unknown", "error": "", "log": JOB_LOG}
        job["created"] = (run_dir / JOB_YAML).stat().st_mtime
    else:
        return None
    job["path"] = str(run_dir)
    job["name"] = run_dir.name
    job["log_path"] = str(run_dir / job["log"])
    run_args = read_args(run_dir)
    if "stage" not in job:
        job["stage"] = run_stage(run_args)
    job["kind"] = run_kind(run_args) if run_args else "train"
    record = last_record(run_dir / TRAINER_LOG)
    job["steps"] = int(record.get("current_steps", 0)) if record else 0
    job["total_steps"] = int(record.get("total_steps", 0)) if record else 0
    if not job.get("created"):
        job["created"] = run_dir.stat().st_mtime
    return job


# --- Lists of runs and checkpoints -----------------------------------------------------------------------------------


def _subdirs(path: Path) -> list[Path]:
    try:
        return [child for child in path.iterdir() if child.is_dir() and not child.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_runs(
    saves_root: str | os.PathLike,
    model_name: str | None = None,
    finetuning_type: str | None = None,
) -> list[dict[str, Any]]:
    """Runs under `saves_root/<model>/<method>/<run>/`, newest first.

    `model_name` is the folder name under saves (see webui.models.save_name); None means every model, and
    likewise for `finetuning_type`. Each entry: name ("<model>/<method>/<run>"), path, state, stage, steps,
    total_steps, created (epoch seconds), error.
    """
    root = Path(saves_root)
    model_dirs = [root / model_name] if model_name else _subdirs(root)
    runs = []
    for model_dir in model_dirs:
        method_dirs = [model_dir / finetuning_type] if finetuning_type else _subdirs(model_dir)
        for method_dir in method_dirs:
            for run_dir in _subdirs(method_dir):
                job = read_job(run_dir)
                if job is None:
                    continue
                runs.append(
                    {
                        "name": f"{model_dir.name}/{method_dir.name}/{run_dir.name}",
                        "path": str(run_dir),
                        "state": job.get("state", "unknown"),
                        "stage": job.get("stage", ""),
                        "kind": job.get("kind", "train"),
                        "steps": job.get("steps", 0),
                        "total_steps": job.get("total_steps", 0),
                        "created": _parse_time(job.get("created")) or 0.0,
                        "error": job.get("error", ""),
                    }
                )
    runs.sort(key=lambda run: run["created"], reverse=True)
    return runs


def _holds_weights(folder: Path, finetuning_type: str) -> bool:
    names = ADAPTER_FILES if finetuning_type in ("lora", "oft") else MODEL_FILES
    return any((folder / name).exists() for name in names)


def _run_created(run_dir: Path) -> tuple[float, str]:
    """When a run was made (its job.json, else its job.yaml or folder), then its name: the newest-first order."""
    job = _read_json(run_dir / JOB_JSON) or {}
    created = _parse_time(job.get("created"))
    if not created:
        args_file = run_dir / JOB_YAML
        created = (args_file if args_file.exists() else run_dir).stat().st_mtime
    return created, run_dir.name


def list_checkpoints(saves_root: str | os.PathLike, model_name: str, finetuning_type: str) -> list[str]:
    """Run names and "<run>/checkpoint-N" entries under `saves_root/<model_name>/<finetuning_type>/` that hold
    weights of that method (adapters for lora, model weights for freeze / full), grouped by run, newest run
    first; in a group the run's final weights, then its checkpoints from the latest step down."""
    method_dir = Path(saves_root) / model_name / finetuning_type
    entries = []
    for run_dir in sorted(_subdirs(method_dir), key=_run_created, reverse=True):
        if _holds_weights(run_dir, finetuning_type):
            entries.append(run_dir.name)
        checkpoints = [(m, child) for child in _subdirs(run_dir) if (m := _CHECKPOINT_RE.match(child.name))]
        for match, child in sorted(checkpoints, key=lambda item: int(item[0].group(1)), reverse=True):
            if _holds_weights(child, finetuning_type):
                entries.append(f"{run_dir.name}/{match.group(0)}")
    return entries


# --- Progress -------------------------------------------------------------------------------------------------------


def progress(records: list[dict[str, Any]], job: dict[str, Any] | None) -> dict[str, Any]:
    """Where a job stands: current and total steps, percentage, elapsed and remaining (H:MM:SS), and a short
    label "current/total · elapsed < remaining". While the job runs, elapsed counts from its start time so the
    bar moves between log lines. `phase` is the last record's (`eval` / `predict` for an eval job's batches, whose
    steps are batches of the prediction pass; `prepare` while the data is prepared, whose current / total are rows),
    "train" for training steps."""
    job = job or {}
    record = records[-1] if records else {}
    if record.get("phase") == "prepare":  # data preparation (core.data.progress): rows, not steps
        current = int(record.get("rows_done", 0) or 0)
        total = int(record.get("rows_total", 0) or 0)
    else:
        current = int(record.get("current_steps", 0) or 0)
        total = int(record.get("total_steps", 0) or 0)
    percentage = float(record.get("percentage", 100.0 * current / total if total else 0.0))
    elapsed = record.get("elapsed_s")
    if elapsed is None:
        elapsed = hms_seconds(record.get("elapsed_time"))
    remaining = record.get("remaining_s")
    if remaining is None:
        remaining = hms_seconds(record.get("remaining_time"))
    state = job.get("state", "")
    started = _parse_time(job.get("started"))
    if state == "running" and started:
        live = time.time() - started
        if remaining is not None and elapsed is not None:
            remaining = max(0.0, remaining - max(0.0, live - elapsed))
        elapsed = live
    elif state in ("finished", "failed", "aborted") and started and _parse_time(job.get("ended")):
        elapsed = _parse_time(job["ended"]) - started
    if state == "finished":
        percentage, remaining = 100.0, 0.0
        current = total = max(current, total)
    percentage = max(0.0, min(100.0, round(percentage, 2)))
    elapsed_text, remaining_text = format_hms(elapsed), format_hms(remaining)
    label = f"{current}/{total}" if total else ""
    if elapsed_text:
        label += f" · {elapsed_text}" if label else elapsed_text
    if remaining_text and state not in ("finished", "failed", "aborted"):
        label += f" < {remaining_text}"
    return {
        "phase": str(record.get("phase") or "train"),
        "current": current,
        "total": total,
        "percentage": percentage,
        "elapsed": elapsed_text,
        "remaining": remaining_text,
        "label": label,
    }

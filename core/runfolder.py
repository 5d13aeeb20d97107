"""The run folder contract: what a job's folder holds and how to read it (DESIGN.md section 3).

One module owns the names, so the core that writes a run (callbacks, trainer_utils, export) and the board that
reads it (webui.jobs, webui.handlers) cannot drift apart. Pure: standard library and PyYAML only.

    JOB_YAML, JOB_JSON, JOB_LOG      the board's files: the job's arguments, its state, its console log
    BOARD_FILES                      those three: they never make a folder "hold a run" or an export "non-empty"
    TRAINER_LOG                      trainer_log.jsonl, one JSON record a log step (core.train.callbacks writes it);
                                     records with an `alert` key are health alerts (core.train.health), not metrics
    METRICS_LOG                      metrics.jsonl, the job's CPU / memory / GPU samples (core.sysmetrics)
    SAMPLES                          samples.jsonl, grpo's sampled completions with their rewards, one line each
                                     (read it with read_log_records / TrainerLogReader, as the log)
    ref_logps_name(fingerprint), is_cache_file(name)   precompute_ref_log_probs's cache of reference log-probs
    read_log_records(path)           every record of a trainer_log.jsonl; a torn last line is skipped
    TrainerLogReader(path).poll()    the records appended since the last poll (a poll at step 100,000 reads bytes
                                     appended since step 99,999, not the file)
    read_args(run_dir)               job.yaml, else LLaMA-Factory's training_args.yaml, as a dict ({} if none)
    run_stage(args), run_kind(args)  "sft" ...; "train" / "eval" / "export" (what the job does)
    log_file(run_dir)                job.log, else LLaMA-Factory's running_log.txt
    format_hms(seconds), hms_seconds(text)   H:MM:SS both ways, as LLaMA-Factory writes elapsed / remaining times
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

JOB_YAML = "job.yaml"
JOB_JSON = "job.json"
JOB_LOG = "job.log"
BOARD_FILES = frozenset({JOB_YAML, JOB_JSON, JOB_LOG})
"""The board's own files in a run (or export) folder; everything else in it is the job's output."""

TRAINER_LOG = "trainer_log.jsonl"
METRICS_LOG = "metrics.jsonl"
"""The job's own system metrics, one JSON sample a line (core.sysmetrics writes it; TrainerLogReader reads it too)."""
SAMPLES = "samples.jsonl"
REPRO_JSON = "repro.json"
"""The run's reproducibility record (core/repro.py): arguments, dataset files, package versions, commit, devices."""
KEEP_BEST = "keep_best.request"
"""Written by the board's "Stop and keep best" before it stops a job: the job then ends with its best checkpoint
(by metric_for_best_model) as the final model."""
PREDICTIONS = "generated_predictions.jsonl"
RESULT_FILES = ("train_results.json", "all_results.json")
"""A run that wrote one of these finished (transformers' names)."""
METRIC_FILES = ("all_results.json", "predict_results.json", "eval_results.json")
"""Where an eval run's numbers are, the first one winning on a shared key."""

REF_LOGPS_PREFIX, REF_LOGPS_SUFFIX = "ref_logps-", ".safetensors"


def ref_logps_name(fingerprint: str) -> str:
    """`ref_logps-<fingerprint>.safetensors`: the reference log-probabilities of a training set that
    `precompute_ref_log_probs` computes once (core.train.pref_trainer); the fingerprint covers data and reference."""
    return f"{REF_LOGPS_PREFIX}{fingerprint}{REF_LOGPS_SUFFIX}"


def is_cache_file(name: str) -> bool:
    """A file a rerun of the job reads back (the reference log-probabilities): it never makes a folder "hold a run",
    so starting the same job again after a failure before the first checkpoint reuses it instead of being refused."""
    return name.startswith(REF_LOGPS_PREFIX) and name.endswith(REF_LOGPS_SUFFIX)


LF_ARGS = "training_args.yaml"
LF_LOG = "running_log.txt"
"""A LLaMA-Factory run folder's arguments and console log (the board reads those runs too)."""

KINDS = ("train", "eval", "export")


# trainer_log.jsonl


def _parse_lines(text: str, path: Path) -> list[dict[str, Any]]:
    records = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            logger.debug("Skipping a line of %s that is not JSON: %r", path, line[:200])
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_log_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a trainer_log.jsonl (or of the one in a run folder); [] when there is none. A torn last
    line (a writer killed mid-line) and any other line that is not a JSON object are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / TRAINER_LOG
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return _parse_lines(text, path)


def is_alert(record: dict[str, Any]) -> bool:
    """A health alert record (`{"alert": kind, "level", "message", ...progress keys}`), not a metrics record."""
    return "alert" in record


class TrainerLogReader:
    """Incremental reader of a trainer_log.jsonl.

    `poll()` returns the complete records appended since the last poll; `records` holds them all. Only new bytes
    are read (`bytes_read` counts them); a last line without its newline is left for the next poll; a line that is
    not JSON is skipped; a truncated or replaced file starts over.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self.bytes_read = 0
        self._offset = 0
        self._inode: int | None = None

    def poll(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            if self._inode is not None:
                logger.info("%s was replaced or truncated; reading it again from the start.", self.path)
            self._inode, self._offset, self.records = stat.st_ino, 0, []
        if stat.st_size == self._offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read(stat.st_size - self._offset)
        self.bytes_read += len(chunk)
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        new = _parse_lines(chunk[:end].decode("utf-8", errors="replace"), self.path)
        self.records.extend(new)
        return new


# Arguments: stage and kind


def read_args(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's arguments: job.yaml (the board's and the CLI's), else LLaMA-Factory's training_args.yaml; {}
    when neither can be read."""
    for name in (JOB_YAML, LF_ARGS):
        try:
            data = yaml.safe_load((Path(run_dir) / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            return data
    return {}


def run_kind(args: dict[str, Any]) -> str:
    """What a job does: "export" (it has an export_dir), "eval" (it predicts or evaluates without training), else
    "train"."""
    if args.get("export_dir"):
        return "export"
    if not args.get("do_train", True) and (args.get("do_predict") or args.get("do_eval")):
        return "eval"
    return "train"


def run_stage(args: dict[str, Any]) -> str:
    """The training stage of a job ("sft" when its arguments leave it out, as the core does); "" without args."""
    return str(args.get("stage") or "sft") if args else ""


def log_file(run_dir: str | os.PathLike) -> Path:
    """The run's console log: job.log, else (a LLaMA-Factory folder) running_log.txt."""
    run_dir = Path(run_dir)
    log = run_dir / JOB_LOG
    if not log.exists() and (run_dir / LF_LOG).exists():
        return run_dir / LF_LOG
    return log


# Times


def format_hms(seconds: float | None) -> str:
    """Seconds -> "H:MM:SS", as LLaMA-Factory writes elapsed_time / remaining_time; "" for None."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def hms_seconds(text: Any) -> float | None:
    """ "H:MM:SS" (or "M:SS", "S") -> seconds; None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parts = [float(part) for part in text.split(":")]
    except ValueError:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds

"""The run registry: one row of facts per run folder under saves, for the Runs tab and `llamafactory-cli runs list`.

    list_runs(saves_root) -> [row]                every run (board, CLI and LLaMA-Factory folders), newest first
    read_row(run_dir, name) -> row | None         one folder's row (None: the folder holds no run)
    filter_runs(rows, model=, stage=, state=, text=)   the rows that match (text: in name / model / datasets / error)
    sort_runs(rows, key, descending=False)        by one column; rows without a value last either way
    find_run(saves_root, ref) -> Path             a run folder from what a user typed (path, model/method/run, name)
    config_diff({name: args}) -> [(key, values)] the keys whose values differ between runs, one value per run
    rerun_config(run_dir) -> (new_dir, args)     the same arguments in a new sibling folder, to run again exactly
    COLUMNS                                       the row keys, in table order

A row: name ("<model>/<method>/<run>"), kind (train / eval / export), stage, method, model, datasets, state, steps,
total_steps, duration_s, train_loss (the last logged), eval_loss (the lowest), reward_accuracy (the highest, rm /
dpo / kto / orpo / simpo), reward (the last mean, ppo / grpo), created (epoch seconds), error, stale, path.

Only what the table needs is read: job.json, the arguments file (job.yaml, else LLaMA-Factory's
training_args.yaml), and trainer_log.jsonl's bytes, from which the numbers are picked by pattern (no record is
parsed whole). Rows are cached per folder, keyed by the size and mtime of those files, so listing again re-reads
only the runs that changed. Pure: standard library and PyYAML (libyaml when present); psutil only for a job
recorded as running. The state of such a job whose process is gone is judged from its files, as webui.jobs does.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from core.runfolder import (
    JOB_JSON,
    JOB_YAML,
    LF_ARGS,
    LF_LOG,
    RESULT_FILES,
    TRAINER_LOG,
    hms_seconds,
    read_args,
    run_kind,
)

COLUMNS = (
    "name",
    "kind",
    "stage",
    "method",
    "model",
    "datasets",
    "state",
    "steps",
    "duration_s",
    "train_loss",
    "eval_loss",
    "reward_accuracy",
    "reward",
    "created",
    "error",
    "path",
)
PAIRWISE_STAGES = ("rm", "dpo", "kto", "orpo", "simpo")
"""Stages whose table row shows the best reward accuracy."""
REWARD_STAGES = ("ppo", "grpo")
"""Stages whose table row shows the last mean reward."""
LIVE_STATES = ("queued", "running")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_WATCHED = (JOB_JSON, JOB_YAML, LF_ARGS, TRAINER_LOG, *RESULT_FILES)
_CACHE: dict[str, tuple[tuple, dict[str, Any]]] = {}


# Reading one folder


def _stamp(files: dict[str, os.stat_result]) -> tuple:
    return tuple((files[name].st_size, files[name].st_mtime_ns) if name in files else None for name in _WATCHED)


def _scan(run_dir: Path) -> dict[str, os.stat_result]:
    """The stats of the files the row reads (one directory listing, one stat per file found)."""
    found = {}
    try:
        with os.scandir(run_dir) as entries:
            for item in entries:
                if item.name in _WATCHED or item.name == LF_LOG:
                    found[item.name] = item.stat()
    except OSError:
        pass
    return found


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_TABLE_KEYS = (
    "model_name_or_path",
    "stage",
    "finetuning_type",
    "dataset",
    "eval_dataset",
    "export_dir",
    "do_train",
    "do_eval",
    "do_predict",
)
_TOP_LINE = re.compile(rb"^(" + b"|".join(key.encode() for key in _TABLE_KEYS) + rb"):[ \t]*(.*?)[ \t]*\r?$", re.M)
_WORDS = {b"true": True, b"false": False, b"null": None, b"~": None, b"": None}


def _table_args(text: bytes) -> dict[str, Any] | None:
    """The table's keys from a YAML file's top-level one-line values, plain or simply quoted; None when one is
    written some other way (a block, a flow list, an escape, a comment), for the caller to parse the file whole.
    Parsing a board job.yaml of 40 keys whole costs more than all the rest of a row."""
    args: dict[str, Any] = {}
    for key, raw in _TOP_LINE.findall(text):
        quote = raw[:1]
        simply_quoted = quote in (b"'", b'"') and raw.count(quote) == 2 and raw.endswith(quote)
        if simply_quoted and b"\\" not in raw:
            value: Any = raw[1:-1].decode("utf-8", errors="replace")
        elif not raw or quote in b"'\"[{|>&*!%@`" or b" #" in raw:
            return None
        elif raw.lower() in _WORDS:
            value = _WORDS[raw.lower()]
        else:
            value = raw.decode("utf-8", errors="replace")
        args[key.decode()] = value
    return args


def _read_args(run_dir: Path, files: dict[str, os.stat_result]) -> dict[str, Any]:
    """The table's arguments of a run: job.yaml, else LLaMA-Factory's training_args.yaml; {} when neither reads."""
    for name in (JOB_YAML, LF_ARGS):
        if name not in files:
            continue
        try:
            text = (run_dir / name).read_bytes()
        except OSError:
            continue
        args = _table_args(text)
        if args is not None:
            return args
        try:
            data = yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict):
            return data
    return {}


_NUMBER_AT = re.compile(rb"-?[0-9][0-9.eE+-]*|NaN|-?Infinity")


def _number(raw: bytes) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if value == value else None  # NaN is no value


def _value_at(data: bytes, at: int) -> float | None:
    match = _NUMBER_AT.match(data, at)
    return _number(match.group()) if match else None


def _last(data: bytes, key: str) -> float | None:
    """The value of the last `"key": number` in `data` (json.dumps' spacing)."""
    needle = f'"{key}": '.encode()
    at = data.rfind(needle)
    return _value_at(data, at + len(needle)) if at >= 0 else None


def _every(data: bytes, key: str) -> list[float]:
    """Every `"key": number` value in `data`, in order (bytes.find: far faster than a regex over a big log)."""
    needle = f'"{key}": '.encode()
    values, at = [], data.find(needle)
    while at >= 0:
        value = _value_at(data, at + len(needle))
        if value is not None:
            values.append(value)
        at = data.find(needle, at + len(needle))
    return values


def log_metrics(data: bytes, stage: str) -> dict[str, Any]:
    """The table's numbers from a trainer_log.jsonl's bytes: steps and total steps, the elapsed seconds and the train
    loss of the last record that has them, the lowest eval loss, and per stage the reward accuracy (the highest
    eval accuracy, else the last train accuracy: one batch's accuracy says little) or the last mean reward.
    LLaMA-Factory's logs (elapsed_time as H:MM:SS, no elapsed_s) read too."""
    duration = _last(data, "elapsed_s")
    if duration is None:
        at = data.rfind(b'"elapsed_time": "')
        duration = hms_seconds(data[at + 17 : data.find(b'"', at + 17)].decode()) if at >= 0 else None
    eval_losses = _every(data, "eval_loss")
    found: dict[str, Any] = {
        "steps": int(_last(data, "current_steps") or 0),
        "total_steps": int(_last(data, "total_steps") or 0),
        "duration_s": duration,
        "train_loss": _last(data, "loss"),
        "eval_loss": min(eval_losses) if eval_losses else None,
        "reward_accuracy": None,
        "reward": None,
    }
    if stage in PAIRWISE_STAGES:
        accuracies = _every(data, "eval_accuracy")
        found["reward_accuracy"] = max(accuracies) if accuracies else _last(data, "accuracy")
    if stage in REWARD_STAGES:
        found["reward"] = _last(data, "reward")
    return found


def _state(run_dir: Path, job: dict[str, Any], files: dict[str, os.stat_result]) -> tuple[str, str, bool]:
    """(state, error, stale) of a run. A board job recorded as queued or running whose process is gone ended while
    nobody recorded it: aborted (an abort was asked), finished (it wrote results), else failed."""
    finished = any(name in files for name in RESULT_FILES)
    if not job:  # a LLaMA-Factory or CLI folder: no job.json
        if finished:
            return "finished", "", False
        return ("failed" if LF_ARGS in files else "unknown"), "", False
    state = str(job.get("state") or "unknown")
    if state not in LIVE_STATES:
        return state, str(job.get("error") or ""), False
    created = job.get("created")
    just_written = isinstance(created, (int, float)) and time.time() - created < 60
    if state == "queued" and job.get("pid") is None and (just_written or job.get("queue_position")):
        return state, "", False
    if process_alive(job):
        return state, "", False
    if job.get("abort_requested"):
        return "aborted", "", True
    if finished:
        return "finished", "", True
    return "failed", "The job ended while no board was watching it; its log says why.", True


def process_alive(job: dict[str, Any]) -> bool:
    """Is the job's main process (job.json's pid) still running? Its start time or command line must match, so a
    pid reused by another program does not count."""
    pid = job.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    import psutil  # only for a job recorded as running

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = job.get("pid_create_time")
        if isinstance(created, (int, float)):
            return abs(proc.create_time() - created) < 1.0
        return proc.cmdline() == list(job.get("argv") or [])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def read_row(run_dir: str | os.PathLike, name: str | None = None) -> dict[str, Any] | None:
    """The registry row of `run_dir` (named `name`, default the folder's last three parts); None when the folder
    holds no run: no job.json, no LLaMA-Factory training_args.yaml / running_log.txt, and not a CLI run's job.yaml
    beside a trainer_log.jsonl."""
    run_dir = Path(run_dir)
    files = _scan(run_dir)
    board = JOB_JSON in files
    if not (board or LF_ARGS in files or LF_LOG in files or (JOB_YAML in files and TRAINER_LOG in files)):
        return None
    stamp = _stamp(files)
    cached = _CACHE.get(str(run_dir))
    if cached and cached[0] == stamp and cached[1]["state"] not in LIVE_STATES:
        return cached[1]
    job = _read_json(run_dir / JOB_JSON) if board else {}
    args = _read_args(run_dir, files)
    stage = str(job.get("stage") or args.get("stage") or "sft")
    data = b""
    if TRAINER_LOG in files:
        try:
            data = (run_dir / TRAINER_LOG).read_bytes()
        except OSError:
            pass
    state, error, stale = _state(run_dir, job, files)
    created = job.get("created")
    if not isinstance(created, (int, float)):
        first = files.get(JOB_YAML) or files.get(LF_ARGS)
        created = first.st_mtime if first else run_dir.stat().st_mtime
    datasets = args.get("dataset") or args.get("eval_dataset") or ""
    row = {
        "name": name or "/".join(run_dir.parts[-3:]),
        "kind": run_kind(args),
        "stage": stage,
        "method": str(args.get("finetuning_type") or run_dir.parent.name),
        "model": str(args.get("model_name_or_path") or run_dir.parent.parent.name),
        "datasets": ",".join(map(str, datasets)) if isinstance(datasets, list) else str(datasets),
        "state": state,
        **log_metrics(data, stage),
        "created": float(created),
        "error": error,
        "stale": stale,
        "path": str(run_dir),
    }
    _CACHE[str(run_dir)] = (stamp, row)
    return row


# The whole saves folder


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return [Path(item.path) for item in entries if item.is_dir() and not item.name.startswith(".")]
    except OSError:
        return []


def list_runs(saves_root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run under `saves_root/<model>/<method>/<run>/`, newest first."""
    rows = []
    for model_dir in _subdirs(Path(saves_root)):
        for method_dir in _subdirs(model_dir):
            for run_dir in _subdirs(method_dir):
                row = read_row(run_dir, f"{model_dir.name}/{method_dir.name}/{run_dir.name}")
                if row is not None:
                    rows.append(row)
    rows.sort(key=lambda row: row["created"], reverse=True)
    return rows


def _wanted(value: str | Iterable[str] | None) -> set[str]:
    if not value:
        return set()
    return {value} if isinstance(value, str) else {str(item) for item in value}


def filter_runs(
    rows: list[dict[str, Any]],
    model: str | Iterable[str] | None = None,
    stage: str | Iterable[str] | None = None,
    state: str | Iterable[str] | None = None,
    text: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of that model, stage and state (one value or several; None or empty = any) whose name, model,
    datasets or error contain `text` (case-insensitive)."""
    wanted = {"model": _wanted(model), "stage": _wanted(stage), "state": _wanted(state)}
    needle = (text or "").strip().lower()
    kept = []
    for row in rows:
        if any(values and row[key] not in values for key, values in wanted.items()):
            continue
        if needle and not any(needle in str(row[key]).lower() for key in ("name", "model", "datasets", "error")):
            continue
        kept.append(row)
    return kept


def sort_runs(rows: list[dict[str, Any]], key: str, descending: bool = False) -> list[dict[str, Any]]:
    """Rows ordered by `key` (one of COLUMNS); rows without a value for it come last either way."""
    if key not in COLUMNS:
        raise ValueError(f"sort key {key!r} is not a column; use one of: {', '.join(COLUMNS)}.")
    present = [row for row in rows if row.get(key) not in (None, "")]
    missing = [row for row in rows if row.get(key) in (None, "")]
    return sorted(present, key=lambda row: row[key], reverse=descending) + missing


def find_run(saves_root: str | os.PathLike, ref: str) -> Path:
    """A run folder from what a user typed: a folder path, "<model>/<method>/<run>" under saves, or a run name unique
    under saves. Raises FileNotFoundError naming the reference (and the candidates when the name is ambiguous)."""
    root = Path(saves_root)
    for path in (Path(ref).expanduser(), root / ref):
        if path.is_dir():
            return path
    matches = [Path(row["path"]) for row in list_runs(root) if row["name"].rsplit("/", 1)[-1] == ref]
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(str(match.relative_to(root)) for match in matches)
        raise FileNotFoundError(f"run {ref!r} is ambiguous under {root}: {names}; give <model>/<method>/<run>.")
    raise FileNotFoundError(
        f"run {ref!r}: no such folder, and no run of that name under {root} (runs list shows them)."
    )


# Comparing runs

RUN_SPECIFIC_KEYS = ("output_dir", "run_name", "logging_dir")
"""Keys that differ between any two runs by construction; `config_diff` leaves them out unless asked."""


def config_diff(configs: dict[str, dict[str, Any]], include_run_specific: bool = False) -> list[tuple[str, list[Any]]]:
    """The keys whose values differ between the named argument dicts ({run name: args}), sorted, each with its
    value per run in the given order (None where a run leaves the key out). Keys equal in all runs are left out,
    and so are RUN_SPECIFIC_KEYS unless `include_run_specific`."""
    names = list(configs)
    keys = sorted({key for args in configs.values() for key in args})
    rows = []
    for key in keys:
        if key in RUN_SPECIFIC_KEYS and not include_run_specific:
            continue
        values = [configs[name].get(key) for name in names]
        if any(value != values[0] for value in values[1:]):
            rows.append((key, values))
    return rows


def rerun_config(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """What re-running `run_dir` exactly takes: a new sibling folder (`<run>-rerun`, then `-rerun2`, ...) and the
    run's arguments (job.yaml, else training_args.yaml) with only output_dir changed to it. Raises
    FileNotFoundError naming the folder when it holds no arguments."""
    run_dir = Path(run_dir)
    args = read_args(run_dir)
    if not args:
        raise FileNotFoundError(f"{run_dir} has no {JOB_YAML} or {LF_ARGS}: there is nothing to run again.")
    base = run_dir.name.split("-rerun")[0]
    number = 1
    while True:
        target = run_dir.with_name(f"{base}-rerun" if number == 1 else f"{base}-rerun{number}")
        if not target.exists():
            return target, {**args, "output_dir": str(target)}
        number += 1

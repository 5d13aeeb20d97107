"""Sweeps: a grid over up to three argument keys, one run per combination, and a summary ranked by a metric.

    llamafactory-cli sweep job.yaml learning_rate=1e-4,5e-4 lora_rank=8,16 [--metric eval_loss] [--dry-run]
    llamafactory-cli sweep --summary saves/demo/lora/my-sweep [--metric eval_loss]

The job file's output_dir names the sweep: members are its siblings `<sweep>-<key>-<value>-...` (ordinary run
folders, so the Runs tab and `runs list` show them), and `<output_dir>/sweep.json` records the grid, the members
and the metric. Members run one after another in this process; Ctrl-C stops the running member (it saves, as a
job stopped by SIGINT does) and runs no further member. The board's Sweep (webui/handlers/sweep.py) writes the same
sweep.json and hands the members to its queue instead. Pure, except running a member (core.cli's runner, passed in).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from core import registry
from core.runfolder import JOB_YAML

SWEEP_JSON = "sweep.json"
MAX_KEYS = 3
HIGHER_IS_BETTER = {"reward_accuracy": True, "reward": True}
"""Metrics (registry columns) ranked high to low; the rest (eval_loss, train_loss) low to high."""
METRICS = ("eval_loss", "train_loss", "reward_accuracy", "reward")


def parse_grid(pairs: list[str]) -> dict[str, list[Any]]:
    """`["learning_rate=1e-4,5e-4", "lora_rank=8,16"]` -> {key: [values]} (values read as YAML). Raises ValueError
    naming the pair and the fix."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or not text:
            raise ValueError(f"sweep: {pair!r} is not key=v1,v2 — write e.g. learning_rate=1e-4,5e-4")
        if key in grid:
            raise ValueError(f"sweep: {key} is given twice — list all its values once, comma-separated")
        grid[key.lstrip("-")] = [yaml.safe_load(value) for value in text.split(",")]
    if not grid:
        raise ValueError("sweep: no key=v1,v2 given — write e.g. learning_rate=1e-4,5e-4 lora_rank=8,16")
    if len(grid) > MAX_KEYS:
        raise ValueError(f"sweep: {len(grid)} keys ({', '.join(grid)}) — a sweep varies at most {MAX_KEYS}")
    return grid


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", str(value)).strip("_") or "none"


def plan(args: dict[str, Any], grid: dict[str, list[Any]]) -> tuple[Path, list[tuple[Path, dict[str, Any]]]]:
    """The sweep folder (the job's output_dir) and one (run folder, arguments) per combination, named after the
    values: `<sweep>-learning_rate-0.0001-lora_rank-8`."""
    if not args.get("output_dir"):
        raise ValueError("output_dir: missing — the sweep is named after it; set e.g. output_dir: saves/demo/lora/lr")
    sweep_dir = Path(args["output_dir"])
    members = []
    for values in itertools.product(*grid.values()):
        chosen = dict(zip(grid, values, strict=True))
        name = "-".join([sweep_dir.name, *(f"{key}-{_slug(value)}" for key, value in chosen.items())])
        run_dir = sweep_dir.with_name(name)
        members.append((run_dir, {**args, **chosen, "output_dir": str(run_dir)}))
    return sweep_dir, members


def new_record(
    sweep_dir: Path, grid: dict[str, list[Any]], members: list[tuple[Path, dict[str, Any]]], metric: str
) -> dict[str, Any]:
    """The sweep.json record of a planned sweep (not yet written)."""
    return {
        "name": sweep_dir.name,
        "grid": grid,
        "metric": metric,
        "created": time.time(),
        "aborted": False,
        "members": [{"run": str(run_dir), "values": {key: args[key] for key in grid}} for run_dir, args in members],
    }


def read_record(sweep_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(sweep_dir) / SWEEP_JSON).read_text(encoding="utf-8"))


def write_record(sweep_dir: str | Path, record: dict[str, Any]) -> None:
    """sweep.json, written atomically (a reader never sees half a file)."""
    path = Path(sweep_dir) / SWEEP_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SWEEP_JSON}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def mark_aborted(sweep_dir: str | Path) -> dict[str, Any]:
    """Record that the sweep was aborted (its members not yet run stay unrun); returns the record."""
    record = read_record(sweep_dir)
    record["aborted"] = True
    write_record(sweep_dir, record)
    return record


def list_sweeps(saves_root: str | Path) -> list[tuple[str, Path]]:
    """Every sweep under `saves_root/<model>/<method>/<sweep>/sweep.json` as (<model>/<method>/<sweep>, folder),
    newest first."""
    found = []
    for path in Path(saves_root).glob(f"*/*/*/{SWEEP_JSON}"):
        try:
            created = float(read_record(path.parent).get("created") or 0)
        except (OSError, ValueError, AttributeError):
            continue  # half-written or not ours: not listed
        found.append((created, path.parent.relative_to(saves_root).as_posix(), path.parent))
    return [(name, folder) for _, name, folder in sorted(found, key=lambda item: item[0], reverse=True)]


def split_devices(pool: list[str], count: int) -> list[list[str]]:
    """The devices of each of `count` members: `pool` cut into equal disjoint groups (one per member while there are
    enough, else one device each), dealt round-robin, so members on different groups run side by side and the rest
    wait in the queue. A CPU machine (empty pool) gives every member [] (the runner's one "cpu" device)."""
    if not pool or count <= 0:
        return [[] for _ in range(max(count, 0))]
    size = max(1, len(pool) // count)
    groups = [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]
    return [list(groups[index % len(groups)]) for index in range(count)]


def summary(sweep_dir: str | Path, metric: str | None = None) -> list[dict[str, Any]]:
    """The members of a sweep as registry rows plus their `values`, best first by `metric` (default: the sweep's);
    members without the metric come last."""
    record = read_record(sweep_dir)
    metric = metric or record.get("metric") or "eval_loss"
    rows = []
    for member in record["members"]:
        unrun = "aborted" if record.get("aborted") else "queued"  # an aborted sweep never runs the rest
        row = registry.read_row(member["run"]) or {"name": Path(member["run"]).name, metric: None, "state": unrun}
        rows.append({**row, "values": member["values"]})
    return registry.sort_runs(rows, metric, descending=HIGHER_IS_BETTER.get(metric, False))


def format_summary(rows: list[dict[str, Any]], metric: str) -> str:
    keys = list(rows[0]["values"]) if rows else []
    cells = [["rank", *keys, metric, "state", "run"]]
    for rank, row in enumerate(rows, 1):
        value = row.get(metric)
        shown = f"{value:.4g}" if isinstance(value, float) else "-"
        cells.append([str(rank), *(str(row["values"][key]) for key in keys), shown, row["state"], row["name"]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def main(argv: list[str], run_job: Callable[[list[str], dict], int] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llamafactory-cli sweep",
        description="Run a grid over up to three keys: one run per combination, named after its values, then a "
        "summary ranked by a metric.",
    )
    parser.add_argument("config", nargs="?", help="the job YAML; its output_dir names the sweep")
    parser.add_argument("grid", nargs="*", help="key=v1,v2 (up to three keys)")
    parser.add_argument("--metric", choices=METRICS, help="rank by this (default eval_loss)")
    parser.add_argument("--dry-run", action="store_true", help="write the members' job.yaml and sweep.json only")
    parser.add_argument("--summary", metavar="SWEEP_DIR", help="print the ranking of an existing sweep, run nothing")
    options = parser.parse_intermixed_args(argv)
    if options.summary:
        metric = options.metric or read_record(options.summary)["metric"]
        print(format_summary(summary(options.summary, metric), metric))
        return 0
    if not options.config:
        parser.error("give the job YAML and key=v1,v2 pairs")
    from core.hparams import read_args

    try:
        grid = parse_grid(options.grid)
        sweep_dir, members = plan(read_args(options.config), grid)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    metric = options.metric or "eval_loss"
    write_record(sweep_dir, new_record(sweep_dir, grid, members, metric))
    failed = 0
    interrupt = _Interrupt()
    previous = interrupt.install()
    try:
        failed = _run_members(members, sweep_dir, options.dry_run, run_job, interrupt)
    finally:
        interrupt.restore(previous)
    if interrupt.interrupted:
        mark_aborted(sweep_dir)
        print(f"Sweep {sweep_dir.name} aborted (Ctrl-C): the members after the stopped one were not run.", flush=True)
    print(format_summary(summary(sweep_dir, metric), metric))
    if interrupt.interrupted:
        return 130
    return 1 if failed else 0


class _Interrupt:
    """The sweep's SIGINT handler. Between members Ctrl-C raises KeyboardInterrupt (nothing is half done); while a
    member trains, its GracefulStopCallback takes SIGINT (the member stops at the next step and saves) and calls
    `notice`, so the sweep runs no further member either way."""

    def __init__(self) -> None:
        self.interrupted = False

    def notice(self, signum: int) -> None:
        self.interrupted = True

    def __call__(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def install(self) -> Any:
        try:
            return signal.signal(signal.SIGINT, self)
        except ValueError:  # not the main thread (a test calling main from a thread): Ctrl-C is not ours
            return None

    def restore(self, previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _run_members(
    members: list[tuple[Path, dict[str, Any]]],
    sweep_dir: Path,
    dry_run: bool,
    run_job: Callable[[list[str], dict], int] | None,
    interrupt: _Interrupt,
) -> int:
    failed = 0
    for index, (run_dir, args) in enumerate(members, 1):
        if interrupt.interrupted:
            break
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / JOB_YAML
        config.write_text(yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
        print(f"Sweep {sweep_dir.name}: member {index} of {len(members)}, {run_dir.name}", flush=True)
        if dry_run or run_job is None:
            continue
        try:
            failed += int(bool(run_job([str(config)], args)))
        except KeyboardInterrupt:
            interrupt.interrupted = True
        except Exception as err:  # one failed member does not stop the others
            print(f"error: member {run_dir.name} failed: {type(err).__name__}: {err}", file=sys.stderr)
            failed += 1
    return failed

"""`llamafactory-cli runs ...`: the Runs tab's actions in the terminal, over the run registry (core/registry.py).

    llamafactory-cli runs list [--json] [--saves DIR] [--model M] [--stage S] [--state X] [--text T]
                               [--sort COLUMN] [--desc]
    llamafactory-cli runs diff A B [C ...] [--all] [--json]   the arguments that differ, side by side
    llamafactory-cli runs compare A B [--metric loss] [--x step|tokens] (--html out.html | --png out.png)
    llamafactory-cli runs rerun A [--dry-run]    train again with A's arguments in a new folder beside it

Pure: no torch (compare imports plotly through webui.plots, the board's chart code). The saves folder is
$LLAMABOARD_SAVES, else saves/ here (core.paths.saves_dir), as for the board.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from core import registry
from core.paths import saves_dir
from core.runfolder import JOB_YAML, format_hms, read_args, read_log_records

PROG = "llamafactory-cli runs"
TEXT_COLUMNS = (
    ("name", "run"),
    ("stage", "stage"),
    ("state", "state"),
    ("steps", "steps"),
    ("duration_s", "time"),
    ("train_loss", "loss"),
    ("eval_loss", "eval_loss"),
    ("reward_accuracy", "reward_acc"),
    ("reward", "reward"),
    ("created", "created"),
)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "steps":
        return f"{row['steps']}/{row['total_steps'] or '?'}"
    if key == "duration_s":
        return format_hms(value)
    if key == "created":
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M") if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned text table, one line a run (the error, if any, on the next line)."""
    cells = [[title for _, title in TEXT_COLUMNS]] + [[_cell(row, key) for key, _ in TEXT_COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TEXT_COLUMNS))]
    lines = []
    for index, line in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        error = rows[index - 1]["error"] if index else ""
        if error:
            lines.append(f"    error: {error}")
    return "\n".join(lines)


def _list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} list", description="List every run under the saves folder.")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list (every column)")
    parser.add_argument("--saves", help="the saves folder (default: $LLAMABOARD_SAVES, else ./saves)")
    parser.add_argument("--model", help="only runs of this model_name_or_path")
    parser.add_argument("--stage", help="only runs of this stage (sft, dpo, ...)")
    parser.add_argument("--state", help="only runs in this state (queued, running, finished, failed, aborted)")
    parser.add_argument("--text", help="only runs whose name, model, datasets or error contain this")
    parser.add_argument("--sort", default="created", choices=registry.COLUMNS, help="the column to sort by")
    parser.add_argument("--desc", action="store_true", help="sort high to low (created is always newest first)")
    options = parser.parse_args(argv)
    rows = registry.list_runs(options.saves or saves_dir())
    rows = registry.filter_runs(rows, options.model, options.stage, options.state, options.text)
    rows = registry.sort_runs(rows, options.sort, options.desc or options.sort == "created")
    if options.json:
        print(json.dumps(rows, indent=1))
    elif rows:
        print(format_table(rows))
    else:
        print(f"No runs under {options.saves or saves_dir()} match.", file=sys.stderr)
    return 0


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_diff(names: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    """The differing keys side by side: one line a key, one column a run ("-" where a run leaves the key out)."""
    cells = [["key", *names]] + [[key, *map(_show, values)] for key, values in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells)


def _diff(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} diff", description="Show the arguments that differ between two or more runs, side by side."
    )
    parser.add_argument("runs", nargs="+", help="run folders, <model>/<method>/<run> under saves, or run names")
    parser.add_argument("--saves", help="the saves folder (default: $LLAMABOARD_SAVES, else ./saves)")
    parser.add_argument("--all", action="store_true", help="also show output_dir and the other per-run keys")
    parser.add_argument("--json", action="store_true", help="print {key: [value per run]} as JSON")
    options = parser.parse_intermixed_args(argv)
    if len(options.runs) < 2:
        parser.error("give two or more runs to compare")
    saves = options.saves or saves_dir()
    configs = {}
    for ref in options.runs:
        try:
            run_dir = registry.find_run(saves, ref)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        args = read_args(run_dir)
        if not args:
            print(f"error: {run_dir} has no job.yaml or training_args.yaml to compare.", file=sys.stderr)
            return 2
        configs[ref] = args
    rows = registry.config_diff(configs, include_run_specific=options.all)
    if options.json:
        print(json.dumps({key: values for key, values in rows}, indent=1, default=str))
    elif rows:
        print(format_diff(list(configs), rows))
    else:
        print("The runs' arguments are the same" + ("." if options.all else " (output_dir aside)."))
    return 0


def _rerun(argv: list[str], run_job: Callable[[list[str], dict], int] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} rerun",
        description="Run a run again with its identical arguments, in a new folder beside it (<run>-rerun, ...).",
    )
    parser.add_argument("run", help="a run folder, <model>/<method>/<run> under saves, or a run name")
    parser.add_argument("--saves", help="the saves folder (default: $LLAMABOARD_SAVES, else ./saves)")
    parser.add_argument("--dry-run", action="store_true", help="write the new folder's job.yaml, do not train")
    options = parser.parse_args(argv)
    try:
        source = registry.find_run(options.saves or saves_dir(), options.run)
        target, args = registry.rerun_config(source)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    target.mkdir(parents=True)
    config = target / JOB_YAML
    config.write_text(yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"Re-running {source} with the same arguments in {target}.")
    if options.dry_run or run_job is None:
        return 0
    return run_job([str(config)], args)


def _compare(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Overlay one metric of two or more runs, one colour and legend entry per run, as the Runs tab "
        "does; and print the arguments that differ.",
    )
    parser.add_argument("runs", nargs="+", help="run folders, <model>/<method>/<run> under saves, or run names")
    parser.add_argument("--saves", help="the saves folder (default: $LLAMABOARD_SAVES, else ./saves)")
    parser.add_argument(
        "--metric", default="loss", help="loss (smoothed), eval_loss, lr, accuracy, rewards/margins, reward"
    )
    parser.add_argument("--x", default="step", choices=("step", "tokens"), help="the x axis: step or tokens seen")
    parser.add_argument("--html", help="write the chart to this self-contained HTML file")
    parser.add_argument("--png", help="write the chart to this PNG file (needs the kaleido package)")
    options = parser.parse_intermixed_args(argv)
    if len(options.runs) < 2:
        parser.error("give two or more runs to compare")
    if not (options.html or options.png):
        parser.error("give --html out.html or --png out.png")
    from webui.plots import COMPARE_METRICS, compare_figure  # plotly: only for this action

    if options.metric not in COMPARE_METRICS:
        parser.error(f"--metric {options.metric!r}: use one of {', '.join(COMPARE_METRICS)}")
    if options.png and (problem := png_problem()):
        print(f"error: --png {options.png}: {problem}", file=sys.stderr)
        return 2
    saves = options.saves or saves_dir()
    records, configs = {}, {}
    for ref in options.runs:
        try:
            run_dir = registry.find_run(saves, ref)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        records[ref], configs[ref] = read_log_records(run_dir), read_args(run_dir)
    figure = compare_figure(records, options.metric, options.x, title=options.metric)
    if options.html:
        figure.write_html(options.html, include_plotlyjs=True, full_html=True)
        print(f"Wrote {options.html}")
    if options.png:
        partial = Path(f"{options.png}.partial.png")
        try:
            figure.write_image(str(partial), width=1000, height=500)
            os.replace(partial, options.png)  # a reader never finds half a PNG
        except Exception as err:  # kaleido's own errors (no Chrome, a crashed browser) have no common base
            partial.unlink(missing_ok=True)
            print(f"error: --png {options.png}: {type(err).__name__}: {err} — {PNG_FIX}", file=sys.stderr)
            return 2
        print(f"Wrote {options.png}")
    rows = registry.config_diff(configs)
    print(format_diff(list(configs), rows) if rows else "The runs' arguments are the same (output_dir aside).")
    return 0


PNG_FIX = (
    "--png needs kaleido (pip install 'llamaboard[png]') and Chrome or Chromium (kaleido finds it, or set "
    "BROWSER_PATH=/usr/bin/chromium); or write --html instead"
)


def png_problem() -> str:
    """Why `--png` cannot work here ("" when kaleido is installed; a missing browser shows when it is used)."""
    import importlib.util

    return "" if importlib.util.find_spec("kaleido") is not None else f"kaleido is not installed. {PNG_FIX}."


ACTIONS = {"list": _list, "diff": _diff, "compare": _compare, "rerun": _rerun}


def main(argv: list[str], run_job: Callable[[list[str], dict], int] | None = None) -> int:
    """Run one action; `run_job(argv, args)` trains (core.cli's, passed in so this module stays pure)."""
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} <action> ...   actions: {', '.join(ACTIONS)} ({PROG} <action> --help for more)")
        return 0 if argv else 2
    action = ACTIONS.get(argv[0])
    if action is None:
        print(f"{PROG}: unknown action {argv[0]!r}; use one of: {', '.join(ACTIONS)}.", file=sys.stderr)
        return 2
    return _rerun(argv[1:], run_job) if action is _rerun else action(argv[1:])

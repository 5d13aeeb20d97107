"""Sweeps on the board: the Train tab's Sweep section (up to three keys with comma-separated values, a preview of the
runs it makes, Start sweep, Abort sweep) and the Runs tab's sweep view (the members ranked by a metric, their curves
overlaid). The grid, the member names and sweep.json are core/sweep.py's, as `llamafactory-cli sweep` writes them;
the board hands each member to its runner's queue instead of running them in turn: on a CPU machine they run one at
a time, with GPUs each member gets its own group of the chosen devices (core.sweep.split_devices), so members on
different groups run side by side and the rest wait for a group to free up.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core import sweep
from core.runfolder import read_log_records
from webui import plots
from webui.handlers.base import BoardBase, resolved
from webui.handlers.choices import new_run_name, zero_choice
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.render import state_name
from webui.manager import alert, choice_pairs, entry
from webui.runner import RunnerError

logger = logging.getLogger(__name__)

SWEEP_KEYS = tuple(f"train.sweep_key{i}" for i in range(1, sweep.MAX_KEYS + 1))
SWEEP_VALUES = tuple(f"train.sweep_values{i}" for i in range(1, sweep.MAX_KEYS + 1))
SWEEP_CONTROLS = (*SWEEP_KEYS, *SWEEP_VALUES, "train.sweep_metric")
"""The Train tab's sweep controls: key i with its comma-separated values, and the metric the summary ranks by."""
SWEEPABLE = (
    "learning_rate",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_ratio",
    "weight_decay",
    "lr_scheduler_type",
    "cutoff_len",
    "max_samples",
    "pref_beta",
    "seed",
)
"""Keys offered in the key boxes; any other argument may be typed."""
PLOT_METRIC = {"eval_loss": "eval_loss", "train_loss": "loss", "reward_accuracy": "accuracy", "reward": "reward"}
"""The comparison curve (webui.plots.compare_figure) shown for the metric a sweep is ranked by."""
SWEEP_VIEW = ("runs.sweep", "runs.sweep_metric")


def grid_of(values: Values) -> dict[str, list[Any]]:
    """The grid the sweep controls describe ({} when no key is filled); ValueError naming the row and the fix."""
    pairs = []
    for index, (key_field, values_field) in enumerate(zip(SWEEP_KEYS, SWEEP_VALUES, strict=True), 1):
        key = str(values.get(key_field) or "").strip()
        text = ",".join(part.strip() for part in str(values.get(values_field) or "").split(",") if part.strip())
        if not key and not text:
            continue
        if not key or not text:
            raise ValueError(f"sweep row {index}: give both a key and its values, e.g. learning_rate and 1e-4,5e-4")
        pairs.append(f"{key}={text}")
    return sweep.parse_grid(pairs) if pairs else {}


class SweepHandlers(BoardBase):
    """Sweep handlers of the Train and Runs tabs (mixed into webui.board.Board)."""

    def _sweep_pool(self, values: Values) -> list[str]:
        chosen = [str(device) for device in values.get("train.devices") or []]
        return chosen or list(getattr(self.runner, "devices", []) or [])

    def sweep_preview(self, values: Values) -> Updates:
        """A sweep control or the run name changed -> the runs the sweep would make (their values, names and
        devices) and how they will run, or what is wrong with the rows."""
        lang = values.get("top.lang")
        try:
            grid = grid_of(values)
        except ValueError as err:
            return {"train.sweep_preview": alert(lang, "sweep_bad", error=err)}
        if not grid:
            return {"train.sweep_preview": alert(lang, "sweep_none")}
        name = str(values.get("train.output_dir") or "sweep").strip() or "sweep"
        _, members = sweep.plan({"output_dir": name}, grid)
        placement = sweep.split_devices(self._sweep_pool(values), len(members))
        groups = len({tuple(devices) for devices in placement})
        header = ["#", *grid, alert(lang, "sweep_run_column")]
        lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
        for index, ((run_dir, args), devices) in enumerate(zip(members, placement, strict=True), 1):
            shown = [str(args[key]) for key in grid]
            device = f" ({','.join(devices)})" if devices else ""
            lines.append(f"| {index} | {' | '.join(shown)} | `{Path(run_dir).name}`{device} |")
        how = "sweep_side_by_side" if groups > 1 else "sweep_one_at_a_time"
        head = alert(lang, "sweep_count", count=len(members), name=name) + " " + alert(lang, how, groups=groups)
        return {"train.sweep_preview": head + "\n\n" + "\n".join(lines)}

    def start_sweep(self, values: Values) -> Updates:
        """Start sweep -> the form's arguments with each combination's values, checked like Start (every member
        before any starts), sweep.json written beside the members, and every member handed to the runner (queued
        when its devices are busy); the live view follows the first member."""
        lang = values.get("top.lang")
        try:
            grid = grid_of(values)
        except ValueError as err:
            return {ALERTS: [("warning", alert(lang, "sweep_bad", error=err))]}
        if not grid:
            return {ALERTS: [("warning", alert(lang, "sweep_none"))]}
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        sweep_dir, members = sweep.plan(args, grid)
        taken = [path for path in (sweep_dir, *(run_dir for run_dir, _ in members)) if path.exists()]
        if taken:
            return {ALERTS: [("warning", alert(lang, "sweep_taken", path=taken[0]))]}
        checked = []
        for run_dir, member_args in members:
            member_args, refused = self.guard(member_args, values)
            problems = [] if member_args is None else self.validate(member_args)
            if refused or problems:
                why = "\n".join([text for _, text in refused] + problems)
                return {ALERTS: [("warning", alert(lang, "sweep_member_invalid", run=run_dir.name, problems=why))]}
            checked.append((run_dir, member_args))
        refused = self.plan_refusal(checked[0][1], values)
        if refused:
            return {ALERTS: refused}
        metric = values.get("train.sweep_metric") or "eval_loss"
        sweep.write_record(sweep_dir, sweep.new_record(sweep_dir, grid, checked, metric))
        placement = sweep.split_devices(self._sweep_pool(values), len(checked))
        started = 0
        for (run_dir, member_args), devices in zip(checked, placement, strict=True):
            try:
                self.runner.start(member_args, run_dir, devices or None, zero_choice(values))
            except (RunnerError, OSError) as err:
                self.abort_sweep_dir(sweep_dir)  # half a grid ranks nothing: the started members stop too
                failed = alert(lang, "sweep_start_failed", run=run_dir.name, started=started, error=err)
                return {ALERTS: [("warning", failed)]}
            started += 1
        first = resolved(checked[0][0])
        return {
            "train.view_run": gr.update(choices=self.run_choices(lang), value=first),
            "train.output_dir": new_run_name(self.runs_folder(values)),
            "train.poll_state": {},
            "train.notes": [],
            ALERTS: [("info", alert(lang, "sweep_started", count=started, name=sweep_dir.name))],
        }

    def abort_sweep_dir(self, sweep_dir: str | Path) -> tuple[int, int]:
        """Mark the sweep aborted, take its waiting members out of the queue, then stop its running ones (in this
        order: a stopped member frees its devices, which would start the next waiting one). Returns (cancelled,
        stopped)."""
        record = sweep.mark_aborted(sweep_dir)
        runs = [Path(member["run"]).resolve() for member in record["members"]]
        cancelled = sum(bool(self.runner.cancel(run)) for run in runs)
        active = {Path(path).resolve() for path in self.runner.active()}
        stopping = [run for run in runs if run in active]
        for run in stopping:
            self.runner.abort(run)
        return cancelled, len(stopping)

    def sweep_of(self, run_dir: str | None) -> Path | None:
        """The sweep folder `run_dir` belongs to, else the newest sweep with a member waiting or running."""
        target = resolved(run_dir)
        live = {resolved(path) for path in [*self.runner.active(), *self.runner.queued()]}
        fallback = None
        for _, folder in sweep.list_sweeps(self.saves_root):
            try:
                members = {resolved(member["run"]) for member in sweep.read_record(folder)["members"]}
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if target in members:
                return folder
            if fallback is None and members & live:
                fallback = folder
        return fallback

    def abort_sweep(self, values: Values) -> Updates:
        """Abort sweep (Train tab: the viewed run's sweep, else the newest live one; Runs tab: the picked sweep) ->
        its waiting members cancelled and its running ones stopped (they save, as Abort does)."""
        lang = values.get("top.lang")
        picked = values.get("runs.sweep")
        folder = self._known_sweep(picked) if picked else self.sweep_of(values.get("train.view_run"))
        if folder is None:
            return {ALERTS: [("warning", alert(lang, "sweep_nothing"))]}
        cancelled, stopped = self.abort_sweep_dir(folder)
        return {
            ALERTS: [("info", alert(lang, "sweep_aborted", name=folder.name, cancelled=cancelled, stopped=stopped))]
        }

    # Runs tab

    def sweep_choices(self, lang: str | None = None) -> list[tuple[str, str]]:
        """ "(all runs)" (no sweep picked: the table shows every run), then each sweep under saves, newest first."""
        found = [(name, str(resolved(folder))) for name, folder in sweep.list_sweeps(self.saves_root)]
        return [(alert(lang, "sweep_all_runs"), ""), *found]

    def _known_sweep(self, picked: Any) -> Path | None:
        """The sweep folder `picked` names, when it is one of the sweeps under saves (nothing else is read)."""
        target = resolved(picked)
        return next((folder for _, folder in sweep.list_sweeps(self.saves_root) if resolved(folder) == target), None)

    def sweep_members(self, picked: Any) -> set[str]:
        folder = self._known_sweep(picked)
        if folder is None:
            return set()
        return {str(resolved(member["run"])) for member in sweep.read_record(folder)["members"]}

    def pick_sweep(self, values: Values) -> Updates:
        """Runs tab, a sweep picked -> shown ranked by the metric it was started with (the Rank by box follows)."""
        folder = self._known_sweep(values.get("runs.sweep"))
        metric = (sweep.read_record(folder).get("metric") if folder else None) or "eval_loss"
        return {**self.show_sweep({**values, "runs.sweep_metric": metric}), "runs.sweep_metric": metric}

    def show_sweep(self, values: Values) -> Updates:
        """Runs tab, a sweep picked (or its metric changed) -> its members ranked best first by the metric, with
        their values and states, and their curves of that metric overlaid."""
        lang = values.get("top.lang")
        folder = self._known_sweep(values.get("runs.sweep"))
        if folder is None:  # "(all runs)": the summary, its chart and Abort sweep hide
            hidden = gr.update(visible=False)
            return {"runs.sweep_box": hidden, "runs.sweep_abort": hidden, "runs.sweep_summary": pd.DataFrame()}
        record = sweep.read_record(folder)
        metric = values.get("runs.sweep_metric") or record.get("metric") or "eval_loss"
        rows = sweep.summary(folder, metric)
        columns = entry(lang, "runs.sweep_summary").get("columns") or {}
        metric_name = choice_pairs(lang, "runs.sweep_metric", [metric])[0][0]
        header = [columns.get("rank", "rank"), *record["grid"], metric_name, columns.get("state", "state")]
        header.append(columns.get("run", "run"))
        table = []
        for rank, row in enumerate(rows, 1):
            value = row.get(metric)
            shown = f"{value:.4g}" if isinstance(value, float) else "-"
            cells = [str(row["values"].get(key)) for key in record["grid"]]
            table.append([rank, *cells, shown, state_name(lang, row.get("state")), Path(str(row["name"])).name])
        runs = {Path(str(row["name"])).name: read_log_records(member) for row, member in _member_dirs(rows, record)}
        figure = plots.compare_figure(
            runs,
            PLOT_METRIC.get(metric, "eval_loss"),
            "step",
            title=metric_name,
            hint=alert(lang, "compare_no_metric"),
        )
        return {
            "runs.sweep_box": gr.update(visible=True),
            "runs.sweep_abort": gr.update(visible=True),
            "runs.sweep_summary": pd.DataFrame(table, columns=header),
            "runs.sweep_plot": figure,
        }


def _member_dirs(rows: list[dict[str, Any]], record: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Each ranked row with its run folder, best first (the record's order is the grid's)."""
    by_name = {Path(member["run"]).name: member["run"] for member in record["members"]}
    return [(row, by_name[Path(str(row["name"])).name]) for row in rows if Path(str(row["name"])).name in by_name]

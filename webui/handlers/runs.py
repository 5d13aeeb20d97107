"""What the Runs tab does: the run registry (core/registry.py) as a table, filtered by model / stage / state / text
and sorted by a column, and a picked row opened in the Train tab's live view. The layout is webui/tabs/runs.py;
`llamafactory-cli runs list` is the same table in the terminal."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core import registry
from core.runfolder import format_hms, read_args, read_log_records
from webui import plots
from webui.handlers.base import BoardBase, resolved
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.render import KIND_ALERTS, state_name
from webui.jobs import STATES
from webui.manager import alert, choice_pairs, entry

logger = logging.getLogger(__name__)

TABLE_COLUMNS = registry.COLUMNS  # the table shows every registry column, in its order
"""The table's columns, in order (registry row keys); the last is the run folder a click opens."""
SORT_KEYS = (
    "created",
    "name",
    "model",
    "stage",
    "state",
    "steps",
    "duration_s",
    "train_loss",
    "eval_loss",
    "reward_accuracy",
    "reward",
)
COMPARE = ("runs.compare", "runs.compare_metric", "runs.compare_x", "runs.compare_smooth")
"""The controls of a comparison: the runs (folders), the metrics overlaid (one panel each), the x axis (step / tokens)
and the smoothing of the train loss."""
FILTERS = ("runs.model", "runs.stage", "runs.state", "runs.text", "runs.sort", "runs.descending", "runs.sweep")
"""The controls that choose what the table shows (a picked sweep keeps its members only)."""


def _cell(lang: str | None, row: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    if key == "state":
        return state_name(lang, value)
    if key == "kind":
        return alert(lang, KIND_ALERTS.get(str(value), "kind_train"))
    if key == "steps":
        return f"{row['steps']}/{row['total_steps'] or '?'}"
    if key == "duration_s":
        return format_hms(value)
    if key == "created":
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M") if value else ""
    if key == "path":
        return resolved(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else value


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


class RunsHandlers(BoardBase):
    """The Runs tab's handlers (mixed into webui.board.Board)."""

    def registry_rows(self) -> list[dict[str, Any]]:
        """Every run under saves, newest first ([] with a log line when the folder cannot be read)."""
        try:
            return registry.list_runs(self.saves_root)
        except OSError as err:
            logger.warning("Could not list runs under %s: %s", self.saves_root, err)
            return []

    def runs_table(self, lang: str | None, values: Values | None = None, rows: list[dict] | None = None) -> Any:
        """The runs the filters in `values` keep (runs.model / stage / state: lists, empty = any; runs.text), sorted
        by runs.sort (newest first when unset), as a table whose last column is the run folder."""
        values = values or {}
        rows = self.registry_rows() if rows is None else rows
        rows = registry.filter_runs(
            rows, values.get("runs.model"), values.get("runs.stage"), values.get("runs.state"), values.get("runs.text")
        )
        if values.get("runs.sweep"):
            members = self.sweep_members(values["runs.sweep"])
            rows = [row for row in rows if resolved(row["path"]) in members]
        key = values.get("runs.sort") or "created"
        descending = bool(values.get("runs.descending")) if values.get("runs.sort") else True
        rows = registry.sort_runs(rows, key, descending)
        names = entry(lang, "runs.table").get("columns") or {}
        table = [[_cell(lang, row, column) for column in TABLE_COLUMNS] for row in rows]
        return pd.DataFrame(table, columns=[names.get(column, column) for column in TABLE_COLUMNS])

    def filter_choices(self, lang: str | None, rows: list[dict[str, Any]] | None = None) -> dict[str, list]:
        """The choices of the model, stage and state filters: the values the runs under saves have."""
        rows = self.registry_rows() if rows is None else rows
        return {
            "runs.model": sorted({row["model"] for row in rows}),
            "runs.stage": sorted({row["stage"] for row in rows}),
            "runs.state": [(state_name(lang, state), state) for state in STATES],
        }

    def refresh_runs_table(self, values: Values) -> Updates:
        """Runs tab, Refresh or a filter changed -> the table re-read (only changed runs are read again) and the
        model and stage filters offered what the runs have (a picked value stays)."""
        lang = values.get("top.lang")
        rows = self.registry_rows()
        updates: Updates = {"runs.table": self.runs_table(lang, values, rows)}
        for key, choices in self.filter_choices(lang, rows).items():
            picked = list(values.get(key) or [])
            known = {choice[1] if isinstance(choice, tuple) else choice for choice in choices}
            extra = [value for value in picked if value not in known]
            updates[key] = gr.update(choices=choices + extra, value=picked)
        updates["runs.compare"] = gr.update(choices=self.compare_choices(rows))
        updates["runs.sweep"] = gr.update(choices=self.sweep_choices(lang))
        return updates

    def compare_choices(self, rows: list[dict[str, Any]] | None = None) -> list[tuple[str, str]]:
        """Every run as (name, folder) for the comparison picker."""
        rows = self.registry_rows() if rows is None else rows
        return [(row["name"], resolved(row["path"])) for row in rows]

    def _run_name(self, path: str) -> str:
        try:
            return Path(path).resolve().relative_to(self.saves_root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def compare_runs(self, values: Values) -> Updates:
        """Runs tab, Compare: the picked runs (runs.compare: folders) -> runs.compare_plot (runs.compare_metric of
        each run overlaid against runs.compare_x, one colour and legend entry per run) and runs.diff (the arguments
        that differ, one column per run)."""
        lang = values.get("top.lang")
        paths = [str(path) for path in values.get("runs.compare") or []]
        if len(paths) < 2:
            return {ALERTS: [("warning", alert(lang, "compare_pick_two"))]}
        names = [self._run_name(path) for path in paths]
        records = {name: read_log_records(path) for name, path in zip(names, paths, strict=True)}
        picked = values.get("runs.compare_metric") or ["loss"]
        metrics = [picked] if isinstance(picked, str) else list(picked) or ["loss"]
        titles = [name for name, _ in choice_pairs(lang, "runs.compare_metric", metrics)]
        smoothing = values.get("runs.compare_smooth")
        figure = plots.compare_figure(
            records,
            metrics,
            values.get("runs.compare_x") or "step",
            smoothing=0.6 if smoothing is None else float(smoothing),
            title=" · ".join(titles),
            hint=alert(lang, "compare_no_metric"),
            titles=titles,
        )
        diff = registry.config_diff({name: read_args(path) for name, path in zip(names, paths, strict=True)})
        key_title = entry(lang, "runs.diff").get("key_column", "key")
        shown = [[key, *(_shown(value) for value in run_values)] for key, run_values in diff]
        return {
            "runs.compare_box": gr.update(visible=True),
            "runs.compare_plot": figure,
            "runs.diff": pd.DataFrame(shown, columns=[key_title, *names]),
        }

    def compare_link(self, query: str | None, values: Values) -> Updates:
        """A page opened with `?compare=<run>,<run>` (names as the table shows them, <model>/<method>/<run>) -> the
        comparison of those runs, as Compare would show it; {} without the query."""
        refs = [ref.strip() for ref in (query or "").split(",") if ref.strip()]
        if not refs:
            return {}
        paths, missing = [], []
        for ref in refs:
            folder = self.saves_root / ref
            if ".." in Path(ref).parts or not registry.read_row(folder):
                missing.append(ref)
            else:
                paths.append(resolved(folder))
        updates = self.compare_runs({**values, "runs.compare": paths})
        updates["runs.compare"] = gr.update(value=paths)
        if missing:
            warning = ("warning", alert(values.get("top.lang"), "compare_unknown_runs", runs=", ".join(missing)))
            updates[ALERTS] = [*updates.get(ALERTS, []), warning]
        return updates

    def sort_choices(self, lang: str | None) -> list[tuple[str, str]]:
        return choice_pairs(lang, "runs.sort", SORT_KEYS)

    def show_run(self, values: Values) -> Updates:
        """A run picked in the Runs tab -> the Train tab's live view shows it."""
        lang = values.get("top.lang")
        target = resolved(values.get("train.view_run"))
        updates = self.poll({**values, "train.view_run": target, "train.poll_state": {}})
        updates["train.view_run"] = gr.update(choices=self.run_choices(lang), value=target)
        return updates

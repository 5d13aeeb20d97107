"""What the Runs tab does: list every run under saves (the board's, the CLI's, LLaMA-Factory's) and open one in
the Train tab's live view. The layout is webui/tabs/runs.py."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd

from webui import jobs
from webui.handlers.base import BoardBase, resolved
from webui.handlers.events import Updates, Values
from webui.handlers.render import run_what, state_name
from webui.manager import entry

logger = logging.getLogger(__name__)


class RunsHandlers(BoardBase):
    """The Runs tab's handlers (mixed into webui.board.Board)."""

    def runs_table(self, lang: str | None) -> Any:
        """Every run under saves as a table (newest first); the last column is the run folder."""
        names = entry(lang, "runs.table").get("columns") or {}
        columns = ("run", "stage", "state", "steps", "created", "error", "path")
        try:
            runs = jobs.list_runs(self.saves_root)
        except OSError as err:
            logger.warning("Could not list runs under %s: %s", self.saves_root, err)
            runs = []
        rows = []
        for run in runs:
            created = run.get("created")
            rows.append(
                [
                    run["name"],
                    run_what(lang, run),
                    state_name(lang, run.get("state")),
                    f"{run.get('steps') or 0}/{run.get('total_steps') or '?'}",
                    datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "",
                    run.get("error") or "",
                    resolved(run["path"]),
                ]
            )
        return pd.DataFrame(rows, columns=[names.get(column, column) for column in columns])

    def refresh_runs_table(self, values: Values) -> Updates:
        """Runs tab, Refresh -> the table re-read from the saves folder."""
        return {"runs.table": self.runs_table(values.get("top.lang"))}

    def show_run(self, values: Values) -> Updates:
        """A run picked in the Runs tab -> the Train tab's live view shows it."""
        lang = values.get("top.lang")
        target = resolved(values.get("train.view_run"))
        updates = self.poll({**values, "train.view_run": target, "train.poll_state": {}})
        updates["train.view_run"] = gr.update(choices=self.run_choices(lang), value=target)
        return updates

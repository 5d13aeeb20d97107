"""The Runs tab: every run under saves (the board's, the CLI's and LLaMA-Factory's), newest first, with its stage,
state, steps and error. Picking a row shows that run in the Train tab's live view: log, progress and curves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.handlers.events import bind
from webui.handlers.live import LIVE_VIEW
from webui.manager import initial

if TYPE_CHECKING:
    from webui.board import Board


def create_runs_tab(lang: str, board: Board) -> dict[str, gr.components.Component]:
    """Build the Runs tab in `lang`."""
    with gr.Row():
        refresh = gr.Button(size="sm", scale=0, min_width=160, elem_id="runs_refresh", **_button(lang))
    table = gr.Dataframe(
        value=board.runs_table(lang),
        interactive=False,
        wrap=True,
        max_height=600,
        column_widths=["22%", "6%", "9%", "8%", "12%", "18%", "25%"],
        elem_id="runs_table",
        **initial(lang, "runs.table"),
    )
    return {"refresh": refresh, "table": table}


def bind_runs(board: Board, tabs: gr.Tabs) -> None:
    """Refresh re-reads the saves folder; a click on a row opens that run in the Train tab."""
    m = board.manager
    bind(board, m["runs.refresh"].click, board.refresh_runs_table, [], ["runs.table"])

    live = [*LIVE_VIEW]
    outputs = [m[key] for key in sorted({*live, "train.output_box", "train.notes"})] + [tabs]

    def open_run(values: dict[Any, Any], evt: gr.SelectData) -> dict[Any, Any]:
        by_key = m.by_key(values)
        row = evt.row_value or []
        path = row[-1] if row else None
        updates = board.show_run({**by_key, "train.view_run": path})
        result = {m[key]: value for key, value in updates.items() if key in set(live) | {"train.output_box"}}
        result[tabs] = gr.Tabs(selected="train")
        return result

    inputs = {m[key] for key in ("top.lang", "train.notes", "train.poll_state", "train.loss_log_y")}
    m["runs.table"].select(open_run, inputs=inputs, outputs=outputs, show_progress="hidden", api_name="open_run")


def _button(lang: str) -> dict[str, Any]:
    return {"value": initial(lang, "runs.refresh").get("label", "")}

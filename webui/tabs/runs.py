"""The Runs tab: every run under saves (the board's, the CLI's and LLaMA-Factory's) with its stage, method, model,
datasets, state, steps, time and numbers (core/registry.py), filtered by model / stage / state / text and sorted by
a column. Picking a row shows that run in the Train tab's live view: log, progress and curves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from core.sweep import METRICS as SWEEP_METRICS
from webui import plots
from webui.handlers.events import ALERTS, bind
from webui.handlers.live import LIVE_VIEW
from webui.handlers.runs import COMPARE, FILTERS, TABLE_COLUMNS
from webui.handlers.sweep import SWEEP_VIEW
from webui.manager import button_label, choice_pairs, initial

_WIDTHS = {
    "name": "220px",
    "model": "140px",
    "datasets": "140px",
    "created": "140px",
    "error": "220px",
    "path": "320px",
}
"""Fixed column widths (the table scrolls sideways): an empty column would otherwise shrink to its header's letters."""

if TYPE_CHECKING:
    from webui.board import Board


def create_runs_tab(lang: str, board: Board) -> dict[str, gr.components.Component]:
    """Build the Runs tab in `lang`."""
    rows = board.registry_rows()
    choices = board.filter_choices(lang, rows)
    with gr.Row():
        model = gr.Dropdown(
            choices["runs.model"], value=[], multiselect=True, elem_id="runs_model", **initial(lang, "runs.model")
        )
        stage = gr.Dropdown(
            choices["runs.stage"], value=[], multiselect=True, elem_id="runs_stage", **initial(lang, "runs.stage")
        )
        state = gr.Dropdown(
            choices["runs.state"], value=[], multiselect=True, elem_id="runs_state", **initial(lang, "runs.state")
        )
        text = gr.Textbox(elem_id="runs_text", **initial(lang, "runs.text"))
    with gr.Row():
        sort = gr.Dropdown(
            board.sort_choices(lang), value="created", elem_id="runs_sort", **initial(lang, "runs.sort")
        )
        descending = gr.Checkbox(value=True, elem_id="runs_descending", **initial(lang, "runs.descending"))
        refresh = gr.Button(
            size="sm", scale=0, min_width=160, elem_id="runs_refresh", **button_label(lang, "runs.refresh")
        )
    with gr.Row():
        compare = gr.Dropdown(
            board.compare_choices(rows), value=[], multiselect=True, scale=4, elem_id="runs_compare",
            **initial(lang, "runs.compare"),
        )  # fmt: skip
        metric = gr.Dropdown(
            choice_pairs(lang, "runs.compare_metric", plots.COMPARE_METRICS), value=["loss"], multiselect=True,
            scale=2, elem_id="runs_compare_metric", **initial(lang, "runs.compare_metric"),
        )  # fmt: skip
        smooth = gr.Slider(
            0.0, 0.99, value=0.6, step=0.01, scale=1, elem_id="runs_compare_smooth",
            **initial(lang, "runs.compare_smooth"),
        )  # fmt: skip
        axis = gr.Radio(
            choice_pairs(lang, "runs.compare_x", ("step", "tokens")), value="step", scale=1, elem_id="runs_compare_x",
            **initial(lang, "runs.compare_x"),
        )  # fmt: skip
        compare_button = gr.Button(
            variant="primary", scale=0, min_width=160, elem_id="runs_compare_button",
            **button_label(lang, "runs.compare_button"),
        )  # fmt: skip
    # The overlay and the diff appear with the first comparison, the sweep's summary once a sweep is picked: an
    # empty table would show placeholder headers (1, 2, 3) and an empty chart only a frame.
    with gr.Column(visible=False, elem_id="runs_compare_box") as compare_box:
        compare_plot = gr.Plot(elem_id="runs_compare_plot", **initial(lang, "runs.compare_plot"))
        diff = gr.Dataframe(interactive=False, wrap=True, elem_id="runs_diff", **initial(lang, "runs.diff"))
    with gr.Row(equal_height=True):
        sweep = gr.Dropdown(
            board.sweep_choices(lang), value="", scale=4, elem_id="runs_sweep", **initial(lang, "runs.sweep")
        )
        sweep_metric = gr.Dropdown(
            choice_pairs(lang, "runs.sweep_metric", SWEEP_METRICS), value="eval_loss", scale=1,
            elem_id="runs_sweep_metric", **initial(lang, "runs.sweep_metric"),
        )  # fmt: skip
        sweep_abort = gr.Button(
            variant="stop",
            scale=0,
            min_width=160,
            visible=False,
            elem_id="runs_sweep_abort",
            **button_label(lang, "runs.sweep_abort"),
        )
    with gr.Column(visible=False, elem_id="runs_sweep_box") as sweep_box:
        sweep_summary = gr.Dataframe(
            interactive=False, wrap=True, elem_id="runs_sweep_summary", **initial(lang, "runs.sweep_summary")
        )
        sweep_plot = gr.Plot(elem_id="runs_sweep_plot", **initial(lang, "runs.sweep_plot"))
    table = gr.Dataframe(
        value=board.runs_table(lang, rows=rows),
        interactive=False,
        wrap=True,
        max_height=600,
        column_widths=[_WIDTHS.get(column, "90px") for column in TABLE_COLUMNS],
        elem_id="runs_table",
        **initial(lang, "runs.table"),
    )
    return {
        "model": model,
        "stage": stage,
        "state": state,
        "text": text,
        "sort": sort,
        "descending": descending,
        "refresh": refresh,
        "compare": compare,
        "compare_metric": metric,
        "compare_x": axis,
        "compare_smooth": smooth,
        "compare_button": compare_button,
        "compare_box": compare_box,
        "compare_plot": compare_plot,
        "diff": diff,
        "sweep": sweep,
        "sweep_metric": sweep_metric,
        "sweep_abort": sweep_abort,
        "sweep_box": sweep_box,
        "sweep_summary": sweep_summary,
        "sweep_plot": sweep_plot,
        "table": table,
    }


def bind_runs(board: Board, tabs: gr.Tabs, demo: gr.Blocks | None = None) -> None:
    """Refresh and every filter re-read the saves folder; Compare overlays the picked runs and diffs their
    arguments; a page opened with `?compare=a,b` shows that comparison; a click on a row opens that run in the Train
    tab."""
    m = board.manager
    outputs = ["runs.table", "runs.model", "runs.stage", "runs.state", "runs.compare", "runs.sweep"]
    bind(board, m["runs.refresh"].click, board.refresh_runs_table, FILTERS, outputs)
    # A sweep picked: the table keeps only its members, the summary ranks them, the plot overlays them.
    sweep_out = ["runs.sweep_box", "runs.sweep_abort", "runs.sweep_summary", "runs.sweep_plot"]
    bind(board, m["runs.sweep"].input, board.pick_sweep, SWEEP_VIEW, [*sweep_out, "runs.sweep_metric"], api_name=False)
    bind(board, m["runs.sweep_metric"].input, board.show_sweep, SWEEP_VIEW, sweep_out, api_name=False)
    bind(board, m["runs.refresh"].click, board.show_sweep, SWEEP_VIEW, sweep_out, api_name=False)
    bind(board, m["runs.sweep_abort"].click, board.abort_sweep, ["runs.sweep"], [])
    compared = ["runs.compare_box", "runs.compare_plot", "runs.diff"]
    bind(board, m["runs.compare_button"].click, board.compare_runs, COMPARE, compared)
    views = [m[key].input for key in ("runs.compare_metric", "runs.compare_x", "runs.compare_smooth")]
    bind(board, views, board.compare_runs, COMPARE, compared, api_name=False)
    filters = [m[f"runs.{key}"].input for key in ("model", "stage", "state", "sort", "descending", "sweep")]
    bind(board, [*filters, m["runs.text"].submit], board.refresh_runs_table, FILTERS, outputs, api_name=False)

    if demo is not None:
        link_outputs = [m[key] for key in ("runs.compare", *compared)] + [tabs]

        def open_link(values: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            by_key = m.by_key(values)
            updates = board.compare_link(request.query_params.get("compare"), by_key)
            if not updates:
                return {tabs: gr.skip()}
            for level, text in updates.pop(ALERTS, []):
                (gr.Warning if level == "warning" else gr.Info)(text)
            result = {m[key]: value for key, value in updates.items()}
            result[tabs] = gr.Tabs(selected="runs")
            return result

        link_inputs = {m[key] for key in (*COMPARE, "top.lang")}
        demo.load(open_link, inputs=link_inputs, outputs=link_outputs, show_progress="hidden", api_name=False)

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

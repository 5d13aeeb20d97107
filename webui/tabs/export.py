"""The Export tab: merge the top bar's adapters into its model and save safetensors shards (max shard size, dtype)
into an export dir, optionally pushing to the hub (the token comes from HF_TOKEN in the board's environment, never
from the page). A non-empty folder needs the overwrite box ticked. Runs as a `core.cli export` job with progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.controls import TOP_ARGUMENTS
from webui.handlers import choices
from webui.handlers.events import bind
from webui.manager import choice_pairs, initial
from webui.tabs.jobview import add_job_view

if TYPE_CHECKING:
    from webui.board import Infer

INFER_DTYPES = ("auto", "float16", "bfloat16", "float32")
EXPORT_DEVICES = ("cpu", "auto")
ARGUMENTS = ("export_dir", "export_size", "infer_dtype", "export_device", "export_hub_model_id", "export_overwrite")


def create_export_tab(lang: str) -> dict[str, gr.components.Component]:
    """Build the Export tab in `lang`."""
    elems: dict[str, Any] = {}

    def text(key: str) -> dict[str, Any]:
        return initial(lang, f"export.{key}")

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    with gr.Row(equal_height=True):
        add(
            "export_dir",
            gr.Textbox(value=choices.default_export_dir(), scale=3, elem_id="export_dir", **text("export_dir")),
        )
        add(
            "export_size",
            gr.Slider(
                minimum=0.5, maximum=100, value=5, step=0.5, scale=2, elem_id="export_size", **text("export_size")
            ),
        )
        add(
            "infer_dtype",
            gr.Dropdown(
                choices=choice_pairs(lang, "export.infer_dtype", INFER_DTYPES),
                value="auto",
                scale=1,
                elem_id="export_infer_dtype",
                **text("infer_dtype"),
            ),
        )
        add(
            "export_device",
            gr.Dropdown(
                choices=choice_pairs(lang, "export.export_device", EXPORT_DEVICES),
                value="cpu",
                scale=1,
                elem_id="export_device",
                **text("export_device"),
            ),
        )
    with gr.Row(equal_height=True):
        add("export_hub_model_id", gr.Textbox(scale=3, elem_id="export_hub_model_id", **text("export_hub_model_id")))
        add(
            "export_overwrite",
            gr.Checkbox(value=False, scale=2, elem_id="export_overwrite", **text("export_overwrite")),
        )
    add_job_view(add, lang, "export")
    return elems


def bind_export(infer: Infer) -> None:
    """Events of the Export tab: Export / Abort and the timer that follows the job."""
    board = infer.board
    m = board.manager
    top_form = [f"top.{name}" for name in TOP_ARGUMENTS]
    form = [*top_form, *(f"export.{name}" for name in ARGUMENTS)]
    live = ["export.view_run", "export.poll_state", "export.progress", "export.output_box"]
    start_out = [*live, "export.export_dir", "export.export_overwrite"]
    bind(board, m["export.start"].click, infer.export_start, form, start_out)
    bind(board, m["export.abort"].click, infer.export_abort, ["export.view_run"], [])
    poll = ["export.view_run", "export.poll_state"]
    bind(board, m["export.timer"].tick, infer.export_poll, poll, live, queue=True, quiet=True)

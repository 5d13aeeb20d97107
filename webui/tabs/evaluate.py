"""The Evaluate & Predict tab: datasets, lengths, batch size, generation settings and a run name; Start runs an eval
job through the board's runner (webui/handlers/evaluate.py), and the tab shows its progress and log,
then the metrics (BLEU-4, ROUGE-1/2/L, runtime) and the predictions a page at a time (prompt, label, prediction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.controls import TOP_ARGUMENTS
from webui.handlers import choices
from webui.handlers.events import bind
from webui.manager import button_label, initial
from webui.tabs.jobview import add_job_view

if TYPE_CHECKING:
    from webui.board import Infer

# Controls that become arguments of the eval job (Infer.eval_args reads them).
ARGUMENTS = (
    "dataset_dir",
    "dataset",
    "cutoff_len",
    "max_samples",
    "per_device_eval_batch_size",
    "predict_with_generate",
    "max_new_tokens",
    "top_p",
    "temperature",
    "output_dir",
)


def create_eval_tab(lang: str) -> dict[str, gr.components.Component]:
    """Build the Evaluate & Predict tab in `lang`."""
    elems: dict[str, Any] = {}

    def text(key: str) -> dict[str, Any]:
        return initial(lang, f"eval.{key}")

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    with gr.Row():
        add("dataset_dir", gr.Textbox(value="demo", scale=1, elem_id="eval_dataset_dir", **text("dataset_dir")))
        add(
            "dataset",
            gr.Dropdown(
                choices=_choices("demo"),
                value=choices.default_eval_datasets("demo"),
                multiselect=True,
                allow_custom_value=True,
                scale=4,
                elem_id="eval_dataset",
                **text("dataset"),
            ),
        )
    with gr.Row(equal_height=True):
        add(
            "cutoff_len",
            gr.Slider(minimum=4, maximum=131072, value=1024, step=1, elem_id="eval_cutoff_len", **text("cutoff_len")),
        )
        add(
            "max_samples",
            gr.Number(value=100000, minimum=1, precision=0, elem_id="eval_max_samples", **text("max_samples")),
        )
        add(
            "per_device_eval_batch_size",
            gr.Slider(
                minimum=1,
                maximum=1024,
                value=8,
                step=1,
                elem_id="per_device_eval_batch_size",
                **text("per_device_eval_batch_size"),
            ),
        )
        add(
            "predict_with_generate",
            gr.Checkbox(value=True, elem_id="predict_with_generate", **text("predict_with_generate")),
        )
    with gr.Row(equal_height=True):
        add(
            "max_new_tokens",
            gr.Slider(
                minimum=1, maximum=8192, value=512, step=1, elem_id="eval_max_new_tokens", **text("max_new_tokens")
            ),
        )
        add("top_p", gr.Slider(minimum=0.01, maximum=1, value=0.7, step=0.01, elem_id="eval_top_p", **text("top_p")))
        add(
            "temperature",
            gr.Slider(
                minimum=0, maximum=1.5, value=0.95, step=0.01, elem_id="eval_temperature", **text("temperature")
            ),
        )
        add(
            "output_dir",
            gr.Textbox(value=choices.default_eval_name(), elem_id="eval_output_dir", **text("output_dir")),
        )
    # The eval run shown: set by Start, or found again by the timer after a page reload.
    add_job_view(add, lang, "eval")
    add("metrics", gr.Dataframe(interactive=False, visible=False, elem_id="eval_metrics", **text("metrics")))
    with gr.Column(visible=False, elem_id="eval_predictions_box") as predictions_box:
        add("predictions_box", predictions_box)
        add("pred_info", gr.HTML(elem_id="eval_pred_info"))
        add(
            "predictions",
            gr.Dataframe(interactive=False, wrap=True, elem_id="eval_predictions", **text("predictions")),
        )
        with gr.Row():
            add("pred_prev", gr.Button(size="sm", elem_id="eval_pred_prev", **button_label(lang, "eval.pred_prev")))
            add("pred_next", gr.Button(size="sm", elem_id="eval_pred_next", **button_label(lang, "eval.pred_next")))
        add("pred_page", gr.State(0))
    return elems


def _choices(dataset_dir: str) -> list[str]:
    try:
        return choices.sft_datasets(dataset_dir)
    except Exception:  # the registry's error is shown when the user changes the folder
        return []


def bind_eval(infer: Infer) -> None:
    """Events of the Evaluate & Predict tab: data folder, Start / Abort, the predictions pages, the timer."""
    board = infer.board
    m = board.manager
    top_form = [f"top.{name}" for name in TOP_ARGUMENTS]
    form = [*top_form, *(f"eval.{name}" for name in ARGUMENTS), "train.compute_type"]
    results = [
        "eval.metrics",
        "eval.predictions_box",
        "eval.predictions",
        "eval.pred_info",
        "eval.pred_page",
        "eval.pred_prev",
        "eval.pred_next",
    ]
    live = ["eval.view_run", "eval.poll_state", "eval.progress", "eval.output_box", *results]

    data = ["eval.dataset_dir", "eval.dataset"]
    bind(board, m["eval.dataset_dir"].blur, infer.eval_change_dataset_dir, data, ["eval.dataset"])
    bind(board, m["eval.start"].click, infer.eval_start, form, [*live, "eval.output_dir"])
    bind(board, m["eval.abort"].click, infer.eval_abort, ["eval.view_run"], [])
    pages = ["eval.view_run", "eval.pred_page"]
    bind(board, m["eval.pred_prev"].click, infer.pred_prev, pages, results)
    bind(board, m["eval.pred_next"].click, infer.pred_next, pages, results)
    # The top bar's model tells the timer where to find the last finished eval after a page reload.
    shown = ["eval.view_run", "eval.poll_state", "top.model_name", "top.model_path", "top.finetuning_type"]
    bind(board, m["eval.timer"].tick, infer.eval_poll, shown, live, queue=True, quiet=True)

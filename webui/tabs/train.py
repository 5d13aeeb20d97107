"""The Train tab's layout: stage and data, hyper-parameters, the extra / freeze / LoRA / RLHF sections, the buttons,
and the live view of a run (progress bar, alert banner, log box, loss / learning-rate / reward charts; grpo adds KL
and completion length, and its sampled completions; system use and efficiency).

The argument controls are declared in webui/controls.py and built by webui.tabs.factory; what they do when changed
or pressed is webui/handlers/train.py (and preview.py, live.py beside it). Sections that do not apply to the chosen
stage and method are hidden (webui.handlers.choices.section_visibility says which).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from core.sweep import MAX_KEYS as MAX_SWEEP_KEYS
from core.sweep import METRICS as SWEEP_METRICS
from webui.args import FORM_DEFAULTS
from webui.controls import (
    GRPO_KEYS,
    JOB_PLACEMENT,
    PREF_LOSSES,
    STAGES,
    TOP_ARGUMENTS,
    TRAIN_ARGUMENTS,
    TRAIN_SECTIONS,
)
from webui.handlers import choices
from webui.handlers.events import bind
from webui.handlers.live import LIVE_VIEW
from webui.handlers.plan import PLAN_INPUTS
from webui.handlers.render import device_count_html, progress_html, start_from_html
from webui.handlers.sweep import SWEEP_CONTROLS, SWEEPABLE
from webui.manager import alert, button_label, choice_pairs, initial
from webui.tabs.factory import make, make_rows

if TYPE_CHECKING:
    from webui.board import Board

ARGUMENTS = TRAIN_ARGUMENTS
__all__ = ["ARGUMENTS", "PREF_LOSSES", "STAGES", "bind_train", "create_train_tab"]


def create_train_tab(lang: str, top: dict[str, Any]) -> dict[str, gr.components.Component]:
    """Build the Train tab in `lang`; `top` (the top bar's components) gives the starting model and method."""
    model_name = top["model_name"].value
    finetuning_type = top["finetuning_type"].value
    stage = FORM_DEFAULTS["stage"]
    visible = choices.section_visibility(stage, finetuning_type)
    elems: dict[str, Any] = {}

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    # What only the board knows when it builds the tab: choices from the registry and saves, visibility, defaults.
    overrides: dict[str, dict[str, Any]] = {
        "stage": {"value": stage},
        "dataset": {
            "choices": choices.dataset_choices("demo", stage),
            "value": choices.default_datasets("demo", stage),
        },
        "compute_type": {"value": choices.default_compute_type()},
        "reward_model": {"choices": choices.checkpoint_choices(model_name, finetuning_type), "value": None},
        "output_dir": {"value": choices.new_run_name()},
    }
    rlhf_controls = ("pref_beta", "pref_ftx", "pref_loss", "reward_model", "ppo_score_norm", "ppo_whiten_rewards")
    for name in (*rlhf_controls, *GRPO_KEYS):
        overrides.setdefault(name, {})["visible"] = visible[name]

    # Stage and data
    with gr.Row():
        for control in TRAIN_SECTIONS["data"][0]:
            add(control.name, make(control, lang, **overrides.get(control.name, {})))
        add(
            "preview_btn",
            gr.Button(scale=1, size="sm", min_width=120, elem_id="preview_btn", **_button(lang, "preview_btn")),
        )
    with gr.Column(visible=False, elem_id="preview_box") as preview_box:
        add("preview_box", preview_box)
        with gr.Row(equal_height=True):
            add("preview_info", gr.HTML(elem_id="preview_info"))
        add(
            "preview_table",
            gr.Dataframe(interactive=False, wrap=True, elem_id="preview_table", **_text(lang, "preview_table")),
        )
        with gr.Row():
            for name in ("preview_prev", "preview_next", "preview_close"):
                add(name, gr.Button(size="sm", elem_id=name, **_button(lang, name)))
        add("preview_page", gr.State(0))

    # Hyper-parameters, then the sections (accordions) that stage and method show or hide
    make_rows(TRAIN_SECTIONS["hyper"], lang, add, overrides)
    for section in ("extra_tab", "freeze_tab", "lora_tab", "oft_tab", "rlhf_tab"):
        label = initial(lang, f"train.{section}").get("label", "")
        shown = visible.get(section, True)
        with gr.Accordion(open=False, visible=shown, elem_id=section, label=label) as accordion:
            add(section, accordion)
            make_rows(TRAIN_SECTIONS[section], lang, add, overrides)
            if section == "rlhf_tab":
                # Not an argument control: Board.guard reads it at Start, and a loaded YAML never ticks it.
                add(
                    "trust_reward_file",
                    gr.Checkbox(
                        value=False,
                        visible=visible["trust_reward_file"],
                        elem_id="trust_reward_file",
                        **_text(lang, "trust_reward_file"),
                    ),
                )

    # Where the job runs: devices (the queue waits for busy ones), DeepSpeed, remote code
    devices = choices.visible_devices()
    with gr.Row(equal_height=True):
        add(
            "devices",
            gr.Dropdown(
                choices=[(name, device) for device, name in devices],
                value=[],
                multiselect=True,
                interactive=bool(devices),
                scale=3,
                elem_id="devices",
                **_text(lang, "devices"),
            ),
        )
        add("device_count", gr.HTML(device_count_html(lang, len(devices)), elem_id="device_count"))
        ds_stages = choice_pairs(lang, "train.ds_stage", choices.DS_STAGES)
        add(
            "ds_stage",
            gr.Dropdown(choices=ds_stages, value="none", scale=2, elem_id="ds_stage", **_text(lang, "ds_stage")),
        )
        add(
            "trust_remote_code",
            gr.Checkbox(value=False, scale=1, elem_id="trust_remote_code", **_text(lang, "trust_remote_code")),
        )
        add("plan_insist", gr.Checkbox(value=False, scale=1, elem_id="plan_insist", **_text(lang, "plan_insist")))

    # Buttons
    with gr.Row(equal_height=True):
        for name in ("cmd_preview", "arg_save", "arg_load", "arg_export"):
            add(name, gr.Button(elem_id=name, **_button(lang, name)))
        add("start", gr.Button(variant="primary", elem_id="start", **_button(lang, "start")))
        add("abort", gr.Button(variant="stop", elem_id="abort", **_button(lang, "abort")))
        add("stop_keep_best", gr.Button(variant="stop", elem_id="stop_keep_best", **_button(lang, "stop_keep_best")))
        add("rerun", gr.Button(elem_id="rerun", **_button(lang, "rerun")))

    _sweep_section(lang, add)

    start_from = start_from_html(lang, top["checkpoint_path"].value, top["finetuning_type"].value or "lora")
    add("start_from", gr.HTML(start_from, elem_id="start_from"))
    with gr.Row(equal_height=True):
        add("plan", gr.HTML("", elem_id="plan"))  # webui.handlers.plan: fits / tight / will not fit, and the time
        add(
            "plan_calibrate",
            gr.Button(size="sm", scale=0, elem_id="plan_calibrate", **_button(lang, "plan_calibrate")),
        )

    with gr.Row(equal_height=True):
        output = TRAIN_SECTIONS["output"][0][0]
        add(output.name, make(output, lang, **overrides[output.name]))
        config_path = choices.default_config_path()
        add("config_path", gr.Textbox(value=config_path, scale=2, elem_id="config_path", **_text(lang, "config_path")))
        add(
            "export_file",
            # Wide enough for "train_YYYY-MM-DD-HH-MM-SS.yaml" to show whole beside the two text boxes.
            gr.File(
                visible=False,
                interactive=False,
                scale=2,
                min_width=320,
                elem_id="export_file",
                **_text(lang, "export_file"),
            ),
        )

    # Live view of the active or selected run (webui.handlers.live.LiveView.poll, every 2 s)
    with gr.Row(equal_height=True):
        add(
            "view_run",
            gr.Dropdown(
                choices=[], value=None, allow_custom_value=True, scale=4, elem_id="view_run", **_text(lang, "view_run")
            ),
        )
        add("loss_log_y", gr.Checkbox(value=False, scale=1, elem_id="loss_log_y", **_text(lang, "loss_log_y")))
    add("progress", gr.HTML(progress_html(lang, None, None), elem_id="progress"))
    add("alert_banner", gr.HTML("", elem_id="alert_banner"))
    add("poll_state", gr.State({}))
    add("notes", gr.State([]))
    add("timer", gr.Timer(2.0))
    with gr.Row():
        add(
            "output_box",
            gr.Textbox(
                lines=12,
                max_lines=12,
                autoscroll=True,
                interactive=False,
                buttons=["copy"],
                elem_id="output_box",
                **_text(lang, "output_box"),
            ),
        )
    with gr.Row():
        add("loss_viewer", gr.Plot(elem_id="loss_viewer", **_text(lang, "loss_viewer")))
        add("lr_viewer", gr.Plot(elem_id="lr_viewer", **_text(lang, "lr_viewer")))
        add("reward_viewer", gr.Plot(visible=False, elem_id="reward_viewer", **_text(lang, "reward_viewer")))
        add("rollout_viewer", gr.Plot(visible=False, elem_id="rollout_viewer", **_text(lang, "rollout_viewer")))
    with gr.Row():
        add("system_viewer", gr.Plot(elem_id="system_viewer", **_text(lang, "system_viewer")))
        add("efficiency_viewer", gr.Plot(elem_id="efficiency_viewer", **_text(lang, "efficiency_viewer")))
    # grpo: the latest sampled completions with their rewards (samples.jsonl), so a user sees what is rewarded
    add(
        "samples_view",
        gr.Dataframe(
            visible=False, interactive=False, wrap=True, elem_id="samples_view", **_text(lang, "samples_view")
        ),
    )
    return elems


def _sweep_section(lang: str, add: Any) -> None:
    """Sweep (webui/handlers/sweep.py): up to three keys with comma-separated values, the metric the summary ranks
    by, a preview of the runs it makes, Start sweep and Abort sweep."""
    with gr.Accordion(open=False, elem_id="sweep_tab", label=initial(lang, "train.sweep_tab").get("label", "")) as tab:
        add("sweep_tab", tab)
        with gr.Row(equal_height=True):
            for index in range(1, MAX_SWEEP_KEYS + 1):
                with gr.Column(min_width=200):
                    key = f"sweep_key{index}"
                    add(
                        key,
                        gr.Dropdown(SWEEPABLE, value=None, allow_custom_value=True, elem_id=key, **_text(lang, key)),
                    )
                    name = f"sweep_values{index}"
                    add(name, gr.Textbox(elem_id=name, **_text(lang, name)))
        with gr.Row(equal_height=True):
            metrics = choice_pairs(lang, "train.sweep_metric", SWEEP_METRICS)
            add(
                "sweep_metric",
                gr.Dropdown(metrics, value="eval_loss", elem_id="sweep_metric", **_text(lang, "sweep_metric")),
            )
            add("sweep_start", gr.Button(variant="primary", elem_id="sweep_start", **_button(lang, "sweep_start")))
            add("sweep_abort", gr.Button(variant="stop", elem_id="sweep_abort", **_button(lang, "sweep_abort")))
        add("sweep_preview", gr.Markdown(alert(lang, "sweep_none"), elem_id="sweep_preview"))


def _text(lang: str, name: str) -> dict[str, Any]:
    return initial(lang, f"train.{name}")


def _button(lang: str, name: str) -> dict[str, Any]:
    return button_label(lang, f"train.{name}")


def bind_train(board: Board, demo: gr.Blocks | None = None) -> None:
    """Events of the Train tab: stage / data, dataset preview, the buttons, the live view's timer; the plan bar
    redraws on a page load too (`demo`), in the same event as its fields' changes."""
    m = board.manager
    top_form = [f"top.{name}" for name in TOP_ARGUMENTS]
    train_form = [f"train.{name}" for name in TRAIN_ARGUMENTS]
    form = top_form + train_form + ["train.config_path", *JOB_PLACEMENT]
    sections = list(choices.SECTIONS)
    data = ["train.stage", "train.dataset_dir", "train.dataset", "top.finetuning_type"]

    # .change, not .input: a checkpoint picked for Chat, or set by a page load, changes what Start continues from too.
    source = ["top.checkpoint_path", "top.finetuning_type"]
    bind(board, [m[key].change for key in source], board.show_start_from, ["top.lang", *source], ["train.start_from"])
    bind(board, m["train.stage"].input, board.change_stage, data, ["train.dataset", "train.preview_box", *sections])
    bind(board, m["train.dataset_dir"].blur, board.change_dataset_dir, data, ["train.dataset", "train.preview_box"])
    bind(board, m["train.dataset"].input, board.preview_close, [], ["train.preview_box"], api_name="dataset_changed")

    preview_out = [
        "train.preview_box",
        "train.preview_table",
        "train.preview_info",
        "train.preview_page",
        "train.preview_next",
        "train.preview_prev",
    ]
    preview_in = ["train.dataset_dir", "train.dataset", "train.preview_page"]
    bind(board, m["train.preview_btn"].click, board.preview_open, preview_in, preview_out)
    bind(board, m["train.preview_prev"].click, board.preview_prev, preview_in, preview_out)
    bind(board, m["train.preview_next"].click, board.preview_next, preview_in, preview_out)
    bind(board, m["train.preview_close"].click, board.preview_close, [], ["train.preview_box"])

    bind(board, m["train.cmd_preview"].click, board.cmd_preview, form, [])
    bind(board, m["train.arg_save"].click, board.save_args, form, ["train.output_dir"])
    bind(board, m["train.arg_load"].click, board.load_args, form, top_form + train_form + sections)
    bind(board, m["train.arg_export"].click, board.export_args, form, ["train.export_file", "train.output_dir"])

    # One event with the page load: a load's plan, read before the remembered choices are restored, never lands last.
    loaded = [] if demo is None else [demo.load]
    bind(board, [*loaded, *(m[key].change for key in PLAN_INPUTS)], board.plan, form, ["train.plan"])
    bind(board, m["train.plan_calibrate"].click, board.plan_calibrate, form, ["train.plan"])

    live = list(LIVE_VIEW)
    bind(board, m["train.start"].click, board.start, form, [*live, "train.output_dir"])
    bind(board, m["train.abort"].click, board.abort, ["train.view_run"], [])
    bind(board, m["train.stop_keep_best"].click, board.stop_keep_best, ["train.view_run"], [])
    sweep_form = [*form, *SWEEP_CONTROLS]
    bind(board, m["train.sweep_start"].click, board.start_sweep, sweep_form, [*live, "train.output_dir"])
    bind(board, m["train.sweep_abort"].click, board.abort_sweep, ["train.view_run"], [])
    preview_in = [*SWEEP_CONTROLS, "train.output_dir", "train.devices"]
    changes = [m[key].change for key in (*preview_in, "top.lang")]  # the preview is text in the page's language
    bind(board, changes, board.sweep_preview, preview_in, ["train.sweep_preview"], api_name=False)
    rerun_inputs = ["train.view_run", "train.devices", "train.ds_stage", "train.trust_remote_code"]
    bind(board, m["train.rerun"].click, board.rerun, rerun_inputs, live)
    view = ["train.view_run", "train.poll_state", "train.loss_log_y"]
    bind(board, [m["train.view_run"].input, m["train.loss_log_y"].input], board.change_view, view, live)
    bind(board, m["train.view_run"].focus, board.refresh_runs, [], ["train.view_run"])
    bind(board, m["train.timer"].tick, board.poll, view, live, queue=True, quiet=True)

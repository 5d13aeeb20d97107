"""The Train tab: stage and data, hyper-parameters, the extra / freeze / LoRA / RLHF sections, the buttons, and the
live view of a run (progress bar, log box, loss / learning-rate / reward charts).

Controls are named after the argument they set; sections that do not apply to the chosen stage and method are
hidden (webui.handlers.section_visibility says which).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui import handlers
from webui.args import FORM_DEFAULTS as D
from webui.manager import button_label, choice_pairs, initial
from webui.tabs.top import ARGUMENTS as TOP_ARGUMENTS

STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
COMPUTE_TYPES = ("fp32", "fp16", "bf16", "pure_bf16")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)
REPORT_TO = ("none", "all", "tensorboard", "wandb", "mlflow", "neptune", "trackio")
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "orpo", "simpo")

JOB_PLACEMENT = ("train.devices", "train.ds_stage", "train.trust_remote_code")
"""Controls the runner and Board.guard read at start (devices, DeepSpeed config, remote code), not build_args."""

# Controls that become arguments (the form keys `build_args` reads), in the order they appear.
ARGUMENTS = (
    "stage",
    "dataset_dir",
    "dataset",
    "learning_rate",
    "num_train_epochs",
    "max_grad_norm",
    "max_samples",
    "compute_type",
    "cutoff_len",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "val_size",
    "lr_scheduler_type",
    "logging_steps",
    "save_steps",
    "warmup_steps",
    "neftune_noise_alpha",
    "extra_args",
    "packing",
    "neat_packing",
    "train_on_prompt",
    "mask_history",
    "resize_vocab",
    "report_to",
    "freeze_trainable_layers",
    "freeze_trainable_modules",
    "freeze_extra_modules",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "loraplus_lr_ratio",
    "create_new_adapter",
    "use_rslora",
    "use_dora",
    "pissa_init",
    "lora_target",
    "additional_target",
    "pref_beta",
    "pref_ftx",
    "pref_loss",
    "reward_model",
    "ppo_score_norm",
    "ppo_whiten_rewards",
    "output_dir",
)


def create_train_tab(lang: str, top: dict[str, Any]) -> dict[str, gr.components.Component]:
    """Build the Train tab in `lang`; `top` (the top bar's components) gives the starting model and method."""
    model_name = top["model_name"].value
    finetuning_type = top["finetuning_type"].value
    stage = D["stage"]
    visible = handlers.section_visibility(stage, finetuning_type)
    elems: dict[str, Any] = {}

    def text(key: str) -> dict[str, Any]:
        return initial(lang, f"train.{key}")

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    # Stage and data
    with gr.Row():
        add(
            "stage",
            gr.Dropdown(
                choices=choice_pairs(lang, "train.stage", STAGES),
                value=stage,
                scale=2,
                elem_id="stage",
                **text("stage"),
            ),
        )
        add("dataset_dir", gr.Textbox(value=D["dataset_dir"], scale=1, elem_id="dataset_dir", **text("dataset_dir")))
        add(
            "dataset",
            gr.Dropdown(
                choices=handlers.dataset_choices("demo", stage),
                value=handlers.default_datasets("demo", stage),
                multiselect=True,
                allow_custom_value=True,
                scale=4,
                elem_id="dataset",
                **text("dataset"),
            ),
        )
        add(
            "preview_btn",
            gr.Button(
                scale=1, size="sm", min_width=120, elem_id="preview_btn", **button_label(lang, "train.preview_btn")
            ),
        )

    with gr.Column(visible=False, elem_id="preview_box") as preview_box:
        add("preview_box", preview_box)
        with gr.Row(equal_height=True):
            add("preview_info", gr.HTML(elem_id="preview_info"))
        add(
            "preview_table",
            gr.Dataframe(interactive=False, wrap=True, elem_id="preview_table", **text("preview_table")),
        )
        with gr.Row():
            add(
                "preview_prev",
                gr.Button(size="sm", elem_id="preview_prev", **button_label(lang, "train.preview_prev")),
            )
            add(
                "preview_next",
                gr.Button(size="sm", elem_id="preview_next", **button_label(lang, "train.preview_next")),
            )
            add(
                "preview_close",
                gr.Button(size="sm", elem_id="preview_close", **button_label(lang, "train.preview_close")),
            )
        add("preview_page", gr.State(0))

    # Hyper-parameters
    with gr.Row(equal_height=True):
        add(
            "learning_rate",
            gr.Number(value=D["learning_rate"], minimum=0, elem_id="learning_rate", **text("learning_rate")),
        )
        add(
            "num_train_epochs",
            gr.Number(value=D["num_train_epochs"], minimum=0, elem_id="num_train_epochs", **text("num_train_epochs")),
        )
        add(
            "max_grad_norm",
            gr.Number(value=D["max_grad_norm"], minimum=0, elem_id="max_grad_norm", **text("max_grad_norm")),
        )
        add(
            "max_samples",
            gr.Number(value=D["max_samples"], minimum=1, precision=0, elem_id="max_samples", **text("max_samples")),
        )
        add(
            "compute_type",
            gr.Dropdown(
                choices=choice_pairs(lang, "train.compute_type", COMPUTE_TYPES),
                value=handlers.default_compute_type(),
                elem_id="compute_type",
                **text("compute_type"),
            ),
        )

    with gr.Row(equal_height=True):
        add(
            "cutoff_len",
            gr.Slider(
                minimum=4, maximum=131072, value=D["cutoff_len"], step=1, elem_id="cutoff_len", **text("cutoff_len")
            ),
        )
        add(
            "per_device_train_batch_size",
            gr.Slider(
                minimum=1,
                maximum=1024,
                value=D["per_device_train_batch_size"],
                step=1,
                elem_id="per_device_train_batch_size",
                **text("per_device_train_batch_size"),
            ),
        )
        add(
            "gradient_accumulation_steps",
            gr.Slider(
                minimum=1,
                maximum=1024,
                value=D["gradient_accumulation_steps"],
                step=1,
                elem_id="gradient_accumulation_steps",
                **text("gradient_accumulation_steps"),
            ),
        )
        add(
            "val_size",
            gr.Slider(minimum=0, maximum=1, value=D["val_size"], step=0.001, elem_id="val_size", **text("val_size")),
        )
        add(
            "lr_scheduler_type",
            gr.Dropdown(
                choices=LR_SCHEDULERS,
                value=D["lr_scheduler_type"],
                elem_id="lr_scheduler_type",
                **text("lr_scheduler_type"),
            ),
        )

    # Extra
    with gr.Accordion(open=False, elem_id="extra_tab", **_label(lang, "train.extra_tab")) as extra_tab:
        add("extra_tab", extra_tab)
        with gr.Row(equal_height=True):
            add(
                "logging_steps",
                gr.Slider(
                    minimum=1,
                    maximum=1000,
                    value=D["logging_steps"],
                    step=1,
                    elem_id="logging_steps",
                    **text("logging_steps"),
                ),
            )
            add(
                "save_steps",
                gr.Slider(
                    minimum=10,
                    maximum=5000,
                    value=D["save_steps"],
                    step=10,
                    elem_id="save_steps",
                    **text("save_steps"),
                ),
            )
            add(
                "warmup_steps",
                gr.Slider(
                    minimum=0,
                    maximum=5000,
                    value=D["warmup_steps"],
                    step=1,
                    elem_id="warmup_steps",
                    **text("warmup_steps"),
                ),
            )
            add(
                "neftune_noise_alpha",
                gr.Slider(
                    minimum=0,
                    maximum=10,
                    value=D["neftune_noise_alpha"],
                    step=0.1,
                    elem_id="neftune_noise_alpha",
                    **text("neftune_noise_alpha"),
                ),
            )
            add("extra_args", gr.Textbox(value=D["extra_args"], lines=2, elem_id="extra_args", **text("extra_args")))
        with gr.Row(equal_height=True):
            for name in ("packing", "neat_packing", "train_on_prompt", "mask_history", "resize_vocab"):
                add(name, gr.Checkbox(value=D[name], elem_id=name, **text(name)))
            add(
                "report_to",
                gr.Dropdown(
                    choices=REPORT_TO,
                    value=D["report_to"],
                    multiselect=True,
                    allow_custom_value=True,
                    scale=2,
                    elem_id="report_to",
                    **text("report_to"),
                ),
            )

    # Freeze
    with gr.Accordion(
        open=False, visible=visible["freeze_tab"], elem_id="freeze_tab", **_label(lang, "train.freeze_tab")
    ) as freeze_tab:
        add("freeze_tab", freeze_tab)
        with gr.Row(equal_height=True):
            add(
                "freeze_trainable_layers",
                gr.Slider(
                    minimum=-128,
                    maximum=128,
                    value=D["freeze_trainable_layers"],
                    step=1,
                    elem_id="freeze_trainable_layers",
                    **text("freeze_trainable_layers"),
                ),
            )
            add(
                "freeze_trainable_modules",
                gr.Textbox(
                    value=D["freeze_trainable_modules"],
                    elem_id="freeze_trainable_modules",
                    **text("freeze_trainable_modules"),
                ),
            )
            add(
                "freeze_extra_modules",
                gr.Textbox(
                    value=D["freeze_extra_modules"], elem_id="freeze_extra_modules", **text("freeze_extra_modules")
                ),
            )

    # LoRA
    with gr.Accordion(
        open=False, visible=visible["lora_tab"], elem_id="lora_tab", **_label(lang, "train.lora_tab")
    ) as lora_tab:
        add("lora_tab", lora_tab)
        with gr.Row(equal_height=True):
            add(
                "lora_rank",
                gr.Slider(
                    minimum=1, maximum=1024, value=D["lora_rank"], step=1, elem_id="lora_rank", **text("lora_rank")
                ),
            )
            add(
                "lora_alpha",
                gr.Slider(
                    minimum=1, maximum=2048, value=D["lora_alpha"], step=1, elem_id="lora_alpha", **text("lora_alpha")
                ),
            )
            add(
                "lora_dropout",
                gr.Slider(
                    minimum=0,
                    maximum=1,
                    value=D["lora_dropout"],
                    step=0.01,
                    elem_id="lora_dropout",
                    **text("lora_dropout"),
                ),
            )
            add(
                "loraplus_lr_ratio",
                gr.Slider(
                    minimum=0,
                    maximum=64,
                    value=D["loraplus_lr_ratio"],
                    step=0.01,
                    elem_id="loraplus_lr_ratio",
                    **text("loraplus_lr_ratio"),
                ),
            )
        with gr.Row(equal_height=True):
            for name in ("create_new_adapter", "use_rslora", "use_dora", "pissa_init"):
                add(name, gr.Checkbox(value=D[name], elem_id=name, **text(name)))
            add(
                "lora_target",
                gr.Textbox(value=D["lora_target"], scale=2, elem_id="lora_target", **text("lora_target")),
            )
            add(
                "additional_target",
                gr.Textbox(
                    value=D["additional_target"], scale=2, elem_id="additional_target", **text("additional_target")
                ),
            )

    # RLHF
    with gr.Accordion(
        open=False, visible=visible["rlhf_tab"], elem_id="rlhf_tab", **_label(lang, "train.rlhf_tab")
    ) as rlhf_tab:
        add("rlhf_tab", rlhf_tab)
        with gr.Row(equal_height=True):
            add(
                "pref_beta",
                gr.Slider(
                    minimum=0,
                    maximum=1,
                    value=D["pref_beta"],
                    step=0.01,
                    visible=visible["pref_beta"],
                    elem_id="pref_beta",
                    **text("pref_beta"),
                ),
            )
            add(
                "pref_ftx",
                gr.Slider(
                    minimum=0,
                    maximum=10,
                    value=D["pref_ftx"],
                    step=0.01,
                    visible=visible["pref_ftx"],
                    elem_id="pref_ftx",
                    **text("pref_ftx"),
                ),
            )
            add(
                "pref_loss",
                gr.Dropdown(
                    choices=PREF_LOSSES,
                    value=D["pref_loss"],
                    visible=visible["pref_loss"],
                    elem_id="pref_loss",
                    **text("pref_loss"),
                ),
            )
            add(
                "reward_model",
                gr.Dropdown(
                    choices=handlers.checkpoint_choices(model_name, finetuning_type),
                    value=None,
                    allow_custom_value=True,
                    visible=visible["reward_model"],
                    elem_id="reward_model",
                    **text("reward_model"),
                ),
            )
            add(
                "ppo_score_norm",
                gr.Checkbox(
                    value=D["ppo_score_norm"],
                    visible=visible["ppo_score_norm"],
                    elem_id="ppo_score_norm",
                    **text("ppo_score_norm"),
                ),
            )
            add(
                "ppo_whiten_rewards",
                gr.Checkbox(
                    value=D["ppo_whiten_rewards"],
                    visible=visible["ppo_whiten_rewards"],
                    elem_id="ppo_whiten_rewards",
                    **text("ppo_whiten_rewards"),
                ),
            )

    # Where the job runs: devices (the queue waits for busy ones), DeepSpeed, remote code
    devices = handlers.visible_devices()
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
                **text("devices"),
            ),
        )
        add("device_count", gr.HTML(handlers.device_count_html(lang, len(devices)), elem_id="device_count"))
        add(
            "ds_stage",
            gr.Dropdown(
                choices=choice_pairs(lang, "train.ds_stage", handlers.DS_STAGES),
                value="none",
                scale=2,
                elem_id="ds_stage",
                **text("ds_stage"),
            ),
        )
        add(
            "trust_remote_code",
            gr.Checkbox(value=False, scale=1, elem_id="trust_remote_code", **text("trust_remote_code")),
        )

    # Buttons
    with gr.Row(equal_height=True):
        add("cmd_preview", gr.Button(elem_id="cmd_preview", **button_label(lang, "train.cmd_preview")))
        add("arg_save", gr.Button(elem_id="arg_save", **button_label(lang, "train.arg_save")))
        add("arg_load", gr.Button(elem_id="arg_load", **button_label(lang, "train.arg_load")))
        add("arg_export", gr.Button(elem_id="arg_export", **button_label(lang, "train.arg_export")))
        add("start", gr.Button(variant="primary", elem_id="start", **button_label(lang, "train.start")))
        add("abort", gr.Button(variant="stop", elem_id="abort", **button_label(lang, "train.abort")))

    with gr.Row(equal_height=True):
        add(
            "output_dir",
            gr.Textbox(value=handlers.new_run_name(), scale=2, elem_id="output_dir", **text("output_dir")),
        )
        add(
            "config_path",
            gr.Textbox(value=handlers.default_config_path(), scale=2, elem_id="config_path", **text("config_path")),
        )
        add(
            "export_file",
            gr.File(visible=False, interactive=False, scale=1, elem_id="export_file", **text("export_file")),
        )

    # Live view of the active or selected run (webui.handlers.Board.poll, every 2 s)
    with gr.Row(equal_height=True):
        add(
            "view_run",
            gr.Dropdown(
                choices=[], value=None, allow_custom_value=True, scale=4, elem_id="view_run", **text("view_run")
            ),
        )
        add("loss_log_y", gr.Checkbox(value=False, scale=1, elem_id="loss_log_y", **text("loss_log_y")))
    add("progress", gr.HTML(handlers.progress_html(lang, None, None), elem_id="progress"))
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
                **text("output_box"),
            ),
        )
    with gr.Row():
        add("loss_viewer", gr.Plot(elem_id="loss_viewer", **text("loss_viewer")))
        add("lr_viewer", gr.Plot(elem_id="lr_viewer", **text("lr_viewer")))
        add("reward_viewer", gr.Plot(visible=False, elem_id="reward_viewer", **text("reward_viewer")))
    return elems


def _label(lang: str, key: str) -> dict[str, Any]:
    return {"label": initial(lang, key).get("label", "")}


def bind_train(board: handlers.Board) -> None:
    """Events of the Train tab: stage / data, dataset preview, the buttons, the live view's timer."""
    m = board.manager
    top_form = [f"top.{name}" for name in TOP_ARGUMENTS]
    form = top_form + [f"train.{name}" for name in ARGUMENTS] + ["train.config_path", *JOB_PLACEMENT]
    sections = list(handlers.SECTIONS)
    data = ["train.stage", "train.dataset_dir", "train.dataset", "top.finetuning_type"]
    bind = handlers.bind

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
    bind(board, m["train.arg_save"].click, board.save_args, form, [])
    loadable = top_form + [f"train.{name}" for name in ARGUMENTS] + sections
    bind(board, m["train.arg_load"].click, board.load_args, form, loadable)
    bind(board, m["train.arg_export"].click, board.export_args, form, ["train.export_file"])

    live = list(handlers.LIVE_VIEW)
    bind(board, m["train.start"].click, board.start, form, [*live, "train.output_dir"])
    bind(board, m["train.abort"].click, board.abort, [], [])
    view = ["train.poll_state", "train.loss_log_y"]
    bind(board, m["train.view_run"].input, board.change_view, view, live)
    bind(board, m["train.loss_log_y"].input, board.change_view, view, live, api_name="change_scale")
    bind(board, m["train.view_run"].focus, board.refresh_runs, [], ["train.view_run"])
    bind(board, m["train.timer"].tick, board.poll, view, live, queue=True)

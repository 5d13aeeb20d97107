"""The top bar: language, model, finetuning method, checkpoints, quantization, template, rope scaling, booster.

Every control except `lang` sets the argument it is named after (through `webui.args.build_args`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.controls import TOP_ARGUMENTS as ARGUMENTS
from webui.handlers import choices
from webui.handlers.events import bind
from webui.manager import LANGUAGES, choice_pairs, initial

if TYPE_CHECKING:
    from webui.board import Board

__all__ = ["ARGUMENTS", "bind_top", "create_top"]

FINETUNING_TYPES = ("lora", "oft", "freeze", "full")
QUANTIZATION_BITS = ("none", "8", "4")
QUANTIZATION_METHODS = ("bnb",)  # what the core loads (bitsandbytes); tests keep this list equal to the core's
ROPE_SCALINGS = ("none", "linear", "dynamic", "yarn", "llama3")
# Unsloth is left out: the core does not support it (a YAML with use_unsloth keeps it as an extra key).
BOOSTERS = ("auto", "flashattn2", "liger_kernel")


def create_top(lang: str, saved: dict[str, Any]) -> dict[str, gr.components.Component]:
    """Build the top bar in `lang`, starting from the remembered choices `saved` (webui.config)."""
    model_name = saved.get("model_name") or choices.default_model_name()
    finetuning_type = saved.get("finetuning_type") if saved.get("finetuning_type") in FINETUNING_TYPES else "lora"

    def text(key: str) -> dict[str, Any]:
        return initial(lang, f"top.{key}")

    with gr.Row(equal_height=True):
        lang_box = gr.Dropdown(
            choices=[(name, code) for code, name in LANGUAGES.items()],
            value=lang,
            scale=1,
            min_width=120,
            elem_id="lang",
            **text("lang"),
        )
        model_name_box = gr.Dropdown(
            choices=choices.model_names(),
            value=model_name,
            allow_custom_value=True,
            scale=3,
            elem_id="model_name",
            **text("model_name"),
        )
        model_path = gr.Textbox(
            value=saved.get("model_path") or choices.model_path_of(model_name),
            scale=3,
            elem_id="model_path",
            **text("model_path"),
        )

    with gr.Row(equal_height=True):
        finetuning_box = gr.Dropdown(
            choices=choice_pairs(lang, "top.finetuning_type", FINETUNING_TYPES),
            value=finetuning_type,
            scale=1,
            elem_id="finetuning_type",
            **text("finetuning_type"),
        )
        checkpoint_path = gr.Dropdown(
            choices=choices.checkpoint_choices(model_name, finetuning_type),
            value=[],
            multiselect=True,
            allow_custom_value=True,
            scale=6,
            elem_id="checkpoint_path",
            **text("checkpoint_path"),
        )

    with gr.Row(equal_height=True):
        quantization_bit = gr.Dropdown(
            choices=choice_pairs(lang, "top.quantization_bit", QUANTIZATION_BITS),
            value="none",
            scale=1,
            elem_id="quantization_bit",
            **text("quantization_bit"),
        )
        quantization_method = gr.Dropdown(
            choices=QUANTIZATION_METHODS,
            value="bnb",
            scale=1,
            elem_id="quantization_method",
            **text("quantization_method"),
        )
        template = gr.Dropdown(
            choices=choices.template_names(),
            value=saved.get("template") or choices.default_template_of(model_name),
            allow_custom_value=True,
            scale=1,
            elem_id="template",
            **text("template"),
        )
        rope_scaling = gr.Dropdown(
            choices=choice_pairs(lang, "top.rope_scaling", ROPE_SCALINGS),
            value="none",
            scale=2,
            elem_id="rope_scaling",
            **text("rope_scaling"),
        )
        booster = gr.Dropdown(
            choices=choice_pairs(lang, "top.booster", BOOSTERS),
            value="auto",
            scale=2,
            elem_id="booster",
            **text("booster"),
        )

    return {
        "lang": lang_box,
        "model_name": model_name_box,
        "model_path": model_path,
        "finetuning_type": finetuning_box,
        "checkpoint_path": checkpoint_path,
        "quantization_bit": quantization_bit,
        "quantization_method": quantization_method,
        "template": template,
        "rope_scaling": rope_scaling,
        "booster": booster,
    }


LANG_HTML = (
    "train.device_count",
    "train.start_from",
    "eval.progress",
    "eval.poll_state",
    "export.progress",
    "export.poll_state",
)
"""What a language change redraws besides the labels (Board.relabel_html)."""


def bind_top(board: Board) -> None:
    """Events of the top bar. `.input` fires on user changes only, so values set by a handler (a loaded config,
    a model's default template) never cascade into further handlers."""
    m = board.manager
    everything = [key for key in m.labelled()]
    html = [key for key in LANG_HTML if key in m]
    shown = ("eval.view_run", "export.view_run", "top.checkpoint_path", "top.finetuning_type")
    views = [key for key in shown if key in m]
    bind(board, m["top.lang"].input, board.change_lang, ["top.lang", *views], [*everything, "train.poll_state", *html])
    bind(
        board,
        m["top.model_name"].input,
        board.change_model,
        ["top.model_name", "top.model_path", "top.finetuning_type", "top.template", *choices.PRESET_CONTROLS],
        ["top.model_path", "top.template", "top.checkpoint_path", "train.reward_model", *choices.PRESET_CONTROLS],
    )
    bind(
        board,
        m["top.model_path"].blur,
        board.change_model_path,
        ["top.model_name", "top.model_path", "top.finetuning_type"],
        ["top.checkpoint_path", "train.reward_model"],
    )
    bind(board, m["top.template"].input, board.change_template, ["top.template"], [])
    sections = list(choices.SECTIONS)
    bind(
        board,
        m["top.finetuning_type"].input,
        board.change_method,
        ["top.model_name", "top.model_path", "top.finetuning_type", "train.stage"],
        ["top.checkpoint_path", "train.reward_model", *sections],
    )
    bind(
        board,
        m["top.checkpoint_path"].focus,
        board.refresh_checkpoints,
        ["top.model_name", "top.model_path", "top.finetuning_type"],
        ["top.checkpoint_path"],
    )

"""The Chat tab: load the top bar's model with its adapters into a chat worker process (never into the board),
then chat with answers streaming token by token; system prompt, tools (JSON), generation settings, clear. Side by
side, a second worker holds the same model with other adapters (or none: base vs fine-tuned) and answers the same
message at the same time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr

from webui.controls import TOP_ARGUMENTS
from webui.handlers.events import bind, bind_stream
from webui.manager import button_label, choice_pairs, initial

if TYPE_CHECKING:
    from webui.board import Infer

INFER_DTYPES = ("auto", "float16", "bfloat16", "float32")
ROLES = ("user", "observation")


def create_chat_tab(lang: str, top: dict[str, Any]) -> dict[str, gr.components.Component]:
    """Build the Chat tab in `lang`; `top` (the top bar's components) gives the checkpoints to compare."""
    elems: dict[str, Any] = {}

    def text(key: str) -> dict[str, Any]:
        return initial(lang, f"chat.{key}")

    def add(name: str, component: Any) -> Any:
        elems[name] = component
        return component

    with gr.Row(equal_height=True):
        add(
            "infer_dtype",
            gr.Dropdown(
                choices=choice_pairs(lang, "chat.infer_dtype", INFER_DTYPES),
                value="auto",
                scale=1,
                elem_id="chat_infer_dtype",
                **text("infer_dtype"),
            ),
        )
        add("side_by_side", gr.Checkbox(value=False, scale=1, elem_id="chat_side_by_side", **text("side_by_side")))
        add(
            "compare_path",
            gr.Dropdown(
                choices=top["checkpoint_path"].choices,
                value=[],
                multiselect=True,
                allow_custom_value=True,
                visible=False,
                scale=3,
                elem_id="chat_compare_path",
                **text("compare_path"),
            ),
        )
    with gr.Row():
        add("load", gr.Button(variant="primary", elem_id="chat_load", **button_label(lang, "chat.load")))
        add("unload", gr.Button(elem_id="chat_unload", **button_label(lang, "chat.unload")))
    add("info", gr.Textbox(lines=3, max_lines=6, interactive=False, elem_id="chat_info", **text("info")))

    with gr.Row(equal_height=True):
        add("chatbot", gr.Chatbot(height=420, elem_id="chatbot", **text("chatbot")))
        add("chatbot_b", gr.Chatbot(height=420, visible=False, elem_id="chatbot_b", **text("chatbot_b")))
    add("history", gr.State({}))  # what each model saw, by slot: the chat boxes show tool calls differently
    with gr.Row():
        with gr.Column(scale=4):
            add("system", gr.Textbox(lines=1, elem_id="chat_system", **text("system")))
            add("tools", gr.Textbox(lines=2, elem_id="chat_tools", **text("tools")))
            with gr.Row(equal_height=True):
                add(
                    "role",
                    gr.Dropdown(
                        choices=choice_pairs(lang, "chat.role", ROLES),
                        value="user",
                        scale=1,
                        min_width=120,
                        elem_id="chat_role",
                        **text("role"),
                    ),
                )
                add("query", gr.Textbox(lines=3, scale=5, elem_id="chat_query", **text("query")))
            with gr.Row():
                add("submit", gr.Button(variant="primary", elem_id="chat_submit", **button_label(lang, "chat.submit")))
                add("stop", gr.Button(variant="stop", elem_id="chat_stop", **button_label(lang, "chat.stop")))
                add("clear", gr.Button(elem_id="chat_clear", **button_label(lang, "chat.clear")))
        with gr.Column(scale=1):
            add(
                "max_new_tokens",
                gr.Slider(
                    minimum=8, maximum=8192, value=512, step=1, elem_id="chat_max_new_tokens", **text("max_new_tokens")
                ),
            )
            add(
                "top_p",
                gr.Slider(minimum=0.01, maximum=1.0, value=0.7, step=0.01, elem_id="chat_top_p", **text("top_p")),
            )
            add(
                "temperature",
                gr.Slider(
                    minimum=0, maximum=1.5, value=0.95, step=0.01, elem_id="chat_temperature", **text("temperature")
                ),
            )
            add("seed", gr.Number(value=-1, precision=0, elem_id="chat_seed", **text("seed")))
    return elems


def bind_chat(infer: Infer) -> None:
    """Events of the Chat tab: load / unload (streaming the loading steps), submit (streaming the answers), stop,
    clear, the side-by-side switch."""
    board = infer.board
    m = board.manager
    top_form = [f"top.{name}" for name in TOP_ARGUMENTS]
    load_in = [*top_form, "chat.infer_dtype", "chat.side_by_side", "chat.compare_path"]
    bind_stream(board, m["chat.load"].click, infer.chat_load, load_in, ["chat.info"])
    bind(board, m["chat.unload"].click, infer.chat_unload, [], ["chat.info"])
    bind(
        board,
        m["chat.side_by_side"].input,
        infer.chat_side,
        ["chat.side_by_side"],
        ["chat.chatbot_b", "chat.compare_path"],
    )
    send_in = [
        "chat.query",
        "chat.role",
        "chat.system",
        "chat.tools",
        "chat.side_by_side",
        "chat.chatbot",
        "chat.chatbot_b",
        "chat.history",
        "chat.max_new_tokens",
        "chat.top_p",
        "chat.temperature",
        "chat.seed",
    ]
    send_out = ["chat.chatbot", "chat.chatbot_b", "chat.history", "chat.query"]
    bind_stream(board, m["chat.submit"].click, infer.chat_send, send_in, send_out)
    bind_stream(board, m["chat.query"].submit, infer.chat_send, send_in, send_out, api_name="chat_enter")
    compare = ["top.model_name", "top.model_path", "top.finetuning_type"]
    bind(board, m["chat.compare_path"].focus, infer.chat_compare_choices, compare, ["chat.compare_path"])
    bind(board, m["chat.stop"].click, infer.chat_stop, [], [])
    bind(board, m["chat.clear"].click, infer.chat_clear, [], send_out)

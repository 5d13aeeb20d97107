"""The controls every job tab shares (Evaluate & Predict, Export): Start / Abort, the run it shows, the 2-second
timer that follows it, a progress bar and a log box."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from webui.handlers.render import progress_html
from webui.manager import button_label, initial


def add_job_view(add: Callable[[str, Any], Any], lang: str, tab: str) -> None:
    """Register `start`, `abort`, `view_run`, `poll_state`, `timer`, `progress` and `output_box` through `add`;
    labels come from `<tab>.<name>`, element ids are `<tab>_<name>`."""
    with gr.Row():
        add("start", gr.Button(variant="primary", elem_id=f"{tab}_start", **button_label(lang, f"{tab}.start")))
        add("abort", gr.Button(variant="stop", elem_id=f"{tab}_abort", **button_label(lang, f"{tab}.abort")))
    add("view_run", gr.State(None))
    add("poll_state", gr.State({}))
    add("timer", gr.Timer(2.0))
    add("progress", gr.HTML(progress_html(lang, None, None), elem_id=f"{tab}_progress"))
    add(
        "output_box",
        gr.Textbox(
            lines=8,
            max_lines=8,
            autoscroll=True,
            interactive=False,
            buttons=["copy"],
            elem_id=f"{tab}_output_box",
            **initial(lang, f"{tab}.output_box"),
        ),
    )

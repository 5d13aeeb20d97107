"""One factory for the argument controls declared in webui/controls.py: the component, its starting value
(webui.args.FORM_DEFAULTS), element id and labels (locales) all come from the control's name."""

from __future__ import annotations

from typing import Any

import gradio as gr

from webui.args import FORM_DEFAULTS
from webui.controls import Control, Row
from webui.manager import choice_pairs, initial

COMPONENTS = {
    "number": gr.Number,
    "slider": gr.Slider,
    "dropdown": gr.Dropdown,
    "checkbox": gr.Checkbox,
    "textbox": gr.Textbox,
}


def make(control: Control, lang: str, tab: str = "train", **overrides: Any) -> gr.components.Component:
    """The component of `control` in `lang`; `overrides` replace declared options (a value known only at build
    time, choices read from the saves folder, visibility)."""
    options = {**control.options, **overrides}
    if "choices" in options:
        choices = list(options["choices"])
        options["choices"] = choice_pairs(lang, f"{tab}.{control.name}", choices) if control.labelled else choices
    options.setdefault("value", FORM_DEFAULTS.get(control.name))
    return COMPONENTS[control.kind](elem_id=control.name, **options, **initial(lang, f"{tab}.{control.name}"))


def make_rows(
    rows: tuple[Row, ...], lang: str, add: Any, overrides: dict[str, dict[str, Any]], tab: str = "train"
) -> None:
    """Each row of controls in a gr.Row, registered through `add(name, component)`."""
    for row in rows:
        with gr.Row(equal_height=True):
            for control in row:
                add(control.name, make(control, lang, tab, **overrides.get(control.name, {})))

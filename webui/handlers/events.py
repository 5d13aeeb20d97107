"""How a handler meets gradio: handlers are plain functions of "tab.elem" keys, `bind` wires one to an event.

A handler takes `values` ({"tab.elem": value}) and returns updates ({"tab.elem": value or gr.update(...)});
components left out of the result keep their state. Alerts go under the ALERTS key: `bind()` turns them into
toasts and lines in the log box, so a handler never raises at the user and tests need no browser. `bind_stream`
does the same for a handler that yields updates (a streamed chat answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from html import escape
from typing import Any

import gradio as gr

from webui.manager import alert

logger = logging.getLogger(__name__)

ALERTS = "_alerts"
"""Key of the alert list in a handler's result: [(level, text)], level "info" or "warning"."""

Values = dict[str, Any]
Updates = dict[str, Any]
Alerts = list[tuple[str, str]]

MAX_NOTES = 20
"""The log box keeps this many of the session's own messages."""


def compose_output(log_text: str, notes: list[str]) -> str:
    """The log box: the job's log tail, then the board's own messages of this session (validation, refusals)."""
    if not notes:
        return log_text
    board = "\n".join(f"[board] {note}" for note in notes)
    return f"{log_text.rstrip()}\n{board}" if log_text else board


def bind(
    board: Any,
    event: Callable[..., Any],
    handler: Callable[[Values], Updates],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Connect `handler` to a gradio event (`component.click`, `timer.tick`, ...) by "tab.elem" keys.

    Every bound handler also receives the language and the session's notes and may return alerts: those become
    toasts and lines in the log box, and a handler that crashes shows a toast instead of a traceback.
    """

    manager = board.manager
    input_keys = set(inputs) | {"top.lang", "train.notes", "train.view_run"}
    output_keys = set(outputs) | {"train.notes", "train.output_box"}
    input_set = {manager[key] for key in input_keys}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> dict[Any, Any]:
        by_key = manager.by_key(values)
        lang = by_key.get("top.lang")
        try:
            updates = dict(handler(by_key))
        except Exception as err:
            logger.exception("Handler %s failed", getattr(handler, "__name__", handler))
            updates = {ALERTS: [("warning", alert(lang, "internal_error", error=f"{type(err).__name__}: {err}"))]}
        alerts = updates.pop(ALERTS, [])
        if alerts:
            notes = list(updates.get("train.notes", by_key.get("train.notes")) or [])
            for level, text in alerts:
                (gr.Warning if level == "warning" else gr.Info)(escape(text).replace("\n", "<br>"))
                notes.append(text)
            updates["train.notes"] = notes[-MAX_NOTES:]
            if "train.output_box" not in updates:
                updates["train.output_box"] = board.current_output(by_key.get("train.view_run"), notes)
        result = {manager[key]: value for key, value in updates.items() if key in output_keys}
        # gradio reads an empty dict as one output value, not as "no updates": skip one output explicitly.
        return result or {output_list[0]: gr.skip()}

    kwargs.setdefault("show_progress", "hidden")
    kwargs.setdefault("api_name", getattr(handler, "__name__", None))
    return event(run, inputs=input_set, outputs=output_list, **kwargs)


def bind_stream(
    board: Any,
    event: Callable[..., Any],
    handler: Callable[[Values], Iterable[Updates]],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Like `bind`, for a handler that yields updates (a streamed answer, loading steps): each yield
    reaches the browser at once; alerts become toasts; a crash becomes a toast, never a traceback."""

    manager = board.manager
    output_keys = set(outputs)
    input_set = {manager[key] for key in set(inputs) | {"top.lang"}}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
        by_key = manager.by_key(values)
        sent = False
        try:
            for updates in handler(by_key):
                updates = dict(updates)
                for level, text in updates.pop(ALERTS, []):
                    (gr.Warning if level == "warning" else gr.Info)(escape(text).replace("\n", "<br>"))
                result = {manager[key]: value for key, value in updates.items() if key in output_keys}
                if result:
                    sent = True
                    yield result
        except Exception as err:
            logger.exception("Handler %s failed", getattr(handler, "__name__", handler))
            gr.Warning(escape(alert(by_key.get("top.lang"), "internal_error", error=f"{type(err).__name__}: {err}")))
        if not sent:
            yield {output_list[0]: gr.skip()}

    kwargs.setdefault("show_progress", "hidden")
    kwargs.setdefault("api_name", getattr(handler, "__name__", None))
    return event(run, inputs=input_set, outputs=output_list, **kwargs)

"""How a handler meets gradio: handlers are plain functions of "tab.elem" keys, `bind` wires one to an event.

A handler takes `values` ({"tab.elem": value}) and returns updates ({"tab.elem": value or gr.update(...)});
components left out of the result keep their state. Alerts go under the ALERTS key: `bind()` turns them into
toasts and lines in the log box, so a handler never raises at the user and tests need no browser. `bind_stream`
does the same for a handler that yields updates (a streamed chat answer).

Before any handler runs, both check its path fields (webui.handlers.base.PATH_FIELDS) against the board's roots:
a path outside them is refused with one toast and the handler never sees it (a timer tick, `quiet`, skips silently).
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


def note_text(note: Any) -> str:
    """A session note's text (a note is its text, or {"text", "at"} with the log size it was made at)."""
    return str(note.get("text", "")) if isinstance(note, dict) else str(note)


def compose_output(log_text: str, notes: list[Any], end: int | None = None, run: str | None = None) -> str:
    """The log box: the job's log tail with the board's own messages of this session (validation, refusals, "Job
    started") as `[board]` lines, in time order. `end` is the size of run `run`'s log where `log_text` ends; a note
    made about that run when its log was `at` bytes long goes after the line that ended there; other notes last."""
    if not notes:
        return log_text
    lines = log_text.splitlines()
    after: dict[int, list[str]] = {}  # line count before the note -> notes
    if end is not None:
        line_ends, position = [], end
        for line in reversed(lines):
            line_ends.append(position)
            position -= len(line.encode("utf-8", errors="replace")) + 1
        line_ends.reverse()
    for note in notes:
        at = note.get("at") if isinstance(note, dict) and note.get("run") == run else None
        count = len(lines)
        if end is not None and isinstance(at, int) and at < end:
            count = sum(1 for line_end in line_ends if line_end <= at)
        after.setdefault(count, []).append(f"[board] {note_text(note)}")
    shown: list[str] = []
    for index in range(len(lines) + 1):
        shown.extend(after.get(index, []))
        if index < len(lines):
            shown.append(lines[index])
    return "\n".join(shown)


def bind(
    board: Any,
    event: Callable[..., Any] | list[Any],
    handler: Callable[[Values], Updates],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Connect `handler` to a gradio event (`component.click`, `timer.tick`, ...) by "tab.elem" keys.

    `event` may be a list of triggers (`[box.change, other.change]`): one gradio event then serves them all, with
    trigger_mode "always_last", so the handler's last run reads the fields' latest values. Bind a handler to each of
    several fields separately and two runs may overlap, the one that started with older values finishing last.

    Every bound handler also receives the language and the session's notes and may return alerts: those become
    toasts and lines in the log box, and a handler that crashes shows a toast instead of a traceback. Its path
    fields among `inputs` are checked first (`board.refusal`); `quiet` (timer ticks) skips a refused tick silently.
    """

    manager = board.manager
    inputs = list(inputs)
    quiet = kwargs.pop("quiet", False)
    input_keys = set(inputs) | {"top.lang", "train.notes", "train.view_run"}
    implicit = sorted(input_keys - set(inputs))
    output_keys = set(outputs) | {"train.notes", "train.output_box"}
    input_set = {manager[key] for key in input_keys}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> dict[Any, Any]:
        by_key = manager.by_key(values)
        lang = by_key.get("top.lang")
        try:
            for key in implicit:  # read for the log box only: a refused value is read as none, without a toast
                if board.refusal(by_key, [key]):
                    by_key[key] = None
            refused = board.refusal(by_key, inputs)
            if refused:
                updates = {} if quiet else {ALERTS: refused}
            else:
                updates = dict(handler(by_key))
        except Exception as err:
            logger.exception("Handler %s failed", getattr(handler, "__name__", handler))
            updates = {ALERTS: [("warning", alert(lang, "internal_error", error=f"{type(err).__name__}: {err}"))]}
        alerts = updates.pop(ALERTS, [])
        if alerts:
            notes = list(updates.get("train.notes", by_key.get("train.notes")) or [])
            viewed = updates.get("train.view_run", by_key.get("train.view_run"))
            if isinstance(viewed, dict):  # a gr.update: the run the log box shows next
                viewed = viewed.get("value", by_key.get("train.view_run"))
            at = board.log_size(viewed)
            for level, text in alerts:
                (gr.Warning if level == "warning" else gr.Info)(escape(text).replace("\n", "<br>"))
                notes.append({"text": text, "run": str(viewed) if viewed else None, "at": at})
            updates["train.notes"] = notes[-MAX_NOTES:]
            if "train.output_box" not in updates:
                updates["train.output_box"] = board.current_output(by_key.get("train.view_run"), notes)
        result = {manager[key]: value for key, value in updates.items() if key in output_keys}
        # gradio reads an empty dict as one output value, not as "no updates": skip one output explicitly.
        return result or {output_list[0]: gr.skip()}

    return _connect(event, run, handler, inputs, input_set, output_list, kwargs)


def bind_stream(
    board: Any,
    event: Callable[..., Any] | list[Any],
    handler: Callable[[Values], Iterable[Updates]],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Like `bind`, for a handler that yields updates (a streamed answer, loading steps): each yield
    reaches the browser at once; alerts become toasts; a crash becomes a toast, never a traceback."""

    manager = board.manager
    inputs = list(inputs)
    output_keys = set(outputs)
    input_set = {manager[key] for key in set(inputs) | {"top.lang"}}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
        by_key = manager.by_key(values)
        sent = False
        try:
            refused = board.refusal(by_key, inputs)
            for updates in [{ALERTS: refused}] if refused else handler(by_key):
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

    return _connect(event, run, handler, inputs, input_set, output_list, kwargs)


def _connect(
    event: Callable[..., Any] | list[Any],
    run: Callable[..., Any],
    handler: Callable[..., Any],
    inputs: list[str],
    input_set: set[Any],
    output_list: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    """Wire `run` (bind's or bind_stream's wrapper of `handler`) to the event, or to one "always_last" event over a
    list of triggers; the wrapper names its handler and checked inputs for the tests."""
    run.checked_inputs = tuple(inputs)  # type: ignore[attr-defined] - what the field check covers (tests read it)
    run.handler = handler  # type: ignore[attr-defined] - the handler it runs (tests read it)
    kwargs.setdefault("show_progress", "hidden")
    kwargs.setdefault("api_name", getattr(handler, "__name__", None))
    if isinstance(event, list):
        kwargs.setdefault("trigger_mode", "always_last")
        return gr.on(event, run, inputs=input_set, outputs=output_list, **kwargs)
    return event(run, inputs=input_set, outputs=output_list, **kwargs)

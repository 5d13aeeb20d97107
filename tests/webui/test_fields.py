"""Every field the board receives, through the events the browser fires (issue 19, items 1 and 2): each text field is
either a path field, checked against the roots before any handler runs, or listed with why it is no path; every
event refuses every path field outside the roots, Chat's included, with one toast naming the field; and NUL, very
long and non-UTF-8 strings in any text field of any tab end in a readable message, never a traceback.

The events are called as gradio calls them (the bound function with {component: value}); jobs run `true`, chat
workers are fakes, so nothing trains or loads a model.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from webui.handlers.base import PATH_FIELDS, TEXT_FIELDS

QUIET = {"poll", "eval_poll", "export_poll"}
"""Timer ticks: a refused tick is skipped without a toast (the user is told once, by the event they fired)."""


class FakeWorker:
    """A chat worker that loads anything at once and answers "ok" (the real one is tested in test_tab_chat.py)."""

    def __init__(self) -> None:
        self.alive = False
        self.loaded: dict[str, Any] | None = None
        self.loads: list[dict[str, Any]] = []

    def start(self) -> FakeWorker:
        self.alive = True
        return self

    def load(self, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.loads.append(dict(args))
        self.loaded = {"event": "ready", "model": args["model_name_or_path"], "adapters": [], "device": "cpu"}
        yield self.loaded

    def stream(self, messages: list[dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
        json.dumps(messages, ensure_ascii=False).encode("utf-8")  # what the real worker's pipe does with the text
        yield {"event": "token", "text": "ok"}
        yield {"event": "done", "text": "ok"}

    def stop(self) -> None:
        pass

    def close(self, timeout: float = 3.0) -> None:
        self.alive = False


@pytest.fixture(scope="module")
def board_ui(board_home: Path) -> Iterator[Any]:
    """The board with jobs that exit at once (`true`) and fake chat workers."""
    from webui.app import create_ui
    from webui.runner import Runner

    runner = Runner(saves_root=board_home / "saves", grace_s=2.0, job_command=["true"], devices=[])
    demo = create_ui("en", runner=runner)
    workers: list[FakeWorker] = []

    def factory() -> FakeWorker:
        workers.append(FakeWorker())
        return workers[-1]

    demo.infer._worker_factory = factory
    demo.infer.export_runner = Runner(
        saves_root=board_home / "saves" / ".export", grace_s=2.0, job_command=["true"], devices=[]
    )
    demo.fake_workers = workers
    # The Calibrate button would run two measured training jobs (a minute each) for every event fired here.
    from webui.handlers import plan

    calibrate, plan.CALIBRATE_COMMAND = plan.CALIBRATE_COMMAND, [sys.executable, "-c", "print('calibrated')"]
    yield demo
    plan.CALIBRATE_COMMAND = calibrate
    for job_runner in (runner, demo.infer.export_runner):
        for run_dir in job_runner.active():
            job_runner.abort(run_dir)
            job_runner.wait(run_dir, timeout=10)
    demo.infer.close()


@pytest.fixture
def toasts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The toasts the events show, as (level, text)."""
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(gr, "Warning", lambda text, *a, **k: shown.append(("warning", str(text))))
    monkeypatch.setattr(gr, "Info", lambda text, *a, **k: shown.append(("info", str(text))))
    return shown


def events(ui: Any) -> list[tuple[str, Any, list[str], list[str]]]:
    """(api name, bound function, input keys, the keys its handler declared) of every event the board binds. The
    keys not declared (the language, the session's notes, the viewed run) only place the event's notes in the log
    box; a refused viewed run is read as none there."""
    manager = ui.board.manager
    found = []
    for block_fn in ui.fns.values():
        if not getattr(block_fn.fn, "__qualname__", "").startswith(("bind.", "bind_stream.")):
            continue
        keys = [manager.key_of(component) for component in block_fn.inputs]
        found.append((block_fn.api_name, block_fn.fn, keys, list(block_fn.fn.checked_inputs)))
    return found


def fire(ui: Any, fn: Any, keys: list[str], **changes: Any) -> list[dict[str, Any]]:
    """Call an event as gradio does, with the components' own values except `changes` ({"tab.elem": value})."""
    manager = ui.board.manager
    values = {manager[key]: changes.get(key, getattr(manager[key], "value", None)) for key in keys}
    result = fn(values)
    return list(result) if inspect.isgenerator(result) else [result]


def changed(ui: Any, results: list[dict[Any, Any]]) -> set[str]:
    """The components an event updated, besides the log box and notes every refusal writes (gr.skip() is none)."""
    manager = ui.board.manager
    skip = gr.skip()
    return {
        manager.key_of(component)
        for result in results
        for component, value in result.items()
        if value != skip and manager.key_of(component) not in ("train.notes", "train.output_box")
    }


def text_fields(ui: Any) -> list[str]:
    """Components a browser (or an API client) can send any text through."""
    manager = ui.board.manager
    return [
        key
        for key in manager
        if isinstance(manager[key], gr.Textbox)
        or (isinstance(manager[key], gr.Dropdown) and manager[key].allow_custom_value)
    ]


# --- item 1: one path check, every field -----------------------------------------------------------------------------


def test_every_text_field_is_a_checked_path_field_or_says_why_it_is_no_path(board_ui: Any) -> None:
    manager = board_ui.board.manager
    unclassified = [key for key in text_fields(board_ui) if key not in PATH_FIELDS and key not in TEXT_FIELDS]
    assert unclassified == [], "add these to PATH_FIELDS (webui/handlers/base.py) or to TEXT_FIELDS with why"
    assert not set(PATH_FIELDS) & set(TEXT_FIELDS)
    assert [key for key in [*PATH_FIELDS, *TEXT_FIELDS] if key not in manager] == []
    # The fields named like paths are path fields, whatever their widget.
    named = [key for key in manager if key.rsplit(".", 1)[1].endswith(("_path", "_dir", "view_run", "reward_model"))]
    assert set(named) <= set(PATH_FIELDS), set(named) - set(PATH_FIELDS)


def escapes(board_home: Path, outside: Path) -> list[str]:
    """Paths that lie outside the roots however a field reads them (from the working directory, or under the
    model's saves folder): up, URL-encoded up, double-encoded up, absolute, a symlink out, a NUL."""
    link = board_home / "data" / "escape"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(outside)
    up = "../" * 10
    return [
        f"{up}etc",
        "%2e%2e%2f" * 10 + "etc",
        "%252e%252e%252f" * 10 + "etc",
        str(outside),
        str(link / "secret.json"),
        f"{board_home}/data\x00/{up}etc",
    ]


def field_value(key: str, payload: str) -> Any:
    if key == "train.extra_args":
        return json.dumps({"output_dir": payload})
    if key in ("top.checkpoint_path", "chat.compare_path", "train.reward_model"):
        return [payload]
    return payload


def test_every_event_refuses_every_path_field_outside_the_roots_before_its_handler(
    board_ui: Any, board_home: Path, tmp_path_factory: pytest.TempPathFactory, toasts: list, caplog
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.json").write_text('{"password": "hunter2"}')
    checked: set[str] = set()
    for name, fn, keys, declared in events(board_ui):
        for key in [key for key in declared if key in PATH_FIELDS]:
            for payload in escapes(board_home, outside):
                toasts.clear()
                results = fire(board_ui, fn, keys, **{key: field_value(key, payload)})
                shown = [text for level, text in toasts if level == "warning"]
                # Nothing but the log box changed (the handler never ran) and, but for a timer tick, one toast
                # names the field as the checks know it.
                assert changed(board_ui, results) == set(), (name, key, payload)
                if name in QUIET:
                    assert shown == [], (name, key, payload)
                    continue
                assert len(shown) == 1 and shown[0].startswith("Refused"), (name, key, payload, shown)
                assert PATH_FIELDS[key][0] in shown[0] or "extra_args" in key, (name, key, shown[0])
                assert "hunter2" not in json.dumps([list(result.values()) for result in results], default=str)
            checked.add(key)
    assert checked == set(PATH_FIELDS), set(PATH_FIELDS) - checked  # every path field reaches some event
    assert board_ui.fake_workers == [] or all(worker.loads == [] for worker in board_ui.fake_workers)
    assert not [record for record in caplog.records if record.exc_info]


def test_chat_loads_nothing_outside_the_roots_for_either_model(
    board_ui: Any, board_home: Path, tmp_path_factory: pytest.TempPathFactory, toasts: list
) -> None:
    """Called as the Chat tab's handler, not only through the event: model A's path and adapters, and side by
    side model B's adapters, are refused before any worker loads them (the README's promise)."""
    outside = tmp_path_factory.mktemp("outside-chat")
    infer = board_ui.infer
    manager = board_ui.board.manager
    base = {key: getattr(manager[key], "value", None) for key in manager}
    base.update({"top.model_name": "Custom", "top.model_path": "demo", "chat.side_by_side": True})
    for payload in escapes(board_home, outside):
        for changes in (
            {"top.model_path": payload},
            {"top.checkpoint_path": [payload]},
            {"chat.compare_path": [payload]},
        ):
            before = sum(len(worker.loads) for worker in board_ui.fake_workers)
            updates = list(infer.chat_load({**base, **changes}))
            alerts = [text for update in updates for _, text in update.get("_alerts", [])]
            assert len(alerts) == 1 and alerts[0].startswith("Refused"), (changes, alerts)
            assert sum(len(worker.loads) for worker in board_ui.fake_workers) == before, changes
    # A model under the roots loads.
    updates = list(infer.chat_load({**base, "chat.side_by_side": False}))
    assert "[A] Ready: demo" in updates[-1]["chat.info"]


# --- item 2: no traceback for any string in any text field -----------------------------------------------------------

HOSTILE = {
    "nul": "a\x00b/../\x00",
    "long": "x" * 100_000,
    "not utf-8": "caf\udce9 \udcff\udcfe",
    "deep json": "[" * 50_000 + "]" * 50_000,  # the JSON fields (extra_args, tools) nest past the parser's limit
    "deep json object": '{"a": ' * 50_000 + "1" + "}" * 50_000,
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_nul_long_and_non_utf8_strings_in_every_text_field_give_a_message_not_a_traceback(
    board_ui: Any, kind: str, toasts: list, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    payload = HOSTILE[kind]
    fields = set(text_fields(board_ui))
    sent = 0
    lists = ("top.checkpoint_path", "chat.compare_path", "train.reward_model", "train.dataset", "eval.dataset")
    failures = []
    for name, fn, keys, declared in events(board_ui):
        for key in [key for key in keys if key in fields]:
            toasts.clear()
            # A message to send, so Chat's submit reads its other fields too (an empty one returns at once).
            fire(board_ui, fn, keys, **{"chat.query": "hi", key: [payload] if key in lists else payload})
            sent += 1
            crashed = [text[:300] for _, text in toasts if "Something went wrong" in text]
            if crashed:
                failures.append((name, key, crashed))
            if kind == "not utf-8" and name not in QUIET and key in declared:
                refused = [text for _, text in toasts if "not valid Unicode" in text]
                if len(refused) != 1 or key.split(".")[1] not in refused[0]:
                    failures.append((name, key, [text[:300] for _, text in toasts]))
    assert failures == []
    tracebacks = [f"{record.name}: {record.getMessage()[:300]}" for record in caplog.records if record.exc_info]
    assert tracebacks == []
    assert sent > 100  # every tab's events took part

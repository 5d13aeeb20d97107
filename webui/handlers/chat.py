"""What the Chat tab does: load the top bar's model (and, side by side, a second set of adapters) into chat
worker processes, stream their answers token by token, stop, clear, unload.

Workers are `core.chat_client.ChatWorker` processes (one model each; slot "a", and "b" side by side), so the board
never imports torch and a crashed worker only ends the chat. The layout is webui/tabs/chat.py.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from core.chat_client import ChatWorker
from webui.handlers.choices import checkpoint_choices
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.jobview import InferBase, number
from webui.manager import alert
from webui.paths import PathRefused

logger = logging.getLogger(__name__)

SLOTS = ("a", "b")
STREAM_INTERVAL_S = 0.05
"""Tokens arriving faster than this are sent to the browser together (a tiny model makes hundreds a second)."""


class ChatHandlers(InferBase):
    """The Chat tab's handlers (mixed into webui.board.Infer)."""

    def _worker(self, slot: str) -> Any:
        with self._lock:
            worker = self._workers.get(slot)
            if worker is None or not worker.alive:
                if self._worker_factory is not None:
                    worker = self._worker_factory()
                else:
                    worker = ChatWorker()
                self._workers[slot] = worker.start()
            return worker

    def loaded(self, slot: str) -> dict[str, Any] | None:
        worker = self._workers.get(slot)
        return worker.loaded if worker is not None and worker.alive else None

    def chat_load(self, values: Values) -> Iterator[Updates]:
        """Load -> the top bar's model and adapters (model A) and, side by side, the same model with the compared
        adapters (model B), each in its worker; the status box follows the loading steps."""
        lang = values.get("top.lang")
        plan = [("a", None)]
        if values.get("chat.side_by_side"):
            plan.append(("b", values.get("chat.compare_path") or []))
        lines: list[str] = []
        loads = []
        for slot, checkpoints in plan:  # both models' paths are checked before either worker loads anything
            try:
                args = self.model_args(values, checkpoints)
            except PathRefused as err:
                yield {ALERTS: [("warning", alert(lang, "path_refused", problems=err))]}
                return
            except ValueError as err:
                yield {ALERTS: [("warning", alert(lang, "bad_form", error=err))]}
                return
            args["infer_dtype"] = values.get("chat.infer_dtype") or "auto"
            loads.append((slot, args))
        for slot, args in loads:
            name = slot.upper()
            lines.append(alert(lang, "chat_loading", slot=name, model=args["model_name_or_path"]))
            yield {"chat.info": "\n".join(lines)}
            worker = self._worker(slot)
            for event in worker.load(args):
                kind = event.get("event")
                if kind == "progress":
                    lines.append(f"[{name}] {event.get('message', '')}")
                elif kind == "ready":
                    adapters = ", ".join(event.get("adapters") or []) or "-"
                    lines.append(
                        alert(
                            lang,
                            "chat_ready",
                            slot=name,
                            model=event.get("model"),
                            adapters=adapters,
                            device=event.get("device"),
                            template=event.get("template"),
                        )
                    )
                elif kind == "error":
                    message = alert(lang, "chat_load_failed", slot=name, error=event.get("message", ""))
                    lines.append(message)
                    yield {"chat.info": "\n".join(lines), ALERTS: [("warning", message)]}
                    return
                yield {"chat.info": "\n".join(lines)}
        if len(plan) == 1 and self._workers.get("b") is not None:
            self._close("b")  # side by side was switched off: free the second model

    def chat_unload(self, values: Values) -> Updates:
        """Unload -> every chat worker ends, which frees its memory."""
        for slot in SLOTS:
            self._close(slot)
        return {"chat.info": alert(values.get("top.lang"), "chat_unloaded")}

    def _close(self, slot: str) -> None:
        with self._lock:
            worker = self._workers.pop(slot, None)
        if worker is not None:
            worker.close()

    def close(self) -> None:
        """End every chat worker (board shutdown)."""
        for slot in SLOTS:
            self._close(slot)

    def chat_compare_choices(self, values: Values) -> Updates:
        """chat.compare_path opened -> the saved adapters of the top bar's model and method, re-read."""
        choices = checkpoint_choices(
            values.get("top.model_name") or "",
            values.get("top.finetuning_type") or "lora",
            values.get("top.model_path"),
        )
        return {"chat.compare_path": gr.update(choices=choices)}

    def chat_stop(self, values: Values) -> Updates:
        """Stop -> the answers being streamed end after their current token."""
        for slot in SLOTS:
            worker = self._workers.get(slot)
            if worker is not None and worker.alive:
                worker.stop()
        return {}

    def chat_clear(self, values: Values) -> Updates:
        return {"chat.chatbot": [], "chat.chatbot_b": [], "chat.history": {}, "chat.query": ""}

    def chat_side(self, values: Values) -> Updates:
        """chat.side_by_side -> the second chat box and its adapter choice shown or hidden."""
        shown = bool(values.get("chat.side_by_side"))
        return {"chat.chatbot_b": gr.update(visible=shown), "chat.compare_path": gr.update(visible=shown)}

    def chat_send(self, values: Values) -> Iterator[Updates]:
        """Submit -> the message goes to model A (and B side by side); their answers stream token by token into the
        chat boxes; a tool call is shown as one. Outputs: chat.chatbot, chat.chatbot_b, chat.history, chat.query."""
        lang = values.get("top.lang")
        query = str(values.get("chat.query") or "")
        if not query.strip():
            return
        slots = ["a", "b"] if values.get("chat.side_by_side") else ["a"]
        tools = str(values.get("chat.tools") or "").strip() or None
        if tools is not None:
            try:
                json.loads(tools)
            except json.JSONDecodeError as err:
                yield {ALERTS: [("warning", alert(lang, "chat_bad_tools", error=f"{err.msg} at line {err.lineno}"))]}
                return
            except RecursionError:
                yield {ALERTS: [("warning", alert(lang, "chat_bad_tools", error="nested too deeply to read"))]}
                return
        crashed = [slot for slot in slots if self._workers.get(slot) is not None and not self._workers[slot].alive]
        if crashed:  # say how the worker ended (exit code, end of its log), not just "not loaded"
            ended = [(slot, list(self._workers[slot].request({"op": "ping"}))[-1]) for slot in crashed]
            messages = [
                alert(lang, "chat_failed", slot=slot.upper(), error=event.get("message")) for slot, event in ended
            ]
            for slot in crashed:
                self._close(slot)
            yield {ALERTS: [("warning", message) for message in messages]}
            return
        missing = [slot.upper() for slot in slots if self.loaded(slot) is None]
        if missing:
            yield {ALERTS: [("warning", alert(lang, "chat_not_loaded", slot=", ".join(missing)))]}
            return
        gen = self._gen(values)
        role = "tool" if values.get("chat.role") == "observation" else "user"
        history = {slot: list((values.get("chat.history") or {}).get(slot) or []) for slot in SLOTS}
        boxes = {"a": list(values.get("chat.chatbot") or []), "b": list(values.get("chat.chatbot_b") or [])}
        shown_query = {"role": "user", "content": query}
        if role == "tool":
            shown_query["metadata"] = {"title": alert(lang, "chat_tool_result")}
        for slot in slots:
            history[slot].append({"role": role, "content": query})
            boxes[slot] += [shown_query, {"role": "assistant", "content": ""}]

        def box_key(slot: str) -> str:
            return "chat.chatbot" if slot == "a" else "chat.chatbot_b"

        yield {"chat.query": "", **{box_key(slot): list(boxes[slot]) for slot in slots}}
        events: queue.Queue = queue.Queue()
        system = str(values.get("chat.system") or "").strip() or None
        threads = [
            threading.Thread(
                target=_pump, args=(self._workers[slot], slot, history[slot], system, tools, gen, events), daemon=True
            )
            for slot in slots
        ]
        for thread in threads:
            thread.start()
        texts = dict.fromkeys(slots, "")
        pending, alerts, sent_at, changed = set(slots), [], 0.0, set()
        try:
            while pending:
                slot, event = events.get()
                kind = event.get("event")
                changed.add(slot)
                if kind == "token":
                    texts[slot] += str(event.get("text", ""))
                    boxes[slot][-1] = {"role": "assistant", "content": texts[slot]}
                    if time.monotonic() - sent_at < STREAM_INTERVAL_S:
                        continue
                elif kind == "done":
                    pending.discard(slot)
                    texts[slot] = str(event.get("text", texts[slot]))
                    history[slot].append({"role": "assistant", "content": texts[slot]})
                    boxes[slot][-1:] = _shown_answer(lang, texts[slot], event.get("tool_calls") or [])
                else:  # error: the request (or the worker) ended without an answer
                    pending.discard(slot)
                    history[slot].pop()
                    message = alert(lang, "chat_failed", slot=slot.upper(), error=event.get("message", ""))
                    boxes[slot][-1] = {"role": "assistant", "content": message}
                    alerts.append(("warning", message))
                sent_at = time.monotonic()
                # Copies: the lists keep changing after the yield.
                yield {box_key(name): list(boxes[name]) for name in sorted(changed)}
                changed.clear()
        finally:
            if pending:  # the browser went away mid-answer: end the generation so the worker is free again
                for slot in pending:
                    self._workers[slot].stop()
        yield {"chat.history": history, **{box_key(slot): boxes[slot] for slot in slots}, ALERTS: alerts}

    def _gen(self, values: Values) -> dict[str, Any]:
        gen: dict[str, Any] = {
            "max_new_tokens": int(number(values.get("chat.max_new_tokens"), 512)),
            "top_p": float(number(values.get("chat.top_p"), 0.7)),
            "temperature": float(number(values.get("chat.temperature"), 0.95)),
        }
        seed = values.get("chat.seed")
        if seed not in (None, "") and int(seed) >= 0:
            gen["seed"] = int(seed)
        return gen

    # Export


def _pump(
    worker: Any,
    slot: str,
    messages: list[dict[str, Any]],
    system: str | None,
    tools: str | None,
    gen: dict[str, Any],
    events: queue.Queue,
) -> None:
    """Copy one worker's answer events into the shared queue (a thread per model, so both stream at once). The
    request is always read to its final event, so the worker is ready for the next one even if nobody listens."""
    final = False
    try:
        for event in worker.stream(list(messages), system=system, tools=tools, **gen):
            final = event.get("event") in ("done", "error")
            events.put((slot, event))
    except Exception as err:  # a protocol error: report it as the end of this answer
        logger.exception("Chat worker %s failed", slot)
        if not final:
            events.put((slot, {"event": "error", "message": f"{type(err).__name__}: {err}"}))
        return
    if not final:
        events.put((slot, {"event": "error", "message": "the chat worker ended the answer without a result"}))


def _shown_answer(lang: str | None, text: str, tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat-box messages of an answer: its text, and each tool call as a titled block with its arguments."""
    if not tool_calls:
        return [{"role": "assistant", "content": text}]
    shown = []
    for call in tool_calls:
        arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
        shown.append(
            {
                "role": "assistant",
                "content": f"```json\n{arguments}\n```",
                "metadata": {"title": alert(lang, "chat_tool_call", name=call.get("name", "?"))},
            }
        )
    return shown

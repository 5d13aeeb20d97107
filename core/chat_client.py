"""The board's handle on a chat worker process (`core.chat_worker`); pure: no torch, no transformers.

    worker = ChatWorker().start()
    for event in worker.load({"model_name_or_path": "demo", "template": "chatml"}):
        ...                                   # progress..., then ready | error
    for event in worker.stream([{"role": "user", "content": "hi"}], temperature=0.7, seed=1):
        ...                                   # token..., then done (text, tool_calls) | error
    worker.close()

Each `ChatWorker` is one process with one model, so side-by-side chat is two workers. A worker that dies (out of
memory, killed) ends the current request with an `error` event that quotes the end of its log; the board stays up.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["FINAL_EVENTS", "ChatWorker", "ChatWorkerError"]

# The event that ends each kind of request.
FINAL_EVENTS = ("ready", "done", "unloaded", "pong", "bye", "error")


class ChatWorkerError(RuntimeError):
    """The worker could not be started or answered something that is not the protocol."""


class ChatWorker:
    """One chat worker process. Methods are safe to call from several threads; requests run one at a time.

    `python`: the interpreter to run the worker with; `env`: its environment (default: ours); `log_path`: where
    its stderr goes (default: a temporary file, removed by close()).
    """

    def __init__(
        self,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> None:
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        self._request_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.loaded: dict[str, Any] | None = None  # the `ready` event of the model in memory

    # Process

    def start(self) -> ChatWorker:
        """Start the process (returns at once; the worker's first line, `started`, is read by the first request)."""
        if self.alive:
            return self
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="llamaboard-chat-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.python, "-m", "core.chat_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=self.cwd,
                env=env,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        self.loaded = None
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the worker wrote to stderr (its log)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit, then end it if it does not; frees the model's memory either way."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                self._write({"op": "shutdown"})
                process.stdin.close()
                process.wait(timeout=timeout)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=timeout)
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
        self.process = None
        self.loaded = None
        if self._own_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    # Requests

    def load(self, args: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Load a model (and adapters): `progress` events, then `ready` or `error`."""
        for event in self.request({"op": "load", "args": dict(args)}):
            if event["event"] == "ready":
                self.loaded = event
            elif event["event"] == "error":
                self.loaded = None
            yield event

    def stream(
        self,
        messages: list[dict[str, Any]],
        system: str | None = None,
        tools: str | list | None = None,
        **gen: Any,
    ) -> Iterator[dict[str, Any]]:
        """Answer the last user message: `token` events (text), then `done` (text, tool_calls) or `error`.

        `gen`: temperature, top_p, top_k, max_new_tokens, repetition_penalty, do_sample, seed, ...
        """
        request = {"op": "chat", "messages": messages, "system": system, "tools": tools, "gen": gen}
        yield from self.request(request)

    def stop(self) -> None:
        """End the answer being streamed after the current token (its `done` event follows)."""
        if self.alive:
            self._write({"op": "stop"})

    def unload(self) -> dict[str, Any]:
        self.loaded = None
        return self._last(self.request({"op": "unload"}))

    def ping(self) -> dict[str, Any]:
        return self._last(self.request({"op": "ping"}))

    def request(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one request and yield its events up to and including the final one."""
        with self._request_lock:
            if not self.alive:
                yield self._died("is not running")
                return
            try:
                self._write(request)
            except (OSError, ValueError):
                yield self._died("stopped accepting requests")
                return
            while True:
                event = self._read()
                if event is None:
                    yield self._died("ended")
                    return
                if event.get("event") == "started":
                    continue
                yield event
                if event.get("event") in FINAL_EVENTS:
                    return

    # Plumbing

    def _write(self, request: dict[str, Any]) -> None:
        with self._write_lock:
            self.process.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.process.stdin.flush()

    def _read(self) -> dict[str, Any] | None:
        line = self.process.stdout.readline()
        if not line:
            return None
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            raise ChatWorkerError(f"the chat worker wrote a line that is not an event: {line[:200]!r}") from err
        if not isinstance(event, dict) or "event" not in event:
            raise ChatWorkerError(f"the chat worker wrote a line that is not an event: {line[:200]!r}")
        return event

    def _died(self, how: str) -> dict[str, Any]:
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
        self.loaded = None
        status = f" (exit code {code})" if code is not None else ""
        tail = self.log_tail()
        message = f"The chat worker {how}{status}; load the model again."
        if tail:
            message += f" Last lines of its log ({self.log_path}):\n{tail}"
        return {"event": "error", "message": message, "exit_code": code}

    @staticmethod
    def _last(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for last in events:  # noqa: B007 - the final event is the answer
            pass
        return last

    def __enter__(self) -> ChatWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

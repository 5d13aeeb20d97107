"""The chat worker: one process holding one chat model, driven by JSON lines on stdin / stdout.

    python -m core.chat_worker        (the board starts it through core.chat_client.ChatWorker)

Each request is one JSON object a line with an `op`; the worker answers with event objects, one a line, each with
an `event` key; the last event of a request is `ready`, `done`, `unloaded`, `pong`, `bye` or `error`:

    {"op": "load", "args": {...}}  -> progress* (message), then ready (model, adapters, device, dtype) | error
    {"op": "chat", "messages": [...], "system": str?, "tools": str | list?, "gen": {...}?}
                                   -> token* (text), then done (text, tool_calls, stopped) | error
    {"op": "stop"}                 ends the answer being streamed (no reply of its own)
    {"op": "unload"} -> unloaded    {"op": "ping"} -> pong (loaded, model)    {"op": "shutdown"} -> bye, then exit

`error` carries `message`, written for people (a wrong model path names the path). The worker reads requests on a
thread of its own, so `stop` arrives while an answer streams. End of input (the board went away) ends the worker.
Everything else the libraries print goes to stderr: stdout carries only the protocol.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import traceback
from typing import IO, Any

logger = logging.getLogger(__name__)

# Put on the queue when stdin closes: the board went away, so the worker ends.
_EOF = {"op": "_eof"}


class Worker:
    """The request loop; `out` receives the event lines."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.model = None
        self.model_name: str | None = None
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stop = threading.Event()

    def send(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")
        self.out.flush()

    def read(self, stream: IO[str]) -> None:
        """Reader thread: parse lines into requests; `stop` acts at once, everything else waits its turn."""
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                self.requests.put({"op": "_bad", "message": f"request is not a JSON object ({err}): {line[:200]}"})
                continue
            if request.get("op") == "stop":
                self.stop.set()
                continue
            self.requests.put(request)
        self.stop.set()
        self.requests.put(_EOF)

    def serve(self) -> None:
        while True:
            request = self.requests.get()
            op = request.get("op")
            if op in ("shutdown", "_eof"):
                if op == "shutdown":
                    self.send("bye")
                return
            handler = {"load": self.load, "chat": self.chat, "unload": self.unload, "ping": self.ping}.get(op)
            if op == "_bad":
                self.send("error", message=request["message"])
            elif handler is None:
                self.send(
                    "error", message=f"op: unknown request {op!r} — use load, chat, stop, unload, ping, shutdown"
                )
            else:
                try:
                    handler(request)
                except Exception as err:  # noqa: BLE001 - every failure becomes an error event; the worker lives on
                    traceback.print_exc(file=sys.stderr)
                    self.send("error", message=_describe(err))

    # Requests

    def load(self, request: dict[str, Any]) -> None:
        args = request.get("args")
        if not isinstance(args, dict):
            self.send("error", message="load: `args` must be the argument dict (model_name_or_path, ...)")
            return
        self.unload(None)
        self.send("progress", message="Importing the model libraries")
        import transformers

        from core.chat import ChatModel

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

        self.model = ChatModel(args, progress=lambda message: self.send("progress", message=message))
        self.model_name = str(args.get("model_name_or_path"))
        self.send(
            "ready",
            model=self.model_name,
            adapters=self.model.model_args.adapters,
            device=str(self.model.device),
            dtype=str(self.model.model_args.compute_dtype).removeprefix("torch."),
            template=self.model.template.name,
        )

    def chat(self, request: dict[str, Any]) -> None:
        if self.model is None:
            self.send("error", message="chat: no model loaded — load one first")
            return
        from core.chat import parse_tool_calls

        self.stop.clear()
        pieces = []
        gen = request.get("gen") or {}
        stream = self.model.stream_chat(
            request.get("messages") or [], request.get("system"), request.get("tools"), stop=self.stop, **gen
        )
        for piece in stream:
            pieces.append(piece)
            self.send("token", text=piece)
        text = "".join(pieces)
        self.send("done", text=text, tool_calls=parse_tool_calls(text), stopped=self.stop.is_set())

    def unload(self, request: dict[str, Any] | None) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None
            self.model_name = None
        if request is not None:
            self.send("unloaded")

    def ping(self, request: dict[str, Any]) -> None:
        self.send("pong", loaded=self.model is not None, model=self.model_name, pid=os.getpid())


def _describe(err: Exception) -> str:
    """The error line a person reads in the chat tab: our errors are written for people already."""
    from core.hparams.parser import ArgumentError

    if isinstance(err, ArgumentError | FileNotFoundError | ValueError):
        return str(err)
    return f"{type(err).__name__}: {err}"


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    core_logger = logging.getLogger("core")
    core_logger.addHandler(handler)
    core_logger.setLevel(logging.INFO)
    core_logger.propagate = False


def main() -> int:
    # The protocol keeps the real stdout; file descriptor 1 becomes stderr, so a library that prints (or a C
    # extension writing to fd 1) cannot corrupt the event stream.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    _quiet_libraries()
    worker = Worker(protocol)
    reader = threading.Thread(target=worker.read, args=(sys.stdin,), name="chat-requests", daemon=True)
    reader.start()
    worker.send("started", pid=os.getpid())
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures. Everything runs offline."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _restore_core_logger():
    """A job run in-process (run_exp, the chat / export commands) gives the `core` logger its own stdout handler and
    stops propagation, as a job process should; undo that after each test so later tests' caplog still sees logs."""
    core_logger = logging.getLogger("core")
    saved = (list(core_logger.handlers), core_logger.propagate, core_logger.level)
    yield
    core_logger.handlers[:], core_logger.propagate, core_logger.level = saved[0], saved[1], saved[2]


@pytest.fixture
def webhook_server():
    """A JSON webhook on 127.0.0.1: `.url`, `.posts` (the bodies received, parsed), `.status` (the answer to
    give, 200 unless changed). Stopped after the test."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"), **json.loads(body)})
            self.send_response(server.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200
    server.posts = posts
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()

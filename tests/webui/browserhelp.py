"""What the real-browser tests share: Debian's chromium and its launch options, and the board started with its real
entry point on a free port (saves and cache in a temporary folder), stopped with every job it started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox as root in CI; no background networking, whose connections this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
    ),
]


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_jobs(saves: Path) -> None:
    """Whatever happened in the test, no job process outlives it."""
    for job_file in saves.glob("*/*/*/job.json"):
        job = json.loads(job_file.read_text(encoding="utf-8"))
        if job.get("state") in ("queued", "running") and isinstance(job.get("pgid"), int):
            try:
                os.killpg(job["pgid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@contextmanager
def serve_board(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """The board (`python -m webui.app`) on a free port with saves and cache under `tmp_path`; yields its URL."""
    port = _free_port()
    env = {
        **os.environ,
        "LLAMABOARD_SAVES": str(tmp_path / "saves"),
        "LLAMABOARD_CACHE": str(tmp_path / "cache"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        **(extra_env or {}),
    }
    log = (tmp_path / "board.log").open("wb")
    board = subprocess.Popen(
        [sys.executable, "-m", "webui.app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert board.poll() is None, (tmp_path / "board.log").read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the board did not answer within 60 s"
            try:
                with urllib.request.urlopen(url, timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        yield url
    finally:
        # The whole group: the board, its chat workers and any export job still running.
        os.killpg(board.pid, signal.SIGTERM)
        try:
            board.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(board.pid, signal.SIGKILL)
            board.wait()
        log.close()
        _stop_jobs(tmp_path / "saves")

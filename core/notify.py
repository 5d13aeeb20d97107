"""Webhook notifications: a JSON POST when a job finishes, fails, stalls or raises an alert. Pure (stdlib only).

The address comes from the environment only, never from job.yaml (a webhook address is often a secret):
`LLAMABOARD_WEBHOOK_URL`, which the board's `--webhook` flag sets for the jobs it starts. `LLAMABOARD_URL` (the
board's address, also set by the board) becomes the payload's `link`. The job sends `finished`, `failed` and
`alert`; the board sends `stalled`, which only it can see.

Payload (one JSON object):

    {"event": "finished" | "failed" | "stalled" | "alert", "run": <run folder name>, "run_dir": <path>,
     "state": <job state>, "cause": <why, for failed / stalled / alert>, "kind": <alert kind>,
     "metrics": {<final or latest metrics>}, "link": <board address or null>, "time": <epoch seconds>,
     "text": <one line for chat webhooks (Slack reads `text`)>, "content": <the same line (Discord reads it)>}

Delivery runs on a daemon thread with a short timeout, so a slow or dead endpoint never holds the job up; a
failure is one log line. `flush(timeout)` waits for pending posts (the job calls it before it exits).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WEBHOOK_ENV = "LLAMABOARD_WEBHOOK_URL"
BOARD_URL_ENV = "LLAMABOARD_URL"
EVENTS = ("finished", "failed", "stalled", "alert")
TIMEOUT_S = 10.0

_pending: list[threading.Thread] = []
_lock = threading.Lock()


def webhook_url() -> str | None:
    """The configured webhook address, or None; only http(s) addresses count."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        logger.warning("%s is not an http(s) address; no notifications are sent.", WEBHOOK_ENV)
        return None
    return url


def build_payload(
    event: str,
    run_dir: str | os.PathLike,
    state: str,
    cause: str | None = None,
    metrics: dict[str, Any] | None = None,
    kind: str | None = None,
) -> dict[str, Any]:
    """The JSON object described in the module docstring."""
    if event not in EVENTS:
        raise ValueError(f"event: received {event!r} — use one of {', '.join(EVENTS)}.")
    run = Path(run_dir).name
    link = os.environ.get(BOARD_URL_ENV) or None
    text = f"LlamaBoard: run {run} {event}" + (f" ({kind})" if kind else "") + (f": {cause}" if cause else "")
    if link:
        text += f" — {link}"
    return {
        "event": event,
        "run": run,
        "run_dir": str(run_dir),
        "state": state,
        "cause": cause,
        "kind": kind,
        "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))},
        "link": link,
        "time": round(time.time(), 3),
        "text": text,
        "content": text,
    }


def post(url: str, payload: dict[str, Any], timeout: float = TIMEOUT_S) -> bool:
    """POST `payload` as JSON now; True on a 2xx answer. Never raises: a failure is logged."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", "User-Agent": "llamaboard"}
    )
    try:  # an answer outside 2xx raises HTTPError (a URLError)
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 (http(s) checked by webhook_url)
            return True
    except (urllib.error.URLError, OSError, ValueError) as err:
        logger.warning("Webhook %s notification not delivered: %s", payload.get("event"), err)
        return False


def notify(payload: dict[str, Any], url: str | None = None) -> threading.Thread | None:
    """Send `payload` on a daemon thread when a webhook is configured (or `url` given); returns the thread."""
    url = url or webhook_url()
    if not url:
        return None
    thread = threading.Thread(target=post, args=(url, payload), name="llamaboard-webhook", daemon=True)
    with _lock:
        _pending[:] = [t for t in _pending if t.is_alive()]
        _pending.append(thread)
    thread.start()
    return thread


def flush(timeout: float = TIMEOUT_S) -> None:
    """Wait up to `timeout` seconds in all for the posts still on their way."""
    deadline = time.monotonic() + timeout
    with _lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))

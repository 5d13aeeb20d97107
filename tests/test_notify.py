"""Webhook notifications (core.notify): a real POST to a local server, and failures that stay log lines."""

from __future__ import annotations

import logging
import socket

from core import notify


def test_a_notification_posts_the_run_state_cause_metrics_and_link(webhook_server, monkeypatch, tmp_path):
    monkeypatch.setenv(notify.WEBHOOK_ENV, webhook_server.url)
    monkeypatch.setenv(notify.BOARD_URL_ENV, "http://board.example:7860")
    payload = notify.build_payload("finished", tmp_path / "run-1", "finished", metrics={"train_loss": 0.5, "x": [1]})
    thread = notify.notify(payload)
    assert thread is not None
    notify.flush(5)
    [post] = webhook_server.posts
    assert post["content_type"] == "application/json"
    assert post["event"] == "finished" and post["run"] == "run-1" and post["state"] == "finished"
    assert post["metrics"] == {"train_loss": 0.5}  # only plain values travel
    assert post["link"] == "http://board.example:7860"
    assert post["text"].startswith("LlamaBoard: run run-1 finished") and post["text"] == post["content"]


def test_nothing_is_sent_without_an_address(monkeypatch, tmp_path):
    monkeypatch.delenv(notify.WEBHOOK_ENV, raising=False)
    assert notify.notify(notify.build_payload("alert", tmp_path, "running", cause="x", kind="divergence")) is None
    monkeypatch.setenv(notify.WEBHOOK_ENV, "file:///etc/passwd")
    assert notify.webhook_url() is None


def test_failures_are_logged_and_never_raised(webhook_server, caplog):
    payload = notify.build_payload("failed", "/runs/a", "failed", cause="loss is NaN")
    webhook_server.status = 500
    with caplog.at_level(logging.WARNING, logger="core.notify"):
        assert notify.post(webhook_server.url, payload) is False
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        assert notify.post(closed, payload, timeout=2) is False
    assert "not delivered: HTTP Error 500" in caplog.text and "Connection refused" in caplog.text


def test_unknown_event_is_refused(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="event"):
        notify.build_payload("exploded", tmp_path, "failed")

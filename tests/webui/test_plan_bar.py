"""The Train tab's plan bar (webui/handlers/plan.py): what it says for the form, and Start refusing a job that will
not fit on this machine unless "Start anyway" is ticked. Handlers called as functions; jobs are fake."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from webui.handlers import plan
from webui.handlers.events import ALERTS


def form(ui: Any, **overrides: Any) -> dict[str, Any]:
    manager = ui.board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return values


def test_the_demo_job_fits_on_this_machine(ui: Any) -> None:
    html = ui.board.plan(form(ui))["train.plan"]
    assert "lb-plan-fits" in html and "— fits." in html and "on CPU" in html


def test_a_job_too_big_is_refused_with_what_to_change(ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "host_memory", lambda: 300 * 1024**2)  # a machine with 300 MB
    values = form(ui, top__finetuning_type="full", train__output_dir="too_big", train__cutoff_len=4096)
    html = ui.board.plan(values)["train.plan"]
    assert "lb-plan-too_big" in html and "will NOT fit" in html and "Fit it" in html
    refused = ui.board.start(values)
    (level, text), *_ = refused[ALERTS]
    assert level == "warning" and "would run out of memory" in text and "Start anyway" in text
    assert "per_device_train_batch_size" in text or "gradient_checkpointing" in text or "cutoff_len" in text
    assert "train.view_run" not in refused  # nothing started

    started = ui.board.start({**values, "train.plan_insist": True})
    assert started["train.view_run"]["value"].endswith("too_big")
    ui.board.runner.abort(started["train.view_run"]["value"])


def test_a_model_whose_config_is_not_here_says_so_and_does_not_block_start(ui: Any) -> None:
    values = form(ui, top__model_name="Custom", top__model_path="someone/not-in-the-cache")
    html = ui.board.plan(values)["train.plan"]
    assert "lb-plan-unknown" in html and "not available offline" in html
    assert ui.board.plan_refusal({"model_name_or_path": "someone/not-in-the-cache"}, values) == []


def test_the_plan_speaks_the_board_language(ui: Any) -> None:
    html = ui.board.plan(form(ui, top__lang="zh"))["train.plan"]
    assert "估算" in html and "可以运行" in html


def test_the_bar_asks_for_a_calibration_then_gives_the_time(ui: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.plan_calibrate import calibration_path

    html = ui.board.plan(form(ui))["train.plan"]
    assert "press Calibrate to measure this machine" in html
    # The button's command, faked: what `plan --calibrate` stores (1 GFLOP/s, 2 ms a layer pass) and its last line.
    figure = {"seconds_per_flop": 1e-9, "layer_seconds": 0.002, "adapter_token_seconds": 2e-7}
    code = (
        f"import json, sys; from core.plan_calibrate import save_calibration; save_calibration({figure!r}); "
        "print('1.0 GFLOP/s sustained, 50 ms per step fixed')"
    )
    monkeypatch.setattr(plan, "CALIBRATE_COMMAND", [sys.executable, "-c", code])
    try:
        updates = ui.board.plan_calibrate(form(ui))
        assert updates[ALERTS] == [("info", "Calibrated this machine: 1.0 GFLOP/s sustained, 50 ms per step fixed")]
        assert "calibrate" not in updates["train.plan"].lower() and " s per step" in updates["train.plan"]
    finally:
        calibration_path().unlink(missing_ok=True)
    monkeypatch.setattr(plan, "CALIBRATE_COMMAND", [sys.executable, "-c", "raise SystemExit('no demo model')"])
    (level, text), *_ = ui.board.plan_calibrate(form(ui))[ALERTS]
    assert level == "warning" and text == "Calibration failed: no demo model"

"""report_to passes through to transformers' trackers when installed; a missing one is named with its install
command; LLaMA-Factory's use_swanlab / swanlab_* keys become report_to and SWANLAB_* variables."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from core.hparams import ArgumentError, get_train_args
from core.hparams.trackers import installed_trackers


def _hide(monkeypatch, *modules: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))


def test_a_missing_tracker_is_named_with_its_install_command(make_args, monkeypatch):
    _hide(monkeypatch, "wandb")
    with pytest.raises(ArgumentError) as err:
        get_train_args(make_args("sft", report_to="wandb"))
    assert "report_to: received 'wandb' — the wandb package is not installed — pip install wandb" in str(err.value)
    with pytest.raises(ArgumentError) as err:
        get_train_args(make_args("sft", report_to="tensorbored"))
    assert "tensorbored is not a tracker" in str(err.value)
    assert "wandb" not in installed_trackers()


def test_use_swanlab_adds_the_tracker_and_its_settings(make_args, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "swanlab" else real(name, *a)
    )
    for variable in ("SWANLAB_PROJECT", "SWANLAB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    _, _, training_args, _, _ = get_train_args(
        make_args("sft", use_swanlab=True, swanlab_project="llama", swanlab_mode="offline")
    )
    assert training_args.report_to == ["swanlab"]
    assert os.environ["SWANLAB_PROJECT"] == "llama" and os.environ["SWANLAB_MODE"] == "offline"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_report_to_tensorboard_writes_event_files(make_args):
    from core import run_exp

    args = make_args("sft", report_to="tensorboard", max_steps=2, logging_steps=1)
    run_exp(args)
    # transformers 5 writes tensorboard logs under <output_dir>/runs.
    assert list((Path(args["output_dir"]) / "runs").rglob("events.out.tfevents.*"))

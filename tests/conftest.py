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

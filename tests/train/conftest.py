"""Fixtures for training tests: the tiny demo model built once per session into a temporary cache.

`LLAMABOARD_CACHE` points at that cache for the whole session (and for subprocesses, which inherit it), so no test
touches the user's ~/.cache. `train_args(output_dir, **overrides)` gives a small, fast argument dict for a stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from trainhelp import train_args

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The demo model's matrices are 64 wide: a second thread only adds sync cost (measured 5-10x slower steps on a
    busy 2-core machine). Subprocesses inherit OMP_NUM_THREADS."""
    import torch

    previous_env, previous_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous_threads)
    if previous_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = previous_env


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """A fresh LLAMABOARD_CACHE for the session; core.paths.cache_dir() reads it at call time."""
    previous = os.environ.get("LLAMABOARD_CACHE")
    os.environ["LLAMABOARD_CACHE"] = str(tmp_path_factory.mktemp("llamaboard-cache"))
    yield Path(os.environ["LLAMABOARD_CACHE"])
    if previous is None:
        os.environ.pop("LLAMABOARD_CACHE", None)
    else:
        os.environ["LLAMABOARD_CACHE"] = previous


@pytest.fixture(autouse=True)
def fresh_core_logging():
    """Each test starts with the "core" logger as a new process has it: run_exp installs its console handler on the
    stdout it meets and stops propagation, which would leave a later test's capsys / caplog reading nothing."""
    import logging

    def reset() -> None:
        core_logger = logging.getLogger("core")
        for handler in list(core_logger.handlers):
            core_logger.removeHandler(handler)
        core_logger.propagate = True

    reset()  # a module-scoped fixture may have run a job before this test
    yield
    reset()


@pytest.fixture(scope="session")
def demo_model(session_cache) -> Path:
    """Path of the tiny demo model (built on first use into the session cache)."""
    from core.demo import ensure_demo_model

    return ensure_demo_model("tiny")


@pytest.fixture
def make_args(demo_model, tmp_path):
    """`make_args(stage, **overrides)` -> train_args in a fresh output folder under tmp_path."""

    def _make(stage: str = "sft", output_dir: str | os.PathLike | None = None, **overrides: Any) -> dict[str, Any]:
        return train_args(output_dir or tmp_path / f"{stage}-run", stage, **overrides)

    return _make

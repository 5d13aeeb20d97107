"""Fixtures for the board's UI tests: a scratch saves / cache folder, a runner whose jobs are fake_job.py, and the
board's UI built once per module (building it costs about a second)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FAKE_JOB = Path(__file__).with_name("fake_job.py")


@pytest.fixture(scope="module")
def board_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Saves, cache and working directory in a scratch folder for the whole module."""
    home = tmp_path_factory.mktemp("board")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLAMABOARD_SAVES", str(home / "saves"))
        mp.setenv("LLAMABOARD_CACHE", str(home / "cache"))
        # The scratch folder is one of the board's roots (webui/paths.py); tests of the roots use their own.
        mp.setenv("LLAMABOARD_ROOTS", str(home))
        mp.chdir(home)
        yield home


def make_fake_runner(saves: Path, *options: str, grace_s: float = 5.0) -> Any:
    from webui.runner import Runner

    return Runner(saves_root=saves, grace_s=grace_s, job_command=[sys.executable, str(FAKE_JOB), *options])


@pytest.fixture
def fake_runner() -> Callable[..., Any]:
    """`fake_runner(saves, *fake_job_options)` -> a Runner whose jobs are fake_job.py."""
    return make_fake_runner


@pytest.fixture(scope="module")
def ui(board_home: Path) -> Any:
    """The board's Blocks built in English with a fake-job runner; `ui.board` holds the handlers."""
    from webui.app import create_ui

    runner = make_fake_runner(board_home / "saves", "--steps", "30", "--interval", "0.1")
    demo = create_ui("en", runner=runner)
    yield demo
    for run_dir in runner.active():
        runner.abort(run_dir)
        runner.wait(run_dir, timeout=10)

"""The handlers of one board process, composed from one mixin per tab (webui/handlers/<tab>.py).

`Board` holds the top bar, Train (with its dataset preview and live view) and Runs; `Infer` the Evaluate & Predict,
Chat and Export tabs. Tests and `webui.app` call their methods with {"tab.elem": value} dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webui.handlers.chat import ChatHandlers
from webui.handlers.data import DataHandlers
from webui.handlers.evaluate import EvalHandlers
from webui.handlers.export import ExportHandlers, export_runner_beside
from webui.handlers.live import LiveView
from webui.handlers.plan import PlanHandlers
from webui.handlers.preview import PreviewHandlers
from webui.handlers.runs import RunsHandlers
from webui.handlers.sweep import SweepHandlers
from webui.handlers.top import TopHandlers
from webui.handlers.train import TrainHandlers


class Board(
    TopHandlers, TrainHandlers, PlanHandlers, PreviewHandlers, LiveView, RunsHandlers, SweepHandlers, DataHandlers
):
    """Top bar, Train (with its Sweep section), Data and Runs: `Board(runner, manager=None, saves_root=None)`
    (webui.handlers.base.BoardBase)."""


class Infer(EvalHandlers, ChatHandlers, ExportHandlers):
    """Evaluate & Predict, Chat and Export. `export_runner` defaults to a runner beside the board's with
    `core.cli export` as the command; `worker_factory` to core.chat_client.ChatWorker."""

    def __init__(
        self, board: Board, export_runner: Any = None, worker_factory: Callable[[], Any] | None = None
    ) -> None:
        runner = export_runner if export_runner is not None else export_runner_beside(board.runner)
        super().__init__(board, runner, worker_factory)

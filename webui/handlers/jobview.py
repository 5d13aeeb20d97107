"""What the job tabs (Evaluate & Predict, Export) and Chat share: the board they belong to, the top bar's model
as arguments, the job in the way of a new one, the log and trainer_log readers of the run a tab shows.
The layout they share is webui/tabs/jobview.py.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import runfolder
from webui import args as argmod
from webui import jobs
from webui.controls import TOP_ARGUMENTS
from webui.handlers.events import Values
from webui.paths import PathRefused, secret_problems

logger = logging.getLogger(__name__)

MODEL_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "finetuning_type",
    "template",
    "quantization_bit",
    "quantization_method",
    "rope_scaling",
    "flash_attn",
    "use_unsloth",
    "enable_liger_kernel",
)
"""What the top bar contributes to an eval, chat or export: the model, its adapters and how to load it."""


class InferBase:
    """The state the Evaluate & Predict, Chat and Export handlers share (mixed into webui.board.Infer).

    `board` gives the runner (eval jobs), the component registry and the saves folder; `export_runner` runs export
    jobs; `worker_factory` makes chat workers (default `core.chat_client.ChatWorker`). Chat workers are shared by
    the sessions of the board, like the model of a single-user tool; each session keeps its own conversation.
    """

    def __init__(self, board: Any, export_runner: Any, worker_factory: Callable[[], Any] | None = None) -> None:
        self.board = board
        self.manager = board.manager
        self.export_runner = export_runner
        self._worker_factory = worker_factory
        self._workers: dict[str, Any] = {}
        self._tails: dict[str, Any] = {}
        self._readers: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Workers end with the board: at exit here (finalize runs at interpreter exit too); a killed board closes
        # their stdin, and a worker exits at the end of its input.
        weakref.finalize(self, close_workers, self._workers)

    def model_args(self, values: Values, checkpoints: Any = None) -> dict[str, Any]:
        """The model keys of the top bar (model path, adapters resolved under saves, quantization, template...).
        `checkpoints` replaces the top bar's checkpoint selection (side-by-side chat's second model)."""
        form = {name: values[f"top.{name}"] for name in TOP_ARGUMENTS if f"top.{name}" in values}
        if checkpoints is not None:
            form["checkpoint_path"] = checkpoints
        full = argmod.build_args(form, self.board.saves_root)
        args = {key: full[key] for key in MODEL_KEYS if key in full}
        # The one check every tab's model fields pass (Chat A and B, Evaluate, Export): before a worker or a job
        # sees a path, it must lie under the board's roots (../, encoded forms, symlinks out, NUL: refused).
        problems = secret_problems(args) + self.board.roots().check_args(args)
        if problems:
            raise PathRefused("\n".join(problems))
        return args

    def _busy(self, board_jobs: bool = True) -> Path | None:
        """A job in the way of a new one: an export, or (`board_jobs`) a run of the board's runner, queued too."""
        active = list(self.export_runner.active())
        if board_jobs:
            active += [*self.board.runner.active(), *getattr(self.board.runner, "queued", list)()]
        return active[0] if active else None

    def _tail(self, log: Path) -> str:
        key = str(log)
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = jobs.LogTail(log)
            return tail.poll()

    def _records(self, path: Path) -> list[dict[str, Any]]:
        """The records of a trainer_log.jsonl, read incrementally (one reader a file, shared by the sessions)."""
        key = str(path)
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = runfolder.TrainerLogReader(path)
            reader.poll()
            return reader.records


def number(value: Any, default: Any) -> Any:
    """A number control's value, `default` when it was left empty."""
    return default if value is None or value == "" else value


def close_workers(workers: dict[str, Any]) -> None:
    for worker in list(workers.values()):
        try:
            worker.close(timeout=3.0)
        except Exception:  # shutting down: nothing left to tell
            logger.exception("Could not close a chat worker")
    workers.clear()

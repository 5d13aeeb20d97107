"""What the Evaluate & Predict, Chat and Export tabs do, as plain functions on `Infer`.

Same shape as webui.handlers: a handler takes `{"tab.elem": value}` and returns `{"tab.elem": value | gr.update}`
with alerts under `handlers.ALERTS`; the chat handlers are generators that yield such updates as tokens arrive.

- Evaluate & Predict is a `train` job whose job.yaml carries the eval keys (core.cli.EVAL_DEFAULTS), started by the
  board's runner like any run; the tab tails its log and, once it has finished, shows the metrics and the
  predictions (generated_predictions.jsonl, read one page at a time).
- Chat talks to `core.chat_client.ChatWorker` processes (one model each; slot "a", and "b" for side by side), so
  the board never imports torch and a crashed worker only ends the chat.
- Export is a `python -m core.cli export <dir>/job.yaml` job; its `[export] step k/n` lines drive the progress bar.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from webui import models
from webui.handlers import ALERTS, Board, Updates, Values, progress_html
from webui.manager import alert, entry

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

EVAL_KEYS = {"stage": "sft", "do_train": False}
"""With do_predict (save predictions) the job generates and scores answers, as `llamafactory-cli eval` does;
without it the job only computes the loss (do_eval), as LLaMA-Factory's board does."""

METRICS = (
    "predict_bleu-4",
    "predict_rouge-1",
    "predict_rouge-2",
    "predict_rouge-l",
    "predict_runtime",
    "predict_samples_per_second",
    "eval_loss",
    "perplexity",
    "eval_runtime",
)
"""Metrics shown first, in this order; any other number in all_results.json follows."""

PREDICTION_ROWS = 10
EXPORT_FILES = {"job.yaml", "job.json", "job.log"}  # the board's own files: they do not make export_dir non-empty
EXPORT_STEP = re.compile(r"\[export\] step (\d+)/(\d+): (.*)")
EXPORT_DONE = re.compile(r"\[export\] done: (.*)")
SLOTS = ("a", "b")
STREAM_INTERVAL_S = 0.05
"""Tokens arriving faster than this are sent to the browser together (a tiny model makes hundreds a second)."""


def default_eval_name() -> str:
    return datetime.now().strftime("eval_%Y-%m-%d-%H-%M-%S")


def default_export_dir() -> str:
    """A fresh folder under saves/exports (inside the board's writable roots, apart from the runs it lists)."""
    from core.paths import saves_dir

    return str(saves_dir() / "exports" / datetime.now().strftime("export_%Y-%m-%d-%H-%M-%S"))


def sft_datasets(dataset_dir: str) -> list[str]:
    """Datasets of `dataset_dir` that an sft model can be evaluated on (prompt and answer)."""
    from core.data.registry import list_datasets

    return list(list_datasets(dataset_dir, "sft"))


def default_eval_datasets(dataset_dir: str) -> list[str]:
    """The held-out demo prompts when the demo data is chosen."""
    if dataset_dir != "demo":
        return []
    try:
        return [name for name in ("demo_sft_eval",) if name in sft_datasets(dataset_dir)]
    except Exception:  # the registry's error is shown when the user opens the list
        logger.exception("Could not read the demo dataset registry")
        return []


def read_predictions(run_dir: str | os.PathLike, page: int, rows: int = PREDICTION_ROWS) -> tuple[list[dict], int]:
    """Page `page` of generated_predictions.jsonl (prompt, label, predict) and the number of lines in the file.

    Reads line by line, so a file of a million predictions costs one pass and `rows` parsed lines; a line that is
    not JSON (a half-written last line) is shown as it is.
    """
    path = Path(run_dir) / "generated_predictions.jsonl"
    found: list[dict] = []
    first = page * rows
    total = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle):
                if not line.strip():
                    continue
                total = number + 1
                if first <= number < first + rows:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        record = {"prompt": line.strip()}
                    found.append(record if isinstance(record, dict) else {"prompt": str(record)})
    except FileNotFoundError:
        return [], 0
    return found, total


def read_metrics(run_dir: str | os.PathLike) -> list[tuple[str, Any]]:
    """The numbers of all_results.json (else predict_results.json / eval_results.json), the known ones first."""
    results: dict[str, Any] = {}
    for name in ("all_results.json", "predict_results.json", "eval_results.json"):
        try:
            data = json.loads((Path(run_dir) / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            results = {**data, **results}
    numbers = {key: value for key, value in results.items() if isinstance(value, (int, float))}
    ordered = [key for key in METRICS if key in numbers] + sorted(key for key in numbers if key not in METRICS)
    return [(key, round(numbers[key], 4)) for key in ordered]


def export_progress(log_text: str) -> tuple[int, int, str, str]:
    """From an export job's log: the last step (k, n, message) and the `done` summary ("" until it is written)."""
    current, total, message, done = 0, 0, "", ""
    for line in log_text.splitlines():
        step = EXPORT_STEP.search(line)
        if step:
            current, total, message = int(step.group(1)), int(step.group(2)), step.group(3).strip()
        finished = EXPORT_DONE.search(line)
        if finished:
            done = finished.group(1).strip()
    return current, total, message, done


def dir_is_empty(path: Path) -> bool:
    """Nothing in `path` but the board's own job files (or no such folder)."""
    try:
        return all(child.name in EXPORT_FILES for child in path.iterdir())
    except FileNotFoundError:
        return True


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def is_eval_run(run_dir: str | os.PathLike) -> bool:
    """A run folder whose job predicts or evaluates without training."""
    args = _read_yaml(Path(run_dir) / "job.yaml")
    return bool(args) and not args.get("do_train", True) and bool(args.get("do_predict") or args.get("do_eval"))


def _number(value: Any, default: Any) -> Any:
    return default if value is None or value == "" else value


def _export_runner(runner: Any) -> Any:
    """A runner for export jobs beside the board's: same interpreter, grace, devices and path roots, with
    `core.cli export` as the command. Its saves root (where a runner keeps its queue file) is a folder of its own,
    so it never rewrites the board runner's queue."""
    from webui.runner import Runner

    python = getattr(runner, "python", None) or sys.executable
    saves_root = getattr(runner, "saves_root", None)
    kwargs: dict[str, Any] = {
        "saves_root": Path(saves_root) / ".export" if saves_root is not None else None,
        "python": python,
        "grace_s": getattr(runner, "grace_s", 30.0),
        "job_command": [python, "-m", "core.cli", "export"],
        "env": getattr(runner, "env", None),
    }
    for name in ("devices", "roots"):  # present in runners that place jobs on devices and check paths
        if hasattr(runner, name):
            kwargs[name] = getattr(runner, name)
    return Runner(**kwargs)


class Infer:
    """The handlers of the Evaluate & Predict, Chat and Export tabs of one board process.

    `board` gives the runner (eval jobs), the component registry and the saves folder; `export_runner` runs export
    jobs (default: a runner beside the board's with `core.cli export` as the command); `worker_factory` makes chat
    workers (default `core.chat_client.ChatWorker`). Chat workers are shared by the sessions of the board, like the
    model of a single-user tool; each session keeps its own conversation.
    """

    def __init__(
        self, board: Board, export_runner: Any = None, worker_factory: Callable[[], Any] | None = None
    ) -> None:
        self.board = board
        self.manager = board.manager
        self.export_runner = export_runner if export_runner is not None else _export_runner(board.runner)
        self._worker_factory = worker_factory
        self._workers: dict[str, Any] = {}
        self._tails: dict[str, Any] = {}
        self._readers: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Workers end with the board: at exit here (finalize runs at interpreter exit too); a killed board closes
        # their stdin, and a worker exits at the end of its input.
        weakref.finalize(self, _close_workers, self._workers)

    # Shared

    def model_args(self, values: Values, checkpoints: Any = None) -> dict[str, Any]:
        """The model keys of the top bar (model path, adapters resolved under saves, quantization, template...).
        `checkpoints` replaces the top bar's checkpoint selection (side-by-side chat's second model)."""
        from webui import args as argmod
        from webui.tabs import top

        form = {name: values[f"top.{name}"] for name in top.ARGUMENTS if f"top.{name}" in values}
        if checkpoints is not None:
            form["checkpoint_path"] = checkpoints
        full = argmod.build_args(form, self.board.saves_root)
        return {key: full[key] for key in MODEL_KEYS if key in full}

    def _busy(self, board_jobs: bool = True) -> Path | None:
        """A job in the way of a new one: an export, or (`board_jobs`) a run of the board's runner, queued too."""
        active = list(self.export_runner.active())
        if board_jobs:
            active += [*self.board.runner.active(), *getattr(self.board.runner, "queued", list)()]
        return active[0] if active else None

    def _tail(self, log: Path) -> str:
        from webui import jobs

        key = str(log)
        with self._lock:
            tail = self._tails.get(key)
            if tail is None:
                tail = self._tails[key] = jobs.LogTail(log)
            return tail.poll()

    def _job_view(self, lang: str | None, run_dir: Path, job: dict[str, Any] | None, progress: dict) -> str:
        if job is not None and job.get("started") and not progress.get("elapsed"):
            if job.get("state") in ("queued", "running"):
                progress["elapsed"] = _format_seconds(time.time() - float(job["started"]))
            elif job.get("ended"):
                progress["elapsed"] = _format_seconds(float(job["ended"]) - float(job["started"]))
        return progress_html(lang, progress, job)

    # Evaluate & Predict

    def eval_args(self, values: Values) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """The job.yaml of an eval run, or None and the alerts saying why not."""
        from webui import args as argmod

        lang = values.get("top.lang")
        try:
            args = self.model_args(values)
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        datasets = [str(name) for name in values.get("eval.dataset") or [] if str(name).strip()]
        if not datasets:
            return None, [("warning", alert(lang, "eval_no_dataset"))]
        name = str(values.get("eval.output_dir") or "").strip() or default_eval_name()
        if len(Path(name).parts) != 1 or name in (".", ".."):
            return None, [("warning", alert(lang, "eval_bad_name", name=name))]
        model_name = str(values.get("top.model_name") or models.CUSTOM)
        # The folder of the model's runs, as Train names it (a freeze / full checkpoint is still this model's run).
        save_name = models.save_name(model_name, str(values.get("top.model_path") or args["model_name_or_path"]))
        method = str(values.get("top.finetuning_type") or "lora")
        predict = bool(values.get("eval.predict_with_generate", True))
        args.update(EVAL_KEYS)
        args.update(
            {
                "do_predict": predict,
                "predict_with_generate": predict,
                "do_eval": not predict,
                "dataset_dir": str(values.get("eval.dataset_dir") or "").strip() or "demo",
                "eval_dataset": ",".join(datasets),
                "cutoff_len": int(_number(values.get("eval.cutoff_len"), 1024)),
                "max_samples": int(_number(values.get("eval.max_samples"), 100000)),
                "per_device_eval_batch_size": int(_number(values.get("eval.per_device_eval_batch_size"), 8)),
                "output_dir": str(self.board.saves_root / save_name / method / name),
                "report_to": "none",
            }
        )
        if not predict:
            args.pop("do_predict")
            args.pop("predict_with_generate")
        else:
            args.pop("do_eval")
            args["max_new_tokens"] = int(_number(values.get("eval.max_new_tokens"), 512))
            args["top_p"] = float(_number(values.get("eval.top_p"), 0.7))
            args["temperature"] = float(_number(values.get("eval.temperature"), 0.95))
        compute = argmod.COMPUTE_TYPES.get(str(values.get("train.compute_type") or "fp32"), {})
        args.update(compute)
        return args, []

    def eval_start(self, values: Values) -> Updates:
        """Start -> an eval job in saves/<model>/<method>/<run name>, watched by this tab's timer."""
        import gradio as gr

        from webui.runner import RunnerError

        lang = values.get("top.lang")
        args, alerts = self.eval_args(values)
        if args is None:
            return {ALERTS: alerts}
        problems = self._eval_problems(args)
        if problems:
            return {ALERTS: [("warning", alert(lang, "invalid", problems="\n".join(problems)))]}
        busy = self._busy(board_jobs=False)  # the board's runner queues an eval behind its running job itself
        if busy is not None:
            return {ALERTS: [("warning", alert(lang, "job_running", path=busy))]}
        run_dir = Path(args["output_dir"])
        try:
            job = self.board.runner.start(args, run_dir)
        except (RunnerError, OSError) as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        if job.get("state") == "queued":
            started = alert(lang, "queued", path=run_dir, position=job.get("queue_position") or 1)
        else:
            started = alert(lang, "started", path=run_dir)
        return {
            "eval.view_run": str(run_dir.resolve()),
            "eval.poll_state": {},
            "eval.output_dir": default_eval_name(),
            "eval.metrics": gr.update(value=None, visible=False),
            "eval.predictions_box": gr.update(visible=False),
            ALERTS: [("info", started)],
        }

    def _eval_problems(self, args: dict[str, Any]) -> list[str]:
        problems = self.board.validate(args)
        names = [name for name in str(args["eval_dataset"]).split(",") if name]
        try:
            known = sft_datasets(args["dataset_dir"])
        except Exception as err:  # the registry names the file and key
            return [*problems, f"dataset_dir: {args['dataset_dir']} — {err}"]
        missing = [name for name in names if name not in known]
        if missing:
            problems.append(
                f"eval_dataset: {', '.join(missing)} is not an sft dataset of {args['dataset_dir']}/dataset_info.json"
                f" — choose from: {', '.join(known) or 'none'}."
            )
        return problems

    def eval_abort(self, values: Values) -> Updates:
        """Abort -> the eval job shown here gets SIGTERM (SIGKILL after the runner's grace period)."""
        lang = values.get("top.lang")
        target = values.get("eval.view_run")
        runner = self.board.runner
        if target and Path(target).resolve() in getattr(runner, "queued", list)():
            runner.cancel(Path(target))
            return {ALERTS: [("info", alert(lang, "cancelled", path=target))]}
        active = {str(Path(path).resolve()) for path in runner.active()}
        if not target or str(Path(target).resolve()) not in active:
            return {ALERTS: [("warning", alert(lang, "nothing_to_abort"))]}
        self.board.runner.abort(Path(target))
        return {ALERTS: [("info", alert(lang, "aborting", path=target))]}

    def eval_change_dataset_dir(self, values: Values) -> Updates:
        """eval.dataset_dir -> the sft datasets registered there."""
        import gradio as gr

        lang = values.get("top.lang")
        dataset_dir = str(values.get("eval.dataset_dir") or "").strip() or "demo"
        try:
            choices = sft_datasets(dataset_dir)
        except Exception as err:
            return {
                "eval.dataset": gr.update(choices=[], value=[]),
                ALERTS: [("warning", alert(lang, "dataset_registry", dir=dataset_dir, error=err))],
            }
        selected = [name for name in values.get("eval.dataset") or [] if name in choices]
        updates: Updates = {
            "eval.dataset": gr.update(choices=choices, value=selected or default_eval_datasets(dataset_dir))
        }
        if not choices:
            updates[ALERTS] = [("warning", alert(lang, "no_datasets", dir=dataset_dir, stage="sft"))]
        return updates

    def eval_poll(self, values: Values) -> Updates:
        """Timer tick -> progress bar (steps from the job's prediction records), log, and once finished the metrics
        and first page of predictions of the eval run shown. With none shown (a page reload): the running or
        queued eval job, else the last finished eval of the top bar's model and method."""

        from webui import jobs

        lang = values.get("top.lang")
        seen = dict(values.get("eval.poll_state") or {})
        target = values.get("eval.view_run")
        updates: Updates = {}
        if not target:
            target, scanned = self._eval_to_show(values, seen)
            if not target:
                # Saves are scanned once per model folder, not every tick; a new eval started here sets view_run.
                return {"eval.poll_state": {"scanned": scanned}} if scanned != seen.get("scanned") else {}
            updates["eval.view_run"] = target
        run_dir = Path(target)
        job = jobs.read_job(run_dir)
        state = (job or {}).get("state")
        text = self._tail(run_dir / "job.log")
        records = self._records(run_dir / "trainer_log.jsonl")
        key = {"run": str(run_dir), "state": state, "log": len(text), "records": len(records), "lang": lang}
        if key == seen and state != "running":
            return updates
        updates["eval.poll_state"] = key
        progress = jobs.progress(records, job) if job is not None else {}
        updates["eval.progress"] = self._job_view(lang, run_dir, job, progress)
        if key["log"] != seen.get("log") or key["run"] != seen.get("run"):
            updates["eval.output_box"] = text
        if state == "finished" and (seen.get("state") != "finished" or key["run"] != seen.get("run")):
            updates.update(self._results(lang, run_dir, 0))
        return updates

    def _eval_to_show(self, values: Values, seen: dict[str, Any]) -> tuple[str | None, str]:
        """(run folder, model folder scanned): a running or queued eval job first, else the newest finished eval
        under saves/<model>/<method> (looked for once per model folder, `seen["scanned"]`)."""
        from webui import jobs

        runner = self.board.runner
        running = [path for path in [*runner.active(), *getattr(runner, "queued", list)()] if is_eval_run(path)]
        if running:
            return str(Path(running[0]).resolve()), ""
        model_name = str(values.get("top.model_name") or "")
        if not model_name:
            return None, ""
        folder = models.save_name(model_name, str(values.get("top.model_path") or ""))
        method = str(values.get("top.finetuning_type") or "lora")
        scanned = f"{folder}/{method}"
        if scanned == seen.get("scanned"):
            return None, scanned
        for run in jobs.list_runs(self.board.saves_root, folder, method):
            if run["state"] == "finished" and is_eval_run(run["path"]):
                return str(Path(run["path"]).resolve()), scanned
        return None, scanned

    def _records(self, path: Path) -> list[dict[str, Any]]:
        from webui import jobs

        key = str(path)
        with self._lock:
            reader = self._readers.get(key)
            if reader is None:
                reader = self._readers[key] = jobs.TrainerLogReader(path)
            reader.poll()
            return reader.records

    def _results(self, lang: str | None, run_dir: Path, page: int) -> Updates:
        import gradio as gr
        import pandas as pd

        names = entry(lang, "eval.metrics").get("columns") or {}
        metrics = read_metrics(run_dir)
        frame = pd.DataFrame(metrics, columns=[names.get("metric", "metric"), names.get("value", "value")])
        updates: Updates = {"eval.metrics": gr.update(value=frame, visible=bool(metrics))}
        updates.update(self._predictions(lang, run_dir, page))
        return updates

    def _predictions(self, lang: str | None, run_dir: Path, page: int) -> Updates:
        import gradio as gr
        import pandas as pd

        rows, total = read_predictions(run_dir, page)
        if not rows and page > 0 and total:
            return self._predictions(lang, run_dir, (total - 1) // PREDICTION_ROWS)
        names = entry(lang, "eval.predictions").get("columns") or {}
        columns = ("prompt", "label", "predict")
        frame = pd.DataFrame(
            [[str(row.get(column, "")) for column in columns] for row in rows],
            columns=[names.get(column, column) for column in columns],
        )
        first = page * PREDICTION_ROWS
        info = alert(lang, "predictions_info", first=first + 1 if rows else 0, last=first + len(rows), total=total)
        return {
            "eval.predictions_box": gr.update(visible=total > 0),
            "eval.predictions": frame,
            "eval.pred_info": f'<div class="lb-preview-info">{escape(info)}</div>',
            "eval.pred_page": page,
            "eval.pred_prev": gr.update(interactive=page > 0),
            "eval.pred_next": gr.update(interactive=first + len(rows) < total),
        }

    def pred_prev(self, values: Values) -> Updates:
        return self._pred_page(values, max(0, int(values.get("eval.pred_page") or 0) - 1))

    def pred_next(self, values: Values) -> Updates:
        return self._pred_page(values, int(values.get("eval.pred_page") or 0) + 1)

    def _pred_page(self, values: Values, page: int) -> Updates:
        target = values.get("eval.view_run")
        if not target:
            return {}
        return self._predictions(values.get("top.lang"), Path(target), page)

    # Chat

    def _worker(self, slot: str) -> Any:
        with self._lock:
            worker = self._workers.get(slot)
            if worker is None or not worker.alive:
                if self._worker_factory is not None:
                    worker = self._worker_factory()
                else:
                    from core.chat_client import ChatWorker

                    worker = ChatWorker()
                self._workers[slot] = worker.start()
            return worker

    def loaded(self, slot: str) -> dict[str, Any] | None:
        worker = self._workers.get(slot)
        return worker.loaded if worker is not None and worker.alive else None

    def chat_load(self, values: Values) -> Iterator[Updates]:
        """Load -> the top bar's model and adapters (model A) and, side by side, the same model with the compared
        adapters (model B), each in its worker; the status box follows the loading steps."""
        lang = values.get("top.lang")
        plan = [("a", None)]
        if values.get("chat.side_by_side"):
            plan.append(("b", values.get("chat.compare_path") or []))
        lines: list[str] = []
        for slot, checkpoints in plan:
            try:
                args = self.model_args(values, checkpoints)
            except ValueError as err:
                yield {ALERTS: [("warning", alert(lang, "bad_form", error=err))]}
                return
            args["infer_dtype"] = values.get("chat.infer_dtype") or "auto"
            name = slot.upper()
            lines.append(alert(lang, "chat_loading", slot=name, model=args["model_name_or_path"]))
            yield {"chat.info": "\n".join(lines)}
            worker = self._worker(slot)
            for event in worker.load(args):
                kind = event.get("event")
                if kind == "progress":
                    lines.append(f"[{name}] {event.get('message', '')}")
                elif kind == "ready":
                    adapters = ", ".join(event.get("adapters") or []) or "-"
                    lines.append(
                        alert(
                            lang,
                            "chat_ready",
                            slot=name,
                            model=event.get("model"),
                            adapters=adapters,
                            device=event.get("device"),
                            template=event.get("template"),
                        )
                    )
                elif kind == "error":
                    message = alert(lang, "chat_load_failed", slot=name, error=event.get("message", ""))
                    lines.append(message)
                    yield {"chat.info": "\n".join(lines), ALERTS: [("warning", message)]}
                    return
                yield {"chat.info": "\n".join(lines)}
        if len(plan) == 1 and self._workers.get("b") is not None:
            self._close("b")  # side by side was switched off: free the second model

    def chat_unload(self, values: Values) -> Updates:
        """Unload -> every chat worker ends, which frees its memory."""
        for slot in SLOTS:
            self._close(slot)
        return {"chat.info": alert(values.get("top.lang"), "chat_unloaded")}

    def _close(self, slot: str) -> None:
        with self._lock:
            worker = self._workers.pop(slot, None)
        if worker is not None:
            worker.close()

    def close(self) -> None:
        """End every chat worker (board shutdown)."""
        for slot in SLOTS:
            self._close(slot)

    def chat_compare_choices(self, values: Values) -> Updates:
        """chat.compare_path opened -> the saved adapters of the top bar's model and method, re-read."""
        import gradio as gr

        from webui.handlers import checkpoint_choices

        choices = checkpoint_choices(
            values.get("top.model_name") or "",
            values.get("top.finetuning_type") or "lora",
            values.get("top.model_path"),
        )
        return {"chat.compare_path": gr.update(choices=choices)}

    def chat_stop(self, values: Values) -> Updates:
        """Stop -> the answers being streamed end after their current token."""
        for slot in SLOTS:
            worker = self._workers.get(slot)
            if worker is not None and worker.alive:
                worker.stop()
        return {}

    def chat_clear(self, values: Values) -> Updates:
        return {"chat.chatbot": [], "chat.chatbot_b": [], "chat.history": {}, "chat.query": ""}

    def chat_side(self, values: Values) -> Updates:
        """chat.side_by_side -> the second chat box and its adapter choice shown or hidden."""
        import gradio as gr

        shown = bool(values.get("chat.side_by_side"))
        return {"chat.chatbot_b": gr.update(visible=shown), "chat.compare_path": gr.update(visible=shown)}

    def chat_send(self, values: Values) -> Iterator[Updates]:
        """Submit -> the message goes to model A (and B side by side); their answers stream token by token into the
        chat boxes; a tool call is shown as one. Outputs: chat.chatbot, chat.chatbot_b, chat.history, chat.query."""
        lang = values.get("top.lang")
        query = str(values.get("chat.query") or "")
        if not query.strip():
            return
        slots = ["a", "b"] if values.get("chat.side_by_side") else ["a"]
        tools = str(values.get("chat.tools") or "").strip() or None
        if tools is not None:
            try:
                json.loads(tools)
            except json.JSONDecodeError as err:
                yield {ALERTS: [("warning", alert(lang, "chat_bad_tools", error=f"{err.msg} at line {err.lineno}"))]}
                return
        crashed = [slot for slot in slots if self._workers.get(slot) is not None and not self._workers[slot].alive]
        if crashed:  # say how the worker ended (exit code, end of its log), not just "not loaded"
            ended = [(slot, list(self._workers[slot].request({"op": "ping"}))[-1]) for slot in crashed]
            messages = [
                alert(lang, "chat_failed", slot=slot.upper(), error=event.get("message")) for slot, event in ended
            ]
            for slot in crashed:
                self._close(slot)
            yield {ALERTS: [("warning", message) for message in messages]}
            return
        missing = [slot.upper() for slot in slots if self.loaded(slot) is None]
        if missing:
            yield {ALERTS: [("warning", alert(lang, "chat_not_loaded", slot=", ".join(missing)))]}
            return
        gen = self._gen(values)
        role = "tool" if values.get("chat.role") == "observation" else "user"
        history = {slot: list((values.get("chat.history") or {}).get(slot) or []) for slot in SLOTS}
        boxes = {"a": list(values.get("chat.chatbot") or []), "b": list(values.get("chat.chatbot_b") or [])}
        shown_query = {"role": "user", "content": query}
        if role == "tool":
            shown_query["metadata"] = {"title": alert(lang, "chat_tool_result")}
        for slot in slots:
            history[slot].append({"role": role, "content": query})
            boxes[slot] += [shown_query, {"role": "assistant", "content": ""}]

        def box_key(slot: str) -> str:
            return "chat.chatbot" if slot == "a" else "chat.chatbot_b"

        yield {"chat.query": "", **{box_key(slot): list(boxes[slot]) for slot in slots}}
        events: queue.Queue = queue.Queue()
        system = str(values.get("chat.system") or "").strip() or None
        threads = [
            threading.Thread(
                target=_pump, args=(self._workers[slot], slot, history[slot], system, tools, gen, events), daemon=True
            )
            for slot in slots
        ]
        for thread in threads:
            thread.start()
        texts = dict.fromkeys(slots, "")
        pending, alerts, sent_at, changed = set(slots), [], 0.0, set()
        try:
            while pending:
                slot, event = events.get()
                kind = event.get("event")
                changed.add(slot)
                if kind == "token":
                    texts[slot] += str(event.get("text", ""))
                    boxes[slot][-1] = {"role": "assistant", "content": texts[slot]}
                    if time.monotonic() - sent_at < STREAM_INTERVAL_S:
                        continue
                elif kind == "done":
                    pending.discard(slot)
                    texts[slot] = str(event.get("text", texts[slot]))
                    history[slot].append({"role": "assistant", "content": texts[slot]})
                    boxes[slot][-1:] = _shown_answer(lang, texts[slot], event.get("tool_calls") or [])
                else:  # error: the request (or the worker) ended without an answer
                    pending.discard(slot)
                    history[slot].pop()
                    message = alert(lang, "chat_failed", slot=slot.upper(), error=event.get("message", ""))
                    boxes[slot][-1] = {"role": "assistant", "content": message}
                    alerts.append(("warning", message))
                sent_at = time.monotonic()
                # Copies: the lists keep changing after the yield.
                yield {box_key(name): list(boxes[name]) for name in sorted(changed)}
                changed.clear()
        finally:
            if pending:  # the browser went away mid-answer: end the generation so the worker is free again
                for slot in pending:
                    self._workers[slot].stop()
        yield {"chat.history": history, **{box_key(slot): boxes[slot] for slot in slots}, ALERTS: alerts}

    def _gen(self, values: Values) -> dict[str, Any]:
        gen: dict[str, Any] = {
            "max_new_tokens": int(_number(values.get("chat.max_new_tokens"), 512)),
            "top_p": float(_number(values.get("chat.top_p"), 0.7)),
            "temperature": float(_number(values.get("chat.temperature"), 0.95)),
        }
        seed = values.get("chat.seed")
        if seed not in (None, "") and int(seed) >= 0:
            gen["seed"] = int(seed)
        return gen

    # Export

    def export_args(self, values: Values) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """The job.yaml of an export, or None and the alerts saying why not (checked before any weight is read)."""
        lang = values.get("top.lang")
        try:
            args = self.model_args(values)
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        text = str(values.get("export.export_dir") or "").strip()
        if not text:
            return None, [("warning", alert(lang, "export_no_dir"))]
        export_dir = Path(text).expanduser().resolve()
        overwrite = bool(values.get("export.export_overwrite"))
        if export_dir.exists() and not export_dir.is_dir():
            return None, [("warning", alert(lang, "export_not_dir", path=export_dir))]
        if not overwrite and not dir_is_empty(export_dir):
            return None, [("warning", alert(lang, "export_not_empty", path=export_dir))]
        hub_id = str(values.get("export.export_hub_model_id") or "").strip()
        if hub_id and not os.environ.get("HF_TOKEN"):
            return None, [("warning", alert(lang, "export_no_token", repo=hub_id))]
        args.update(
            {
                "infer_dtype": values.get("export.infer_dtype") or "auto",
                "export_dir": str(export_dir),
                "export_size": float(_number(values.get("export.export_size"), 5)),
                "export_device": values.get("export.export_device") or "cpu",
                "export_overwrite": overwrite,
            }
        )
        if hub_id:
            args["export_hub_model_id"] = hub_id
        return args, []

    def export_start(self, values: Values) -> Updates:
        """Export -> a `core.cli export` job writing into export_dir (its job files go there too)."""
        from webui import jobs
        from webui.runner import RunnerError

        lang = values.get("top.lang")
        args, alerts = self.export_args(values)
        if args is None:
            return {ALERTS: alerts}
        busy = self._busy()
        if busy is not None:
            return {ALERTS: [("warning", alert(lang, "job_running", path=busy))]}
        export_dir = Path(args["export_dir"])
        problems = self.export_runner.check(args, export_dir) if hasattr(self.export_runner, "check") else []
        if problems:  # a path outside the board's roots, a secret in a field: nothing is touched
            return {ALERTS: [("warning", alert(lang, "start_failed", error="\n".join(problems)))]}
        previous = jobs.read_job(export_dir)
        if previous is not None and previous.get("state") not in jobs.LIVE_STATES:
            # An earlier export into this folder (the user confirmed, or it held nothing else): its job files are
            # replaced by this run's, as the model files are.
            for name in EXPORT_FILES:
                (export_dir / name).unlink(missing_ok=True)
            with self._lock:
                self._tails.pop(str(export_dir / "job.log"), None)
        try:
            self.export_runner.start(args, export_dir)
        except (RunnerError, OSError) as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        return {
            "export.view_run": str(export_dir),
            "export.poll_state": {},
            "export.export_dir": default_export_dir(),  # the next export gets a folder of its own
            "export.export_overwrite": False,
            ALERTS: [("info", alert(lang, "export_started", path=export_dir))],
        }

    def export_abort(self, values: Values) -> Updates:
        lang = values.get("top.lang")
        target = values.get("export.view_run")
        active = {str(path) for path in self.export_runner.active()}
        if not target or str(Path(target).resolve()) not in active:
            return {ALERTS: [("warning", alert(lang, "nothing_to_abort"))]}
        self.export_runner.abort(Path(target))
        return {ALERTS: [("info", alert(lang, "aborting", path=target))]}

    def export_poll(self, values: Values) -> Updates:
        """Timer tick -> the export's progress (its `[export] step k/n` lines), log, and a toast with the result."""
        from webui import jobs

        lang = values.get("top.lang")
        seen = dict(values.get("export.poll_state") or {})
        target = values.get("export.view_run")
        updates: Updates = {}
        if not target:
            active = self.export_runner.active()
            if not active:
                return {}
            target = str(active[0])
            updates["export.view_run"] = target
        run_dir = Path(target)
        job = jobs.read_job(run_dir)
        state = (job or {}).get("state")
        text = self._tail(run_dir / "job.log")
        key = {"run": str(run_dir), "state": state, "log": len(text), "lang": lang}
        if key == seen and state != "running":
            return updates
        current, total, message, done = export_progress(text)
        if state == "finished":
            current = total = total or 1
        progress = {"current": current, "total": total}
        updates["export.poll_state"] = key
        updates["export.progress"] = self._job_view(lang, run_dir, job, progress)
        if key["log"] != seen.get("log") or key["run"] != seen.get("run"):
            updates["export.output_box"] = text
        if state != seen.get("state") and seen.get("run") == key["run"] and state in ("finished", "failed"):
            if state == "finished":
                updates[ALERTS] = [("info", alert(lang, "export_done", result=done or run_dir))]
            else:
                updates[ALERTS] = [("warning", alert(lang, "export_failed", error=(job or {}).get("error") or ""))]
        return updates


def _pump(
    worker: Any,
    slot: str,
    messages: list[dict[str, Any]],
    system: str | None,
    tools: str | None,
    gen: dict[str, Any],
    events: queue.Queue,
) -> None:
    """Copy one worker's answer events into the shared queue (a thread per model, so both stream at once). The
    request is always read to its final event, so the worker is ready for the next one even if nobody listens."""
    final = False
    try:
        for event in worker.stream(list(messages), system=system, tools=tools, **gen):
            final = event.get("event") in ("done", "error")
            events.put((slot, event))
    except Exception as err:  # a protocol error: report it as the end of this answer
        logger.exception("Chat worker %s failed", slot)
        if not final:
            events.put((slot, {"event": "error", "message": f"{type(err).__name__}: {err}"}))
        return
    if not final:
        events.put((slot, {"event": "error", "message": "the chat worker ended the answer without a result"}))


def _shown_answer(lang: str | None, text: str, tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat-box messages of an answer: its text, and each tool call as a titled block with its arguments."""
    if not tool_calls:
        return [{"role": "assistant", "content": text}]
    shown = []
    for call in tool_calls:
        arguments = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=2)
        shown.append(
            {
                "role": "assistant",
                "content": f"```json\n{arguments}\n```",
                "metadata": {"title": alert(lang, "chat_tool_call", name=call.get("name", "?"))},
            }
        )
    return shown


def _close_workers(workers: dict[str, Any]) -> None:
    for worker in list(workers.values()):
        try:
            worker.close(timeout=3.0)
        except Exception:  # shutting down: nothing left to tell
            logger.exception("Could not close a chat worker")
    workers.clear()


def _format_seconds(seconds: float) -> str:
    from webui.jobs import format_seconds

    return format_seconds(seconds)


# Wiring generator handlers (streaming) to gradio events


def bind_stream(
    board: Board,
    event: Callable[..., Any],
    handler: Callable[[Values], Iterable[Updates]],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Like `handlers.bind`, for a handler that yields updates (a streamed answer, loading steps): each yield
    reaches the browser at once; alerts become toasts; a crash becomes a toast, never a traceback."""
    import gradio as gr

    manager = board.manager
    output_keys = set(outputs)
    input_set = {manager[key] for key in set(inputs) | {"top.lang"}}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> Iterator[dict[Any, Any]]:
        by_key = manager.by_key(values)
        sent = False
        try:
            for updates in handler(by_key):
                updates = dict(updates)
                for level, text in updates.pop(ALERTS, []):
                    (gr.Warning if level == "warning" else gr.Info)(escape(text).replace("\n", "<br>"))
                result = {manager[key]: value for key, value in updates.items() if key in output_keys}
                if result:
                    sent = True
                    yield result
        except Exception as err:
            logger.exception("Handler %s failed", getattr(handler, "__name__", handler))
            gr.Warning(escape(alert(by_key.get("top.lang"), "internal_error", error=f"{type(err).__name__}: {err}")))
        if not sent:
            yield {output_list[0]: gr.skip()}

    kwargs.setdefault("show_progress", "hidden")
    kwargs.setdefault("api_name", getattr(handler, "__name__", None))
    return event(run, inputs=input_set, outputs=output_list, **kwargs)

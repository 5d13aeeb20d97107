"""What the Evaluate & Predict tab does: an eval job, its progress, then its metrics and predictions.

An eval is a `train` job whose job.yaml carries the eval keys (core.cli.EVAL_DEFAULTS), started by the board's
runner like any run; the tab tails its log and, once it has finished, shows the metrics and the predictions
(generated_predictions.jsonl, read one page at a time). The layout is webui/tabs/evaluate.py.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core import runfolder
from webui import args as argmod
from webui import jobs, models
from webui.handlers.choices import default_eval_datasets, default_eval_name, sft_datasets
from webui.handlers.events import ALERTS, Alerts, Updates, Values
from webui.handlers.jobview import InferBase, number
from webui.handlers.render import job_progress_html
from webui.manager import alert, entry
from webui.paths import PathRefused
from webui.runner import RunnerError

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


def read_predictions(run_dir: str | os.PathLike, page: int, rows: int = PREDICTION_ROWS) -> tuple[list[dict], int]:
    """Page `page` of generated_predictions.jsonl (prompt, label, predict) and the number of lines in the file.

    Reads line by line, so a file of a million predictions costs one pass and `rows` parsed lines; a line that is
    not JSON (a half-written last line) is shown as it is.
    """
    path = Path(run_dir) / runfolder.PREDICTIONS
    found: list[dict] = []
    first = page * rows
    total = 0
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for index, line in enumerate(handle):
                if not line.strip():
                    continue
                total = index + 1
                if first <= index < first + rows:
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
    for name in runfolder.METRIC_FILES:
        try:
            data = json.loads((Path(run_dir) / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            results = {**data, **results}
    numbers = {key: value for key, value in results.items() if isinstance(value, (int, float))}
    ordered = [key for key in METRICS if key in numbers] + sorted(key for key in numbers if key not in METRICS)
    return [(key, round(numbers[key], 4)) for key in ordered]


def is_eval_run(run_dir: str | os.PathLike) -> bool:
    """A run folder whose job predicts or evaluates without training."""
    return runfolder.run_kind(runfolder.read_args(run_dir)) == "eval"


class EvalHandlers(InferBase):
    """The Evaluate & Predict tab's handlers (mixed into webui.board.Infer)."""

    def eval_args(self, values: Values) -> tuple[dict[str, Any] | None, Alerts]:
        """The job.yaml of an eval run, or None and the alerts saying why not."""
        lang = values.get("top.lang")
        try:
            args = self.model_args(values)
        except PathRefused as err:
            return None, [("warning", alert(lang, "path_refused", problems=err))]
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        datasets = [str(name) for name in values.get("eval.dataset") or [] if str(name).strip()]
        if not datasets:
            return None, [("warning", alert(lang, "eval_no_dataset"))]
        name = str(values.get("eval.output_dir") or "").strip() or default_eval_name(self.board.runs_folder(values))
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
                "cutoff_len": int(number(values.get("eval.cutoff_len"), 1024)),
                "max_samples": int(number(values.get("eval.max_samples"), 100000)),
                "per_device_eval_batch_size": int(number(values.get("eval.per_device_eval_batch_size"), 8)),
                "output_dir": str(self.board.saves_root / save_name / method / name),
                "report_to": "none",
            }
        )
        if not predict:
            args.pop("do_predict")
            args.pop("predict_with_generate")
        else:
            args.pop("do_eval")
            args["max_new_tokens"] = int(number(values.get("eval.max_new_tokens"), 512))
            args["top_p"] = float(number(values.get("eval.top_p"), 0.7))
            args["temperature"] = float(number(values.get("eval.temperature"), 0.95))
        compute = argmod.COMPUTE_TYPES.get(str(values.get("train.compute_type") or "fp32"), {})
        args.update(compute)
        return args, []

    def eval_start(self, values: Values) -> Updates:
        """Start -> an eval job in saves/<model>/<method>/<run name>, watched by this tab's timer."""
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
            "eval.output_dir": default_eval_name(run_dir.parent),
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
        text = self._tail(run_dir / runfolder.JOB_LOG)
        records = self._records(run_dir / runfolder.TRAINER_LOG)
        key = {"run": str(run_dir), "state": state, "log": len(text), "records": len(records), "lang": lang}
        if key == seen and state != "running":
            return updates
        updates["eval.poll_state"] = key
        progress = jobs.progress(records, job) if job is not None else {}
        updates["eval.progress"] = job_progress_html(lang, job, progress)
        if key["log"] != seen.get("log") or key["run"] != seen.get("run"):
            updates["eval.output_box"] = text
        if state == "finished" and (seen.get("state") != "finished" or key["run"] != seen.get("run")):
            updates.update(self._results(lang, run_dir, 0))
        return updates

    def _eval_to_show(self, values: Values, seen: dict[str, Any]) -> tuple[str | None, str]:
        """(run folder, model folder scanned): a running or queued eval job first, else the newest finished eval
        under saves/<model>/<method> (looked for once per model folder, `seen["scanned"]`)."""
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

    def _results(self, lang: str | None, run_dir: Path, page: int) -> Updates:

        names = entry(lang, "eval.metrics").get("columns") or {}
        metrics = read_metrics(run_dir)
        frame = pd.DataFrame(metrics, columns=[names.get("metric", "metric"), names.get("value", "value")])
        updates: Updates = {"eval.metrics": gr.update(value=frame, visible=bool(metrics))}
        updates.update(self._predictions(lang, run_dir, page))
        return updates

    def _predictions(self, lang: str | None, run_dir: Path, page: int) -> Updates:

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

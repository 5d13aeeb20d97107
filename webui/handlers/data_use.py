"""The Data tab's Inspect and Curate (issue 16): what training sees of a registered dataset, from a
`llamafactory-cli data tokens` subprocess (the board never loads a tokenizer), and a curated copy registered as a
new dataset (core.data.curate); after either registers something, the Train tab's dataset list follows."""

from __future__ import annotations

import json
import subprocess
import sys
from html import escape
from typing import Any

import gradio as gr

from core.data.registry import list_datasets
from webui.handlers.base import BoardBase
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.tokenhtml import length_figure, length_info_html, token_view_html
from webui.manager import alert
from webui.models import model_path

TOKENS_TIMEOUT_S = 300


def data_dir(values: Values) -> str:
    """The Data tab's folder (default `data`, the board's writable data root)."""
    return (values.get("data.dataset_dir") or "").strip() or "data"


class DataUseHandlers(BoardBase):
    """Inspect and Curate, and the dataset lists they and Add refresh."""

    def _after_register(self, values: Values, dataset_dir: str, names: list[str]) -> Updates:
        """The Train tab points at this data folder and lists its datasets for its stage (the new ones selected when
        they fit the stage); the Inspect and Curate lists follow."""
        stage = values.get("train.stage") or "sft"
        fit = list(list_datasets(dataset_dir, stage))
        every = list(list_datasets(dataset_dir))
        picked = [name for name in names if name in fit]
        return {
            "train.dataset_dir": dataset_dir,
            "train.dataset": gr.update(choices=fit, value=picked),
            "train.preview_box": gr.update(visible=False),
            "data.inspect_dataset": gr.update(choices=every, value=names[0] if names[0] in every else None),
            "data.curate_dataset": gr.update(choices=every, value=names[0] if names[0] in every else None),
        }

    def data_refresh(self, values: Values) -> Updates:
        """The data folder changed: the Inspect and Curate lists show its datasets."""
        dataset_dir = data_dir(values)
        try:
            every = list(list_datasets(dataset_dir))
        except Exception as err:  # the registry names the file and key
            lang = values.get("top.lang")
            return {ALERTS: [("warning", alert(lang, "dataset_registry", dir=dataset_dir, error=err))]}
        keep = {
            key: values.get(key) if values.get(key) in every else None
            for key in ("data.inspect_dataset", "data.curate_dataset")
        }
        return {key: gr.update(choices=every, value=value) for key, value in keep.items()}

    # Inspect

    def data_inspect(self, values: Values) -> Updates:
        """Sample N as training will see it and the length statistics, from `llamafactory-cli data tokens`."""
        lang = values.get("top.lang")
        name = values.get("data.inspect_dataset")
        if not name:
            return {ALERTS: [("warning", alert(lang, "no_dataset_selected"))]}
        dataset_dir = data_dir(values)
        refused = self._dataset_files_refused(values, dataset_dir, name)  # type: ignore[attr-defined]
        if refused:
            return {ALERTS: refused}
        model = str(values.get("top.model_path") or "").strip() or model_path(str(values.get("top.model_name") or ""))
        if not model:
            return {ALERTS: [("warning", alert(lang, "data_no_model"))]}
        problems = self.roots().check_args({"model_name_or_path": model})
        if problems:
            return {ALERTS: [("warning", alert(lang, "path_refused", problems="\n".join(problems)))]}
        command = [
            sys.executable,
            "-m",
            "core.cli",
            "data",
            "tokens",
            "--json",
            "--dataset",
            str(name),
            "--dataset-dir",
            dataset_dir,
            "--model",
            model,
            "--stage",
            values.get("data.inspect_stage") or "sft",
            "--cutoff-len",
            str(_int(values.get("data.cutoff_len"), 1024)),
            "--index",
            str(_int(values.get("data.inspect_index"), 0)),
            "--batch-size",
            str(_int(values.get("train.per_device_train_batch_size"), 8)),
        ]
        template = values.get("top.template")
        if template:
            command += ["--template", str(template)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TOKENS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return {ALERTS: [("warning", alert(lang, "data_inspect_failed", name=name, error="timed out"))]}
        if done.returncode != 0:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
            return {ALERTS: [("warning", alert(lang, "data_inspect_failed", name=name, error=error))]}
        result = json.loads(done.stdout)
        stats = result.get("stats") or {}
        return {
            "data.token_view": token_view_html(lang, result["view"]),
            "data.length_plot": length_figure(lang, stats),
            "data.length_info": length_info_html(lang, stats),
        }

    # Curate

    def data_curate(self, values: Values) -> Updates:
        """Filter / dedup / sample / split a registered dataset into a new registered one (the source untouched)."""
        from core.data.curate import curate
        from core.data.register import NameTaken
        from core.data.registry import DataError

        lang = values.get("top.lang")
        name = values.get("data.curate_dataset")
        new_name = (values.get("data.new_name") or "").strip()
        if not name:
            return {ALERTS: [("warning", alert(lang, "no_dataset_selected"))]}
        if not new_name:
            return {ALERTS: [("warning", alert(lang, "data_no_name"))]}
        dataset_dir = data_dir(values)
        refused = self.check_path(values, dataset_dir, "dataset_dir", write=True) or self._dataset_files_refused(
            values, dataset_dir, name
        )  # type: ignore[attr-defined]
        if refused:
            return {ALERTS: refused}
        eval_size = _float(values.get("data.eval_size"))
        options = {
            "min_chars": _int(values.get("data.min_chars"), None) or None,
            "max_chars": _int(values.get("data.max_chars"), None) or None,
            "match": (values.get("data.match") or "").strip() or None,
            "exclude": (values.get("data.exclude") or "").strip() or None,
            "dedup": values.get("data.dedup") or "none",
            "sample": _int(values.get("data.sample_n"), None) or None,
            "eval_size": (int(eval_size) if eval_size and eval_size >= 1 else eval_size) or None,
            "replace": bool(values.get("data.curate_replace")),
        }
        try:
            done = curate(dataset_dir, name, new_name, **options)
        except NameTaken:
            return {ALERTS: [("warning", alert(lang, "data_name_taken", name=new_name, dir=dataset_dir))]}
        except (DataError, OSError, ValueError) as err:
            return {ALERTS: [("warning", alert(lang, "data_curate_failed", name=name, error=err))]}
        dropped = ", ".join(f"{reason}: {n}" for reason, n in (done.get("dropped") or {}).items() if n) or "-"
        text = alert(
            lang,
            "data_curated",
            name=name,
            rows_in=done.get("rows_in", 0),
            rows_out=done.get("rows_out", 0),
            dropped=dropped,
            names=", ".join(done.get("names") or [new_name]),
        )
        updates = self._after_register(values, dataset_dir, list(done.get("names") or [new_name]))
        updates["data.curate_info"] = f'<div class="lb-preview-info">{escape(text)}</div>'
        updates["data.curate_replace"] = False
        updates[ALERTS] = [("info", text)]
        return updates


def _int(value: Any, default: int | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None

"""What the board does when a control changes or a button is pressed, as plain functions.

Handlers take `values` ({"tab.elem": value}) and return updates ({"tab.elem": value or gr.update(...)}); components
left out of the result keep their state. Alerts go under the ALERTS key: `bind()` turns them into toasts and lines
in the log box, so a handler never raises at the user and tests need no browser.

The board never imports the training stack: everything here reads files (webui.jobs), builds argument dicts
(webui.args) and asks the runner (webui.runner) to start or stop a job process.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from core.paths import saves_dir
from webui import config, models
from webui.manager import Manager, alert, entry, normalize_lang

logger = logging.getLogger(__name__)

ALERTS = "_alerts"
"""Key of the alert list in a handler's result: [(level, text)], level "info" or "warning"."""

Values = dict[str, Any]
Updates = dict[str, Any]

LIVE_VIEW = (
    "train.poll_state",
    "train.progress",
    "train.loss_viewer",
    "train.lr_viewer",
    "train.reward_viewer",
    "train.view_run",
)
"""What a poll of the viewed run may update (the log box is always a possible output)."""

TOP_BAR = ("top.model_name", "top.model_path", "top.template", "top.finetuning_type", "train.stage")
"""Inputs of the page-load handler: what the remembered choices are compared with."""

PRESET_CONTROLS = tuple(f"train.{key}" for key in models.preset_keys())
"""Train tab controls that a model's preset (models.yaml `train_defaults`) sets: read and set by a model switch."""

SECTIONS = (
    "train.freeze_tab",
    "train.lora_tab",
    "train.rlhf_tab",
    "train.pref_beta",
    "train.pref_ftx",
    "train.pref_loss",
    "train.reward_model",
    "train.ppo_score_norm",
    "train.ppo_whiten_rewards",
)
"""Sections and controls shown or hidden by stage and method (section_visibility)."""

STATE_ALERTS = {
    "queued": "state_queued",
    "running": "state_running",
    "finished": "state_finished",
    "failed": "state_failed",
    "aborted": "state_aborted",
}
"""Job state -> the alert key of its name in the progress bar (anything else: "state_unknown")."""

PREVIEW_ROWS = 10
MAX_NOTES = 20
RLHF_STAGES = ("ppo", "dpo", "kto")
REWARD_STAGES = ("rm", "dpo", "kto")
DEMO_DATASETS = {
    "pt": "demo_pt",
    "sft": "demo_sft",
    "rm": "demo_pref",
    "dpo": "demo_pref",
    "kto": "demo_kto",
    "ppo": "demo_ppo",
}


# Registry helpers used while building the tabs


def model_names() -> list[str]:
    """The curated model list, the offline demo model first and Custom last."""
    return list(models.MODELS)


def default_model_name() -> str:
    return models.DEMO


def model_path_of(name: str) -> str:
    return models.model_path(name)


def default_template_of(name: str) -> str:
    return models.default_template(name) or "default"


def template_names() -> list[str]:
    from core.data.templates import TEMPLATE_NAMES

    return list(TEMPLATE_NAMES)


def checkpoint_choices(model_name: str, finetuning_type: str, model_path: str = "") -> list[str]:
    """Saved runs and checkpoints of this model and method (adapters, or full weights), by run name."""
    from webui import jobs

    try:
        return jobs.list_checkpoints(saves_dir(), models.save_name(model_name, model_path), finetuning_type)
    except OSError as err:
        logger.warning("Could not list checkpoints under %s: %s", saves_dir(), err)
        return []


def dataset_choices(dataset_dir: str, stage: str) -> list[str]:
    """Datasets registered in `dataset_dir` that fit `stage`; a broken registry raises (the caller reports it)."""
    from core.data.registry import list_datasets

    return list(list_datasets(dataset_dir, stage))


def default_datasets(dataset_dir: str, stage: str) -> list[str]:
    """What a new user gets preselected: the demo dataset of the stage when the demo data is chosen."""
    if dataset_dir != "demo":
        return []
    name = DEMO_DATASETS.get(stage)
    try:
        return [name] if name and name in dataset_choices(dataset_dir, stage) else []
    except Exception:  # the registry's own error is reported when the user opens the list
        logger.exception("Could not read the demo dataset registry")
        return []


def default_compute_type() -> str:
    """bf16 on a machine with an NVIDIA GPU, fp32 elsewhere (bf16 on a CPU is slow or unsupported)."""
    return "bf16" if shutil.which("nvidia-smi") else "fp32"


def visible_devices() -> list[tuple[str, str]]:
    """The GPUs a job may pick, as (id, name); empty on a machine without GPUs."""
    from webui.runner import list_devices

    return list_devices()


def device_count_html(lang: str | None, count: int) -> str:
    text = alert(lang, "device_count", count=count) if count else alert(lang, "no_gpu")
    return f'<div class="lb-devices">{escape(text)}</div>'


def new_run_name() -> str:
    from webui.args import default_run_name

    return default_run_name()


def default_config_path() -> str:
    return str(Path("configs") / "train_config.yaml")


def section_visibility(stage: str, finetuning_type: str) -> dict[str, bool]:
    """Which Train-tab sections and RLHF controls apply to `stage` and `finetuning_type`."""
    return {
        "freeze_tab": finetuning_type == "freeze",
        "lora_tab": finetuning_type == "lora",
        "rlhf_tab": stage in RLHF_STAGES,
        "pref_beta": stage in ("dpo", "kto"),
        "pref_ftx": stage in ("dpo", "kto"),
        "pref_loss": stage == "dpo",
        "reward_model": stage == "ppo",
        "ppo_score_norm": stage == "ppo",
        "ppo_whiten_rewards": stage == "ppo",
    }


# The live view


def progress_html(lang: str | None, progress: dict[str, Any] | None, job: dict[str, Any] | None) -> str:
    """The progress bar: state, steps, elapsed and remaining time; a failed job's one-line error in red."""
    if job is None:
        return f'<div class="lb-progress lb-idle">{escape(alert(lang, "no_run"))}</div>'
    state = str(job.get("state") or "unknown")
    progress = progress or {}
    current, total = progress.get("current") or 0, progress.get("total") or 0
    percentage = float(progress.get("percentage") or (100.0 * current / total if total else 0.0))
    if state == "finished":
        percentage = 100.0
    percentage = max(0.0, min(100.0, percentage))
    detail = alert(
        lang,
        "progress",
        current=current,
        total=total or "?",
        elapsed=progress.get("elapsed") or "0:00:00",
        remaining=(progress.get("remaining") or "?") if state in ("queued", "running") else "-",
    )
    state_name = alert(lang, STATE_ALERTS.get(state, "state_unknown"))
    if state == "queued" and job.get("queue_position"):
        devices = ",".join(job.get("devices") or [])
        detail = alert(lang, "queue_position", position=job["queue_position"], devices=devices)
    error = ""
    if state in ("failed", "aborted") and job.get("error"):
        error = f'<div class="lb-error">{escape(str(job["error"]))}</div>'
    return (
        f'<div class="lb-progress lb-{escape(state)}" data-state="{escape(state)}" data-current="{current}">'
        f'<div class="lb-progress-head"><span class="lb-state">{escape(state_name)}'
        f'</span><span class="lb-detail">{escape(detail)}</span></div>'
        f'<div class="lb-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{percentage:.0f}"><div class="lb-fill" style="width:{percentage:.1f}%"></div></div>'
        f"{error}</div>"
    )


@dataclass
class Watcher:
    """The readers of one run folder, shared by every browser tab that shows the run, so each poll reads only
    the bytes appended since the last one, whoever asked."""

    run_dir: Path
    reader: Any
    tail: Any
    stage: str | None
    text: str = ""
    text_version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self) -> tuple[list[dict[str, Any]], str, int]:
        with self.lock:
            self.reader.poll()
            text = self.tail.poll()
            if text != self.text:
                self.text, self.text_version = text, self.text_version + 1
            # The reader's own list (appended in place), not a copy: webui.plots extends its cached series only
            # while it sees the same list, which keeps a poll at step 100,000 as cheap as at step 10.
            return self.reader.records, self.text, self.text_version


def _read_stage(run_dir: Path) -> str | None:
    import yaml

    for name in ("job.yaml", "training_args.yaml"):
        try:
            data = yaml.safe_load((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("stage"):
            return str(data["stage"])
    return None


# The board: handlers that need the runner or the registry


class Board:
    """The handlers of one board process. `runner` is the only owner of job processes; `manager` the components."""

    def __init__(self, runner: Any, manager: Manager | None = None, saves_root: Path | None = None) -> None:
        self.runner = runner
        self.manager = manager if manager is not None else Manager()
        self.saves_root = Path(saves_root) if saves_root else saves_dir()
        self._watchers: dict[str, Watcher] = {}
        self._lock = threading.Lock()

    # Top bar

    def change_lang(self, values: Values) -> Updates:
        """top.lang -> every labelled component relabelled, the live view redrawn in the new language."""
        lang = normalize_lang(values.get("top.lang"))
        config.save_config({"lang": lang})
        updates: Updates = {self.manager.key_of(comp): update for comp, update in self.manager.relabel(lang).items()}
        updates["train.poll_state"] = {}
        run_list = updates.get("train.view_run") or {}
        updates["train.view_run"] = {**run_list, "choices": self.run_choices(lang)}
        if "runs.table" in self.manager:
            updates["runs.table"] = {**updates.get("runs.table", {}), "value": self.runs_table(lang)}
        return updates

    def change_model(self, values: Values) -> Updates:
        """top.model_name -> top.model_path (the model's hub id), top.template (its default), checkpoints."""
        name = values.get("top.model_name") or models.CUSTOM
        path = models.model_path(name) if name in models.MODELS and name != models.CUSTOM else ""
        if not path:
            path = values.get("top.model_path") or ""
        updates: Updates = {"top.model_path": path}
        template = models.default_template(name)
        if template:
            updates["top.template"] = template
        config.save_config(
            {"model_name": name, "model_path": path, "template": template or values.get("top.template")}
        )
        updates.update(self._checkpoint_updates(name, values.get("top.finetuning_type") or "lora", path))
        updates.update(self._preset_updates(name, values))
        return updates

    def _preset_updates(self, name: str, values: Values) -> Updates:
        """The Train tab values model `name` brings (models.preset_changes: a user's own edits survive).

        Only values that differ are sent: an update that changes nothing could still land after the user typed.
        """
        from webui.args import FORM_DEFAULTS

        current = {key: values[f"train.{key}"] for key in models.preset_keys() if f"train.{key}" in values}
        changes = models.preset_changes(name, current, FORM_DEFAULTS)
        return {f"train.{key}": value for key, value in changes.items() if current.get(key) != value}

    def change_model_path(self, values: Values) -> Updates:
        """top.model_path typed by hand -> remembered; for Custom models the checkpoint list follows the path."""
        name, path = values.get("top.model_name") or models.CUSTOM, values.get("top.model_path") or ""
        config.save_config({"model_path": path})
        return self._checkpoint_updates(name, values.get("top.finetuning_type") or "lora", path)

    def change_template(self, values: Values) -> Updates:
        config.save_config({"template": values.get("top.template")})
        return {}

    def change_method(self, values: Values) -> Updates:
        """top.finetuning_type -> checkpoints of that method, freeze / LoRA sections shown or hidden."""
        method = values.get("top.finetuning_type") or "lora"
        config.save_config({"finetuning_type": method})
        updates = self._checkpoint_updates(values.get("top.model_name") or "", method, values.get("top.model_path"))
        updates.update(self._visibility(values.get("train.stage") or "sft", method))
        return updates

    def refresh_checkpoints(self, values: Values) -> Updates:
        """top.checkpoint_path opened -> its choices re-read from saves (a run may have finished meanwhile)."""
        import gradio as gr

        choices = checkpoint_choices(
            values.get("top.model_name") or "",
            values.get("top.finetuning_type") or "lora",
            values.get("top.model_path"),
        )
        return {"top.checkpoint_path": gr.update(choices=choices)}

    def _checkpoint_updates(self, name: str, method: str, path: str | None) -> Updates:
        import gradio as gr

        choices = checkpoint_choices(name, method, path or "")
        return {
            "top.checkpoint_path": gr.update(choices=choices, value=[]),
            "train.reward_model": gr.update(choices=choices, value=None),
        }

    # Stage and data

    def change_stage(self, values: Values) -> Updates:
        """train.stage -> datasets that fit the stage (kept when still valid), RLHF controls shown or hidden."""
        stage = values.get("train.stage") or "sft"
        updates = self._dataset_updates(values, stage)
        updates.update(self._visibility(stage, values.get("top.finetuning_type") or "lora"))
        return updates

    def change_dataset_dir(self, values: Values) -> Updates:
        """train.dataset_dir -> the datasets registered there for the stage."""
        return self._dataset_updates(values, values.get("train.stage") or "sft")

    def _dataset_updates(self, values: Values, stage: str) -> Updates:
        import gradio as gr

        lang = values.get("top.lang")
        dataset_dir = (values.get("train.dataset_dir") or "").strip() or "demo"
        refused = self._dataset_dir_refused(values, dataset_dir)
        if refused:
            return {"train.dataset": gr.update(choices=[], value=[]), ALERTS: refused}
        try:
            choices = dataset_choices(dataset_dir, stage)
        except Exception as err:  # the registry names the file and key; show that, not a traceback
            return {
                "train.dataset": gr.update(choices=[], value=[]),
                ALERTS: [("warning", alert(lang, "dataset_registry", dir=dataset_dir, error=err))],
            }
        selected = [name for name in values.get("train.dataset") or [] if name in choices]
        if not selected:
            selected = default_datasets(dataset_dir, stage)
        updates: Updates = {
            "train.dataset": gr.update(choices=choices, value=selected),
            "train.preview_box": gr.update(visible=False),  # it showed the previous selection
        }
        if not choices:
            updates[ALERTS] = [("warning", alert(lang, "no_datasets", dir=dataset_dir, stage=stage))]
        return updates

    def _dataset_dir_refused(self, values: Values, dataset_dir: str) -> list[tuple[str, str]]:
        problems = self.roots().check_args({"dataset_dir": dataset_dir})
        return [("warning", alert(values.get("top.lang"), "path_refused", problems=problems[0]))] if problems else []

    def _dataset_files_refused(self, values: Values, dataset_dir: str, name: str) -> list[tuple[str, str]]:
        """A registry's file_name may point anywhere (`../../etc/passwd`): the files are checked before reading."""
        from core.data.registry import get_dataset_attr
        from webui.paths import PathRefused

        try:
            attr = get_dataset_attr(name, dataset_dir)
            files = attr.files() if attr.load_from == "file" else []
        except Exception:  # a bad entry or a missing file: the preview itself reports it with its reason
            return []
        roots = self.roots()
        try:
            for file in files:
                roots.check(file, f"{name}: file_name")
        except PathRefused as err:
            return [("warning", alert(values.get("top.lang"), "path_refused", problems=err))]
        return []

    def _visibility(self, stage: str, method: str) -> Updates:
        import gradio as gr

        return {f"train.{key}": gr.update(visible=shown) for key, shown in section_visibility(stage, method).items()}

    # Dataset preview

    def preview_open(self, values: Values) -> Updates:
        return self._preview(values, 0)

    def preview_prev(self, values: Values) -> Updates:
        return self._preview(values, max(0, int(values.get("train.preview_page") or 0) - 1))

    def preview_next(self, values: Values) -> Updates:
        return self._preview(values, int(values.get("train.preview_page") or 0) + 1)

    def preview_close(self, values: Values) -> Updates:
        import gradio as gr

        return {"train.preview_box": gr.update(visible=False)}

    def _preview(self, values: Values, page: int) -> Updates:
        """A page of the first selected dataset in the stage's canonical form (core.data.preview)."""
        import gradio as gr
        import pandas as pd

        from core.data.preview import preview

        lang = values.get("top.lang")
        names = values.get("train.dataset") or []
        if not names:
            return {ALERTS: [("warning", alert(lang, "no_dataset_selected"))]}
        dataset_dir = (values.get("train.dataset_dir") or "").strip() or "demo"
        name = names[0]
        refused = self._dataset_dir_refused(values, dataset_dir) or self._dataset_files_refused(
            values, dataset_dir, name
        )
        if refused:
            return {ALERTS: refused}
        try:
            result = preview(dataset_dir, name, page * PREVIEW_ROWS, PREVIEW_ROWS)
        except Exception as err:  # a bad file: say which and why, keep the board alive
            return {ALERTS: [("warning", alert(lang, "preview_failed", name=name, error=err))]}
        total = result.get("total")
        rows = result.get("rows") or []
        if not rows and page > 0:
            return self._preview(values, page - 1)
        columns = list(result.get("columns") or (rows[0].keys() if rows else []))
        frame = pd.DataFrame([[_cell(row.get(col)) for col in columns] for row in rows], columns=columns)
        last = page * PREVIEW_ROWS + len(rows)
        info = alert(
            lang,
            "preview_info",
            name=name,
            first=page * PREVIEW_ROWS + (1 if rows else 0),
            last=last,
            total="?" if total is None else total,
            file=result.get("file") or "",
        )
        updates: Updates = {
            "train.preview_box": gr.update(visible=True),
            "train.preview_table": frame,
            "train.preview_info": f'<div class="lb-preview-info">{escape(info)}</div>',
            "train.preview_page": page,
            "train.preview_next": gr.update(interactive=total is None or last < total),
            "train.preview_prev": gr.update(interactive=page > 0),
        }
        errors = [str(error) for error in result.get("errors") or []]
        if errors:  # rows that cannot be read are shown as they will fail in training, not hidden
            updates[ALERTS] = [
                ("warning", alert(lang, "preview_rows_skipped", name=name, errors="\n".join(errors[:3])))
            ]
        return updates

    # Arguments: preview, save, load, export

    def build(self, values: Values) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """The argument dict of the form, or None and the alerts that say why not."""
        from webui import args as argmod

        lang = values.get("top.lang")
        form = form_of(values)
        try:
            args = argmod.build_args(form)
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        return self.guard(args, values)

    def guard(self, args: dict[str, Any], values: Values) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """`args` when nothing in them may leak or reach outside the roots (webui.paths), with trust_remote_code
        as the job's checkbox says; else None and the alerts that say why."""
        from webui.paths import secret_problems

        lang = values.get("top.lang")
        if values.get("train.trust_remote_code"):
            args["trust_remote_code"] = True
        elif args.get("trust_remote_code"):
            return None, [("warning", alert(lang, "remote_code_off"))]
        problems = secret_problems(args) + self.roots().check_args(args)
        if problems:
            return None, [("warning", alert(lang, "path_refused", problems="\n".join(problems)))]
        return args, []

    def roots(self):
        """The board's roots plus its runner's saves folder, which is where the board writes runs by definition."""
        from webui.paths import board_roots

        return board_roots([self.runner.saves_root])

    def check_path(self, values: Values, path: Any, field: str, write: bool = False) -> list[tuple[str, str]]:
        """[] when `path` lies under the board's roots, else the alert that refuses it."""
        from webui.paths import PathRefused

        try:
            self.roots().check(path, field, write=write)
        except PathRefused as err:
            return [("warning", alert(values.get("top.lang"), "path_refused", problems=err))]
        return []

    def cmd_preview(self, values: Values) -> Updates:
        """Preview command -> the exact argv the runner will start and the equivalent CLI line, in the log box."""
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        try:
            text = self.runner.command_preview(args, self.run_dir_of(args), values.get("train.devices") or None)
        except RuntimeError as err:  # an unknown device
            return {ALERTS: [("warning", alert(values.get("top.lang"), "start_failed", error=err))]}
        problems = self.validate(args)
        if problems:
            alerts = [("warning", alert(values.get("top.lang"), "invalid", problems="\n".join(problems)))]
        return {"train.output_box": text, ALERTS: alerts}

    def validate(self, args: dict[str, Any]) -> list[str]:
        from webui import args as argmod

        try:
            return list(argmod.validate(args))
        except Exception as err:  # a checker bug must not hide the form; report it as a problem
            logger.exception("Validation crashed")
            return [f"{type(err).__name__}: {err}"]

    def save_args(self, values: Values) -> Updates:
        """Save config -> the argument dict written as YAML to config_path (the very file the CLI runs)."""
        from webui import args as argmod

        lang = values.get("top.lang")
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        path = _config_file(values.get("train.config_path"))
        refused = self.check_path(values, path, "config_path", write=True)
        if refused:
            return {ALERTS: refused}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(argmod.dump_yaml(args), encoding="utf-8")
        except OSError as err:
            return {ALERTS: [("warning", alert(lang, "save_failed", path=path, error=err))]}
        return {ALERTS: [("info", alert(lang, "saved", path=path))]}

    def load_args(self, values: Values) -> Updates:
        """Load config -> the form filled from a YAML (ours, hand-written or LLaMA-Factory's); keys the form cannot
        show are kept in extra_args (so they are written back on save) and listed in a toast."""
        import gradio as gr

        from webui import args as argmod

        lang = values.get("top.lang")
        path = _config_file(values.get("train.config_path"))
        refused = self.check_path(values, path, "config_path")
        if refused:
            return {ALERTS: refused}
        if not path.is_file():
            return {ALERTS: [("warning", alert(lang, "config_missing", path=path))]}
        try:
            args = argmod.load_yaml(path)
            form, extra = argmod.args_to_form(args)
        except (OSError, ValueError) as err:
            return {ALERTS: [("warning", alert(lang, "load_failed", path=path, error=err))]}

        updates: Updates = {}
        for name, value in form.items():
            key = self._form_key("output_dir" if name == "run_name" else name)
            if key is not None and name != "extra_args":
                updates[key] = value
        merged = _merge_extra(form.get("extra_args"), extra)
        updates["train.extra_args"] = json.dumps(merged, ensure_ascii=False) if merged else "{}"
        stage = form.get("stage") or values.get("train.stage") or "sft"
        method = form.get("finetuning_type") or values.get("top.finetuning_type") or "lora"
        for key, shown in self._visibility(stage, method).items():
            updates[key] = gr.update(value=updates[key], visible=shown["visible"]) if key in updates else shown
        if "dataset" in form:
            choices = []
            try:
                choices = dataset_choices(form.get("dataset_dir") or values.get("train.dataset_dir") or "demo", stage)
            except Exception:
                logger.exception("Could not list datasets for a loaded config")
            value = list(form["dataset"] or [])
            updates["train.dataset"] = gr.update(choices=sorted(set(choices) | set(value)), value=value)
        alerts = [("info", alert(lang, "loaded", path=path))]
        if extra:
            alerts.append(("warning", alert(lang, "extra_keys", keys=", ".join(sorted(extra)))))
        updates[ALERTS] = alerts
        return updates

    def export_args(self, values: Values) -> Updates:
        """Export YAML -> a file to download, named after the run."""
        import gradio as gr

        from webui import args as argmod

        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        name = Path(str(args.get("output_dir") or "train")).name or "train"
        folder = Path(tempfile.mkdtemp(prefix="llamaboard-export-"))
        path = folder / f"{name}.yaml"
        path.write_text(argmod.dump_yaml(args), encoding="utf-8")
        return {"train.export_file": gr.update(value=str(path), visible=True)}

    def _form_key(self, name: str) -> str | None:
        for tab in ("top", "train"):
            if f"{tab}.{name}" in self.manager:
                return f"{tab}.{name}"
        return None

    # Start and abort

    def run_dir_of(self, args: dict[str, Any]) -> Path:
        return Path(str(args["output_dir"]))

    def start(self, values: Values) -> Updates:
        """Start -> validate, then hand the job to the runner; the live view switches to the new run."""
        import gradio as gr

        from webui.runner import RunnerError

        lang = values.get("top.lang")
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        problems = self.validate(args)
        if problems:
            return {ALERTS: [("warning", alert(lang, "invalid", problems="\n".join(problems)))]}
        run_dir = self.run_dir_of(args)
        try:
            job = self.runner.start(args, run_dir, values.get("train.devices") or None, zero_choice(values))
        except (RunnerError, OSError) as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        config.save_config(
            {
                "model_name": values.get("top.model_name"),
                "model_path": values.get("top.model_path"),
                "template": values.get("top.template"),
                "finetuning_type": values.get("top.finetuning_type"),
            }
        )
        return {
            "train.view_run": gr.update(choices=self.run_choices(lang), value=_resolved(run_dir)),
            "train.output_dir": new_run_name(),  # the next Start gets a folder of its own
            "train.poll_state": {},
            "train.notes": [],
            ALERTS: [("info", started_alert(lang, job, run_dir))],
        }

    def abort(self, values: Values) -> Updates:
        """Abort -> the viewed run (or the active one) gets SIGTERM, then SIGKILL after the runner's grace period;
        the job saves at its next step, and the live view shows "aborted" once it has ended."""
        lang = values.get("top.lang")
        active = [str(path) for path in self.runner.active()]
        target = _resolved(values.get("train.view_run"))
        if target and target in map(str, getattr(self.runner, "queued", list)()):
            self.runner.cancel(Path(target))
            return {ALERTS: [("info", alert(lang, "cancelled", path=target))]}
        if target not in active:
            target = active[0] if active else None
        if target is None:
            return {ALERTS: [("warning", alert(lang, "nothing_to_abort"))]}
        self.runner.abort(Path(target))
        return {ALERTS: [("info", alert(lang, "aborting", path=target))]}

    # Live view

    def run_choices(self, lang: str | None = None) -> list[tuple[str, str]]:
        """Every run under saves, newest first, as (label, path); the label ends with the run's state."""
        from webui import jobs

        try:
            runs = jobs.list_runs(self.saves_root)
        except OSError as err:
            logger.warning("Could not list runs under %s: %s", self.saves_root, err)
            return []
        choices = []
        for run in runs:
            state = alert(lang, STATE_ALERTS.get(str(run.get("state")), "state_unknown"))
            choices.append((f"{run['name']} · {state}", _resolved(run["path"])))
        return choices

    def runs_table(self, lang: str | None) -> Any:
        """Every run under saves as a table (newest first); the last column is the run folder."""
        import pandas as pd

        from webui import jobs

        names = entry(lang, "runs.table").get("columns") or {}
        columns = ("run", "stage", "state", "steps", "created", "error", "path")
        try:
            runs = jobs.list_runs(self.saves_root)
        except OSError as err:
            logger.warning("Could not list runs under %s: %s", self.saves_root, err)
            runs = []
        rows = []
        for run in runs:
            created = run.get("created")
            rows.append(
                [
                    run["name"],
                    run.get("stage") or "",
                    alert(lang, STATE_ALERTS.get(str(run.get("state")), "state_unknown")),
                    f"{run.get('steps') or 0}/{run.get('total_steps') or '?'}",
                    datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "",
                    run.get("error") or "",
                    _resolved(run["path"]),
                ]
            )
        return pd.DataFrame(rows, columns=[names.get(column, column) for column in columns])

    def refresh_runs_table(self, values: Values) -> Updates:
        """Runs tab, Refresh -> the table re-read from the saves folder."""
        return {"runs.table": self.runs_table(values.get("top.lang"))}

    def show_run(self, values: Values) -> Updates:
        """A run picked in the Runs tab -> the Train tab's live view shows it."""
        import gradio as gr

        lang = values.get("top.lang")
        target = _resolved(values.get("train.view_run"))
        updates = self.poll({**values, "train.view_run": target, "train.poll_state": {}})
        updates["train.view_run"] = gr.update(choices=self.run_choices(lang), value=target)
        return updates

    def refresh_runs(self, values: Values) -> Updates:
        import gradio as gr

        return {"train.view_run": gr.update(choices=self.run_choices(values.get("top.lang")))}

    def change_view(self, values: Values) -> Updates:
        """train.view_run picked -> the live view redrawn for that run (a typed folder outside the roots: refused)."""
        refused = (
            self.check_path(values, values.get("train.view_run"), "view_run") if values.get("train.view_run") else []
        )
        if refused:
            return {**self.poll({**values, "train.view_run": None, "train.poll_state": {}}), ALERTS: refused}
        return self.poll({**values, "train.poll_state": {}})

    def on_load(self, values: Values) -> Updates:
        """Page (re)load -> the running job, else the newest run, in the live view; remembered top-bar choices."""
        import gradio as gr

        updates = self._remembered(values)
        # A loaded page shows the values the form was built with; the model it shows brings its preset (a new
        # user's demo model: settings under which the loss visibly falls in a minute).
        name = _value_of(updates.get("top.model_name"), values.get("top.model_name")) or ""
        built = {key: self.manager[key].value for key in PRESET_CONTROLS}
        for key, value in self._preset_updates(name, built).items():
            change = updates.get(key)
            updates[key] = gr.update(**{**change, "value": value}) if isinstance(change, dict) else value
        lang = _value_of(updates.get("top.lang"), values.get("top.lang"))
        runs = self.run_choices(lang)
        active = [str(path) for path in self.runner.active()]
        view = active[0] if active else (runs[0][1] if runs else None)
        updates["train.view_run"] = gr.update(choices=runs, value=view)
        updates.update(self.poll({**values, "top.lang": lang, "train.view_run": view, "train.poll_state": {}}))
        return updates

    def _remembered(self, values: Values) -> Updates:
        """The top bar as the user config remembers it, where it differs from the page (built at board start):
        another language relabels the page, another model or method refreshes checkpoints and sections."""
        import gradio as gr

        saved = config.load_config()
        updates: Updates = {}
        lang = normalize_lang(saved.get("lang") or values.get("top.lang"))
        if lang != values.get("top.lang"):
            updates = {self.manager.key_of(comp): change for comp, change in self.manager.relabel(lang).items()}
            updates["top.lang"] = gr.update(**{**updates.get("top.lang", {}), "value": lang})
        changed = {}
        for name in ("model_name", "model_path", "template", "finetuning_type"):
            if saved.get(name) and saved[name] != values.get(f"top.{name}"):
                changed[name] = saved[name]
                updates[f"top.{name}"] = saved[name]
        if {"model_name", "model_path", "finetuning_type"} & set(changed):
            merged = {**values, **{f"top.{name}": value for name, value in changed.items()}}
            method = merged.get("top.finetuning_type") or "lora"
            updates.update(
                self._checkpoint_updates(merged.get("top.model_name") or "", method, merged["top.model_path"])
            )
            for key, change in self._visibility(values.get("train.stage") or "sft", method).items():
                updates[key] = gr.update(**{**updates.get(key, {}), **change})
        return updates

    def _watcher(self, run_dir: Path) -> Watcher:
        from webui import jobs

        key = str(run_dir)
        with self._lock:
            watcher = self._watchers.get(key)
            if watcher is None:
                log = run_dir / "job.log"
                if not log.exists() and (run_dir / "running_log.txt").exists():
                    log = run_dir / "running_log.txt"  # a LLaMA-Factory run folder
                watcher = Watcher(
                    run_dir=run_dir,
                    reader=jobs.TrainerLogReader(run_dir / "trainer_log.jsonl"),
                    tail=jobs.LogTail(log),
                    stage=_read_stage(run_dir),
                )
                self._watchers[key] = watcher
            return watcher

    def current_output(self, target: str | None, notes: list[str]) -> str:
        """The log box as it should read now: the viewed run's log tail (if any) and the session's notes."""
        text = ""
        if target:
            watcher = self._watchers.get(str(target))
            text = watcher.text if watcher is not None else ""
        return compose_output(text, notes[-MAX_NOTES:])

    def poll(self, values: Values) -> Updates:
        """Timer tick -> log box, progress bar and charts of the viewed run, sent only when something changed."""
        import gradio as gr

        from webui import jobs

        lang = values.get("top.lang")
        notes = list(values.get("train.notes") or [])
        seen = dict(values.get("train.poll_state") or {})
        target = values.get("train.view_run")
        if target and self.check_path(values, target, "view_run"):
            target = None  # the run list offers folders under saves; a typed path outside the roots shows nothing
        if not target:
            key = {"run": None, "notes": len(notes), "lang": lang}
            if key == seen:
                return {}
            return {
                "train.poll_state": key,
                "train.progress": progress_html(lang, None, None),
                "train.output_box": "\n".join(notes),
                **figures(lang, [], None, log_y=False),
            }

        run_dir = Path(target)
        watcher = self._watcher(run_dir)
        records, text, version = watcher.poll()
        job = jobs.read_job(run_dir)
        state = (job or {}).get("state")
        key = {
            "run": str(run_dir),
            "records": len(records),
            "log": version,
            "state": state,
            "notes": len(notes),
            "lang": lang,
            "log_y": bool(values.get("train.loss_log_y")),
        }
        if key == seen and state != "running":
            return {}
        updates: Updates = {"train.poll_state": key}
        if key.get("log") != seen.get("log") or key["notes"] != seen.get("notes") or key["run"] != seen.get("run"):
            updates["train.output_box"] = compose_output(text, notes)
        if key["state"] != seen.get("state") and seen.get("run") == key["run"]:
            # The run list shows each run's state; refresh it when the viewed run's state changes.
            updates["train.view_run"] = gr.update(choices=self.run_choices(lang))
        progress = jobs.progress(records, job) if job is not None else None
        updates["train.progress"] = progress_html(lang, progress, job)
        if any(key[name] != seen.get(name) for name in ("records", "run", "lang", "log_y")):
            stage = watcher.stage or (job or {}).get("stage")
            updates.update(figures(lang, records, stage, log_y=key["log_y"]))
        return updates


def figures(lang: str | None, records: list[dict[str, Any]], stage: str | None, log_y: bool) -> Updates:
    """The live view's charts in `lang`: loss (raw, smoothed, eval; log scale on request), learning rate, and for
    reward-logging stages (rm, dpo, kto) reward accuracy and margins."""
    import gradio as gr

    from webui import plots

    def title(key: str) -> str:
        return str(entry(lang, key).get("label") or "")

    updates: Updates = {
        "train.loss_viewer": plots.loss_figure(
            records, log_y=log_y, title=title("train.loss_viewer"), hint=alert(lang, "loss_hint")
        ),
        "train.lr_viewer": plots.lr_figure(records, title=title("train.lr_viewer"), hint=alert(lang, "lr_hint")),
    }
    if stage in REWARD_STAGES:
        reward = plots.reward_figure(records, title=title("train.reward_viewer"), hint=alert(lang, "reward_hint"))
        updates["train.reward_viewer"] = gr.update(value=reward, visible=True)
    else:
        updates["train.reward_viewer"] = gr.update(visible=False)
    return updates


DS_STAGES = {"none": None, "2": (2, False), "3": (3, False), "2_offload": (2, True), "3_offload": (3, True)}
"""The DeepSpeed choice of the Train tab -> (ZeRO stage, CPU offload) for core.deepspeed, or None."""


def zero_choice(values: Values) -> tuple[int, bool] | None:
    return DS_STAGES.get(str(values.get("train.ds_stage") or "none"))


def started_alert(lang: str | None, job: dict[str, Any], run_dir: Path) -> str:
    """ "Started" or, when its devices are busy, "queued at position N" (it starts by itself)."""
    if job.get("state") == "queued":
        return alert(lang, "queued", path=run_dir, position=job.get("queue_position") or 1)
    return alert(lang, "started", path=run_dir)


def compose_output(log_text: str, notes: list[str]) -> str:
    """The log box: the job's log tail, then the board's own messages of this session (validation, refusals)."""
    if not notes:
        return log_text
    board = "\n".join(f"[board] {note}" for note in notes)
    return f"{log_text.rstrip()}\n{board}" if log_text else board


def form_of(values: Values) -> dict[str, Any]:
    """The argument controls' values keyed by argument name, as `webui.args.build_args` takes them."""
    from webui.tabs import top, train

    form = {name: values[f"top.{name}"] for name in top.ARGUMENTS if f"top.{name}" in values}
    form.update({name: values[f"train.{name}"] for name in train.ARGUMENTS if f"train.{name}" in values})
    if "output_dir" in form:
        # The control shows the run name; build_args puts the run under saves/<model>/<method>/.
        form["run_name"] = form.pop("output_dir")
    return form


def _value_of(update: Any, default: Any) -> Any:
    """The value an update sets (a plain value or a gr.update dict), else `default`."""
    if isinstance(update, dict):
        return update.get("value", default)
    return default if update is None else update


def _resolved(path: Any) -> str | None:
    """Run folders compare as resolved paths (the runner resolves them; /tmp may be a symlink)."""
    return str(Path(str(path)).resolve()) if path else None


def _config_file(text: str | None) -> Path:
    return Path((text or "").strip() or default_config_path()).expanduser()


def _merge_extra(extra_args: Any, extra: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if isinstance(extra_args, dict):
        merged.update(extra_args)
    elif isinstance(extra_args, str) and extra_args.strip():
        try:
            loaded = json.loads(extra_args)
            if isinstance(loaded, dict):
                merged.update(loaded)
        except json.JSONDecodeError:
            logger.warning("Ignoring extra_args that are not JSON: %s", extra_args[:200])
    merged.update(extra)
    return merged


MAX_CELL_CHARS = 2000
"""A preview cell shows this much of a value; a 50 MB row must not travel to every browser that looks."""


def _cell(value: Any) -> Any:
    """Nested values (messages, images lists) shown as JSON so a table can hold them; long text cut short."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return f"{value[:MAX_CELL_CHARS]}… (+{len(value) - MAX_CELL_CHARS} characters)"
    return value


# Wiring handlers to gradio events


def bind(
    board: Board,
    event: Callable[..., Any],
    handler: Callable[[Values], Updates],
    inputs: Iterable[str],
    outputs: Iterable[str],
    **kwargs: Any,
) -> Any:
    """Connect `handler` to a gradio event (`component.click`, `timer.tick`, ...) by "tab.elem" keys.

    Every bound handler also receives the language and the session's notes and may return alerts: those become
    toasts and lines in the log box, and a handler that crashes shows a toast instead of a traceback.
    """
    import gradio as gr

    manager = board.manager
    input_keys = set(inputs) | {"top.lang", "train.notes", "train.view_run"}
    output_keys = set(outputs) | {"train.notes", "train.output_box"}
    input_set = {manager[key] for key in input_keys}
    output_list = [manager[key] for key in sorted(output_keys)]

    def run(values: dict[Any, Any]) -> dict[Any, Any]:
        by_key = manager.by_key(values)
        lang = by_key.get("top.lang")
        try:
            updates = dict(handler(by_key))
        except Exception as err:
            logger.exception("Handler %s failed", getattr(handler, "__name__", handler))
            updates = {ALERTS: [("warning", alert(lang, "internal_error", error=f"{type(err).__name__}: {err}"))]}
        alerts = updates.pop(ALERTS, [])
        if alerts:
            notes = list(updates.get("train.notes", by_key.get("train.notes")) or [])
            for level, text in alerts:
                (gr.Warning if level == "warning" else gr.Info)(escape(text).replace("\n", "<br>"))
                notes.append(text)
            updates["train.notes"] = notes[-MAX_NOTES:]
            if "train.output_box" not in updates:
                updates["train.output_box"] = board.current_output(by_key.get("train.view_run"), notes)
        result = {manager[key]: value for key, value in updates.items() if key in output_keys}
        # gradio reads an empty dict as one output value, not as "no updates": skip one output explicitly.
        return result or {output_list[0]: gr.skip()}

    kwargs.setdefault("show_progress", "hidden")
    kwargs.setdefault("api_name", getattr(handler, "__name__", None))
    return event(run, inputs=input_set, outputs=output_list, **kwargs)

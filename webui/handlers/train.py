"""What the Train tab does: stage and data choices, Preview command, Save / Load / Export YAML, Start and Abort.

The layout is webui/tabs/train.py, the controls are declared in webui/controls.py; the live view below the
buttons is webui/handlers/live.py, the dataset preview webui/handlers/preview.py. Start: the form becomes an
argument dict (webui.args.build_args), is checked (paths, secrets, core.hparams) and goes to the runner, which
runs `python -m core.cli train <run>/job.yaml`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from core import registry, runfolder
from core.data.registry import get_dataset_attr
from core.secrets import without_secrets
from webui import args as argmod
from webui import config
from webui.controls import TOP_ARGUMENTS, TRAIN_ARGUMENTS
from webui.handlers.base import BoardBase, resolved
from webui.handlers.choices import (
    DEMO_DATASETS,
    dataset_choices,
    default_config_path,
    default_datasets,
    new_run_name,
    section_updates,
    zero_choice,
)
from webui.handlers.events import ALERTS, Alerts, Updates, Values
from webui.handlers.render import start_from_html, started_alert
from webui.manager import alert
from webui.paths import PathRefused, secret_problems
from webui.runner import RunnerError

logger = logging.getLogger(__name__)


class TrainHandlers(BoardBase):
    """The Train tab's handlers (mixed into webui.board.Board)."""

    # Stage and data

    def change_stage(self, values: Values) -> Updates:
        """train.stage -> datasets that fit the stage (kept when still valid), RLHF controls shown or hidden."""
        stage = values.get("train.stage") or "sft"
        updates = self._dataset_updates(values, stage)
        updates.update(section_updates(stage, values.get("top.finetuning_type") or "lora"))
        return updates

    def change_dataset_dir(self, values: Values) -> Updates:
        """train.dataset_dir -> the datasets registered there for the stage."""
        return self._dataset_updates(values, values.get("train.stage") or "sft")

    def _dataset_updates(self, values: Values, stage: str) -> Updates:
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
        if not selected or (len(selected) == 1 and selected[0] in DEMO_DATASETS.values()):
            # Only another stage's demo data (demo_sft kept when switching to grpo would train on the wrong task):
            # the demo data of this stage instead, when it has one.
            selected = default_datasets(dataset_dir, stage) or selected
        updates: Updates = {
            "train.dataset": gr.update(choices=choices, value=selected),
            "train.preview_box": gr.update(visible=False),  # it showed the previous selection
        }
        if not choices:
            updates[ALERTS] = [("warning", alert(lang, "no_datasets", dir=dataset_dir, stage=stage))]
        return updates

    def _dataset_dir_refused(self, values: Values, dataset_dir: str) -> Alerts:
        problems = self.roots().check_args({"dataset_dir": dataset_dir})
        return [("warning", alert(values.get("top.lang"), "path_refused", problems=problems[0]))] if problems else []

    def _dataset_files_refused(self, values: Values, dataset_dir: str, name: str) -> Alerts:
        """A registry's file_name may point anywhere (`../../etc/passwd`): the files are checked before reading."""
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

    def build(self, values: Values) -> tuple[dict[str, Any] | None, Alerts]:
        """The argument dict of the form, or None and the alerts that say why not."""
        lang = values.get("top.lang")
        form = form_of(values)
        try:
            args = argmod.build_args(form)
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        return self.guard(args, values)

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

    def save_args(self, values: Values) -> Updates:
        """Save config -> the argument dict written as YAML to config_path (the very file the CLI runs)."""
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
        return {**self._next_run_name(values, args), ALERTS: [("info", alert(lang, "saved", path=path))]}

    def _next_run_name(self, values: Values, args: dict[str, Any]) -> Updates:
        """After a YAML is written, the run it describes owns its output_dir: the form offers another name."""
        taken = Path(str(args.get("output_dir") or "")).name
        return {"train.output_dir": new_run_name(self.runs_folder(values), taken=(taken,))}

    def load_args(self, values: Values) -> Updates:
        """Load config -> the form filled from a YAML (ours, hand-written or LLaMA-Factory's); keys the form cannot
        show are kept in extra_args (so they are written back on save) and listed in a toast."""
        lang = values.get("top.lang")
        path = _config_file(values.get("train.config_path"))
        refused = self.check_path(values, path, "config_path")
        if refused:
            return {ALERTS: refused}
        if not path.is_file():
            return {ALERTS: [("warning", alert(lang, "config_missing", path=path))]}
        try:
            args = argmod.load_yaml(path)
            # A token in the file is dropped (redacted where it hides in a value), never shown in the form.
            secrets = secret_problems(args)
            form, extra = argmod.args_to_form(without_secrets(args) if secrets else args)
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
        for key, shown in section_updates(stage, method).items():
            updates[key] = gr.update(value=updates[key], visible=shown["visible"]) if key in updates else shown
        if "dataset" in form:
            choices = []
            try:
                choices = dataset_choices(form.get("dataset_dir") or values.get("train.dataset_dir") or "demo", stage)
            except Exception as err:  # the loaded names stay; the registry's problem shows when the list is opened
                logger.warning("Could not list datasets for a loaded config: %s", err)
            value = list(form["dataset"] or [])
            updates["train.dataset"] = gr.update(choices=sorted(set(choices) | set(value)), value=value)
        alerts = [("info", alert(lang, "loaded", path=path))]
        if extra:
            alerts.append(("warning", alert(lang, "extra_keys", keys=", ".join(sorted(extra)))))
        if secrets:
            alerts.append(("warning", alert(lang, "secrets_dropped", path=path, problems="\n".join(secrets))))
        updates[ALERTS] = alerts
        return updates

    def export_args(self, values: Values) -> Updates:
        """Export YAML -> a file to download, named after the run."""
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        name = Path(str(args.get("output_dir") or "train")).name or "train"
        folder = Path(tempfile.mkdtemp(prefix="llamaboard-export-"))
        path = folder / f"{name}.yaml"
        path.write_text(argmod.dump_yaml(args), encoding="utf-8")
        return {"train.export_file": gr.update(value=str(path), visible=True), **self._next_run_name(values, args)}

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
        lang = values.get("top.lang")
        args, alerts = self.build(values)
        if args is None:
            return {ALERTS: alerts}
        problems = self.validate(args)
        if problems:
            return {ALERTS: [("warning", alert(lang, "invalid", problems="\n".join(problems)))]}
        refused = self.plan_refusal(args, values)  # webui.handlers.plan: will not fit, "Start anyway" unticked
        if refused:
            return {ALERTS: refused}
        if values.get("train.plan_insist"):
            args = {**args, "plan_check": False}  # the job's own check (core.plan_check) would refuse it again
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
            "train.view_run": gr.update(choices=self.run_choices(lang), value=resolved(run_dir)),
            "train.output_dir": new_run_name(self.runs_folder(values)),  # the next Start gets a folder of its own
            "train.poll_state": {},
            "train.notes": [],
            ALERTS: [("info", started_alert(lang, job, run_dir))],
        }

    def show_start_from(self, values: Values) -> Updates:
        """top.checkpoint_path or top.finetuning_type changed -> the line saying what Start trains from."""
        method = values.get("top.finetuning_type") or "lora"
        html = start_from_html(values.get("top.lang"), values.get("top.checkpoint_path") or [], method)
        return {"train.start_from": html}

    def rerun(self, values: Values) -> Updates:
        """Re-run -> the viewed run's arguments, unchanged but for output_dir (a new folder beside it,
        core.registry.rerun_config), checked like Start and handed to the runner; the live view follows the new
        run. The twin of `llamafactory-cli runs rerun <run>`."""
        lang = values.get("top.lang")
        source = resolved(values.get("train.view_run"))
        if not source:
            return {ALERTS: [("warning", alert(lang, "rerun_nothing"))]}
        try:
            run_dir, args = registry.rerun_config(source)
        except FileNotFoundError as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        args, alerts = self.guard(args, values)
        if args is None:
            return {ALERTS: alerts}
        problems = self.validate(args)
        if problems:
            return {ALERTS: [("warning", alert(lang, "invalid", problems="\n".join(problems)))]}
        try:
            job = self.runner.start(args, run_dir, values.get("train.devices") or None, zero_choice(values))
        except (RunnerError, OSError) as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        return {
            "train.view_run": gr.update(choices=self.run_choices(lang), value=resolved(run_dir)),
            "train.poll_state": {},
            "train.notes": [],
            ALERTS: [("info", started_alert(lang, job, run_dir))],
        }

    def stop_keep_best(self, values: Values) -> Updates:
        """Stop and keep best -> like Abort for a running job, after writing its KEEP_BEST request: the job stops
        at its next step and ends with its best evaluated checkpoint as the final model (core GracefulStopCallback)."""
        lang = values.get("top.lang")
        active = [str(path) for path in self.runner.active()]
        target = resolved(values.get("train.view_run"))
        if target not in active:
            target = active[0] if active else None
        if target is None:
            return {ALERTS: [("warning", alert(lang, "nothing_to_abort"))]}
        (Path(target) / runfolder.KEEP_BEST).write_text("", encoding="utf-8")
        self.runner.abort(Path(target))
        return {ALERTS: [("info", alert(lang, "stopping_keep_best", path=target))]}

    def abort(self, values: Values) -> Updates:
        """Abort -> the viewed run (or the active one) gets SIGTERM, then SIGKILL after the runner's grace period;
        the job saves at its next step, and the live view shows "aborted" once it has ended."""
        lang = values.get("top.lang")
        active = [str(path) for path in self.runner.active()]
        target = resolved(values.get("train.view_run"))
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


def form_of(values: Values) -> dict[str, Any]:
    """The argument controls' values keyed by argument name, as `webui.args.build_args` takes them."""
    form = {name: values[f"top.{name}"] for name in TOP_ARGUMENTS if f"top.{name}" in values}
    form.update({name: values[f"train.{name}"] for name in TRAIN_ARGUMENTS if f"train.{name}" in values})
    if "output_dir" in form:
        # The control shows the run name; build_args puts the run under saves/<model>/<method>/.
        form["run_name"] = form.pop("output_dir")
    return form


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
        except (json.JSONDecodeError, RecursionError):
            logger.warning("Ignoring extra_args that are not JSON: %s", extra_args[:200])
    merged.update(extra)
    return merged

"""What the top bar does (language, model, method, template, checkpoints) and what a page (re)load restores.

The layout is webui/tabs/top.py. A model switch refreshes the checkpoint lists and brings the model's Train tab
preset; a page load brings back the remembered choices (webui.config) and shows the running or newest run.
"""

from __future__ import annotations

import gradio as gr

from webui import config, models
from webui.args import FORM_DEFAULTS
from webui.handlers.base import BoardBase, value_of
from webui.handlers.choices import PRESET_CONTROLS, checkpoint_choices, section_updates, visible_devices
from webui.handlers.events import Updates, Values
from webui.handlers.render import device_count_html, progress_html, start_from_html
from webui.manager import normalize_lang

TOP_BAR = ("top.model_name", "top.model_path", "top.template", "top.finetuning_type", "train.stage")
"""Inputs of the page-load handler: what the remembered choices are compared with."""


class TopHandlers(BoardBase):
    """The top bar's handlers and the page load (mixed into webui.board.Board)."""

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
        updates.update(self.relabel_html(lang, values))
        return updates

    def relabel_html(self, lang: str, values: Values) -> Updates:
        """HTML whose words come from the locale files (the relabelling above sets labels, not HTML): the device
        line, and the progress bars of the Evaluate and Export tabs, whose timers redraw a viewed job in `lang`."""
        updates: Updates = {}
        if "train.device_count" in self.manager:
            updates["train.device_count"] = device_count_html(lang, len(visible_devices()))
        if "train.start_from" in self.manager:
            method = values.get("top.finetuning_type") or "lora"
            updates["train.start_from"] = start_from_html(lang, values.get("top.checkpoint_path") or [], method)
        for tab in ("eval", "export"):
            if f"{tab}.progress" not in self.manager:
                continue
            updates[f"{tab}.poll_state"] = {}
            if not values.get(f"{tab}.view_run"):
                updates[f"{tab}.progress"] = progress_html(lang, None, None)
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
        updates.update(section_updates(values.get("train.stage") or "sft", method))
        return updates

    def refresh_checkpoints(self, values: Values) -> Updates:
        """top.checkpoint_path opened -> its choices re-read from saves (a run may have finished meanwhile)."""
        choices = checkpoint_choices(
            values.get("top.model_name") or "",
            values.get("top.finetuning_type") or "lora",
            values.get("top.model_path"),
        )
        return {"top.checkpoint_path": gr.update(choices=choices)}

    def _checkpoint_updates(self, name: str, method: str, path: str | None) -> Updates:
        choices = checkpoint_choices(name, method, path or "")
        return {
            "top.checkpoint_path": gr.update(choices=choices, value=[]),
            "train.reward_model": gr.update(choices=choices, value=None),
        }

    # Stage and data

    def on_load(self, values: Values) -> Updates:
        """Page (re)load -> the running job, else the newest run, in the live view; remembered top-bar choices."""
        updates = self._remembered(values)
        # A loaded page shows the values the form was built with; the model it shows brings its preset (a new
        # user's demo model: settings under which the loss visibly falls in a minute).
        name = value_of(updates.get("top.model_name"), values.get("top.model_name")) or ""
        built = {key: self.manager[key].value for key in PRESET_CONTROLS}
        for key, value in self._preset_updates(name, built).items():
            change = updates.get(key)
            updates[key] = gr.update(**{**change, "value": value}) if isinstance(change, dict) else value
        lang = value_of(updates.get("top.lang"), values.get("top.lang"))
        runs = self.run_choices(lang)
        active = [str(path) for path in self.runner.active()]
        view = active[0] if active else (runs[0][1] if runs else None)
        updates["train.view_run"] = gr.update(choices=runs, value=view)
        updates.update(self.poll({**values, "top.lang": lang, "train.view_run": view, "train.poll_state": {}}))
        # Names computed when the board started would point at the runs made since: each page gets fresh ones.
        top = {key: value_of(updates.get(key), values.get(key)) for key in TOP_BAR}
        updates.update(self.fresh_names({**values, **top}))
        return updates

    def _remembered(self, values: Values) -> Updates:
        """The top bar as the user config remembers it, where it differs from the page (built at board start):
        another language relabels the page, another model or method refreshes checkpoints and sections."""
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
            for key, change in section_updates(values.get("train.stage") or "sft", method).items():
                updates[key] = gr.update(**{**updates.get(key, {}), **change})
        return updates

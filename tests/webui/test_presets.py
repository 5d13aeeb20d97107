"""Per-model Train tab presets (models.yaml `train_defaults`): a new user's demo run gets settings under which the
loss falls; switching models applies or takes back presets without undoing the user's own edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from webui import models
from webui.args import FORM_DEFAULTS
from webui.handlers.choices import PRESET_CONTROLS

DEMO = models.DEMO
PRESET = models.train_defaults(DEMO)


def form(ui: Any, **overrides: Any) -> dict[str, Any]:
    """Every component's initial value keyed "tab.elem", with `overrides` ("tab__elem": value)."""
    manager = ui.board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return values


def value_of(update: Any) -> Any:
    return update.get("value") if isinstance(update, dict) and "__type__" in update else update


def test_demo_preset_is_a_set_of_train_tab_values_that_differ_from_the_form(ui: Any) -> None:
    assert PRESET["learning_rate"] >= 50 * FORM_DEFAULTS["learning_rate"]
    assert PRESET["cutoff_len"] < FORM_DEFAULTS["cutoff_len"]
    for entry in models.MODELS.values():
        for key, value in entry.train_defaults.items():
            assert key in FORM_DEFAULTS and f"train.{key}" in ui.board.manager, (entry.name, key)
            assert isinstance(value, int | float) == isinstance(FORM_DEFAULTS[key], int | float), (entry.name, key)
    assert set(PRESET) <= {control.removeprefix("train.") for control in PRESET_CONTROLS}
    assert models.train_defaults("Qwen3-0.6B") == {} and models.train_defaults("no such model") == {}


def test_first_page_load_with_the_demo_model_shows_its_preset(ui: Any) -> None:
    loaded = ui.board.on_load(form(ui))
    for key, value in PRESET.items():
        if value != FORM_DEFAULTS[key]:
            assert value_of(loaded[f"train.{key}"]) == value, key
    # What Start then runs: the demo model with the preset's values.
    args, problems = ui.board.build(form(ui, **{f"train__{key}": value for key, value in PRESET.items()}))
    assert not problems and args is not None
    assert args["model_name_or_path"] == "demo" and args["learning_rate"] == PRESET["learning_rate"]
    assert args["cutoff_len"] == PRESET["cutoff_len"]


def test_model_switch_and_page_load_are_wired_to_the_preset_controls(ui: Any) -> None:
    by_name = {dep.get("api_name"): dep for dep in ui.config["dependencies"]}
    wanted = {ui.board.manager[control]._id for control in PRESET_CONTROLS}
    assert wanted <= set(by_name["change_model"]["outputs"]) and wanted <= set(by_name["change_model"]["inputs"])
    assert wanted <= set(by_name["on_load"]["outputs"])


def test_picking_the_demo_model_applies_its_preset(ui: Any) -> None:
    values = form(ui, top__model_name=DEMO)
    result = ui.board.change_model(values)
    for key, value in PRESET.items():
        assert result.get(f"train.{key}", values[f"train.{key}"]) == value, key
    # Values already right are not sent: a late update must not overwrite what the user typed meanwhile.
    assert not any(result.get(f"train.{key}") == values[f"train.{key}"] for key in PRESET)
    again = ui.board.change_model({**values, **{f"train.{key}": value for key, value in PRESET.items()}})
    assert not any(control in again for control in PRESET_CONTROLS)


def test_leaving_the_demo_model_restores_untouched_fields_and_keeps_edits(ui: Any) -> None:
    demo_form = form(ui, **{f"train__{key}": value for key, value in PRESET.items()})
    demo_form["train.learning_rate"] = 2e-4  # the user's own choice
    try:
        result = ui.board.change_model({**demo_form, "top.model_name": "Qwen3-0.6B"})
        assert "train.learning_rate" not in result  # kept
        assert result["train.cutoff_len"] == FORM_DEFAULTS["cutoff_len"]
        assert result["train.per_device_train_batch_size"] == FORM_DEFAULTS["per_device_train_batch_size"]
        assert result["train.gradient_accumulation_steps"] == FORM_DEFAULTS["gradient_accumulation_steps"]
        assert result["train.num_train_epochs"] == FORM_DEFAULTS["num_train_epochs"]
        # A reload with another model remembered: the page keeps the form's defaults.
        loaded = ui.board.on_load(form(ui))
        assert not any(value_of(loaded.get(f"train.{key}")) == value for key, value in PRESET.items() if key in loaded)
    finally:
        ui.board.change_model(form(ui, top__model_name=DEMO))


def test_a_model_without_preset_leaves_default_values_alone(ui: Any) -> None:
    result = ui.board.change_model(form(ui, top__model_name="Custom", top__model_path="/models/mine"))
    assert not any(control in result for control in PRESET_CONTROLS)
    ui.board.change_model(form(ui, top__model_name=DEMO))


def test_a_malformed_preset_names_the_model_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("- {name: Mine, path: me/mine, template: chatml, train_defaults: [1, 2]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"models\.yaml: model 'Mine': train_defaults must be a mapping"):
        models._load(path)

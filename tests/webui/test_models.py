"""The curated model list and the remembered user config."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from webui import config, models


def test_demo_first_custom_last_and_about_thirty_real_models():
    names = list(models.MODELS)
    assert names[0] == models.DEMO
    assert names[-1] == models.CUSTOM
    assert 25 <= len(names) - 2 <= 60
    assert models.model_path(models.DEMO) == "demo"
    assert models.default_template(models.DEMO) == "chatml"
    assert models.save_name(models.DEMO) == "demo"


def test_every_real_model_has_a_hub_id_and_a_template():
    for entry in list(models.MODELS.values())[1:-1]:
        assert "/" in entry.path, entry
        assert entry.template, entry
        assert "/" not in entry.folder and " " not in entry.folder


def test_families_map_to_their_templates():
    assert models.model_path("Qwen3-8B") == "Qwen/Qwen3-8B"
    assert models.default_template("Qwen3-8B") == "qwen3"
    assert models.default_template("Llama-3.1-8B-Instruct") == "llama3"
    assert models.default_template("gemma-3-4b-it") == "gemma"
    assert models.model_name_for_path("meta-llama/Llama-3.2-1B-Instruct") == "Llama-3.2-1B-Instruct"
    assert models.model_name_for_path("/data/my-model") == models.CUSTOM


@pytest.mark.skipif(importlib.util.find_spec("core.data.templates") is None, reason="core.data.templates not written")
def test_default_templates_exist_in_the_template_registry():
    from core.data.templates import TEMPLATE_NAMES

    missing = {e.name: e.template for e in models.MODELS.values() if e.template and e.template not in TEMPLATE_NAMES}
    assert not missing


def test_unknown_and_custom_models_have_no_path_and_a_safe_folder():
    assert models.model_path("No Such Model") == ""
    assert models.model_path(models.CUSTOM) == ""
    assert models.default_template(models.CUSTOM) == ""
    assert models.save_name(models.CUSTOM, "/data/models/My Model/") == "My-Model"
    assert models.save_name(models.CUSTOM, "") == "custom"
    assert models.save_name("../evil name") == "evil-name"


def test_config_round_trip_keeps_only_known_keys(tmp_path):
    path = tmp_path / "user_config.yaml"
    assert config.load_config(path) == {}
    config.save_config({"lang": "zh", "model_name": "Qwen3-8B", "password": "x"}, path)
    config.save_config({"template": "qwen3"}, path)
    assert config.load_config(path) == {"lang": "zh", "model_name": "Qwen3-8B", "template": "qwen3"}


def test_config_defaults_to_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMABOARD_CACHE", str(tmp_path))
    config.save_config({"lang": "ko"})
    assert (tmp_path / "user_config.yaml").exists()
    assert config.load_config() == {"lang": "ko"}


@pytest.mark.parametrize("text", ["lang: [unclosed", "- a list\n- not a mapping\n", "!!python/object:os.system {}"])
def test_corrupt_config_is_ignored_with_a_log_line(tmp_path, caplog, text):
    path = tmp_path / "user_config.yaml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="webui.config"):
        assert config.load_config(path) == {}
    assert str(path) in caplog.text
    # Saving over a corrupt file works and repairs it.
    assert config.save_config({"lang": "ja"}, path) == {"lang": "ja"}
    assert config.load_config(path) == {"lang": "ja"}

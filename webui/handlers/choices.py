"""The choices and starting values of the board's controls: models, templates, checkpoints, datasets, devices,
fresh run names, and which sections a stage and method show. Read when a tab is built and when a choice changes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from core.data.registry import list_datasets
from core.data.templates import TEMPLATE_NAMES
from core.paths import fresh_name, saves_dir
from webui import jobs, models
from webui.args import default_run_name
from webui.controls import GRPO_KEYS
from webui.runner import list_devices

logger = logging.getLogger(__name__)

RLHF_STAGES = ("ppo", "dpo", "kto", "grpo")
DEMO_DATASETS = {
    "pt": "demo_pt",
    "sft": "demo_sft",
    "rm": "demo_pref",
    "dpo": "demo_pref",
    "kto": "demo_kto",
    "ppo": "demo_ppo",
    "grpo": "demo_grpo",
}

SECTIONS = (
    "train.freeze_tab",
    "train.lora_tab",
    "train.oft_tab",
    "train.rlhf_tab",
    "train.pref_beta",
    "train.pref_ftx",
    "train.pref_loss",
    "train.reward_model",
    "train.ppo_score_norm",
    "train.ppo_whiten_rewards",
    *(f"train.{name}" for name in GRPO_KEYS),
    "train.trust_reward_file",
)
"""Sections and controls shown or hidden by stage and method (section_visibility)."""

PRESET_CONTROLS = tuple(f"train.{key}" for key in models.preset_keys())
"""Train tab controls that a model's preset (models.yaml `train_defaults`) sets: read and set by a model switch."""


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
    return list(TEMPLATE_NAMES)


def checkpoint_choices(model_name: str, finetuning_type: str, model_path: str = "") -> list[str]:
    """Saved runs and checkpoints of this model and method (adapters, or full weights), by run name."""
    try:
        return jobs.list_checkpoints(saves_dir(), models.save_name(model_name, model_path), finetuning_type)
    except OSError as err:
        logger.warning("Could not list checkpoints under %s: %s", saves_dir(), err)
        return []


def dataset_choices(dataset_dir: str, stage: str) -> list[str]:
    """Datasets registered in `dataset_dir` that fit `stage`; a broken registry raises (the caller reports it)."""
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
    return list_devices()


def new_run_name(folder: str | Path | None = None, taken: tuple[str, ...] = ()) -> str:
    """A Train run name no folder in `folder` (the model's runs) has yet, nor one of `taken`; fresh at every page
    load and Start."""
    return fresh_name(folder, "train", taken=taken) if folder is not None else default_run_name()


def default_config_path() -> str:
    return str(Path("configs") / "train_config.yaml")


def section_visibility(stage: str, finetuning_type: str) -> dict[str, bool]:
    """Which Train-tab sections and RLHF controls apply to `stage` and `finetuning_type`."""
    return {
        "freeze_tab": finetuning_type == "freeze",
        "lora_tab": finetuning_type == "lora",
        "oft_tab": finetuning_type == "oft",
        "rlhf_tab": stage in RLHF_STAGES,
        "pref_beta": stage in ("dpo", "kto"),
        "pref_ftx": stage in ("dpo", "kto"),
        "pref_loss": stage == "dpo",
        "reward_model": stage in ("ppo", "grpo"),  # grpo: for its rm reward function
        "ppo_score_norm": stage == "ppo",
        "ppo_whiten_rewards": stage == "ppo",
        **{name: stage == "grpo" for name in (*GRPO_KEYS, "trust_reward_file")},
    }


def section_updates(stage: str, method: str) -> dict[str, Any]:
    """gr.update(visible=...) for each section and control of section_visibility."""
    return {f"train.{key}": gr.update(visible=shown) for key, shown in section_visibility(stage, method).items()}


def default_eval_name(folder: str | Path | None = None) -> str:
    """An Evaluate run name no folder in `folder` (the model's runs) has yet."""
    return fresh_name(folder if folder is not None else saves_dir(), "eval")


def default_export_dir() -> str:
    """A folder under saves/exports that does not exist yet (inside the board's writable roots, apart from the
    runs it lists)."""
    exports = saves_dir() / "exports"
    return str(exports / fresh_name(exports, "export"))


def sft_datasets(dataset_dir: str) -> list[str]:
    """Datasets of `dataset_dir` that an sft model can be evaluated on (prompt and answer)."""
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


DS_STAGES = {"none": None, "2": (2, False), "3": (3, False), "2_offload": (2, True), "3_offload": (3, True)}
"""The DeepSpeed choice of the Train tab -> (ZeRO stage, CPU offload) for core.deepspeed, or None."""


def zero_choice(values: dict[str, Any]) -> tuple[int, bool] | None:
    return DS_STAGES.get(str(values.get("train.ds_stage") or "none"))

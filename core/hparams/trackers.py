"""Experiment trackers (`report_to`): transformers' own integrations, used when their package is installed. Pure.

`report_to` is passed through to transformers (tensorboard, wandb, swanlab, mlflow, ...). A tracker whose package
is missing is an argument problem naming the install command, before any weights load, instead of a traceback
from the Trainer. LLaMA-Factory's `use_swanlab: true` adds swanlab to `report_to`, and its `swanlab_*` settings
become the SWANLAB_* environment variables transformers' SwanLab callback reads; the API key never goes into a
YAML: set SWANLAB_API_KEY in the environment (as WANDB_API_KEY for wandb).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from core.hparams.keys import split_arg

# report_to name -> (module whose presence means installed, pip distribution)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "swanlab": ("swanlab", "swanlab"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "neptune": ("neptune", "neptune"),
    "dvclive": ("dvclive", "dvclive"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "azure_ml": ("azureml", "azureml-core"),
    "dagshub": ("dagshub", "dagshub"),
    "flyte": ("flytekit", "flytekit"),
    "kubeflow": ("kubeflow", "kubeflow"),
}
SWANLAB_SETTINGS = {
    "swanlab_project": "SWANLAB_PROJECT",
    "swanlab_workspace": "SWANLAB_WORKSPACE",
    "swanlab_run_name": "SWANLAB_EXP_NAME",
    "swanlab_mode": "SWANLAB_MODE",
    "swanlab_logdir": "SWANLAB_LOG_DIR",
}


def is_installed(tracker: str) -> bool:
    module = TRACKERS.get(tracker, (tracker, tracker))[0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_trackers() -> list[str]:
    """The trackers that would work on this machine, for the board's report_to choices."""
    return [name for name in TRACKERS if is_installed(name)]


def report_to_list(value: Any) -> list[str]:
    """`report_to` as a list of tracker names (none / empty -> [])."""
    names = value if isinstance(value, list) else split_arg(value)
    return [str(name) for name in names if str(name) not in ("none", "")]


def tracker_problems(report_to: Any) -> list[tuple[str, str]]:
    """(why, fix) for each unknown or not installed tracker in report_to."""
    problems = []
    for name in report_to_list(report_to):
        if name == "all":
            continue
        if name not in TRACKERS:
            problems.append(
                (f"{name} is not a tracker transformers knows", f"use one of: none, {', '.join(TRACKERS)}")
            )
        elif not is_installed(name):
            problems.append((f"the {name} package is not installed", f"pip install {TRACKERS[name][1]}"))
    return problems


def swanlab_environment(settings: dict[str, Any]) -> dict[str, str]:
    """SWANLAB_* variables for the swanlab_* keys that are set."""
    return {env: str(settings[key]) for key, env in SWANLAB_SETTINGS.items() if settings.get(key) is not None}

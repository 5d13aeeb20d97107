"""What a job reads must exist before the job writes anything (pure: no training stack).

`input_problems(args)` names every dataset that is not registered or whose file is missing and a model path that
does not exist (or a hub id that is not cached while offline). `llamafactory-cli train` / `eval` and `run_exp` call
it before the run folder is created, so a typo leaves no empty run behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.data.registry import DataError, get_dataset_list

DEMO_MODELS = ("demo", "demo-small")


def model_path_problem(path: str, cache_dir: str | os.PathLike | None = None) -> str | None:
    """Why `model_name_or_path` cannot be loaded, or None. A hub id is only checked while offline (HF_HUB_OFFLINE)."""
    if path in DEMO_MODELS and not Path(path).exists():
        return None  # built on first use
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            return (
                f"model_name_or_path: {path} is a folder without config.json — point it at the folder that holds "
                "the model's config.json and weights."
            )
        return None
    looks_local = path.startswith((".", "/", "~")) or Path(path).suffix or path.count("/") > 1
    if looks_local:
        return f"model_name_or_path: {path} does not exist — check the path, or use `demo` for the offline demo model."
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(path, "config.json", cache_dir=cache_dir), str):
        return (
            f"model_name_or_path: {path} is not a local folder and is not in the hub cache, and this machine "
            "is offline (HF_HUB_OFFLINE=1) — download it first or give a local folder."
        )
    return None


def input_problems(args: dict[str, Any]) -> list[str]:
    """Problems with the model and the datasets `args` names (each one line naming the key)."""
    problems = []
    model = args.get("model_name_or_path")
    if isinstance(model, str) and model:
        problem = model_path_problem(model, args.get("cache_dir"))
        if problem:
            problems.append(problem)
    tokenized = args.get("tokenized_path")
    if tokenized and Path(str(tokenized)).exists():
        return problems  # the datasets were tokenized into that folder before; they are not read
    dataset_dir = args.get("dataset_dir") or "data"
    for key in ("dataset", "eval_dataset"):
        if not args.get(key):
            continue
        try:
            for attr in get_dataset_list(args[key], dataset_dir):
                if attr.load_from == "file":
                    attr.files()
        except DataError as err:
            problems.append(f"{key}: {err}")
    return problems

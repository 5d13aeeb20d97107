"""The board's remembered choices: `<cache_dir>/user_config.yaml` (last language, model, path, template, method).

A missing or corrupt file is never fatal: the board starts with defaults and logs one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from core.paths import cache_dir

logger = logging.getLogger(__name__)

KEYS = ("lang", "model_name", "model_path", "template", "finetuning_type")
"""What is remembered between sessions; other keys in the file are ignored."""

MAX_BYTES = 64 * 1024


def config_path() -> Path:
    return cache_dir() / "user_config.yaml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    """The remembered choices (only KEYS with string values); {} when the file is missing or unreadable."""
    path = path or config_path()
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, yaml.YAMLError) as err:
        logger.warning("Ignoring the user config %s (%s); starting from defaults.", path, err)
        return {}
    if not isinstance(data, dict):
        logger.warning("Ignoring the user config %s: expected a mapping, found %s.", path, type(data).__name__)
        return {}
    return {key: data[key] for key in KEYS if isinstance(data.get(key), str)}


def save_config(updates: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Merge `updates` (only KEYS) into the file and return the result. A write error is logged, not raised."""
    path = path or config_path()
    config = load_config(path)
    config.update({key: str(value) for key, value in updates.items() if key in KEYS and value is not None})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written to a temporary file and renamed, so a crash mid-write never leaves a corrupt config.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".user_config.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, allow_unicode=True, sort_keys=False)
        os.replace(tmp, path)
    except OSError as err:
        logger.warning("Could not save the user config %s: %s", path, err)
    return config

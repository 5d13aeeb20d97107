"""The curated list of models the board offers (data in models.yaml), and where their runs are saved.

Pure: reads one small YAML file at import; no training stack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from webui.manager import SAFE_LOADER

MODELS_FILE = Path(__file__).with_name("models.yaml")

DEMO = "Demo (offline)"
CUSTOM = "Custom"


@dataclass(frozen=True)
class ModelEntry:
    """One row of models.yaml: the name shown, its hub id or local path, its default chat template, and the Train
    tab values that suit it (`train_defaults`, argument name -> value; most models have none)."""

    name: str
    path: str
    template: str
    folder: str
    train_defaults: Mapping[str, Any] = field(default_factory=dict)


def _folder_name(text: str) -> str:
    """A name safe as one path component: keeps letters, digits, dot, dash, underscore; at most 200 of them (a file
    system takes 255 bytes a name)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:200].strip("-.")
    return cleaned or "model"


def _load(path: Path = MODELS_FILE) -> dict[str, ModelEntry]:
    rows = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)  # safe: SafeLoader's C twin
    entries: dict[str, ModelEntry] = {}
    for row in rows:
        name = str(row["name"])
        train_defaults = row.get("train_defaults") or {}
        if not isinstance(train_defaults, dict):
            raise ValueError(
                f"{path}: model {name!r}: train_defaults must be a mapping of argument name to value, "
                f"got {type(train_defaults).__name__}"
            )
        entries[name] = ModelEntry(
            name=name,
            path=str(row.get("path") or ""),
            template=str(row.get("template") or ""),
            folder=str(row.get("folder") or _folder_name(name)),
            train_defaults=dict(train_defaults),
        )
    return entries


MODELS: dict[str, ModelEntry] = _load()
"""Display name -> entry, in the order the list shows them: the demo model first, Custom last."""


def model_path(name: str) -> str:
    """The hub id or path of a listed model; "" for Custom and for names not in the list."""
    entry = MODELS.get(name)
    return entry.path if entry else ""


def default_template(name: str) -> str:
    """The chat template a listed model was trained with; "" when unknown (Custom, unlisted)."""
    entry = MODELS.get(name)
    return entry.template if entry else ""


def train_defaults(name: str) -> dict[str, Any]:
    """The Train tab values models.yaml gives this model (argument name -> value); {} for most models."""
    entry = MODELS.get(name)
    return dict(entry.train_defaults) if entry else {}


def preset_keys() -> list[str]:
    """Every argument some model's train_defaults sets, in first-seen order: the controls a model switch may set."""
    keys: dict[str, None] = {}
    for entry in MODELS.values():
        keys.update(dict.fromkeys(entry.train_defaults))
    return list(keys)


def preset_changes(name: str, current: Mapping[str, Any], form_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What picking model `name` changes in the Train tab, by argument name.

    The model's own train_defaults are applied. A control it does not preset goes back to `form_defaults` only
    while it still holds another model's preset value: a value the user typed is theirs and stays.
    """
    own = train_defaults(name)
    changes = dict(own)
    for key in preset_keys():
        if key in own or key not in current or key not in form_defaults:
            continue
        others = [entry.train_defaults[key] for entry in MODELS.values() if key in entry.train_defaults]
        if current[key] in others and current[key] != form_defaults[key]:
            changes[key] = form_defaults[key]
    return changes


def model_name_for_path(path: str) -> str:
    """The listed model whose hub id is `path`, else Custom (used when a loaded YAML names a model)."""
    for entry in MODELS.values():
        if entry.path and entry.path == path:
            return entry.name
    return CUSTOM


def save_name(name: str, path: str = "") -> str:
    """The folder under saves/ for runs of this model: `saves/<save_name>/<finetuning_type>/<run>`.

    Listed models use their folder (the demo model: "demo"); Custom uses the last component of its path,
    so two custom models in different folders with the same name share a folder, as in LlamaBoard.
    """
    entry = MODELS.get(name)
    if entry is not None and name != CUSTOM:
        return entry.folder
    if name == CUSTOM or not name:
        tail = Path(path.rstrip("/\\")).name if path else ""
        return _folder_name(tail) if tail else "custom"
    return _folder_name(name)

"""The curated list of models the board offers (data in models.yaml), and where their runs are saved.

Pure: reads one small YAML file at import; no training stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

MODELS_FILE = Path(__file__).with_name("models.yaml")

DEMO = "Demo (offline)"
CUSTOM = "Custom"


@dataclass(frozen=True)
class ModelEntry:
    """One row of models.yaml: the name shown, its hub id or local path, its default chat template."""

    name: str
    path: str
    template: str
    folder: str


def _folder_name(text: str) -> str:
    """A name safe as one path component: keeps letters, digits, dot, dash, underscore."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned or "model"


def _load(path: Path = MODELS_FILE) -> dict[str, ModelEntry]:
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))
    entries: dict[str, ModelEntry] = {}
    for row in rows:
        name = str(row["name"])
        entries[name] = ModelEntry(
            name=name,
            path=str(row.get("path") or ""),
            template=str(row.get("template") or ""),
            folder=str(row.get("folder") or _folder_name(name)),
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

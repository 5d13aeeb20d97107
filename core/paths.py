"""Where the package keeps its data and where runs and caches go. Pure: no training stack imported."""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PACKAGE_ROOT / "assets"
DEMO_DATA_DIR = ASSETS_DIR / "data"
LOCALES_DIR = PACKAGE_ROOT / "locales"

DEMO_MODEL_NAME = "demo"
DEMO_DATASET_DIR_NAME = "demo"


def cache_dir() -> Path:
    """`$LLAMABOARD_CACHE`, else `~/.cache/llamaboard`."""
    return Path(os.environ.get("LLAMABOARD_CACHE") or Path.home() / ".cache" / "llamaboard")


def saves_dir() -> Path:
    """`$LLAMABOARD_SAVES`, else `saves/` in the working directory."""
    return Path(os.environ.get("LLAMABOARD_SAVES") or Path.cwd() / "saves")


def resolve_dataset_dir(dataset_dir: str | os.PathLike) -> Path:
    """`demo` means the packaged demo datasets unless a folder of that name exists here."""
    path = Path(dataset_dir)
    if str(dataset_dir) == DEMO_DATASET_DIR_NAME and not path.exists():
        return DEMO_DATA_DIR
    return path


def fresh_name(
    parent: str | os.PathLike, prefix: str, now: datetime | None = None, taken: Collection[str] = ()
) -> str:
    """A new folder name under `parent`: `<prefix>_YYYY-MM-DD-HH-MM-SS`, then `-2`, `-3`, ... while a folder of
    that name exists (two Starts, or two page loads, within the same second) or the name is one of `taken`."""
    stamp = f"{prefix}_{(now or datetime.now()).strftime('%Y-%m-%d-%H-%M-%S')}"
    name, number = stamp, 1
    while name in taken or (Path(parent) / name).exists():
        number += 1
        name = f"{stamp}-{number}"
    return name

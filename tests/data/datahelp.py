"""Helpers shared by the data tests (imported as `from datahelp import ...`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def data_args(**overrides: Any):
    from core.hparams import DataArguments

    values = {"template": "chatml", "cutoff_len": 1024, "dataset_dir": "demo"}
    values.update(overrides)
    return DataArguments(**values)


def training_args(**overrides: Any):
    from types import SimpleNamespace

    # get_dataset reads only these fields; building transformers' TrainingArguments costs ~1 s per test.
    values = {
        "seed": 42,
        "data_seed": None,
        "do_train": True,
        "do_predict": False,
        "predict_with_generate": False,
        "output_dir": None,  # where progress records go (none here)
        "process_index": 0,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def write_dataset_dir(root: Path, info: dict[str, Any], files: dict[str, Any]) -> Path:
    """Write dataset_info.json and files: a str is written as is, a list of rows as JSON (or JSON Lines for
    .jsonl)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(r) + "\n" for r in content), encoding="utf-8")
        else:
            path.write_text(json.dumps(content, indent=1), encoding="utf-8")
    return root

"""Datasets, templates, processors and collators. Lazy: `from core.data import get_dataset` imports the training
stack only when used, so pure modules (core.data.registry, preview, templates) stay light."""

from __future__ import annotations

from typing import Any

_LAZY = {
    "get_dataset": "core.data.loader",
    "get_template_and_fix_tokenizer": "core.data.template",
    "SFTDataCollator": "core.data.collator",
    "PairwiseDataCollator": "core.data.collator",
    "KTODataCollator": "core.data.collator",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.data' has no attribute {name!r}")

"""Tokenizer and model loading, adapters (lora, freeze, full), value head. Lazy so `import core.model` stays cheap.

Public API (stable; the dpo / kto / ppo stages build on it):
- `load_tokenizer(model_args) -> PreTrainedTokenizerBase`
- `load_model(tokenizer, model_args, finetuning_args, is_trainable, add_valuehead=False)`
- `ValueHeadModel`, `save_value_head(model, dir)`, `load_value_head(model, dir)` (core.model.valuehead)
- `infer_compute_dtype(training_args, finetuning_args)` (core.model.loader)
"""

__all__ = [
    "ValueHeadModel",
    "infer_compute_dtype",
    "load_model",
    "load_tokenizer",
    "load_value_head",
    "save_value_head",
]

_HOMES = {
    "load_tokenizer": "core.model.loader",
    "load_model": "core.model.loader",
    "infer_compute_dtype": "core.model.loader",
    "ValueHeadModel": "core.model.valuehead",
    "save_value_head": "core.model.valuehead",
    "load_value_head": "core.model.valuehead",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'core.model' has no attribute {name!r}")

"""Argument dataclasses, the parser and the checks. Lazy: `import core.hparams` imports nothing heavy.

`TrainingArguments` (and `get_train_args` when called) import transformers; everything else is pure.
"""

from importlib import import_module

_EXPORTS = {
    "ModelArguments": "core.hparams.model_args",
    "DataArguments": "core.hparams.data_args",
    "FinetuningArguments": "core.hparams.finetuning_args",
    "GeneratingArguments": "core.hparams.generating_args",
    "TrainingArguments": "core.hparams.training_args",
    "ArgumentError": "core.hparams.parser",
    "read_args": "core.hparams.parser",
    "check_dict": "core.hparams.parser",
    "check_infer_dict": "core.hparams.parser",
    "path_problems": "core.hparams.parser",
    "review_args": "core.hparams.parser",
    "check_args": "core.hparams.parser",
    "normalize_args": "core.hparams.parser",
    "known_keys": "core.hparams.parser",
    "get_train_args": "core.hparams.parser",
    "get_infer_args": "core.hparams.parser",
    "split_arg": "core.hparams.keys",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'core.hparams' has no attribute {name!r}")

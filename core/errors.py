"""The one base class of the problems a user can fix (a key, a path, a dataset row). Pure: no training stack.

The CLI prints such an error's message alone and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class UserError(Exception):
    """A problem worded for the person who has to fix it: what was received, why it is wrong, what to do."""


class ModelPathError(UserError, FileNotFoundError):
    """A model, adapter or reward-model folder that is missing or incomplete."""


# A hint names a setting the way the command being run spells it: `dataset_dir: demo` in a YAML job, but
# `--dataset-dir demo` for `llamafactory-cli data`, whose arguments are options.
_OPTION_SPELLING: ContextVar[bool] = ContextVar("option_spelling", default=False)


def setting(key: str, value: object) -> str:
    """`key: value` (YAML), or `--key-name value` inside `option_spelling()`."""
    return f"--{key.replace('_', '-')} {value}" if _OPTION_SPELLING.get() else f"{key}: {value}"


@contextmanager
def option_spelling() -> Iterator[None]:
    """Hints made by `setting()` in this block use command-line option syntax."""
    token = _OPTION_SPELLING.set(True)
    try:
        yield
    finally:
        _OPTION_SPELLING.reset(token)


class ConfigError(UserError, ValueError):
    """An argument value that cannot work, found once the model or the folders are seen (a LoRA target the model
    lacks, an output_dir that holds another run's files, a checkpoint cut off while saving)."""

"""The one base class of the problems a user can fix (a key, a path, a dataset row). Pure: no training stack.

The CLI prints such an error's message alone and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem worded for the person who has to fix it: what was received, why it is wrong, what to do."""


class ModelPathError(UserError, FileNotFoundError):
    """A model, adapter or reward-model folder that is missing or incomplete."""


class ConfigError(UserError, ValueError):
    """An argument value that cannot work, found once the model or the folders are seen (a LoRA target the model
    lacks, an output_dir that holds another run's files, a checkpoint cut off while saving)."""

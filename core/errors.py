"""The one base class of the problems a user can fix (a key, a path, a dataset row). Pure: no training stack.

The CLI prints such an error's message alone and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem worded for the person who has to fix it: what was received, why it is wrong, what to do."""


class ModelPathError(UserError, FileNotFoundError):
    """A model, adapter or reward-model folder that is missing or incomplete."""

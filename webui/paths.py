"""What the board may touch on disk, and what it must never write down: root checks and secret checks.

A shared board receives paths from anyone who can reach it (dataset dir, run name, config file, checkpoints,
export dir, a local model folder). Each one is resolved (symlinks followed, `..` collapsed, URL-encoded forms
decoded) and must lie under one of the configured roots, else it is refused with a message that names the field,
the path and the roots. Roots by default: the working directory's `data/`, `saves/` (LLAMABOARD_SAVES) and
`configs/` (where the board saves argument files), the packaged demo data, the examples (read only), the model
cache (LLAMABOARD_CACHE and the Hugging Face cache). More come from `--roots` or LLAMABOARD_ROOTS
(os.pathsep-separated).

Secrets (hub tokens, tracker keys) come from the environment of the job and are never part of an argument dict:
`secret_problems` (core.secrets, the same check the CLI runs) names any key or value that looks like one, so it is
refused before it reaches job.yaml, the log or an exported file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from core.paths import DEMO_DATA_DIR, DEMO_DATASET_DIR_NAME, DEMO_MODEL_NAME, PACKAGE_ROOT, cache_dir, saves_dir
from core.secrets import SECRET_ENV, secret_problems  # noqa: F401 - the one secret check, shared with the core

ROOTS_ENV = "LLAMABOARD_ROOTS"
PATH_MAX, NAME_MAX = 4096, 255
"""Linux's limits on a path and on one name in it, in bytes: a longer one fails in every file call."""

PATH_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "reward_model",
    "ref_model",
    "ref_model_adapters",
    "reward_model_adapters",
    "reward_file",
    "dataset_dir",
    "media_dir",
    "tokenized_path",
    "cache_dir",
    "output_dir",
    "logging_dir",
    "export_dir",
    "deepspeed",
    "resume_from_checkpoint",
)
"""Argument keys that name files or folders; comma lists (adapters, reward models) are checked one by one."""

MODEL_KEYS = ("model_name_or_path", "reward_model", "ref_model")
"""Keys that may also hold a hub id (`org/name`), which is not a path and needs no root."""


class PathRefused(ValueError):
    """A path outside the board's roots, or one that cannot be resolved; the message says which and what to do."""


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split(os.pathsep) if part.strip()]


def hf_cache_dir() -> Path:
    """The Hugging Face cache the jobs download models into (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home)


class Roots:
    """The folders a board may read and write (`writable`), and those it may only read (`readable`)."""

    def __init__(self, extra: Iterable[str | os.PathLike] = (), defaults: bool = True) -> None:
        writable: list[Path] = []
        readable: list[Path] = []
        if defaults:
            cwd = Path.cwd()
            writable += [cwd / "data", cwd / "configs", saves_dir(), cache_dir(), hf_cache_dir()]
            readable += [DEMO_DATA_DIR, PACKAGE_ROOT / "examples"]
        writable += [Path(path) for path in [*_split(os.environ.get(ROOTS_ENV)), *extra]]
        self.writable = _unique(path.expanduser().resolve() for path in writable)
        self.readable = _unique([*self.writable, *(path.resolve() for path in readable)])

    def __repr__(self) -> str:
        return f"Roots({', '.join(map(str, self.writable))})"

    def describe(self) -> str:
        return ", ".join(str(path) for path in self.readable)

    def check(self, path: str | os.PathLike, field: str, write: bool = False) -> Path:
        """`path` resolved, when it lies under a root (a writable one if `write`); else PathRefused.

        The literal path and its URL-decoded form must both pass, so `..%2F..%2Fetc` is refused as well as
        `../../etc`. A relative path is taken from the working directory, as the job takes it.
        """
        text = str(path)
        if "\x00" in text:
            raise PathRefused(f"{field}: the path contains a NUL character; type a plain folder or file path.")
        shown = shorten(text)
        names = [len(part.encode("utf-8", errors="replace")) for part in Path(text).parts]
        if len(text.encode("utf-8", errors="replace")) > PATH_MAX or max(names, default=0) > NAME_MAX:
            raise PathRefused(
                f"{field}: {shown} is longer than a file system takes ({PATH_MAX} bytes in all, {NAME_MAX} a name); "
                "type a shorter path."
            )
        forms = {text}
        decoded = text
        for _ in range(3):  # double-encoded forms (%252e) decode twice
            decoded = unquote(decoded)
            forms.add(decoded)
        roots = self.writable if write else self.readable
        resolved = None
        for form in sorted(forms, key=len, reverse=True):
            try:
                candidate = Path(form).expanduser().resolve()
            except (OSError, RuntimeError) as err:  # a symlink loop, an unreadable folder
                raise PathRefused(f"{field}: {shown} cannot be resolved ({shorten(str(err))}).") from None
            if not any(candidate == root or candidate.is_relative_to(root) for root in roots):
                kind = "writable folders" if write else "folders"
                raise PathRefused(
                    f"{field}: {shown} resolves to {shorten(str(candidate))}, outside the board's {kind} "
                    f"({', '.join(str(root) for root in roots)}). Put it under one of them, or start the board "
                    f"with --roots <folder> (or {ROOTS_ENV}) to allow another folder."
                )
            if form == text:
                resolved = candidate
        assert resolved is not None
        return resolved

    def check_args(self, args: dict[str, Any]) -> list[str]:
        """Problems with the path-valued arguments of `args` (empty when every path lies under a root)."""
        problems = []
        for key in PATH_KEYS:
            value = args.get(key)
            if not isinstance(value, str) or not value.strip():
                continue  # unset, a flag (resume_from_checkpoint: true) or an inline deepspeed dict
            entries = [part.strip() for part in str(value).split(",")] if "," in str(value) else [str(value)]
            for entry in entries:
                if not entry or _builtin_name(key, entry) or (key in MODEL_KEYS and is_hub_id(entry)):
                    continue
                if key == "adapter_name_or_path" and is_hub_id(entry):
                    continue
                try:
                    self.check(entry, key, write=key in ("output_dir", "logging_dir", "export_dir"))
                except PathRefused as err:
                    problems.append(str(err))
        return problems


def shorten(text: str, limit: int = 200) -> str:
    """`text` as a message quotes it: a path of thousands of characters keeps its start and end."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...({len(text)} characters)...{text[-limit // 4 :]}"


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen


def _builtin_name(key: str, value: str) -> bool:
    """`demo` as a model or a dataset folder means the packaged demo, unless a folder of that name exists here."""
    if key == "model_name_or_path" and value == DEMO_MODEL_NAME:
        return True
    return key == "dataset_dir" and value == DEMO_DATASET_DIR_NAME and not Path(value).exists()


def is_hub_id(value: str) -> bool:
    """`org/name` or `name` as the hub spells them, and no local file of that name: not a path."""
    decoded = unquote(unquote(value))
    if decoded != value or value.startswith(("/", ".", "~")) or "\\" in value or ".." in value:
        return False
    if len(value) > 200 or not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", value):
        return False  # the hub caps an owner and a name at 96 characters each
    try:
        return not Path(value).exists()
    except (OSError, ValueError):  # a name the file system refuses: no hub id either, the roots check says why
        return False


_extra_roots: list[str] = []


def configure(extra: Iterable[str | os.PathLike] = ()) -> Roots:
    """Add folders (`--roots`) to this board process's roots; returns the roots now in force."""
    _extra_roots[:] = [str(path) for path in extra]
    return board_roots()


def board_roots(extra: Iterable[str | os.PathLike] = ()) -> Roots:
    """The roots in force now: defaults (from the current working directory and environment), LLAMABOARD_ROOTS,
    the folders given to `configure`, and `extra` (a runner's own saves folder). Built on each call: it costs a few
    stat calls and follows the env."""
    return Roots([*_extra_roots, *extra])

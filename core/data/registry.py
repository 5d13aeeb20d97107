"""The dataset registry: `dataset_info.json` in LLaMA-Factory's schema, read without the training stack.

A `dataset_dir` holds `dataset_info.json`, one entry per dataset name:

    "alpaca_demo": {"file_name": "alpaca.json"}                       # alpaca columns by default
    "chat": {"file_name": "chat/", "formatting": "sharegpt"}          # a folder of files
    "pairs": {"file_name": "p.jsonl", "ranking": true, "columns": {"chosen": "good", "rejected": "bad"}}
    "remote": {"hf_hub_url": "org/name", "split": "train"}

`dataset_dir: demo` means the packaged demo datasets (`core.paths.resolve_dataset_dir`).
Pure: importing this module imports no torch, transformers or datasets.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError, setting
from core.paths import resolve_dataset_dir
from core.safeload import FileFormatError, decode_text, load_json_text

DATASET_INFO = "dataset_info.json"
FILE_TYPES = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".txt": "txt"}
FORMATTINGS = ("alpaca", "sharegpt", "openai")
PAIRWISE_STAGES = ("rm", "dpo", "orpo", "simpo")

logger = logging.getLogger(__name__)

_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "history": None}
_SHAREGPT_COLUMNS = {"messages": "conversations"}
_COMMON_COLUMNS = {"system": None, "tools": None, "chosen": None, "rejected": None, "kto_tag": None}
_SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
_OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function_call",
    "system_tag": "system",
}
_KNOWN_KEYS = {
    "file_name",
    "hf_hub_url",
    "ms_hub_url",
    "om_hub_url",
    "script_url",
    "cloud_file_name",
    "formatting",
    "ranking",
    "subset",
    "split",
    "folder",
    "num_samples",
    "columns",
    "tags",
}


class DataError(UserError, ValueError):
    """A problem with a dataset or its registry, worded for the person who has to fix it."""


class RowError(DataError):
    """One bad row; `skip_bad_rows: true` skips these and counts them instead of failing.

    `kind` names the sort of problem ("bad_json", "missing_column", ...: the dataset studio counts them), `column`
    the raw column at fault when there is one, `what` and `fix` the two halves of the message.
    """

    def __init__(
        self, message: str, *, kind: str = "bad_row", column: str | None = None, what: str = "", fix: str = ""
    ) -> None:
        super().__init__(message)
        self.kind, self.column, self.what, self.fix = kind, column, what, fix


@dataclass
class DatasetAttr:
    """One entry of dataset_info.json, with LLaMA-Factory's defaults filled in."""

    name: str
    load_from: str  # "file" or "hf_hub"
    dataset_name: str  # a path (absolute) for "file", a hub id for "hf_hub"
    info_file: Path
    formatting: str = "alpaca"
    ranking: bool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: dict[str, str | None] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def has_kto_tag(self) -> bool:
        return bool(self.columns.get("kto_tag"))

    def files(self) -> list[Path]:
        """The data files of a local dataset, sorted; a folder contributes every supported file in it."""
        path = Path(self.dataset_name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_TYPES)
            if not found:
                raise DataError(
                    f"{self.info_file}: dataset '{self.name}': folder {path} holds no data file "
                    f"({', '.join(FILE_TYPES)}). Put the data there or fix 'file_name'."
                )
            return found
        if not path.exists():
            raise DataError(
                f"{self.info_file}: dataset '{self.name}': file_name points to {path}, which does not exist. "
                "Fix 'file_name' (relative to the dataset_dir) or copy the file there."
            )
        if path.suffix.lower() not in FILE_TYPES:
            raise DataError(
                f"{self.info_file}: dataset '{self.name}': {path.name} has an unsupported type "
                f"'{path.suffix}'. Use one of {', '.join(FILE_TYPES)}."
            )
        return [path]


def _json_error(path: Path, text: str, err: json.JSONDecodeError) -> DataError:
    line_text = text.splitlines()[err.lineno - 1] if err.lineno - 1 < len(text.splitlines()) else ""
    return DataError(
        f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}.\n"
        f"    {line_text.strip()[:120]}\n"
        "Fix that line (a missing comma or quote, or a trailing comma, is the usual cause)."
    )


def load_dataset_info(dataset_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The parsed dataset_info.json of a dataset_dir; `{}` when the folder has none.

    Raises DataError naming the file and the line and column of a JSON error, or the entry that is not an object.
    """
    path = resolve_dataset_dir(dataset_dir) / DATASET_INFO
    if not path.is_file():
        return {}
    try:
        text = decode_text(path.read_bytes(), str(path))
    except FileFormatError as err:
        raise DataError(str(err)) from None
    try:
        info, warnings = load_json_text(text, str(path))
    except FileFormatError as err:
        try:
            json.loads(text)
        except json.JSONDecodeError as syntax:  # name the line and show it
            raise _json_error(path, text, syntax) from None
        except RecursionError:
            pass
        raise DataError(str(err)) from None
    for warning in warnings:  # a dataset name given twice: the later entry wins, as in LLaMA-Factory
        logger.warning(warning)
    if not isinstance(info, dict):
        raise DataError(f"{path}: the top level must be an object of dataset names, got {type(info).__name__}.")
    for name, entry in info.items():
        if not isinstance(entry, dict):
            raise DataError(f"{path}: dataset '{name}' must be an object like {{\"file_name\": ...}}, got {entry!r}.")
    return info


def list_datasets(dataset_dir: str | os.PathLike, stage: str | None = None) -> list[str]:
    """Names the board offers for a stage: ranking data for rm/dpo/orpo/simpo, kto_tag data for kto,
    the rest for pt/sft/ppo/grpo/predict. `stage=None` lists every dataset. Raises DataError on a malformed file.
    """
    names = []
    for name, entry in load_dataset_info(dataset_dir).items():
        ranking = bool(entry.get("ranking", False))
        kto = bool((entry.get("columns") or {}).get("kto_tag"))
        if stage is None:
            names.append(name)
        elif stage in PAIRWISE_STAGES:
            if ranking:
                names.append(name)
        elif stage == "kto":
            if kto:
                names.append(name)
        elif not ranking:
            names.append(name)
    return names


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def get_dataset_attr(name: str, dataset_dir: str | os.PathLike) -> DatasetAttr:
    """The DatasetAttr for one registered name; DataError naming the file and the closest names if unknown."""
    root = resolve_dataset_dir(dataset_dir)
    info_file = root / DATASET_INFO
    info = load_dataset_info(root)
    if not info:
        raise DataError(
            f"{info_file.absolute()}: not found or empty, so dataset '{name}' is unknown. "
            f"Put your data files and a dataset_info.json in {root.absolute()} "
            f"(or use {setting('dataset_dir', 'demo')} for the demo data)."
        )
    if name not in info:
        raise DataError(
            f"{info_file}: no dataset named '{name}'.{_closest(name, list(info))} Known: {', '.join(sorted(info))}."
        )
    return entry_attr(name, info[name], root, info_file)


def entry_attr(name: str, entry: dict[str, Any], root: Path, info_file: Path) -> DatasetAttr:
    """The DatasetAttr of one entry (`file_name` relative to `root`), checked as get_dataset_attr checks it; also
    for an entry not registered yet (the dataset studio validates a file before adding it)."""
    problems = []
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        problems.append(f"formatting '{formatting}' is not one of {', '.join(FORMATTINGS)}")
    if "file_name" in entry:
        load_from, dataset_name = "file", str(root / entry["file_name"])
    elif "hf_hub_url" in entry:
        load_from, dataset_name = "hf_hub", str(entry["hf_hub_url"])
    else:
        problems.append("needs 'file_name' (a file or folder in the dataset_dir) or 'hf_hub_url'")
        load_from, dataset_name = "file", ""
    columns_in = entry.get("columns") or {}
    tags_in = entry.get("tags") or {}
    if not isinstance(columns_in, dict) or not isinstance(tags_in, dict):
        problems.append("'columns' and 'tags' must be objects")
        columns_in, tags_in = {}, {}
    num_samples = entry.get("num_samples")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        problems.append(f"num_samples must be a positive integer, got {num_samples!r}")
    if problems:
        raise DataError(f"{info_file}: dataset '{name}': " + "; ".join(problems) + ".")

    if formatting == "alpaca":
        columns = {**_ALPACA_COLUMNS, **_COMMON_COLUMNS}
        tags: dict[str, str] = {}
        if load_from == "file" and dataset_name.lower().endswith(".txt") and "prompt" not in columns_in:
            columns["prompt"] = "text"
    else:
        columns = {**_SHAREGPT_COLUMNS, **_COMMON_COLUMNS}
        tags = dict(_OPENAI_TAGS if formatting == "openai" else _SHAREGPT_TAGS)
        if formatting == "openai":
            columns["messages"] = "messages"
    unknown_columns = sorted(set(columns_in) - set(columns) - {"images", "videos", "audios"})
    if unknown_columns:
        raise DataError(
            f"{info_file}: dataset '{name}': unknown column key(s) {', '.join(unknown_columns)} for formatting "
            f"'{formatting}' (known: {', '.join(sorted(columns))})."
        )
    columns.update({k: v for k, v in columns_in.items() if k in columns})
    tags.update({k: str(v) for k, v in tags_in.items()})
    return DatasetAttr(
        name=name,
        load_from=load_from,
        dataset_name=dataset_name,
        info_file=info_file,
        formatting=formatting,
        ranking=bool(entry.get("ranking", False)),
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        folder=entry.get("folder"),
        num_samples=num_samples,
        columns=columns,
        tags=tags,
    )


def check_stage(attr: DatasetAttr, stage: str) -> None:
    """DataError when a stage cannot train on this dataset (pairs for rm/dpo/..., kto labels for kto)."""
    if stage in PAIRWISE_STAGES and not attr.ranking:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' has no chosen/rejected pairs (no \"ranking\": true), and stage "
            f"{stage} trains on preference pairs. Pick a ranking dataset or another stage."
        )
    if stage == "kto" and not attr.has_kto_tag:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' has no kto_tag column, and stage kto needs each answer tagged "
            "desirable (true) or not (false). Add columns.kto_tag or pick another dataset."
        )
    if stage in ("pt", "sft", "ppo", "grpo", "predict") and attr.ranking:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' is preference data (\"ranking\": true), and stage {stage} "
            "needs plain prompts and answers. Pick a non-ranking dataset, or stage rm / dpo."
        )


def split_names(names: str | list[str] | None) -> list[str]:
    """`"a, b"` or `["a", "b"]` -> `["a", "b"]`."""
    if not names:
        return []
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n and n.strip()]


def get_dataset_list(names: str | list[str] | None, dataset_dir: str | os.PathLike) -> list[DatasetAttr]:
    return [get_dataset_attr(name, dataset_dir) for name in split_names(names)]

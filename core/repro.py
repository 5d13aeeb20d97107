"""The reproducibility record of a run: `<output_dir>/repro.json`, written by run_exp at start (main process).

    {"arguments": {...},            the arguments as given (job.yaml's content)
     "datasets": [{"name", "file", "bytes", "rows", "sha256"} | {"name", "hub", "subset", "split"}],
     "packages": {"torch": "2.x", "transformers": ..., "peft", "trl", "datasets", "accelerate", "llamaboard"},
     "git_commit": "<sha>" | null,  the project's commit when run from a checkout
     "seed": 42, "devices": ["cpu"] | ["NVIDIA H200", ...], "world_size": 1, "created": epoch seconds}

Rows count a JSON list's items or a JSONL file's non-empty lines (other formats: null); a folder dataset hashes its
data files in name order (DatasetAttr.files). Pure apart from `devices` (torch, already loaded by the job).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from core.hparams import split_arg
from core.runfolder import REPRO_JSON

PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "llamaboard")
ROOT = Path(__file__).resolve().parent.parent


_PARSE_JSON_LIMIT = 64 << 20  # a .json file is parsed to count its rows only below this size


def _file_facts(path: Path, files: list[Path]) -> dict[str, Any]:
    """Size, rows and content hash of a dataset's files, read a line or a chunk at a time (a dataset bigger than
    memory is fine); rows None when they cannot be counted cheaply (csv, parquet, a big .json)."""
    digest, size, rows = hashlib.sha256(), 0, 0
    for file in files:
        with file.open("rb") as handle:
            if file.suffix == ".jsonl":
                count = 0
                for line in handle:
                    digest.update(line)
                    size += len(line)
                    count += bool(line.strip())
                rows = rows + count if rows is not None else None
                continue
            data, file_size = b"", 0
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
                file_size += len(chunk)
                if file.suffix == ".json" and file_size <= _PARSE_JSON_LIMIT:
                    data += chunk
            size += file_size
        loaded = None
        if file.suffix == ".json" and file_size <= _PARSE_JSON_LIMIT:
            try:
                loaded = json.loads(data)
            except ValueError:
                pass
        rows = rows + len(loaded) if isinstance(loaded, list) and rows is not None else None
    return {"file": str(path), "bytes": size, "rows": rows, "sha256": digest.hexdigest()}


def dataset_facts(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Each dataset and eval dataset of the arguments: a local file's size, rows and content hash, or the hub id."""
    from core.data.registry import DataError, get_dataset_attr

    facts = []
    dataset_dir = args.get("dataset_dir") or "data"
    for name in [*split_arg(args.get("dataset")), *split_arg(args.get("eval_dataset"))]:
        try:
            attr = get_dataset_attr(name, dataset_dir)
        except DataError as err:
            facts.append({"name": name, "error": str(err)})
            continue
        if attr.load_from == "file" and args.get("streaming") and name in split_arg(args.get("dataset")):
            # A streamed set is read as training goes: no pass over the whole of it just for a hash.
            size = sum(file.stat().st_size for file in attr.files())
            facts.append(
                {"name": name, "file": str(Path(attr.dataset_name)), "bytes": size, "rows": None, "sha256": None}
            )
        elif attr.load_from == "file":
            facts.append({"name": name, **_file_facts(Path(attr.dataset_name), attr.files())})
        else:
            facts.append({"name": name, "hub": attr.dataset_name, "subset": attr.subset, "split": attr.split})
    return facts


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(root: Path = ROOT) -> str | None:
    """The project's commit when it runs from a git checkout, else None."""
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _devices() -> list[str]:
    import torch

    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return ["cpu"]


def write_repro(output_dir: str | os.PathLike, args: dict[str, Any], seed: int) -> Path:
    """Write `<output_dir>/repro.json` for a run of `args` (see the module docstring); returns its path."""
    record = {
        "arguments": args,
        "datasets": dataset_facts(args),
        "packages": package_versions(),
        "git_commit": git_commit(),
        "seed": seed,
        "devices": _devices(),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "created": time.time(),
    }
    path = Path(output_dir) / REPRO_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    return path

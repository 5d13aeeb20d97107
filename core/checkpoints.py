"""Is a checkpoint whole? The checks resume runs before it trusts a `checkpoint-N` folder. Pure: no torch.

`checkpoint_problem(path)` names the cut-off or missing file of a checkpoint (headers only, so a large checkpoint
is cheap to check); `last_complete_checkpoint(output_dir)` is the newest whole one, newer broken ones logged and
skipped; `resume_problem(checkpoint)` is why `resume_from_checkpoint: <it>` cannot work and what to use instead.
The argument checks (core.hparams.parser) and the training tail (core.train.trainer_utils) both read these.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def is_complete_checkpoint(path: str | Path) -> bool:
    """True when `path` has a readable trainer_state.json and whole weights (see `checkpoint_problem`)."""
    return checkpoint_problem(path) is None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint folder `path` cannot be resumed from, naming the file, or None when it is complete.

    Complete: trainer_state.json parses, weights are there, every safetensors file is as long as its header says,
    and the torch files (optimizer, scheduler, rng state) are whole zip archives. A file cut off by a kill or a full
    disk fails one of these; reading does not go past the headers, so checking a large checkpoint stays cheap.
    """
    path = Path(path)
    if not path.is_dir():
        return "no such folder" if not path.exists() else "it is a file, not a checkpoint folder"
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (not a checkpoint, or one cut off while saving)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is cut off or unreadable"
    if not any((path / name).is_file() for name in _WEIGHTS):
        return f"no weights ({' or '.join(_WEIGHTS)})"
    for file in sorted(path.iterdir()):
        if file.suffix == ".safetensors":
            problem = _safetensors_problem(file)
        elif file.name.endswith(".safetensors.index.json"):
            problem = _index_problem(file)
        elif file.suffix in (".pt", ".pth", ".bin"):
            problem = None if zipfile.is_zipfile(file) else "is cut off or not a torch file (no zip directory)"
        else:
            continue
        if problem:
            return f"{file.name} {problem}"
    return None


def _safetensors_problem(file: Path) -> str | None:
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > size - 8:
                return f"is cut off ({size} bytes, shorter than its header)"
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as err:
        return f"has an unreadable header ({err})"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return f"is cut off or damaged ({size} bytes, its header describes {expected})"
    return None


def _index_problem(file: Path) -> str | None:
    try:
        shards = set(json.loads(file.read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError, AttributeError):
        return "is cut off or unreadable"
    for shard in sorted(shards):
        if not (file.parent / shard).is_file():
            return f"names {shard}, which is missing"
    return None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-N` folders, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete checkpoint; newer incomplete ones are reported and skipped."""
    for path in reversed(list_checkpoints(output_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        logger.warning("Skipping %s: %s; trying the checkpoint before it.", path, problem)
    return None


def resume_problem(checkpoint: str | Path) -> str | None:
    """Why `resume_from_checkpoint: <checkpoint>` cannot work (naming the file and the checkpoint to use instead)."""
    checkpoint = Path(checkpoint)
    problem = checkpoint_problem(checkpoint)
    if problem is None:
        return None
    earlier = [path for path in list_checkpoints(checkpoint.parent) if _step(path) < _step(checkpoint)]
    complete = next((path for path in reversed(earlier) if is_complete_checkpoint(path)), None)
    instead = f"resume from {complete}, the newest complete one before it" if complete else "pick another checkpoint"
    return (
        f"resume_from_checkpoint: {checkpoint} is not a complete checkpoint: {problem} — {instead}, or remove the key "
        "to resume from the newest complete checkpoint of output_dir."
    )


def _step(path: Path) -> int:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else -1

"""Make a new registered dataset from a registered one: filter, de-duplicate, sample, split off an eval set.

    curate("data", "chat", "chat_clean", max_chars=4000, dedup="near", eval_size=0.05)
      -> registers chat_clean (and chat_clean_eval); chat itself is only read.

Two passes over the source files, one row in memory at a time: the first decides which rows stay (keeping only
their numbers and an 8-byte hash per distinct text), the second writes them as JSON Lines with the source's own
columns, so the new entry is the source's mapping with a new file_name. Rows the loader cannot read are dropped
and counted ("bad_row"). Lengths and text matches look at the row's text as training sees it: the system prompt,
every turn of the conversation and the answer(s).
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from core.data.converter import convert_row
from core.data.readers import iter_rows
from core.data.register import NameTaken, add_dataset, check_name
from core.data.registry import DATASET_INFO, DataError, RowError, get_dataset_attr, load_dataset_info
from core.paths import resolve_dataset_dir

DEDUP = ("none", "exact", "near")
_KEEP_KEYS = ("formatting", "ranking", "columns", "tags")
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def row_text(row: dict[str, Any]) -> str:
    """The text of a canonical row: system, every prompt turn, then the answer(s), one per line."""
    parts = [row["_system"]] if row["_system"] else []
    parts += [m["content"] for m in row["_prompt"]]
    parts += [m["content"] for m in row["_response"]]
    return "\n".join(parts)


def normalise(text: str) -> str:
    """What near-duplicates share: case, accents' width forms, punctuation and spacing folded away."""
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _regex(pattern: str | None, option: str) -> re.Pattern | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        raise DataError(f"{option}: received {pattern!r} — not a valid regular expression ({err}).") from None


def _eval_count(eval_size: float | int | None, n: int) -> int:
    if not eval_size:
        return 0
    if eval_size < 0:
        raise DataError(f"eval_size: received {eval_size} — give a fraction below 1 or a number of rows.")
    count = max(1, int(round(eval_size * n))) if eval_size < 1 else int(eval_size)
    if count >= n:
        raise DataError(f"eval_size: received {eval_size} — that leaves no training rows out of {n}. Use less.")
    return count


def _check_options(min_chars, max_chars, dedup, sample) -> None:
    if dedup not in DEDUP:
        raise DataError(f"dedup: received {dedup!r} — use one of {', '.join(DEDUP)}.")
    for option, value in (("min_chars", min_chars), ("max_chars", max_chars), ("sample", sample)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise DataError(f"{option}: received {value!r} — give a whole number of at least 0.")
    if min_chars is not None and max_chars is not None and min_chars > max_chars:
        raise DataError(f"min_chars ({min_chars}) is above max_chars ({max_chars}): no row could stay.")


def curate(
    dataset_dir: str | os.PathLike,
    name: str,
    new_name: str,
    *,
    min_chars: int | None = None,
    max_chars: int | None = None,
    match: str | None = None,
    exclude: str | None = None,
    dedup: str = "none",
    sample: int | None = None,
    eval_size: float | int | None = None,
    seed: int = 42,
    replace: bool = False,
) -> dict[str, Any]:
    """Filter, de-duplicate, sample and split `name` into the new dataset `new_name` (+ `new_name`_eval).

    Rows stay when their text has min_chars..max_chars characters, matches the regular expression `match` (searched
    anywhere) and does not match `exclude`; `dedup="exact"` drops rows whose text appeared before, "near" also
    those equal after folding case, punctuation and spacing (`normalise`). Then `sample` rows are drawn at random
    (with `seed`), and `eval_size` of them (a fraction below 1, or a count) go to the eval dataset.
    -> {"rows_in", "rows_out", "eval_rows", "dropped": {reason: n}, "names": [...], "files": [...]}
    """
    _check_options(min_chars, max_chars, dedup, sample)
    match_re, exclude_re = _regex(match, "match"), _regex(exclude, "exclude")
    check_name(new_name)
    attr = get_dataset_attr(name, dataset_dir)
    if attr.load_from != "file":
        raise DataError(f"{attr.info_file}: dataset '{name}' is on the Hugging Face Hub; curate reads local files.")
    names = [new_name] + ([f"{new_name}_eval"] if eval_size else [])
    if name in names:
        raise DataError(f"new name: '{name}' is the source itself; curate never alters it. Pick a new name.")
    info = load_dataset_info(dataset_dir)
    taken = [n for n in names if n in info]
    if taken and not replace:
        raise NameTaken(
            f"{attr.info_file}: a dataset named '{taken[0]}' already exists. Pick another name, or replace it."
        )
    files = attr.files()

    # Pass 1: which rows stay
    dropped: Counter = Counter()
    seen_exact: set[bytes] = set()
    seen_near: set[bytes] = set()
    kept: list[int] = []
    index = 0
    for file in files:
        for where, raw in iter_rows(file, bad_rows="yield"):
            index += 1
            try:
                if isinstance(raw, RowError):
                    raise raw
                text = row_text(convert_row(raw, attr, where, str(file)))
            except RowError:
                dropped["bad_row"] += 1
                continue
            if min_chars is not None and len(text) < min_chars:
                dropped["too_short"] += 1
                continue
            if max_chars is not None and len(text) > max_chars:
                dropped["too_long"] += 1
                continue
            if match_re is not None and not match_re.search(text):
                dropped["no_match"] += 1
                continue
            if exclude_re is not None and exclude_re.search(text):
                dropped["excluded"] += 1
                continue
            if dedup != "none":
                exact = _digest(text)
                if exact in seen_exact:
                    dropped["duplicate"] += 1
                    continue
                seen_exact.add(exact)
                if dedup == "near":
                    near = _digest(normalise(text))
                    if near in seen_near:
                        dropped["near_duplicate"] += 1
                        continue
                    seen_near.add(near)
            kept.append(index - 1)
    rows_in = index
    rng = random.Random(seed)
    if sample is not None and sample < len(kept):
        dropped["sampled_out"] += len(kept) - sample
        kept = sorted(rng.sample(kept, sample))
    if not kept:
        raise DataError(f"dataset '{name}': no row is left ({_dropped_text(dropped)}). Loosen the filters.")
    held = set(rng.sample(kept, _eval_count(eval_size, len(kept))))

    # Pass 2: write them
    root = resolve_dataset_dir(dataset_dir)
    tmp_train = root / f".{new_name}.curate.{os.getpid()}.jsonl"
    tmp_eval = root / f".{new_name}_eval.curate.{os.getpid()}.jsonl"
    keep = set(kept)
    try:
        with tmp_train.open("w", encoding="utf-8") as train, tmp_eval.open("w", encoding="utf-8") as evals:
            index = 0
            for file in files:
                for _, raw in iter_rows(file, bad_rows="yield"):
                    if index in keep:
                        line = json.dumps(raw, ensure_ascii=False, default=str) + "\n"
                        (evals if index in held else train).write(line)
                    index += 1
        entry = {k: info[name][k] for k in _KEEP_KEYS if k in info[name]}
        if any(f.suffix.lower() == ".txt" for f in files):  # {"text": ...} rows: .txt's implicit mapping, spelled out
            entry["columns"] = {**entry.get("columns", {}), "prompt": attr.columns.get("prompt") or "text"}
        results = [add_dataset(root, new_name, tmp_train, entry, replace=replace, move=True)]
        if held:
            results.append(add_dataset(root, names[1], tmp_eval, entry, replace=replace, move=True))
    finally:
        tmp_train.unlink(missing_ok=True)
        tmp_eval.unlink(missing_ok=True)
    return {
        "rows_in": rows_in,
        "rows_out": len(kept) - len(held),
        "eval_rows": len(held),
        "dropped": dict(dropped.most_common()),
        "names": [r["name"] for r in results],
        "files": [r["file_name"] for r in results],
        "info_file": str(root / DATASET_INFO),
    }


def _dropped_text(dropped: Counter) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in dropped.most_common()) or "the source has no rows"


def describe(result: dict[str, Any]) -> str:
    """One paragraph for the CLI and the board."""
    names = " and ".join(f"'{n}' ({f})" for n, f in zip(result["names"], result["files"], strict=True))
    dropped = _dropped_text(Counter(result["dropped"])) if result["dropped"] else "none"
    split = f", {result['eval_rows']} for eval" if result["eval_rows"] else ""
    return (
        f"{result['rows_in']} rows in, {result['rows_out']} out{split}; dropped: {dropped}. "
        f"Registered {names} in {Path(result['info_file'])}."
    )

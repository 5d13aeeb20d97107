"""First rows of a registered dataset in its canonical form, for the board and `llamafactory-cli data preview`.

Reads only the rows it shows (a page of a 1 GB jsonl takes milliseconds), and counts rows only when that is
cheap (parquet metadata, or files up to readers.COUNT_LIMIT_BYTES). Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import os
from typing import Any

from core.data.converter import convert_row
from core.data.readers import count_rows, iter_rows
from core.data.registry import DataError, DatasetAttr, RowError, get_dataset_attr


def _display(row: dict[str, Any], attr: DatasetAttr) -> dict[str, Any]:
    """prompt / response (or chosen / rejected, or response / kto_tag), plus system and history when present."""
    prompt = row["_prompt"]
    shown: dict[str, Any] = {}
    if row["_system"]:
        shown["system"] = row["_system"]
    if len(prompt) > 1:
        shown["history"] = [[prompt[i]["content"], prompt[i + 1]["content"]] for i in range(0, len(prompt) - 1, 2)]
    shown["prompt"] = prompt[-1]["content"]
    response = row["_response"]
    if attr.ranking:
        shown["chosen"] = response[0]["content"] if response else ""
        shown["rejected"] = response[1]["content"] if len(response) > 1 else ""
    elif response:
        shown["response"] = response[0]["content"]
    if attr.has_kto_tag:
        shown["kto_tag"] = row["_kto_tag"]
    return shown


def preview(dataset_dir: str | os.PathLike, name: str, offset: int = 0, limit: int = 20) -> dict[str, Any]:
    """`{"rows": [...], "columns": [...], "total": int | None, "file": str, "errors": [...]}`.

    `rows` holds up to `limit` rows from row `offset` on (0-based, across the files of a folder); a row that
    cannot be read is left out and its message goes to `errors`. `total` is None when counting would mean
    reading a large file. Raises DataError for a bad registry entry or a missing file.
    """
    attr = get_dataset_attr(name, dataset_dir)
    if attr.load_from != "file":
        raise DataError(
            f"{attr.info_file}: dataset '{name}' is on the Hugging Face Hub ({attr.dataset_name}); preview reads "
            "local files only. Download it into the dataset_dir and use file_name to preview it."
        )
    files = attr.files()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    first_file = str(files[0])
    skip = max(offset, 0)
    for file in files:
        if len(rows) + len(errors) >= limit:
            break
        count_here = None
        if skip:
            count_here = count_rows(file)
            if count_here is not None and count_here <= skip:
                skip -= count_here
                continue
        for index, (where, raw) in enumerate(iter_rows(file, start=skip, bad_rows="yield")):
            if index == 0:
                first_file = str(file)
            if len(rows) + len(errors) >= limit:
                break
            try:
                if isinstance(raw, RowError):
                    raise raw
                rows.append(_display(convert_row(raw, attr, where, str(file)), attr))
            except RowError as err:
                errors.append(str(err))
        skip = 0
    counts = [count_rows(f) for f in files]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    if attr.num_samples:
        total = attr.num_samples if total is not None else None
    order = ["system", "history", "prompt", "response", "chosen", "rejected", "kto_tag"]
    columns = [c for c in order if any(c in r for r in rows)]
    return {"rows": rows, "columns": columns, "total": total, "file": first_file, "errors": errors}

"""The dataset studio's commands (`llamafactory-cli data add | validate | curate`), wired in by core.data.cli.

    llamafactory-cli data add my.csv --name my_qa [--column prompt=question --column response=answer]
    llamafactory-cli data validate my.csv [--formatting sharegpt] | --dataset my_qa
    llamafactory-cli data curate --dataset my_qa --out my_qa_clean --dedup near --eval-size 0.05

Exit status: 0 done (validate: no problem found), 1 validate found problems, 2 error (a message `error: ...`).
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.data.detect import ROLES, TAG_KEYS, detect, make_entry
from core.data.registry import FORMATTINGS, DataError

ACTIONS = ("add", "validate", "curate")
STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")
SHOWN_PROBLEMS = 20


def _mapping_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--formatting", choices=FORMATTINGS, help="force the formatting instead of detecting it")
    parser.add_argument("--ranking", action="store_true", help="preference data (chosen / rejected)")
    parser.add_argument(
        "--column", action="append", default=[], metavar="ROLE=RAW",
        help="map a role to a column of the file, e.g. prompt=question (RAW 'none' unmaps it); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE",
        help=f"sharegpt/openai tag, e.g. user_tag=USER ({', '.join(TAG_KEYS)}); repeatable",
    )  # fmt: skip
    parser.add_argument("--stage", choices=STAGES, help="check rows for this stage (default: from the data)")


def add_parsers(sub: Any) -> None:
    add = sub.add_parser("add", help="detect a file's layout, check every row, copy it in and register it")
    add.add_argument("file", help="a .json, .jsonl, .csv, .parquet or .txt file")
    add.add_argument("--name", required=True, help="the dataset name to register")
    add.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json (created if missing)")
    _mapping_options(add)
    add.add_argument("--replace", action="store_true", help="replace a dataset of the same name")
    add.add_argument("--skip-bad-rows", action="store_true", help="register without the rows that have problems")
    add.add_argument("--json", action="store_true", help="print JSON instead of text")

    check = sub.add_parser("validate", help="check every row of a file (or a registered dataset) as the loader will")
    check.add_argument("file", nargs="?", help="a data file (or give --dataset)")
    check.add_argument("--dataset", help="a registered dataset name instead of a file")
    check.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json; 'demo' = demo data")
    _mapping_options(check)
    check.add_argument("--max-problems", type=int, default=1000, help="list at most this many problems")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")

    cur = sub.add_parser("curate", help="filter, de-duplicate, sample and split a dataset into a new one")
    cur.add_argument("--dataset", required=True, help="the registered source dataset (only read)")
    cur.add_argument("--out", required=True, help="the new dataset's name (the eval set is <out>_eval)")
    cur.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json")
    cur.add_argument("--min-chars", type=int, help="drop rows with fewer characters of text")
    cur.add_argument("--max-chars", type=int, help="drop rows with more characters of text")
    cur.add_argument("--match", help="keep only rows whose text matches this regular expression")
    cur.add_argument("--exclude", help="drop rows whose text matches this regular expression")
    cur.add_argument("--dedup", choices=("none", "exact", "near"), default="none", help="drop duplicate rows")
    cur.add_argument("--sample", type=int, help="keep N rows drawn at random")
    cur.add_argument("--eval-size", type=_size, help="rows for <out>_eval: a fraction below 1 or a count")
    cur.add_argument("--seed", type=int, default=42, help="random seed for --sample and --eval-size (default 42)")
    cur.add_argument("--replace", action="store_true", help="replace datasets of the same names")
    cur.add_argument("--json", action="store_true", help="print JSON instead of text")


def _size(text: str) -> float | int:
    value = float(text)
    return int(value) if value >= 1 and value.is_integer() else value


def _pairs(values: list[str], option: str, example: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise DataError(f"{option}: received {value!r} — write KEY=VALUE, e.g. {option} {example}.")
        pairs[key.strip()] = raw.strip()
    return pairs


def proposed_entry(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(detect()'s result, the entry with --column/--tag/--ranking applied, the stage to check for)."""
    from core.data.validate import STAGE_OF_KIND, stage_for

    found = detect(args.file, formatting=args.formatting)
    formatting = found["formatting"]
    columns = {role: raw for role, raw in found["columns"].items() if raw}
    overrides = _pairs(args.column, "--column", "prompt=question")
    for role, raw in overrides.items():
        if role not in ROLES[formatting]:
            raise DataError(
                f"--column: '{role}' is not a role of formatting {formatting} (roles: {', '.join(ROLES[formatting])})."
            )
        if raw.lower() in ("", "none"):
            columns.pop(role, None)
        else:
            columns[role] = raw
    tags = {**found["tags"], **_pairs(args.tag, "--tag", "user_tag=USER")}
    unknown = sorted(set(tags) - set(TAG_KEYS))
    if unknown:
        raise DataError(f"--tag: unknown key(s) {', '.join(unknown)} (known: {', '.join(TAG_KEYS)}).")
    ranking = found["ranking"] or args.ranking
    entry = make_entry(formatting, columns, tags, ranking)
    changed = overrides or args.ranking or args.tag
    stage = args.stage or (stage_for(entry, args.file) if changed else STAGE_OF_KIND[found["kind"]])
    return found, entry, stage


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, rows: int) -> None:
        share = done / total if total else 1.0
        end = "\n" if done >= total else ""
        print(f"\rchecking: {share:6.1%}  {rows:,} rows", end=end, file=sys.stderr, flush=True)

    return show


def _print_problems(result: dict[str, Any]) -> None:
    counts = ", ".join(f"{kind}: {n}" for kind, n in result["counts"].items())
    print(f"{result['bad_rows']:,} of {result['rows']:,} rows have problems ({counts}).")
    for p in result["problems"][:SHOWN_PROBLEMS]:
        column = f", column '{p['column']}'" if p["column"] else ""
        print(f"  row {p['row']} ({p['where']}{column}): {p['what']}. Fix: {p['fix']}")
    more = result["bad_rows"] - min(len(result["problems"]), SHOWN_PROBLEMS)
    if more > 0:
        print(f"  ... and {more:,} more (--json lists up to --max-problems).")


def _public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "bad_row_numbers"}


def _add(args: argparse.Namespace) -> int:
    from core.data.register import add_dataset
    from core.data.validate import validate

    found, entry, stage = proposed_entry(args)
    result = validate(args.file, entry, stage=stage, progress=_progress(), name=args.name)
    if result["fatal"]:
        raise DataError(result["fatal"])
    if result["bad_rows"] and not args.skip_bad_rows:
        if not args.json:
            _print_problems(result)
        raise DataError(
            f"{args.file}: {result['bad_rows']:,} of {result['rows']:,} rows have problems, nothing registered. "
            "Fix them, correct the mapping (--column / --tag), or pass --skip-bad-rows to register the rest."
        )
    if result["bad_row_numbers_capped"]:
        raise DataError(f"{args.file}: more than {len(result['bad_row_numbers']):,} bad rows: fix the file first.")
    skip = result["bad_row_numbers"] if args.skip_bad_rows else None
    added = add_dataset(args.dataset_dir, args.name, args.file, entry, replace=args.replace, skip_rows=skip)
    if args.json:
        detected = {k: v for k, v in found.items() if k != "sample"}
        print(json.dumps({"detected": detected, "entry": entry, "validation": _public(result), "added": added}))
        return 0
    rows = f"{added['rows']:,} rows" if added["rows"] is not None else f"{result['good_rows']:,} rows"
    skipped = f", {added['skipped']:,} bad rows left out" if added["skipped"] else ""
    print(f"Registered '{args.name}' ({found['kind']}, {entry.get('formatting', 'alpaca')}) as {added['file_name']}"
          f" in {added['info_file']}: {rows}{skipped}.")  # fmt: skip
    print(f"Entry: {json.dumps(entry, ensure_ascii=False)}")
    for note in found["notes"]:
        print(f"Note: {note}")
    print(f"Train on it with `dataset: {args.name}` and `dataset_dir: {args.dataset_dir}` (stage {stage}).")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from core.data.validate import validate, validate_dataset

    if bool(args.file) == bool(args.dataset):
        raise DataError("validate: give a FILE or --dataset NAME (one of the two).")
    if args.dataset:
        result = validate_dataset(
            args.dataset_dir, args.dataset, stage=args.stage, progress=_progress(), max_problems=args.max_problems
        )
    else:
        _, entry, stage = proposed_entry(args)
        result = validate(args.file, entry, stage=stage, progress=_progress(), max_problems=args.max_problems)
        result["entry"] = entry
    if args.json:
        print(json.dumps(_public(result), ensure_ascii=False))
    else:
        if result["bad_rows"]:
            _print_problems(result)
        else:
            print(f"{result['rows']:,} rows, no problem found (stage {result['stage']}).")
        if result["fatal"]:
            print(f"Cannot be loaded: {result['fatal']}")
        print(f"Checked {result['bytes'] / 1e6:,.1f} MB in {result['seconds']:.1f} s.")
    return 1 if result["bad_rows"] or result["fatal"] else 0


def _curate(args: argparse.Namespace) -> int:
    from core.data.curate import curate, describe

    result = curate(
        args.dataset_dir, args.dataset, args.out,
        min_chars=args.min_chars, max_chars=args.max_chars, match=args.match, exclude=args.exclude,
        dedup=args.dedup, sample=args.sample, eval_size=args.eval_size, seed=args.seed, replace=args.replace,
    )  # fmt: skip
    print(json.dumps(result) if args.json else describe(result))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return {"add": _add, "validate": _validate, "curate": _curate}[args.action](args)
    except OSError as err:  # an unreadable file or an unwritable folder: one line, no traceback
        raise DataError(f"{err.filename or ''}: {err.strerror or err}. Check the path and its permissions.") from None

"""Inspect datasets from the command line.

    llamafactory-cli data list [--dataset-dir D] [--stage S]
    llamafactory-cli data preview --dataset X [--dataset-dir D] [--offset N] [--limit N] [--json]
    llamafactory-cli data stats --dataset X --model M [--template T] [--dataset-dir D] [--stage sft]
                                [--cutoff-len 1024] [--batch-size 8] [--packing] [--json]
    llamafactory-cli data add FILE --name N | validate FILE | curate --dataset N --out M   (core.data.studio_cli)

`list`, `preview`, `add`, `validate` and `curate` never import the training stack (the board runs them in-process
or as a fast subprocess); `stats` loads the model's tokenizer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.data import studio_cli
from core.data.registry import DATASET_INFO, DataError, list_datasets
from core.errors import option_spelling
from core.paths import DEMO_DATA_DIR, resolve_dataset_dir

STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafactory-cli data", description="Inspect, add, check and curate registered datasets."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    # `data tokens` is dispatched before this parser (it loads the tokenizer, core.data.tokenview); listed here so
    # that `data --help` names it.
    sub.add_parser("tokens", help="one sample token by token as training sees it: `data tokens --help`")

    listing = sub.add_parser("list", help="names in dataset_info.json, optionally only those a stage can use")
    listing.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json; 'demo' = demo data")
    listing.add_argument("--stage", choices=STAGES, help="only datasets this stage can train on")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")

    show = sub.add_parser("preview", help="first rows in canonical form (prompt / response, or chosen / rejected)")
    show.add_argument("--dataset", required=True, help="a dataset name from dataset_info.json")
    show.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json; 'demo' = demo data")
    show.add_argument("--offset", type=int, default=0, help="first row to show (0-based)")
    show.add_argument("--limit", type=int, default=5, help="how many rows to show")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")

    stats = sub.add_parser("stats", help="token lengths, truncation and padding under a template and settings")
    stats.add_argument("--dataset", required=True, help="dataset name(s), comma separated")
    stats.add_argument("--model", required=True, help="model path or hub id whose tokenizer to use ('demo' works)")
    stats.add_argument(
        "--template",
        default=None,
        help="chat template name (see core.data.templates); default: the model's own chat template, as in training",
    )
    stats.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json; 'demo' = demo data")
    stats.add_argument("--stage", choices=STAGES, default="sft", help="which processor to measure (default sft)")
    stats.add_argument("--cutoff-len", type=int, default=1024, help="cutoff_len in tokens (default 1024)")
    stats.add_argument("--batch-size", type=int, default=8, help="per-device batch size (default 8)")
    stats.add_argument("--packing", action="store_true", help="also report sft with packing (always shown for sft)")
    stats.add_argument("--max-samples", type=int, default=None, help="only the first N rows of each dataset")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    studio_cli.add_parsers(sub)
    return parser


def _print_preview(result: dict[str, Any], offset: int) -> None:
    total = result["total"] if result["total"] is not None else "unknown"
    print(f"{result['file']}  ({total} rows; showing {len(result['rows'])} from row {offset})")
    for i, row in enumerate(result["rows"]):
        print(f"\n--- row {offset + i}")
        for key in result["columns"]:
            if key in row:
                print(f"[{key}] {row[key]}")
    for error in result["errors"]:
        print(f"\n!!! {error}")


def _stats(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.stats import dataset_stats
    from core.data.template import tokenizer_and_template
    from core.hparams import DataArguments

    data_args = DataArguments(
        template=args.template,
        dataset=args.dataset,
        dataset_dir=args.dataset_dir,
        cutoff_len=args.cutoff_len,
        max_samples=args.max_samples,
        packing=args.packing,
    )
    tokenizer, template = tokenizer_and_template(args.model, data_args)
    return dataset_stats(tokenizer, template, data_args, stage=args.stage, batch_size=args.batch_size)


def _list(args: argparse.Namespace) -> None:
    info_file = (resolve_dataset_dir(args.dataset_dir) / DATASET_INFO).absolute()
    if not info_file.is_file():
        raise DataError(
            f"no datasets: {info_file} does not exist. Put your data files and a {DATASET_INFO} describing them in "
            f"{info_file.parent}, or list the demo datasets with --dataset-dir demo (their {DATASET_INFO}, in "
            f"{DEMO_DATA_DIR}, shows the format)."
        )
    names = list_datasets(args.dataset_dir, args.stage)
    if args.json:
        print(json.dumps(names))
    elif names:
        print("\n".join(names))
    else:
        which = f" that stage {args.stage} can train on" if args.stage else ""
        print(f"{info_file} lists no dataset{which}.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with option_spelling():
            return _run(args)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.action in studio_cli.ACTIONS:
        return studio_cli.run(args)
    if args.action == "list":
        _list(args)
    elif args.action == "preview":
        from core.data.preview import preview

        result = preview(args.dataset_dir, args.dataset, offset=args.offset, limit=args.limit)
        if args.json:
            print(json.dumps(result, ensure_ascii=False, indent=1))
        else:
            _print_preview(result, args.offset)
    else:
        from core.data.stats import format_stats

        result = _stats(args)
        print(json.dumps(result, indent=1) if args.json else format_stats(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

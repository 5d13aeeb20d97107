"""What training sees of one sample: its tokens under a template and cutoff, each flagged as training flags it.

`token_view` runs the row through the training processor itself (core.data.loader.PROCESSORS, packing off) and takes
each kept token's flag from the processor's labels: `loss` (label != IGNORE_INDEX) or `masked` (the prompt, history
with mask_history). Tokens that truncation drops are put back where they were, flagged `cut`, and the truncation
point is the index of the first of them. `special` marks the tokenizer's special tokens (bos, eos, template
markers). Pairwise stages give chosen and rejected side by side; kto gives the tag. `length_stats` adds
per-sample lengths for a histogram, truncation and the padding share per batch size (core.data.stats).

Needs the tokenizer (transformers): the board runs it as `llamafactory-cli data tokens ... --json` in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from core.data.converter import NEEDS
from core.data.loader import PROCESSORS, STAGE_PROCESSOR, load_rows
from core.data.processor.common import IGNORE_INDEX, fit_turn, truncate_turns
from core.data.registry import DataError, check_stage, get_dataset_list
from core.data.templates import fold

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
STAGES = tuple(STAGE_PROCESSOR)


def _columns(row: dict[str, Any]) -> dict[str, list]:
    return {k: [row[k]] for k in ("_prompt", "_response", "_system", "_tools", "_kto_tag")}


def _row(data_args: Any, stage: str, index: int, seed: int = 42) -> tuple[dict[str, Any], int]:
    """Row `index` (0-based) of the first dataset in `data_args.dataset`, as the loader converts it."""
    attrs = get_dataset_list(data_args.dataset, data_args.dataset_dir)
    attr = attrs[0]
    check_stage(attr, stage)
    rows = load_rows(attr, NEEDS.get(stage), replace(data_args, max_samples=index + 1), seed)
    if not rows:
        raise DataError(f"{attr.info_file}: dataset '{attr.name}' has no usable rows.")
    if index >= len(rows):
        raise DataError(f"sample {index}: dataset '{attr.name}' has {len(rows)} rows; pick 0 to {len(rows) - 1}.")
    return rows[index], index


def _tokens(tokenizer: Any, ids: list[int], labels: list[int] | None, flag: str | None = None) -> list[dict]:
    special = set(tokenizer.all_special_ids)  # bos / eos / pad, plus the added special tokens (template markers)
    special |= {i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", 0)}
    out = []
    for n, token_id in enumerate(ids):
        if flag is None:
            kind = "masked" if labels is None or labels[n] == IGNORE_INDEX else "loss"
        else:
            kind = flag
        text = tokenizer.decode([token_id])
        out.append({"id": token_id, "text": text, "flag": kind, "special": token_id in special})
    return out


def _side(tokenizer: Any, full: list[tuple[list[int], bool]], kept_ids: list[int], labels: list[int]) -> dict:
    """Tokens of the untruncated sequence `full` ([(ids, kept?)] in order) with the kept ones flagged from the
    processor's labels. The kept pieces must be exactly the processor's input_ids (else a bug here: say so)."""
    kept = [i for ids, keep in full if keep for i in ids]
    if kept != kept_ids:
        raise DataError("token view: the kept tokens differ from the training processor's; please report this.")
    tokens: list[dict] = []
    cut_at = None
    at = 0
    for ids, keep in full:
        if keep:
            tokens += _tokens(tokenizer, ids, labels[at : at + len(ids)])
            at += len(ids)
        elif ids:
            if cut_at is None:
                cut_at = len(tokens)
            tokens += _tokens(tokenizer, ids, None, "cut")
    return {
        "tokens": tokens,
        "length": len(kept_ids),
        "full_length": len(tokens),
        "loss_tokens": sum(1 for label in labels if label != IGNORE_INDEX),
        "cut_at": cut_at,
    }


def _supervised(tokenizer: Any, template: Any, data_args: Any, row: dict) -> dict:
    out = PROCESSORS["supervised"](_columns(row), template=template, tokenizer=tokenizer, data_args=data_args)
    from core.data.processor.supervised import conversations

    pairs = template.encode_many(tokenizer, conversations(_columns(row)))[0]
    mask_history = bool(getattr(data_args, "mask_history", False))
    kept = {index: (p, r) for index, p, r in truncate_turns(pairs, data_args.cutoff_len, from_last=mask_history)}
    full: list[tuple[list[int], bool]] = []
    for index, (prompt, response) in enumerate(pairs):
        if index not in kept:
            full += [(prompt + response, False)]
            continue
        keep_prompt, keep_response = kept[index]
        full += [(prompt[: len(prompt) - len(keep_prompt)], False), (keep_prompt, True)]
        full += [(keep_response, True), (response[len(keep_response) :], False)]
    if not out["input_ids"]:  # the answer did not fit at all: training drops this sample
        side = {"tokens": _tokens(tokenizer, [i for ids, _ in full for i in ids], None, "cut"), "dropped": True}
        return {"sides": {"sample": {**side, "length": 0, "full_length": len(side["tokens"]), "cut_at": 0}}}
    return {"sides": {"sample": _side(tokenizer, full, out["input_ids"][0], out["labels"][0])}}


def _pairwise(tokenizer: Any, template: Any, data_args: Any, row: dict) -> dict:
    out = PROCESSORS["pairwise"](_columns(row), template=template, tokenizer=tokenizer, data_args=data_args)
    convs = [(list(row["_prompt"]) + [row["_response"][k]], row["_system"], row["_tools"]) for k in (0, 1)]
    chosen_pairs, rejected_pairs = template.encode_many(tokenizer, convs)
    prompt, chosen = fold(chosen_pairs)
    _, rejected = fold(rejected_pairs)
    keep_prompt, keep_answer = fit_turn(len(prompt), max(len(chosen), len(rejected)), data_args.cutoff_len)
    head = [(prompt[: len(prompt) - keep_prompt], False), (prompt[len(prompt) - keep_prompt :], True)]
    sides = {}
    for key, answer in (("chosen", chosen), ("rejected", rejected)):
        full = head + [(answer[:keep_answer], True), (answer[keep_answer:], False)]
        sides[key] = _side(tokenizer, full, out[f"{key}_input_ids"][0], out[f"{key}_labels"][0])
    return {"sides": sides}


def _feedback(tokenizer: Any, template: Any, data_args: Any, row: dict) -> dict:
    out = PROCESSORS["feedback"](_columns(row), template=template, tokenizer=tokenizer, data_args=data_args)
    conv = (list(row["_prompt"]) + [row["_response"][0]], row["_system"], row["_tools"])
    prompt, answer = fold(template.encode_many(tokenizer, [conv])[0])
    keep_prompt, keep_answer = fit_turn(len(prompt), len(answer), data_args.cutoff_len)
    full = [(prompt[: len(prompt) - keep_prompt], False), (prompt[len(prompt) - keep_prompt :], True)]
    full += [(answer[:keep_answer], True), (answer[keep_answer:], False)]
    side = _side(tokenizer, full, out["input_ids"][0], out["labels"][0])
    return {"sides": {"sample": side}, "kto_tag": bool(row["_kto_tag"])}


def _pretrain(tokenizer: Any, data_args: Any, row: dict) -> dict:
    text = "\n\n".join(m["content"] for m in list(row["_prompt"]) + list(row["_response"]) if m["content"])
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = tokenizer([text], add_special_tokens=True)["input_ids"][0] + eos
    cutoff = data_args.cutoff_len
    # Pretraining concatenates all texts and cuts blocks of cutoff_len: alone, a sample loses what passes one block.
    full = [(ids[:cutoff], True), (ids[cutoff:], False)]
    return {"sides": {"sample": _side(tokenizer, full, ids[:cutoff], ids[:cutoff])}}


def _unsupervised(tokenizer: Any, template: Any, data_args: Any, row: dict) -> dict:
    """ppo / grpo: the model is given the prompt and generates; no token of the data carries a loss."""
    out = PROCESSORS["unsupervised"](_columns(row), template=template, tokenizer=tokenizer, data_args=data_args)
    conv = (list(row["_prompt"]) + (list(row["_response"][:1]) or [{"role": "assistant", "content": ""}]),)
    prompt, answer = fold(template.encode_many(tokenizer, [(conv[0], row["_system"], row["_tools"])])[0])
    keep_prompt, _ = fit_turn(len(prompt), len(answer), data_args.cutoff_len)
    full = [(prompt[: len(prompt) - keep_prompt], False), (prompt[len(prompt) - keep_prompt :], True)]
    ids = out["input_ids"][0]
    return {"sides": {"prompt": _side(tokenizer, full, ids, [IGNORE_INDEX] * len(ids))}}


def token_view(tokenizer: Any, template: Any, data_args: Any, stage: str = "sft", index: int = 0) -> dict[str, Any]:
    """Sample `index` of the first dataset of `data_args` as the `stage` processor encodes it (packing off).

    -> {"dataset", "stage", "index", "cutoff_len", "sides": {name: {"tokens": [{"id", "text", "flag", "special"}],
    "length", "full_length", "loss_tokens", "cut_at"}}, "kto_tag"?}. Side names: "sample"; "chosen" and "rejected"
    for pairwise stages; "prompt" for ppo / grpo.
    """
    if stage not in STAGE_PROCESSOR:
        raise DataError(f"stage: received {stage!r} — use one of {', '.join(STAGES)}.")
    args = replace(data_args, packing=False, neat_packing=False)
    row, index = _row(args, stage, index)
    kind = STAGE_PROCESSOR[stage]
    if kind == "supervised":
        view = _supervised(tokenizer, template, args, row)
    elif kind == "pairwise":
        view = _pairwise(tokenizer, template, args, row)
    elif kind == "feedback":
        view = _feedback(tokenizer, template, args, row)
    elif kind == "pretrain":
        view = _pretrain(tokenizer, args, row)
    else:
        view = _unsupervised(tokenizer, template, args, row)
    return {
        "dataset": args.dataset.split(",")[0].strip(),
        "stage": stage,
        "index": index,
        "cutoff_len": args.cutoff_len,
        **view,
    }


def length_stats(tokenizer: Any, template: Any, data_args: Any, stage: str = "sft", batch_size: int = 8) -> dict:
    """core.data.stats.dataset_stats plus the per-sample lengths (histogram) and the padding share per batch size."""
    from core.data.stats import dataset_stats

    return dataset_stats(tokenizer, template, data_args, stage=stage, batch_size=batch_size, batch_sizes=BATCH_SIZES)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamafactory-cli data tokens",
        description="Sample N of a dataset token by token as training sees it (loss / masked / cut / special), "
        "plus its token-length statistics.",
    )
    parser.add_argument("--dataset", required=True, help="a dataset name from dataset_info.json")
    parser.add_argument("--model", required=True, help="model path or hub id whose tokenizer to use ('demo' works)")
    parser.add_argument("--template", default=None, help="chat template name; default: the model's own, as training")
    parser.add_argument("--dataset-dir", default="data", help="folder with dataset_info.json; 'demo' = demo data")
    parser.add_argument("--stage", choices=STAGES, default="sft", help="which processor to use (default sft)")
    parser.add_argument("--cutoff-len", type=int, default=1024, help="cutoff_len in tokens (default 1024)")
    parser.add_argument("--index", type=int, default=0, help="which sample (0-based, default 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device batch size for the padding share")
    parser.add_argument("--max-samples", type=int, default=2000, help="rows measured for the statistics (0 = all)")
    parser.add_argument("--train-on-prompt", action="store_true", help="as the training option: prompts carry loss")
    parser.add_argument("--mask-history", action="store_true", help="as the training option: only the last turn")
    parser.add_argument("--no-stats", action="store_true", help="only the sample, no length statistics")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _text(view: dict[str, Any]) -> str:
    marks = {"loss": "{}", "masked": "[{}]", "cut": "~{}~"}
    lines = [f"{view['dataset']} sample {view['index']} ({view['stage']}, cutoff_len {view['cutoff_len']})"]
    if "kto_tag" in view:
        lines.append(f"kto tag: {'desirable' if view['kto_tag'] else 'undesirable'}")
    for name, side in view["sides"].items():
        kept = f"{side['length']} tokens kept of {side['full_length']}, {side.get('loss_tokens', 0)} carry loss"
        lines.append(f"--- {name}: {kept}   ([masked]  loss  ~cut~  <special>)")
        text = "".join(
            marks[t["flag"]].format(("<{}>" if t["special"] else "{}").format(t["text"].replace("\n", "\\n")))
            for t in side["tokens"]
        )
        lines.append(text)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from core.data.stats import format_stats
        from core.data.template import tokenizer_and_template
        from core.hparams import DataArguments

        data_args = DataArguments(
            template=args.template,
            dataset=args.dataset,
            dataset_dir=args.dataset_dir,
            cutoff_len=args.cutoff_len,
            max_samples=args.max_samples or None,
            train_on_prompt=args.train_on_prompt,
            mask_history=args.mask_history,
        )
        tokenizer, template = tokenizer_and_template(args.model, data_args)
        result: dict[str, Any] = {"view": token_view(tokenizer, template, data_args, args.stage, args.index)}
        if not args.no_stats:
            result["stats"] = length_stats(tokenizer, template, data_args, args.stage, args.batch_size)
    except (DataError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(_text(result["view"]))
        if "stats" in result:
            print("\n" + format_stats(result["stats"]))
    return 0

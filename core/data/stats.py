"""Token statistics of a dataset under a template and settings: what `llamafactory-cli data stats` prints.

Lengths come from the same template and processors that training uses (no `datasets` involved), so "truncated"
and "padding" here are exactly what a run with these settings would see.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from core.data.converter import NEEDS
from core.data.loader import PROCESSORS, STAGE_PROCESSOR, _check_stage, load_rows
from core.data.processor.common import messages_of, truncate_turns
from core.data.registry import get_dataset_list


def summary(values: list[int]) -> dict[str, float]:
    """min / mean / p50 / p95 / max (nearest-rank percentiles)."""
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]

    return {
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": rank(0.5),
        "p95": rank(0.95),
        "max": ordered[-1],
    }


def padding_fraction(lengths: list[int], batch_size: int, seed: int = 42, order: str = "random") -> float:
    """Share of padding in one epoch of batches padded to their longest row.

    order: "random" (the trainer's default sampler), "sequential", or "length" (groups of 50 batches sorted by
    length, like transformers' group_by_length sampler).
    """
    index = list(range(len(lengths)))
    if order != "sequential":
        random.Random(seed).shuffle(index)
    if order == "length":
        group = 50 * batch_size
        index = [
            i for g in range(0, len(index), group) for i in sorted(index[g : g + group], key=lambda i: -lengths[i])
        ]
    padded = real = 0
    for start in range(0, len(index), batch_size):
        batch = [lengths[i] for i in index[start : start + batch_size]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 0.0 if padded == 0 else (padded - real) / padded


def _sequence_lengths(kind: str, out: dict[str, list]) -> list[int]:
    """Lengths of the rows the collator will see (pairwise: chosen and rejected rows of the same batch)."""
    if kind == "pairwise":
        return [max(len(c), len(r)) for c, r in zip(out["chosen_input_ids"], out["rejected_input_ids"], strict=True)]
    return [len(ids) for ids in out["input_ids"]]


def dataset_stats(
    tokenizer: Any,
    template: Any,
    data_args: Any,
    stage: str = "sft",
    batch_size: int = 8,
    seed: int = 42,
    batch_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Rows, token lengths (prompt / response / total, untruncated), truncation and padding for these settings.

    With `batch_sizes` the result also holds the per-sample lengths (`lengths`: prompt / response / total, for a
    histogram) and `padding_by_batch_size`: {size: share unpacked, and packed for sft} for each of those sizes."""
    kind = STAGE_PROCESSOR[stage]
    rows: list[dict] = []
    for attr in get_dataset_list(data_args.dataset, data_args.dataset_dir):
        _check_stage(attr, stage)
        rows += load_rows(attr, NEEDS.get(stage), data_args, seed)

    # Every answer of a row is measured (chosen and rejected for pairs); the longer conversation counts.
    convs, owner = [], []
    for n, row in enumerate(rows):
        answers = row["_response"][:2] if kind == "pairwise" else row["_response"][:1]
        for answer in answers or [None]:
            messages = messages_of(row["_prompt"], [answer]) if answer else list(row["_prompt"])
            convs.append((messages, row["_system"], row["_tools"]))
            owner.append(n)
    longest: dict[int, list] = {}
    for n, pairs in zip(owner, template.encode_many(tokenizer, convs), strict=True):
        if n not in longest or sum(map(len, sum(pairs, ()))) > sum(map(len, sum(longest[n], ()))):
            longest[n] = pairs

    prompt_lens, response_lens, total_lens = [], [], []
    truncated = lost = 0
    for n in range(len(rows)):
        pairs = longest[n]
        prompt_len = sum(len(p) for p, _ in pairs)
        response_len = sum(len(r) for _, r in pairs)
        prompt_lens.append(prompt_len)
        response_lens.append(response_len)
        total_lens.append(prompt_len + response_len)
        kept = sum(len(p) + len(r) for _, p, r in truncate_turns(pairs, data_args.cutoff_len))
        if kept < prompt_len + response_len:
            truncated += 1
            lost += prompt_len + response_len - kept

    columns = {k: [r[k] for r in rows] for k in ("_prompt", "_response", "_system", "_tools", "_kto_tag")}
    unpacked_args = replace(data_args, packing=False, neat_packing=False) if kind == "supervised" else data_args
    out = PROCESSORS[kind](columns, template=template, tokenizer=tokenizer, data_args=unpacked_args)
    lengths = _sequence_lengths(kind, out)
    result: dict[str, Any] = {
        "datasets": data_args.dataset,
        "stage": stage,
        "rows": len(rows),
        "cutoff_len": data_args.cutoff_len,
        "batch_size": batch_size,
        "prompt_tokens": summary(prompt_lens),
        "response_tokens": summary(response_lens),
        "total_tokens": summary(total_lens),
        "truncated_samples": truncated,
        "truncated_tokens": lost,
        "sequences": len(lengths),
        "padding_fraction": round(padding_fraction(lengths, batch_size, seed), 4),
        "padding_fraction_grouped_by_length": round(padding_fraction(lengths, batch_size, seed, "length"), 4),
    }
    if kind == "supervised":
        packed = PROCESSORS[kind](
            columns, template=template, tokenizer=tokenizer, data_args=replace(data_args, packing=True)
        )
        packed_lengths = [len(ids) for ids in packed["input_ids"]]
        result["packed_sequences"] = len(packed_lengths)
        # Packed rows are padded to the longest row of the batch, the same as unpacked ones.
        result["padding_fraction_packed"] = round(padding_fraction(packed_lengths, batch_size, seed), 4)
    if batch_sizes:
        result["lengths"] = {"prompt": prompt_lens, "response": response_lens, "total": total_lens}
        by_size = {}
        for size in batch_sizes:
            by_size[str(size)] = {"unpacked": round(padding_fraction(lengths, size, seed), 4)}
            if kind == "supervised":
                by_size[str(size)]["packed"] = round(padding_fraction(packed_lengths, size, seed), 4)
        result["padding_by_batch_size"] = by_size
    return result


def format_stats(stats: dict[str, Any]) -> str:
    lines = [
        f"datasets: {stats['datasets']}   stage: {stats['stage']}   rows: {stats['rows']}",
        "",
        f"{'tokens (template applied)':<28}{'min':>8}{'mean':>10}{'p50':>8}{'p95':>8}{'max':>8}",
    ]
    for key, label in (("prompt_tokens", "prompt"), ("response_tokens", "response"), ("total_tokens", "total")):
        s = stats[key]
        lines.append(f"{label:<28}{s['min']:>8}{s['mean']:>10}{s['p50']:>8}{s['p95']:>8}{s['max']:>8}")
    share = stats["truncated_samples"] / stats["rows"] if stats["rows"] else 0
    lines += [
        "",
        f"cutoff_len {stats['cutoff_len']}: truncates {stats['truncated_samples']} sample(s) ({share:.1%}), "
        f"losing {stats['truncated_tokens']} token(s)",
        f"padding with batch size {stats['batch_size']}: {stats['padding_fraction']:.1%} of batch tokens "
        f"(grouped by length: {stats['padding_fraction_grouped_by_length']:.1%})",
    ]
    if "padding_fraction_packed" in stats:
        lines.append(
            f"with packing: {stats['packed_sequences']} rows of up to {stats['cutoff_len']} tokens, "
            f"{stats['padding_fraction_packed']:.1%} padding"
        )
    return "\n".join(lines)

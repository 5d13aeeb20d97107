"""Supervised fine-tuning: prompt positions are labelled IGNORE_INDEX, answers are learned, every turn of a
multi-turn conversation counts (only the last with `mask_history`); `train_on_prompt` learns the prompts too.
Truncation follows core.data.processor.common. `packing` fills cutoff_len-long rows with several samples."""

from __future__ import annotations

import bisect
from typing import Any

from core.data.processor.common import IGNORE_INDEX, messages_of, truncate_turns


def conversations(examples: dict[str, list]) -> list[tuple[list[dict], str, str]]:
    """(messages, system, tools) of every example: the prompt turns plus the (first) answer."""
    return [
        (messages_of(prompt, response), system, tools)
        for prompt, response, system, tools in zip(
            examples["_prompt"], examples["_response"], examples["_system"], examples["_tools"], strict=True
        )
    ]


def supervised_ids(pairs: list[tuple[list[int], list[int]]], data_args: Any) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one encoded conversation."""
    mask_history = bool(getattr(data_args, "mask_history", False))
    train_on_prompt = bool(getattr(data_args, "train_on_prompt", False))
    input_ids: list[int] = []
    labels: list[int] = []
    last = len(pairs) - 1
    for index, prompt_ids, response_ids in truncate_turns(pairs, data_args.cutoff_len, from_last=mask_history):
        input_ids += prompt_ids + response_ids
        labels += prompt_ids if train_on_prompt else [IGNORE_INDEX] * len(prompt_ids)
        labels += response_ids if not mask_history or index == last else [IGNORE_INDEX] * len(response_ids)
    return input_ids, labels


def preprocess_supervised(examples: dict[str, list], template: Any, tokenizer: Any, data_args: Any) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    for pairs in template.encode_many(tokenizer, conversations(examples)):
        input_ids, labels = supervised_ids(pairs, data_args)
        if labels.count(IGNORE_INDEX) == len(labels):
            continue  # nothing to learn (the answer did not fit); the loader reports how many were dropped
        out["input_ids"].append(input_ids)
        out["attention_mask"].append([1] * len(input_ids))
        out["labels"].append(labels)
    if getattr(data_args, "packing", False) or getattr(data_args, "neat_packing", False):
        return pack(
            out["input_ids"], out["labels"], data_args.cutoff_len, bool(getattr(data_args, "neat_packing", False))
        )
    return out


def pack_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: indices of the samples in each row, rows at most `capacity` tokens long."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, bin index), sorted
    for i in order:
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at < len(free):
            space, b = free.pop(at)
            bins[b].append(i)
            bisect.insort(free, (space - lengths[i], b))
        else:
            bins.append([i])
            bisect.insort(free, (capacity - lengths[i], len(bins) - 1))
    return bins


def pack(all_ids: list[list[int]], all_labels: list[list[int]], cutoff_len: int, neat: bool) -> dict[str, list]:
    """Rows of several samples. Each sample's first label is IGNORE_INDEX: unpacked, nothing predicts a first token,
    and packed, the previous sample's last token must not learn to predict it. `neat` adds position ids that
    restart per sample, from which the model builds a block-diagonal causal mask (see core.data.collator)."""
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    if neat:
        out["position_ids"] = []
    for members in pack_bins([len(ids) for ids in all_ids], cutoff_len):
        ids, labels, positions = [], [], []
        for i in sorted(members):
            ids += all_ids[i]
            labels += [IGNORE_INDEX] + all_labels[i][1:]
            positions += list(range(len(all_ids[i])))
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
        if neat:
            out["position_ids"].append(positions)
    return out

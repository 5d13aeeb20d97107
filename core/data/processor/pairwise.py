"""Preference pairs (rm, dpo): chosen and rejected share the prompt ids; prompt positions are labelled
IGNORE_INDEX (unless train_on_prompt). Both answers are cut to the same budget, sized by the longer one."""

from __future__ import annotations

from typing import Any

from core.data.processor.common import IGNORE_INDEX, fit_turn
from core.data.templates import fold

COLUMNS = (
    "chosen_input_ids",
    "chosen_attention_mask",
    "chosen_labels",
    "rejected_input_ids",
    "rejected_attention_mask",
    "rejected_labels",
)


def preprocess_pairwise(examples: dict[str, list], template: Any, tokenizer: Any, data_args: Any) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in COLUMNS}
    train_on_prompt = bool(getattr(data_args, "train_on_prompt", False))
    convs = [
        (list(prompt) + [response[k]], system, tools)
        for prompt, response, system, tools in zip(
            examples["_prompt"], examples["_response"], examples["_system"], examples["_tools"], strict=True
        )
        for k in (0, 1)
    ]
    encoded = template.encode_many(tokenizer, convs)
    for chosen_pairs, rejected_pairs in zip(encoded[0::2], encoded[1::2], strict=True):
        prompt_ids, chosen_ids = fold(chosen_pairs)
        _, rejected_ids = fold(rejected_pairs)
        keep_prompt, keep_answer = fit_turn(
            len(prompt_ids), max(len(chosen_ids), len(rejected_ids)), data_args.cutoff_len
        )
        prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt :]
        prompt_labels = prompt_ids if train_on_prompt else [IGNORE_INDEX] * len(prompt_ids)
        for key, answer in (("chosen", chosen_ids[:keep_answer]), ("rejected", rejected_ids[:keep_answer])):
            out[f"{key}_input_ids"].append(prompt_ids + answer)
            out[f"{key}_attention_mask"].append([1] * (len(prompt_ids) + len(answer)))
            out[f"{key}_labels"].append(prompt_labels + answer)
    return out

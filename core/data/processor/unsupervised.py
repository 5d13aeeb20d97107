"""Prompts only (ppo rollouts, predict): input_ids is the generation prompt, labels the reference answer's ids
(empty answer when the data has none), `prompt` the text of the last user turn as the data holds it (what
generated_predictions.jsonl shows; collators ignore it). Truncation follows core.data.processor.common."""

from __future__ import annotations

from typing import Any

from core.data.converter import ASSISTANT, USER_LIKE
from core.data.processor.common import truncate_pair
from core.data.templates import fold


def preprocess_unsupervised(
    examples: dict[str, list], template: Any, tokenizer: Any, data_args: Any
) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": [], "prompt": []}
    convs = [
        (list(prompt) + (list(response[:1]) or [{"role": ASSISTANT, "content": ""}]), system, tools)
        for prompt, response, system, tools in zip(
            examples["_prompt"], examples["_response"], examples["_system"], examples["_tools"], strict=True
        )
    ]
    for pairs in template.encode_many(tokenizer, convs):
        prompt_ids, answer_ids = truncate_pair(*fold(pairs), data_args.cutoff_len)
        out["input_ids"].append(prompt_ids)
        out["attention_mask"].append([1] * len(prompt_ids))
        out["labels"].append(answer_ids)
    for prompt in examples["_prompt"]:
        users = [turn["content"] for turn in prompt if turn["role"] in USER_LIKE]
        out["prompt"].append(users[-1] if users else "")
    return out

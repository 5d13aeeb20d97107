"""KTO: each prompt with its answer and a desirable / undesirable tag, plus a mismatched pair for the KL term:
the same prompt with the answer of the next sample in the batch (the batch wraps around). The KL estimate needs
answers that were not written for that prompt; a batch of one sample has no other answer and uses its own."""

from __future__ import annotations

from typing import Any

from core.data.processor.common import IGNORE_INDEX, truncate_pair
from core.data.templates import fold


def _ids(pairs, data_args) -> tuple[list[int], list[int]]:
    prompt_ids, answer_ids = truncate_pair(*fold(pairs), data_args.cutoff_len)
    prompt_labels = prompt_ids if getattr(data_args, "train_on_prompt", False) else [IGNORE_INDEX] * len(prompt_ids)
    return prompt_ids + answer_ids, prompt_labels + answer_ids


def preprocess_feedback(examples: dict[str, list], template: Any, tokenizer: Any, data_args: Any) -> dict[str, list]:
    keys = ("input_ids", "attention_mask", "labels", "kl_input_ids", "kl_attention_mask", "kl_labels", "kto_tags")
    out: dict[str, list] = {k: [] for k in keys}
    n = len(examples["_prompt"])
    convs = []
    for i in range(n):
        prompt, system, tools = list(examples["_prompt"][i]), examples["_system"][i], examples["_tools"][i]
        convs.append((prompt + [examples["_response"][i][0]], system, tools))
        convs.append((prompt + [examples["_response"][(i + 1) % n][0]], system, tools))
    encoded = template.encode_many(tokenizer, convs)
    for i in range(n):
        ids, labels = _ids(encoded[2 * i], data_args)
        kl_ids, kl_labels = _ids(encoded[2 * i + 1], data_args)
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
        out["kl_input_ids"].append(kl_ids)
        out["kl_attention_mask"].append([1] * len(kl_ids))
        out["kl_labels"].append(kl_labels)
        out["kto_tags"].append(bool(examples["_kto_tag"][i]))
    return out

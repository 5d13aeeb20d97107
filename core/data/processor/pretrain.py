"""Pretraining: every text plus eos, concatenated and cut into blocks of cutoff_len tokens (no padding; only the
last block of each preprocessing batch may be shorter)."""

from __future__ import annotations

from typing import Any


def preprocess_pretrain(examples: dict[str, list], template: Any, tokenizer: Any, data_args: Any) -> dict[str, list]:
    texts = [
        "\n\n".join(m["content"] for m in list(prompt) + list(response) if m["content"])
        for prompt, response in zip(examples["_prompt"], examples["_response"], strict=True)
    ]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        stream.extend(ids + eos)
    block = data_args.cutoff_len
    blocks = [stream[i : i + block] for i in range(0, len(stream), block)]
    return {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks], "labels": [list(b) for b in blocks]}

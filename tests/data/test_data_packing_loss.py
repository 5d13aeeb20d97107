"""Neat packing changes nothing the model learns: the loss of a packed batch equals the loss of the same samples
unpacked, on a tiny random Llama with sdpa and eager attention. Plain packing (attention across samples) does
change it, which shows the comparison can fail."""

from __future__ import annotations

import pytest
import torch

from core.data.collator import SFTDataCollator
from core.data.processor.common import IGNORE_INDEX
from core.data.processor.supervised import pack


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


class Tok:
    pad_token_id = 0
    padding_side = "right"


def samples(seed: int = 1) -> tuple[list[list[int]], list[list[int]]]:
    gen = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for length, prompt in [(9, 4), (5, 2), (13, 6), (7, 3), (4, 1)]:
        row = torch.randint(1, 64, (length,), generator=gen).tolist()
        ids.append(row)
        labels.append([IGNORE_INDEX] * prompt + row[prompt:])
    return ids, labels


def rows_of(columns: dict[str, list]) -> list[dict]:
    """Column lists -> one feature dict per row, as a Dataset yields them."""
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def summed_loss(model, batch) -> tuple[float, int]:
    """Sum of token losses and the number of learned tokens (so batches of any shape compare)."""
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return losses.item(), int((labels != IGNORE_INDEX).sum())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_neat_packed_loss_equals_unpacked_loss(model, attn):
    model.config._attn_implementation = attn
    ids, labels = samples()
    collator = SFTDataCollator(Tok())
    unpacked = collator(rows_of({"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids], "labels": labels}))
    packed_rows = pack(ids, labels, cutoff_len=20, neat=True)
    assert len(packed_rows["input_ids"]) < len(ids)  # something was really packed
    packed = collator(rows_of(packed_rows))
    assert "attention_mask" not in packed and "position_ids" in packed and packed["use_cache"] is False

    loss_unpacked, n_unpacked = summed_loss(model, unpacked)
    loss_packed, n_packed = summed_loss(model, packed)
    assert n_packed == n_unpacked
    assert loss_packed / n_packed == pytest.approx(loss_unpacked / n_unpacked, rel=1e-5)

    plain_rows = pack(ids, labels, cutoff_len=20, neat=False)
    plain = collator(rows_of(plain_rows))
    loss_plain, _ = summed_loss(model, plain)
    assert abs(loss_plain / n_packed - loss_unpacked / n_unpacked) > 1e-3


def test_packed_sequences_leak_when_the_model_keeps_a_cache(model):
    """Why neat-packed batches carry use_cache=False: with a cache transformers ignores restarting positions."""
    model.config._attn_implementation = "sdpa"
    ids, labels = samples()
    rows = pack(ids, labels, cutoff_len=20, neat=True)
    batch = SFTDataCollator(Tok())(rows_of(rows))
    with torch.no_grad():
        without = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        cached = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=True).logits
    assert not torch.allclose(without, cached, atol=1e-4)

"""Collators: pad to the longest row, chosen rows before rejected rows, KTO's KL rows and tags."""

from __future__ import annotations

import torch

from core.data.collator import KTODataCollator, PairwiseDataCollator, SFTDataCollator, default_pad_to_multiple_of


class Tok:
    pad_token_id = 0
    padding_side = "right"


def row(ids, labels=None):
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels or ids}


def test_sft_pads_to_the_longest_row():
    batch = SFTDataCollator(Tok())([row([5, 6, 7], [-100, 6, 7]), row([8])])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["input_ids"].dtype == torch.long


def test_pad_to_multiple_of_and_left_padding():
    tok = Tok()
    tok.padding_side = "left"
    batch = SFTDataCollator(tok, pad_to_multiple_of=8)([row([5, 6, 7]), row([8])])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][1].tolist() == [0] * 7 + [8]
    assert batch["attention_mask"][0].tolist() == [0] * 5 + [1, 1, 1]


def test_pad_multiple_only_on_gpu():
    assert default_pad_to_multiple_of() == (8 if torch.cuda.is_available() else None)


def test_pairwise_puts_chosen_rows_first():
    def pair(chosen, rejected):
        return {
            **{f"chosen_{k}": v for k, v in row(chosen).items()},
            **{f"rejected_{k}": v for k, v in row(rejected).items()},
        }

    batch = PairwiseDataCollator(Tok())([pair([1, 2], [3]), pair([4], [5, 6, 7])])
    assert batch["input_ids"].tolist() == [[1, 2, 0], [4, 0, 0], [3, 0, 0], [5, 6, 7]]
    assert batch["labels"][2].tolist() == [3, -100, -100]


def test_kto_batches_kl_rows_and_tags():
    features = [
        {**row([1, 2]), **{f"kl_{k}": v for k, v in row([1, 9, 9]).items()}, "kto_tags": True},
        {**row([3]), **{f"kl_{k}": v for k, v in row([3, 8]).items()}, "kto_tags": False},
    ]
    batch = KTODataCollator(Tok())(features)
    assert batch["input_ids"].tolist() == [[1, 2], [3, 0]]
    assert batch["kl_input_ids"].tolist() == [[1, 9, 9], [3, 8, 0]]
    assert batch["kl_attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["kto_tags"].tolist() == [True, False]


def test_neat_packed_rows_carry_positions_instead_of_a_mask():
    features = [
        {"input_ids": [1, 2, 3], "attention_mask": [1, 1, 1], "labels": [-100, 2, 3], "position_ids": [0, 0, 1]},
        {"input_ids": [4], "attention_mask": [1], "labels": [-100], "position_ids": [0]},
    ]
    batch = SFTDataCollator(Tok())(features)
    assert batch["position_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert "attention_mask" not in batch and batch["use_cache"] is False

"""Collators: pad to the longest sample of the batch (to a multiple of 8 on GPU, where tensor cores want it).

Neat-packed batches (rows with `position_ids` that restart per sample) carry no `attention_mask` and carry
`use_cache=False`: given restarting position ids, no 2D mask and no KV cache, transformers builds the
block-diagonal causal mask itself, for sdpa, eager and flash attention alike, so no token attends across samples.
With a cache (models default to `use_cache=True`) it would silently skip that, hence the flag in the batch.
tests/data/test_data_packing_loss.py shows the packed loss equals the unpacked loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.data.processor.common import IGNORE_INDEX


def default_pad_to_multiple_of() -> int | None:
    """8 when a CUDA device is present, else None (padding on CPU only costs time)."""
    return 8 if torch.cuda.is_available() else None


def _pad(rows: list[list[int]], value: int, length: int, left: bool) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        if left:
            out[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        else:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _target_length(rows: list[list[int]], multiple: int | None) -> int:
    length = max((len(r) for r in rows), default=0)
    if multiple:
        length = -(-length // multiple) * multiple
    return length


@dataclass
class SFTDataCollator:
    """input_ids / attention_mask / labels (and position_ids for neat packing) -> padded tensors.

    Padding follows `tokenizer.padding_side` (right for training; set "left" for batched generation).
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = IGNORE_INDEX

    def _pad_group(self, features: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
        ids = [list(f[f"{prefix}input_ids"]) for f in features]
        length = _target_length(ids, self.pad_to_multiple_of)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = {"input_ids": _pad(ids, pad_id, length, left)}
        if f"{prefix}labels" in features[0]:
            batch["labels"] = _pad(
                [list(f[f"{prefix}labels"]) for f in features], self.label_pad_token_id, length, left
            )
        if "position_ids" in features[0] and not prefix:
            # Padding gets position 0 each, so every pad token is a sequence of its own and no sample attends to it.
            batch["position_ids"] = _pad([list(f["position_ids"]) for f in features], 0, length, left)
            batch["use_cache"] = False
        else:
            masks = [
                list(f.get(f"{prefix}attention_mask") or [1] * len(i)) for f, i in zip(features, ids, strict=True)
            ]
            batch["attention_mask"] = _pad(masks, 0, length, left)
        return batch

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return self._pad_group(features)


@dataclass
class PairwiseDataCollator(SFTDataCollator):
    """A batch of B pairs -> 2B rows: the B chosen answers first, then the B rejected ones."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [
            {key: f[f"{side}_{key}"] for key in ("input_ids", "attention_mask", "labels")}
            for side in ("chosen", "rejected")
            for f in features
        ]
        return self._pad_group(rows)


@dataclass
class KTODataCollator(SFTDataCollator):
    """input_ids / attention_mask / labels, the mismatched kl_* rows for the KL term, and kto_tags (bool)."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._pad_group(features)
        kl = self._pad_group(features, prefix="kl_")
        batch.update({f"kl_{key}": value for key, value in kl.items()})
        batch["kto_tags"] = torch.tensor([bool(f["kto_tags"]) for f in features], dtype=torch.bool)
        return batch

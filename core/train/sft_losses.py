"""Token-weighted sft losses LLaMA-Factory ships, as the Trainer's `compute_loss_func(outputs, labels, n)`.

Both scale each answer token's cross-entropy `ce_t = -log p(y_t)` by a weight computed without gradient:
- DFT (dynamic fine-tuning, Wu et al. 2025, "On the Generalization of SFT: an RL perspective"): `w_t = p(y_t)`,
  so `loss = mean_t(p(y_t).detach() * ce_t)`: confident tokens keep their pull, tokens the model finds very
  unlikely (often noise) pull less.
- EAFT (entropy-adaptive fine-tuning): `w_t = (H_t / 3) ** alpha`, where `H_t` is the entropy of the model's
  prediction restricted to its 20 most likely tokens and renormalised: tokens where the model is unsure learn more.

The mean runs over the tokens that carry labels; with `num_items_in_batch` (gradient accumulation) the sum is
divided by that count, as transformers does for its own loss, so accumulated steps equal one large batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
EAFT_TOP_K = 20
EAFT_ENTROPY_SCALE = 3.0


def _token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and the logits of the positions that carry a label (labels shifted: token t predicts t+1)."""
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].reshape(-1)
    logits = logits.reshape(-1, logits.size(-1))
    keep = shift_labels != IGNORE_INDEX
    picked = logits[keep].float()
    return F.cross_entropy(picked, shift_labels[keep].to(picked.device), reduction="none"), picked


def _reduce(weighted: torch.Tensor, num_items_in_batch: Any) -> torch.Tensor:
    if weighted.numel() == 0:
        return weighted.sum()  # a batch without answer tokens: zero, still attached to the graph
    if num_items_in_batch is not None:
        count = num_items_in_batch.to(weighted.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        return weighted.sum() / count
    return weighted.mean()


def dft_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """DFT: each token's cross-entropy times its own probability, the probability detached."""
    ce, _ = _token_ce(outputs["logits"], labels)
    weight = torch.exp(-ce.detach())
    return _reduce(weight * ce, num_items_in_batch)


def eaft_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None, alpha: float = 1.0) -> torch.Tensor:
    """EAFT: each token's cross-entropy times (top-20 entropy / 3) ** alpha, the weight detached."""
    ce, picked = _token_ce(outputs["logits"], labels)
    with torch.no_grad():
        top = picked.topk(min(EAFT_TOP_K, picked.size(-1)), dim=-1).values
        log_probs = top - top.logsumexp(dim=-1, keepdim=True)
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
        weight = (entropy / EAFT_ENTROPY_SCALE).pow(alpha)
    return _reduce(weight * ce, num_items_in_batch)


def sft_loss_func(finetuning_args: Any) -> Callable[..., torch.Tensor] | None:
    """The Trainer's `compute_loss_func` for the loss `finetuning_args` turns on, None for plain cross-entropy."""
    if finetuning_args.use_dft_loss:
        return dft_loss
    if finetuning_args.use_eaft_loss:
        alpha = finetuning_args.eaft_alpha
        return lambda outputs, labels, num_items_in_batch=None: eaft_loss(outputs, labels, num_items_in_batch, alpha)
    return None

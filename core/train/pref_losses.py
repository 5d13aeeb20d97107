"""Preference losses for the dpo and kto stages, as plain functions of log-probabilities.

Every function takes per-sequence log-probabilities of the completion tokens (shape `[batch]`) and returns
`(losses, chosen_rewards, rejected_rewards)`, each `[batch]`; the trainer averages them. Keeping the maths here,
away from the trainer, lets the tests check each loss against a hand computation.

Which log-probabilities to pass (the trainer does this):
- `sigmoid`, `hinge`: sums over completion tokens, policy and reference.
- `ipo`: per-token averages, policy and reference (IPO's target margin assumes length-normalised ratios).
- `orpo`, `simpo`: per-token averages of the policy only; they need no reference model.
- `kto_pair`: sums, policy and reference; the KTO loss on pairs, each side's KL term estimated from the other side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")
REFERENCE_FREE_LOSSES = ("orpo", "simpo")
# Losses that compare per-token averages rather than sums; long answers would otherwise dominate the margin.
AVERAGED_LOSSES = ("ipo", "orpo", "simpo")

Losses = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# At most this many logits are converted to float32 at a time (64 MiB): a whole batch at once on a small vocabulary,
# one row at a time on a real one (150k entries), where a `[batch, length, vocabulary]` float32 copy would be the
# largest tensor of the step.
CHUNK_ELEMENTS = 1 << 24


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position, `[N, L, V]` logits and `[N, L]` targets -> `[N, L]` (fp32), computed in
    chunks of rows of at most CHUNK_ELEMENTS logits (no log_softmax tensor: the picked logit minus logsumexp)."""
    rows_per_chunk = max(1, CHUNK_ELEMENTS // max(1, logits[0].numel())) if len(logits) else 1
    chunks = []
    for chunk_logits, chunk_targets in zip(logits.split(rows_per_chunk), targets.split(rows_per_chunk), strict=True):
        chunk_logits = chunk_logits.float()
        picked = torch.gather(chunk_logits, -1, chunk_targets.unsqueeze(-1)).squeeze(-1)
        chunks.append(picked - torch.logsumexp(chunk_logits, dim=-1))
    if not chunks:
        return logits.new_zeros(targets.shape, dtype=torch.float32)
    return torch.cat(chunks)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> Losses:
    """DPO-family losses with a reference model: `sigmoid` (DPO, with label smoothing = conservative DPO),
    `hinge` (SLiC) and `ipo`. Rewards are `beta * (policy - reference)`."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    margin = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        # label_smoothing is the assumed probability that a pair's labels are flipped.
        losses = -F.logsigmoid(beta * margin) * (1 - label_smoothing) - F.logsigmoid(-beta * margin) * label_smoothing
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)
    elif loss_type == "ipo":
        # IPO regresses the margin to 1 / (2 beta); beta acts as the strength of the regularisation.
        losses = (margin - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"pref_loss: received {loss_type!r} — not a reference-model loss; use one of {PREF_LOSSES}.")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def kto_pair_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> Losses:
    """KTO on preference pairs (LLaMA-Factory's `pref_loss: kto_pair`, the paired form of the KTO paper): the
    chosen answer must beat the batch's KL estimate from the rejected side, the rejected one stay under the one from
    the chosen side; each estimate is a detached batch mean clamped at zero. Returns one loss per pair, the mean of
    its two halves, so the batch mean equals the mean over all 2B answers."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    chosen_kl = chosen_ratio.mean().clamp(min=0).detach()
    rejected_kl = rejected_ratio.mean().clamp(min=0).detach()
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_ratio - rejected_kl))
    rejected_losses = 1 - torch.sigmoid(beta * (chosen_kl - rejected_ratio))
    return (chosen_losses + rejected_losses) / 2, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def orpo_loss(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, beta: float) -> Losses:
    """ORPO: the SFT loss on the chosen answer plus `beta` times the odds-ratio loss; no reference model.

    odds(p) = p / (1 - p) with p the geometric-mean token probability; the log of 1 - p is computed with
    log1p(-exp(x)), which stays finite for the negative log-probabilities we get here."""
    log_odds = (policy_chosen_avg - policy_rejected_avg) - (
        torch.log1p(-torch.exp(policy_chosen_avg)) - torch.log1p(-torch.exp(policy_rejected_avg))
    )
    losses = -policy_chosen_avg - beta * F.logsigmoid(log_odds)
    return losses, beta * policy_chosen_avg.detach(), beta * policy_rejected_avg.detach()


def simpo_loss(
    policy_chosen_avg: torch.Tensor,
    policy_rejected_avg: torch.Tensor,
    beta: float,
    gamma: float,
    label_smoothing: float = 0.0,
) -> Losses:
    """SimPO: a sigmoid loss on `beta * (avg logp chosen - avg logp rejected) - gamma`; no reference model."""
    logits = beta * (policy_chosen_avg - policy_rejected_avg) - gamma
    losses = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    return losses, beta * policy_chosen_avg.detach(), beta * policy_rejected_avg.detach()


def kto_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Losses:
    """KTO on unpaired examples: desirable ones (`chosen`) and undesirable ones (`rejected`), either may be empty.

    `kl` is the batch estimate of KL(policy || reference) from mismatched prompt/answer pairs, already detached
    and clamped at zero: a desirable answer must beat it, an undesirable one must stay under it. Returns
    `(losses, chosen_rewards, rejected_rewards)` where `losses` holds the chosen losses then the rejected ones."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_ratio - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected_ratio))
    losses = torch.cat((desirable_weight * chosen_losses, undesirable_weight * rejected_losses), dim=0)
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()

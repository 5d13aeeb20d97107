"""The DFT and EAFT sft losses against hand computations, and a DFT run that learns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.train.callbacks import read_log_records
from core.train.sft_losses import dft_loss, eaft_loss

# One sequence of 4 positions over a 3-token vocabulary; labels at positions 1..3 are predicted by logits 0..2,
# and the label -100 at position 2 leaves logits row 1 out.
LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [0.0, 3.0, 1.0], [9.0, 9.0, 9.0]]
LABELS = [-100, 0, -100, 2]


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(x) for x in row]
    return [x / sum(exps) for x in exps]


def _outputs(requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {"logits": torch.tensor([LOGITS], requires_grad=requires_grad)}


# By hand: logits row 0 predicts label 0, row 2 predicts label 2.
P_ROW0 = _softmax(LOGITS[0])
P_ROW2 = _softmax(LOGITS[2])
CE = [-math.log(P_ROW0[0]), -math.log(P_ROW2[2])]


def test_dft_weights_each_token_by_its_probability():
    expected = (P_ROW0[0] * CE[0] + P_ROW2[2] * CE[1]) / 2
    assert dft_loss(_outputs(), torch.tensor([LABELS])).item() == pytest.approx(expected, rel=1e-6)
    # With num_items_in_batch (gradient accumulation) the sum is divided by that count instead.
    assert dft_loss(_outputs(), torch.tensor([LABELS]), num_items_in_batch=4).item() == pytest.approx(
        (P_ROW0[0] * CE[0] + P_ROW2[2] * CE[1]) / 4, rel=1e-6
    )


def test_dft_weight_is_detached_so_the_gradient_is_p_times_the_ce_gradient():
    outputs = _outputs(requires_grad=True)
    dft_loss(outputs, torch.tensor([LABELS])).backward()
    grad = outputs["logits"].grad[0, 0].tolist()
    # d ce / d logit_j = p_j - [j == label]; DFT scales it by p(label) / 2 (the mean over two tokens).
    expected = [P_ROW0[0] / 2 * (p - (j == 0)) for j, p in enumerate(P_ROW0)]
    assert grad == pytest.approx(expected, rel=1e-5)


def test_eaft_weights_by_normalised_entropy():
    def entropy(probs: list[float]) -> float:
        return -sum(p * math.log(p) for p in probs)

    alpha = 2.0
    # The vocabulary (3) is below the top-20 cut: the entropy is the full distribution's.
    weights = [(entropy(P_ROW0) / 3) ** alpha, (entropy(P_ROW2) / 3) ** alpha]
    expected = (weights[0] * CE[0] + weights[1] * CE[1]) / 2
    assert eaft_loss(_outputs(), torch.tensor([LABELS]), alpha=alpha).item() == pytest.approx(expected, rel=1e-6)


def test_a_batch_without_answer_tokens_gives_zero_and_still_backpropagates():
    outputs = _outputs(requires_grad=True)
    loss = dft_loss(outputs, torch.tensor([[-100, -100, -100, -100]]))
    loss.backward()
    assert loss.item() == 0.0 and outputs["logits"].grad is not None


def test_sft_loss_func_picks_the_loss_and_its_alpha():
    from types import SimpleNamespace

    from core.train.sft_losses import sft_loss_func

    flags = {"use_dft_loss": False, "use_eaft_loss": False, "eaft_alpha": 2.0}
    assert sft_loss_func(SimpleNamespace(**flags)) is None
    assert sft_loss_func(SimpleNamespace(**{**flags, "use_dft_loss": True})) is dft_loss
    eaft = sft_loss_func(SimpleNamespace(**{**flags, "use_eaft_loss": True}))
    labels = torch.tensor([LABELS])
    assert eaft(_outputs(), labels).item() == pytest.approx(eaft_loss(_outputs(), labels, alpha=2.0).item())


@pytest.mark.slow
def test_the_sft_trainer_trains_on_the_dft_loss(make_args):
    from core import run_exp

    args = make_args("sft", finetuning_type="full", max_steps=4, logging_steps=2, use_dft_loss=True)
    run_exp(args)
    losses = [r["loss"] for r in read_log_records(Path(args["output_dir"]) / "trainer_log.jsonl") if "loss" in r]
    # Plain cross-entropy starts near ln(512) = 6.2 on the demo model (measured 6.5); DFT scales each token by its
    # probability (about 1/512 here), so the logged loss is about 0.01-0.05 (measured 0.04).
    assert len(losses) == 2 and losses[0] < 0.2, losses

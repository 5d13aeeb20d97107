"""Each preference loss against a hand computation with `math`, and the log-probability helper against a loop."""

from __future__ import annotations

import math

import pytest
import torch

from core.train import pref_losses
from core.train.pref_losses import dpo_loss, kto_loss, kto_pair_loss, orpo_loss, simpo_loss, token_logps
from core.train.pref_trainer import IGNORE_INDEX, label_window, sequence_logps, window_logps

# Two pairs; the first prefers chosen more than the reference does, the second less.
PC, PR, RC, RR = [-4.0, -6.0], [-7.0, -5.0], [-5.0, -5.5], [-6.0, -5.5]


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_matches_hand_computation(smoothing):
    beta = 0.1
    losses, chosen, rejected = dpo_loss(t(PC), t(PR), t(RC), t(RR), beta, "sigmoid", smoothing)
    for i in range(2):
        margin = (PC[i] - RC[i]) - (PR[i] - RR[i])
        expected = -(1 - smoothing) * log_sigmoid(beta * margin) - smoothing * log_sigmoid(-beta * margin)
        assert losses[i].item() == pytest.approx(expected, rel=1e-9)
        assert chosen[i].item() == pytest.approx(beta * (PC[i] - RC[i]))
        assert rejected[i].item() == pytest.approx(beta * (PR[i] - RR[i]))
    # The pair the policy already prefers costs less than the one it does not.
    assert losses[0] < losses[1]


def test_hinge_matches_hand_computation():
    beta = 0.5
    losses, _, _ = dpo_loss(t(PC), t(PR), t(RC), t(RR), beta, "hinge")
    for i in range(2):
        margin = (PC[i] - RC[i]) - (PR[i] - RR[i])
        assert losses[i].item() == pytest.approx(max(0.0, 1 - beta * margin))
    # A large enough margin costs nothing.
    assert dpo_loss(t([0.0]), t([-10.0]), t([0.0]), t([0.0]), 0.5, "hinge")[0].item() == 0.0


def test_ipo_matches_hand_computation():
    beta = 0.25
    losses, _, _ = dpo_loss(t(PC), t(PR), t(RC), t(RR), beta, "ipo")
    for i in range(2):
        margin = (PC[i] - RC[i]) - (PR[i] - RR[i])
        assert losses[i].item() == pytest.approx((margin - 1 / (2 * beta)) ** 2)


def test_orpo_matches_hand_computation():
    beta = 0.1
    chosen_avg, rejected_avg = [-0.5, -1.2], [-1.5, -0.3]
    losses, chosen, _ = orpo_loss(t(chosen_avg), t(rejected_avg), beta)
    for i in range(2):
        pc, pr = math.exp(chosen_avg[i]), math.exp(rejected_avg[i])
        log_odds = math.log(pc / (1 - pc)) - math.log(pr / (1 - pr))
        expected = -chosen_avg[i] - beta * log_sigmoid(log_odds)
        assert losses[i].item() == pytest.approx(expected, rel=1e-9)
        assert chosen[i].item() == pytest.approx(beta * chosen_avg[i])


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_simpo_matches_hand_computation(gamma):
    beta = 2.0
    chosen_avg, rejected_avg = [-0.5, -1.2], [-1.5, -0.3]
    losses, _, _ = simpo_loss(t(chosen_avg), t(rejected_avg), beta, gamma)
    for i in range(2):
        expected = -log_sigmoid(beta * (chosen_avg[i] - rejected_avg[i]) - gamma)
        assert losses[i].item() == pytest.approx(expected, rel=1e-9)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="pref_loss.*sigmoid"):
        dpo_loss(t(PC), t(PR), t(RC), t(RR), 0.1, "simpo")


def test_kto_matches_hand_computation():
    beta, kl, wd, wu = 0.1, 0.3, 1.0, 1.5
    losses, chosen, rejected = kto_loss(t([-4.0]), t([-7.0, -5.0]), t([-5.0]), t([-6.0, -5.5]), t(kl), beta, wd, wu)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [
        wd * (1 - sigmoid(beta * ((-4.0 + 5.0) - kl))),
        wu * (1 - sigmoid(beta * (kl - (-7.0 + 6.0)))),
        wu * (1 - sigmoid(beta * (kl - (-5.0 + 5.5)))),
    ]
    assert losses.tolist() == pytest.approx(expected, rel=1e-9)
    assert chosen.tolist() == pytest.approx([beta * 1.0])
    assert rejected.tolist() == pytest.approx([beta * -1.0, beta * 0.5])


def test_kto_without_desirable_examples():
    losses, chosen, rejected = kto_loss(t([]), t([-7.0]), t([]), t([-6.0]), t(0.0), 0.1)
    assert losses.shape == (1,) and chosen.numel() == 0 and rejected.numel() == 1


def test_sequence_logps_counts_only_labelled_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 1], [IGNORE_INDEX, 2, 6, IGNORE_INDEX, IGNORE_INDEX]])
    sums, avgs = sequence_logps(logits, labels)
    logp = logits.log_softmax(-1)
    for row in range(2):
        picked = [logp[row, pos - 1, labels[row, pos]].item() for pos in range(1, 5) if labels[row, pos] >= 0]
        assert sums[row].item() == pytest.approx(sum(picked), rel=1e-5)
        assert avgs[row].item() == pytest.approx(sum(picked) / len(picked), rel=1e-5)


def test_kto_pair_matches_hand_computation():
    beta = 0.1
    losses, chosen, rejected = kto_pair_loss(t(PC), t(PR), t(RC), t(RR), beta)
    chosen_ratios = [PC[i] - RC[i] for i in range(2)]  # 1.0, -0.5
    rejected_ratios = [PR[i] - RR[i] for i in range(2)]  # -1.0, 0.5
    chosen_kl = max(0.0, sum(chosen_ratios) / 2)  # 0.25: the KL estimate the rejected side must stay under
    rejected_kl = max(0.0, sum(rejected_ratios) / 2)  # -0.25 -> 0: the one the chosen side must beat

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    for i in range(2):
        chosen_loss = 1 - sigmoid(beta * (chosen_ratios[i] - rejected_kl))
        rejected_loss = 1 - sigmoid(beta * (chosen_kl - rejected_ratios[i]))
        assert losses[i].item() == pytest.approx((chosen_loss + rejected_loss) / 2, rel=1e-9)
        assert chosen[i].item() == pytest.approx(beta * chosen_ratios[i])
        assert rejected[i].item() == pytest.approx(beta * rejected_ratios[i])
    assert losses[0] < losses[1]


def test_token_logps_in_chunks_equals_the_whole_batch_log_softmax(monkeypatch):
    torch.manual_seed(0)
    logits, targets = torch.randn(5, 6, 11), torch.randint(0, 11, (5, 6))
    whole = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logps(logits, targets), whole, rtol=0, atol=1e-5)
    monkeypatch.setattr(pref_losses, "CHUNK_ELEMENTS", 2 * 6 * 11)  # two rows per chunk, the last one alone
    torch.testing.assert_close(token_logps(logits, targets), whole, rtol=0, atol=1e-5)


def test_logps_from_the_label_window_equal_those_from_every_position():
    torch.manual_seed(1)
    logits = torch.randn(3, 9, 13)
    labels = torch.full((3, 9), IGNORE_INDEX)
    labels[0, 4:7] = torch.tensor([1, 2, 3])  # prompts of different lengths, padding after the answers
    labels[1, 6:9] = torch.tensor([4, 5, 6])
    labels[2, 5] = 7
    start, end = label_window(labels)
    assert (start, end) == (3, 8)  # position 3 predicts the first label (at 4), 7 the last (at 8)
    window = window_logps(logits[:, start:end], labels, start, end)
    for got, expected in zip(window, sequence_logps(logits, labels), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert label_window(torch.full((2, 4), IGNORE_INDEX)) == (0, 0)

"""Figures from trainer_log records: the traces a user sees, empty states, long runs thinned."""

from __future__ import annotations

import pytest

from webui import plots


def traces(figure) -> dict[str, tuple[list, list]]:
    return {trace.name: (list(trace.x), list(trace.y)) for trace in figure.data}


def hint_of(figure) -> str:
    return " ".join(annotation.text for annotation in figure.layout.annotations)


RECORDS = [
    {"current_steps": 1, "loss": 4.0, "lr": 1e-4},
    {"current_steps": 2, "loss": 2.0, "lr": 9e-5},
    {"current_steps": 2, "eval_loss": 3.0},
    {"current_steps": 3, "loss": 1.0, "lr": 8e-5},
    {"current_steps": 4, "loss": float("nan"), "lr": 7e-5},
    {"current_steps": 4, "eval_loss": 1.5},
]


def test_loss_figure_has_raw_smoothed_and_eval_traces():
    figure = plots.loss_figure(RECORDS, smoothing=0.5)
    data = traces(figure)
    assert data["loss"] == ([1, 2, 3], [4.0, 2.0, 1.0])  # NaN left out
    assert data["eval_loss"] == ([2, 4], [3.0, 1.5])
    # Debiased EMA, weight 0.5: ema = 2, 2, 1.5 over debias 0.5, 0.75, 0.875
    assert data["smoothed"][1] == pytest.approx([4.0, 8 / 3, 12 / 7])
    assert figure.layout.yaxis.type == "linear"
    assert plots.loss_figure(RECORDS, log_y=True).layout.yaxis.type == "log"
    assert "smoothed" not in traces(plots.loss_figure(RECORDS, smoothing=0))


def test_lr_and_reward_figures():
    assert traces(plots.lr_figure(RECORDS))["lr"] == ([1, 2, 3, 4], [1e-4, 9e-5, 8e-5, 7e-5])
    dpo = [
        {"current_steps": 5, "rewards/accuracies": 0.5, "rewards/margins": 0.1, "accuracy": 0.5},
        {"current_steps": 10, "rewards/accuracies": 0.75, "rewards/margins": 0.4, "accuracy": 0.75},
    ]
    data = traces(plots.reward_figure(dpo))
    assert data["accuracy"] == ([5, 10], [0.5, 0.75])
    assert data["margins"] == ([5, 10], [0.1, 0.4])
    rm = [{"current_steps": 1, "accuracy": 0.6}, {"current_steps": 2, "accuracy": 0.9}]
    assert traces(plots.reward_figure(rm)) == {"accuracy": ([1, 2], [0.6, 0.9])}
    ppo = [{"current_steps": 1, "reward": 0.1, "kl": 0.0}, {"current_steps": 2, "reward": 0.3}]
    assert traces(plots.reward_figure(ppo)) == {"reward": ([1, 2], [0.1, 0.3])}


GRPO = [
    {"current_steps": 5, "reward": 0.2, "reward_std": 0.1, "reward/exact_match": 0.0, "reward/format": 1.0,
     "kl": 0.01, "completion_length": 12.0, "completion_length_max": 20.0, "completion_cut": 0.5},
    {"current_steps": 10, "reward": 0.8, "reward_std": 0.3, "reward/exact_match": 0.75, "reward/format": 1.0,
     "kl": 0.05, "completion_length": 8.0, "completion_length_max": 14.0, "completion_cut": 0.0},
]  # fmt: skip


def test_grpo_figures_chart_the_reward_per_function_kl_and_length():
    figure = plots.grpo_reward_figure(GRPO)
    data = traces(figure)
    assert data["reward"] == ([5, 10], [0.2, 0.8])
    assert data["exact_match"] == ([5, 10], [0.0, 0.75]) and data["format"] == ([5, 10], [1.0, 1.0])
    assert data["+1 std"][1] == pytest.approx([0.3, 1.1]) and data["-1 std"][1] == pytest.approx([0.1, 0.5])
    rollout = plots.rollout_figure(GRPO)
    data = traces(rollout)
    assert data["length"] == ([5, 10], [12.0, 8.0]) and data["max length"] == ([5, 10], [20.0, 14.0])
    assert data["KL"] == ([5, 10], [0.01, 0.05]) and data["cut share"] == ([5, 10], [0.5, 0.0])
    assert {trace.name: trace.yaxis for trace in rollout.data}["KL"] == "y2"  # its own scale beside tokens
    no_kl = [{key: value for key, value in record.items() if key != "kl"} for record in GRPO]  # grpo_beta: 0
    assert "KL" not in traces(plots.rollout_figure(no_kl))


@pytest.mark.parametrize(
    "make",
    [plots.loss_figure, plots.lr_figure, plots.reward_figure, plots.grpo_reward_figure, plots.rollout_figure],
)
def test_no_points_gives_an_empty_figure_with_a_hint(make):
    for records in ([], [{"current_steps": 1, "epoch": 0.1}]):
        figure = make(records)
        assert figure.data == ()
        assert hint_of(figure)
    assert hint_of(make([], hint="Noch keine Daten")) == "Noch keine Daten"


def test_a_growing_list_is_read_incrementally_and_matches_a_fresh_read():
    records = list(RECORDS[:2])
    plots.loss_figure(records)
    records.extend(RECORDS[2:])
    grown = traces(plots.loss_figure(records, smoothing=0.5))
    fresh = traces(plots.loss_figure([dict(r) for r in records], smoothing=0.5))
    assert grown["loss"] == fresh["loss"] and grown["eval_loss"] == fresh["eval_loss"]
    assert grown["smoothed"][1] == pytest.approx(fresh["smoothed"][1])
    # A different list in the same place (a new run) is not mixed up with the cached one.
    records[:] = [{"current_steps": 1, "loss": 9.0}]
    assert traces(plots.loss_figure(records))["loss"] == ([1], [9.0])


def test_long_runs_are_thinned_and_keep_the_last_point():
    records = [{"current_steps": step, "loss": 1.0 / step, "lr": 1e-4} for step in range(1, 100_001)]
    data = traces(plots.loss_figure(records))
    steps = data["loss"][0]
    assert len(steps) <= plots.MAX_POINTS + 1 and steps[0] == 1 and steps[-1] == 100_000
    assert len(data["smoothed"][0]) == len(steps)


def test_compare_smoothing_and_several_metrics_in_stacked_panels():
    runs = {
        "a": [{"current_steps": s, "loss": float(s % 2), "lr": 0.1 * s} for s in range(1, 7)],
        "b": [{"current_steps": s, "loss": 1.0, "lr": 0.2 * s} for s in range(1, 7)],
    }
    raw = plots.compare_figure(runs, "loss", smoothing=0)
    assert list(raw.data[0].y) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    smooth = plots.compare_figure(runs, "loss", smoothing=0.9)
    assert max(smooth.data[0].y[2:]) - min(smooth.data[0].y[2:]) < 0.5  # the zig-zag flattened
    both = plots.compare_figure(runs, ["loss", "lr"], titles=["Train loss", "Learning rate"])
    assert [(t.name, t.yaxis, t.showlegend) for t in both.data] == [
        ("a", "y", True), ("b", "y", True), ("a", "y2", False), ("b", "y2", False)
    ]  # fmt: skip
    assert both.layout.yaxis2.title.text == "Learning rate"
    assert both.layout.yaxis.domain[0] > both.layout.yaxis2.domain[1]  # stacked, loss on top
    assert both.data[0].line.color == both.data[2].line.color  # one colour per run in every panel

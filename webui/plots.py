"""Plotly figures from trainer_log.jsonl records: loss (raw, smoothed, eval), learning rate, preference rewards,
grpo's rewards (total and per function) and its rollouts (KL, completion length), efficiency (real tokens/s, MFU);
and from metrics.jsonl samples: the job's CPU, memory and GPU use, placed on the same step axis as the loss.

The board polls every 2 s with the reader's growing `records` list. Series are extracted incrementally from
the records not yet seen (a small cache keyed by the list object), and each trace is thinned to at most
MAX_POINTS points, so building a figure costs about the same at step 10 and at step 100,000.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

MAX_POINTS = 1000
"""Points per trace sent to the browser; longer series are thinned evenly (the last point always kept)."""

ACCURACY_KEYS = ("rewards/accuracies", "accuracy")
_SERIES_KEYS = (
    "loss",
    "eval_loss",
    "lr",
    "rewards/margins",
    "reward",
    "throughput",
    "mfu",
    "reward_std",
    "kl",
    "completion_length",
    "completion_length_max",
    "completion_cut",
)
FUNC_PREFIX = "reward/"
"""grpo logs each reward function's mean as reward/<function>; the names are the user's, so collected as found."""
_FUNC_COLORS = ("#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2", "#bcbd22", "#7f7f7f")

_COLORS = {"raw": "rgba(31, 119, 180, 0.35)", "smooth": "#1f77b4", "eval": "#ff7f0e", "lr": "#2ca02c"}


class _Series:
    """(step, value) lists per metric for one growing records list, plus EMA state per smoothing weight."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.seen = 0
        self.last: dict[str, Any] | None = None
        self.points: dict[str, tuple[list[float], list[float]]] = {key: ([], []) for key in (*_SERIES_KEYS, "acc")}
        self.smoothed: dict[float, tuple[list[float], float, int]] = {}

    def follows(self, records: list[dict[str, Any]]) -> bool:
        """Is `records` the list this cache read, grown only by appending?"""
        if records is not self.records or len(records) < self.seen:
            return False
        return self.seen == 0 or records[self.seen - 1] is self.last

    def update(self) -> None:
        for index in range(self.seen, len(self.records)):
            record = self.records[index]
            step = record.get("current_steps", index + 1)
            for key in _SERIES_KEYS:
                _append(self.points[key], step, record.get(key))
            accuracy = next((record[key] for key in ACCURACY_KEYS if key in record), None)
            _append(self.points["acc"], step, accuracy)
            for key, value in record.items():
                if key.startswith(FUNC_PREFIX):
                    _append(self.points.setdefault(key, ([], [])), step, value)
        self.seen = len(self.records)
        self.last = self.records[-1] if self.records else None

    def smooth(self, weight: float) -> list[float]:
        """TensorBoard-style exponential moving average of the loss, debiased at the start, kept incrementally."""
        values = self.points["loss"][1]
        out, ema, count = self.smoothed.get(weight, ([], 0.0, 0))
        for value in values[count:]:
            ema = ema * weight + (1 - weight) * value
            out.append(ema / (1 - weight ** (len(out) + 1)) if weight > 0 else value)
        self.smoothed[weight] = (out, ema, len(values))
        return out


def _append(series: tuple[list[float], list[float]], step: Any, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        series[0].append(step)
        series[1].append(value)


_CACHE: OrderedDict[int, _Series] = OrderedDict()
_CACHE_SIZE = 8


def _series(records: list[dict[str, Any]]) -> _Series:
    series = _CACHE.get(id(records))
    if series is None or not series.follows(records):
        series = _Series(records)
        _CACHE[id(records)] = series
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(id(records))
    series.update()
    return series


def _thin(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    stride = math.ceil(len(xs) / MAX_POINTS)
    keep_x, keep_y = xs[::stride], ys[::stride]
    if keep_x[-1] != xs[-1]:
        keep_x.append(xs[-1])
        keep_y.append(ys[-1])
    return keep_x, keep_y


def _layout(title: str, y_title: str, log_y: bool = False) -> dict[str, Any]:
    return {
        # No named template: applying one deep-copies it (about 40 ms a figure, every 2 s); a few settings suffice.
        "template": "none",
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"size": 12},
        "height": 300,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        # automargin: the margins grow to fit the tick labels and titles (a rate such as 0.00499998 or a right
        # axis in the hundreds would otherwise be cut at the chart's edge).
        "xaxis": {
            "title": {"text": "step"},
            "gridcolor": "#eeeeee",
            "zeroline": False,
            "linecolor": "#cccccc",
            "automargin": True,
        },
        "yaxis": {
            "title": {"text": y_title},
            "automargin": True,
            "type": "log" if log_y else "linear",
            "gridcolor": "#eeeeee",
            "zeroline": False,
        },
        # Keeps the user's zoom and hidden traces across the 2-second refreshes.
        "uirevision": title,
    }


def _figure(traces: list[dict[str, Any]], layout: dict[str, Any], hint: str):
    """One plotly Figure, built in a single constructor call (update_layout afterwards costs ~30 ms a call)."""
    import plotly.graph_objects as go

    if not traces:
        layout["annotations"] = [
            {
                "text": hint,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 13, "color": "#888888"},
            }
        ]
        layout["xaxis"]["visible"] = False
        layout["yaxis"]["visible"] = False
    return go.Figure(data=traces, layout=layout)


def _line(
    xs, ys, name: str, color: str, width: float = 2.0, markers: bool = False, dash: str = "solid", **extra: Any
) -> dict[str, Any]:
    import numpy as np

    xs, ys = _thin(xs, ys)
    mode = "lines+markers" if markers or len(xs) == 1 else "lines"
    # Arrays, not lists: plotly checks a list element by element, an array at once.
    return {
        "type": "scatter",
        "x": np.asarray(xs),
        "y": np.asarray(ys),
        "name": name,
        "mode": mode,
        "line": {"color": color, "width": width, "dash": dash},
        **extra,
    }


def loss_figure(
    records: list[dict[str, Any]],
    smoothing: float = 0.6,
    log_y: bool = False,
    title: str = "Loss",
    hint: str = "No loss logged yet: the chart fills in every logging_steps.",
):
    """Training loss (raw, faint), its moving average (`smoothing` in [0, 1), 0 = none) and eval loss."""
    series = _series(records)
    steps, losses = series.points["loss"]
    eval_steps, eval_losses = series.points["eval_loss"]
    traces = []
    if losses:
        traces.append(_line(steps, losses, "loss", _COLORS["raw"], width=1.0))
        weight = min(max(float(smoothing), 0.0), 0.999)
        if weight > 0 and len(losses) > 1:
            traces.append(_line(steps, series.smooth(weight), "smoothed", _COLORS["smooth"]))
    if eval_losses:
        traces.append(_line(eval_steps, eval_losses, "eval_loss", _COLORS["eval"], markers=True))
    return _figure(traces, _layout(title, "loss", log_y), hint)


def lr_figure(
    records: list[dict[str, Any]],
    title: str = "Learning rate",
    hint: str = "No learning rate logged yet.",
):
    """The learning rate schedule as logged."""
    steps, rates = _series(records).points["lr"]
    layout = _layout(title, "lr")
    layout["yaxis"]["exponentformat"] = "e"
    traces = [_line(steps, rates, "lr", _COLORS["lr"])] if rates else []
    return _figure(traces, layout, hint)


def reward_figure(
    records: list[dict[str, Any]],
    title: str = "Rewards",
    hint: str = "No reward metrics logged yet (rm, dpo, kto and ppo log them).",
):
    """Reward accuracy (rewards/accuracies, or rm's accuracy) on the left axis, 0 to 1; reward margins and PPO's
    mean reward on the right axis."""
    series = _series(records)
    acc_steps, accuracies = series.points["acc"]
    layout = _layout(title, "accuracy")
    traces = []
    if accuracies:
        traces.append(_line(acc_steps, accuracies, "accuracy", "#9467bd"))
        layout["yaxis"]["range"] = [0, 1.02]
    others = [("rewards/margins", "margins", "#d62728"), ("reward", "reward", "#8c564b")]
    for key, name, color in others:
        steps, values = series.points[key]
        if values:
            traces.append(_line(steps, values, name, color, yaxis="y2" if accuracies else "y"))
    if accuracies and len(traces) > 1:
        layout["yaxis2"] = {
            "title": {"text": "margin / reward"},
            "overlaying": "y",
            "side": "right",
            "automargin": True,
            "showgrid": False,
            "zeroline": False,
        }
    elif not accuracies:
        layout["yaxis"]["title"] = {"text": "margin / reward"}
    return _figure(traces, layout, hint)


def _step_axis(records: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(elapsed_s, current_steps) of the training records, for placing samples timed in seconds on the step axis."""
    times, steps = [], []
    for record in records:
        elapsed, step = record.get("elapsed_s"), record.get("current_steps")
        if "alert" in record or "phase" in record or not isinstance(elapsed, (int, float)) or step is None:
            continue
        if times and elapsed < times[-1]:
            continue
        times.append(float(elapsed))
        steps.append(float(step))
    return times, steps


def sample_steps(samples: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[float | None]:
    """Each metrics.jsonl sample's place on the loss chart's step axis: its training time interpolated between the
    training records around it (never below the step it reports); None before training started."""
    import numpy as np

    times, steps = _step_axis(records)
    out: list[float | None] = []
    for sample in samples:
        elapsed = sample.get("elapsed_s")
        if not isinstance(elapsed, (int, float)):
            out.append(None)
            continue
        step = float(sample.get("current_steps") or 0)
        if times:
            # Before the first record the line runs from (0 s, step 0).
            step = max(step, float(np.interp(elapsed, [0.0, *times], [0.0, *steps])))
        out.append(round(step, 3))
    return out


def system_figure(
    samples: list[dict[str, Any]],
    records: list[dict[str, Any]],
    title: str = "System",
    hint: str = "No system metrics yet: the job samples them every metrics_interval seconds.",
):
    """The job's own use, on the loss chart's step axis: process-tree CPU % and GPU utilisation % (left axis),
    resident memory and GPU memory used in GiB (right axis)."""
    xs = sample_steps(samples, records)
    rows = [(x, s) for x, s in zip(xs, samples, strict=True) if x is not None]
    layout = _layout(title, "%")
    traces = []

    def add(name: str, values: list[tuple[float, Any]], color: str, axis: str, dash: str | None = None) -> None:
        points = [(x, v) for x, v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if points:
            extra = {"yaxis": axis}
            trace = _line([p[0] for p in points], [p[1] for p in points], name, color, **extra)
            if dash:
                trace["line"]["dash"] = dash
            traces.append(trace)

    add("CPU %", [(x, s.get("cpu_percent")) for x, s in rows], "#1f77b4", "y")
    add("RSS GiB", [(x, (s.get("rss_mb") or 0) / 1024 or None) for x, s in rows], "#1f77b4", "y2", "dot")
    palette = ["#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    devices = sorted({g.get("index", 0) for _, s in rows for g in s.get("gpus") or []})
    for index in devices:
        color = palette[index % len(palette)]
        util = [
            (x, next((g.get("util") for g in s.get("gpus") or [] if g.get("index") == index), None)) for x, s in rows
        ]
        memory = [
            (
                x,
                next(
                    ((g.get("mem_used_mb") or 0) / 1024 for g in s.get("gpus") or [] if g.get("index") == index), None
                ),
            )
            for x, s in rows
        ]
        add(f"GPU{index} %", util, color, "y")
        add(f"GPU{index} GiB", memory, color, "y2", "dot")
    if traces:
        layout["yaxis2"] = {
            "title": {"text": "GiB"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
            "rangemode": "tozero",
        }
        layout["yaxis"]["rangemode"] = "tozero"
    return _figure(traces, layout, hint)


def efficiency_figure(
    records: list[dict[str, Any]],
    title: str = "Efficiency",
    hint: str = "No throughput logged yet.",
):
    """Real (non-padding) tokens per second on the left axis and model FLOPs utilisation (%) on the right."""
    series = _series(records)
    steps, speed = series.points["throughput"]
    mfu_steps, mfu = series.points["mfu"]
    layout = _layout(title, "tokens/s")
    traces = []
    if speed:
        traces.append(_line(steps, speed, "tokens/s", "#17becf"))
    if mfu:
        traces.append(_line(mfu_steps, mfu, "MFU %", "#bcbd22", yaxis="y2" if speed else "y"))
        if speed:
            layout["yaxis2"] = {
                "title": {"text": "MFU %"},
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "zeroline": False,
                "rangemode": "tozero",
            }
    return _figure(traces, layout, hint)


def grpo_reward_figure(
    records: list[dict[str, Any]],
    title: str = "Rewards",
    hint: str = "No reward logged yet: the chart fills in every logging_steps.",
):
    """grpo's mean total reward with a band of one standard deviation (across the step's completions), and each
    reward function's mean (unweighted, as the function returned it)."""
    series = _series(records)
    steps, rewards = series.points["reward"]
    traces = []
    if rewards:
        stds = series.points["reward_std"][1]
        if len(stds) == len(rewards):  # both in every grpo record
            upper = [value + std for value, std in zip(rewards, stds, strict=True)]
            lower = [value - std for value, std in zip(rewards, stds, strict=True)]
            band = {"line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"}
            traces.append(_line(steps, upper, "+1 std", "rgba(140, 86, 75, 0.15)", **band))
            traces.append(
                _line(
                    steps,
                    lower,
                    "-1 std",
                    "rgba(140, 86, 75, 0.15)",
                    fill="tonexty",
                    fillcolor="rgba(140, 86, 75, 0.15)",
                    **band,
                )
            )
        traces.append(_line(steps, rewards, "reward", "#8c564b"))
    funcs = sorted(key for key in series.points if key.startswith(FUNC_PREFIX))
    for index, key in enumerate(funcs):
        func_steps, values = series.points[key]
        if values:
            color = _FUNC_COLORS[index % len(_FUNC_COLORS)]
            traces.append(_line(func_steps, values, key[len(FUNC_PREFIX) :], color, width=1.5, dash="dot"))
    return _figure(traces, _layout(title, "reward"), hint)


def rollout_figure(
    records: list[dict[str, Any]],
    title: str = "KL and completion length",
    hint: str = "No rollout logged yet: the chart fills in every logging_steps.",
):
    """grpo's completions: mean and max length in tokens on the left axis; the KL to the reference (when
    grpo_beta > 0) and the share of completions cut at max_new_tokens on the right axis."""
    series = _series(records)
    traces = []
    for key, name, color in (
        ("completion_length", "length", "#1f77b4"),
        ("completion_length_max", "max length", "rgba(31, 119, 180, 0.4)"),
    ):
        steps, values = series.points[key]
        if values:
            traces.append(_line(steps, values, name, color))
    right = []
    for key, name, color in (("kl", "KL", "#d62728"), ("completion_cut", "cut share", "#7f7f7f")):
        steps, values = series.points[key]
        if values:
            right.append(_line(steps, values, name, color, yaxis="y2" if traces else "y", dash="dash"))
    layout = _layout(title, "tokens" if traces else "KL / cut share")
    if traces and right:
        layout["yaxis2"] = {
            "title": {"text": "KL / cut share"},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "zeroline": False,
        }
        layout["margin"]["r"] = 55  # room for the right axis' ticks and title
    return _figure(traces + right, layout, hint)


COMPARE_METRICS = ("loss", "eval_loss", "lr", "accuracy", "rewards/margins", "reward")
"""What the Runs tab's comparison can overlay (`loss` is the smoothed training loss)."""
_RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def _ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's debiased exponential moving average."""
    smoothed, last, count = [], 0.0, 0
    for value in values:
        count += 1
        last = last * weight + (1 - weight) * value
        smoothed.append(last / (1 - weight**count))
    return smoothed


def compare_figure(
    runs: dict[str, list[dict[str, Any]]],
    metric: str | list[str] = "loss",
    x: str = "step",
    smoothing: float = 0.6,
    title: str = "Compare",
    hint: str = "Pick two or more runs to compare.",
    titles: list[str] | None = None,
):
    """One or more metrics of several runs on shared axes, one colour and legend entry per run (the run's name),
    against the step or the tokens seen (`x`: "step" or "tokens"; a record without total_tokens takes the last one
    logged before it). Several metrics are stacked panels over one x axis, each titled from `titles`. `loss` is
    smoothed with `smoothing` (0 = raw); accuracy reads rewards/accuracies or accuracy."""
    metrics = [metric] if isinstance(metric, str) else [str(one) for one in metric] or ["loss"]
    titles = list(titles or metrics)
    weight = min(max(float(smoothing or 0.0), 0.0), 0.999)
    traces = []
    for panel, one in enumerate(metrics):
        axis = "y" if panel == 0 else f"y{panel + 1}"
        for index, (name, records) in enumerate(runs.items()):
            xs, ys = _compare_series(records, one, x)
            if one == "loss" and weight > 0 and len(ys) > 1:
                ys = _ema(ys, weight)
            if xs:
                color = _RUN_COLORS[index % len(_RUN_COLORS)]
                shown = not any(trace["name"] == name for trace in traces)  # one legend entry per run
                traces.append(
                    _line(
                        xs, ys, name, color, markers=one == "eval_loss", showlegend=shown, legendgroup=name, yaxis=axis
                    )
                )
    layout = _layout(title, titles[0], False)
    layout["xaxis"]["title"] = {"text": "tokens seen" if x == "tokens" else "step"}
    layout["height"] = 360 + 240 * (len(metrics) - 1)
    if len(metrics) > 1:
        gap = 0.08
        size = (1.0 - gap * (len(metrics) - 1)) / len(metrics)
        for panel, text in enumerate(titles):
            top = 1.0 - panel * (size + gap)
            key = "yaxis" if panel == 0 else f"yaxis{panel + 1}"
            axis = {**layout["yaxis"], "title": {"text": text}, "domain": [max(0.0, top - size), top], "anchor": "x"}
            layout[key] = axis
    return _figure(traces, layout, hint)


def _compare_series(records: list[dict[str, Any]], metric: str, x: str) -> tuple[list[float], list[float]]:
    keys = ACCURACY_KEYS if metric == "accuracy" else (metric,)
    xs, ys, tokens = [], [], None
    for record in records:
        if isinstance(record.get("total_tokens"), (int, float)):
            tokens = record["total_tokens"]
        value = next((record[key] for key in keys if isinstance(record.get(key), (int, float))), None)
        step = record.get("current_steps")
        where = tokens if x == "tokens" else step
        if value is None or where is None or "phase" in record:
            continue
        xs.append(float(where))
        ys.append(float(value))
    return xs, ys

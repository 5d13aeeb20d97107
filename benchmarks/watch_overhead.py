"""Seconds per training step of a demo sft run with and without the job's watchers (health checks, system
metrics sampling), measured back to back, alternating, in one process:

    python benchmarks/watch_overhead.py [--pairs 3] [--steps 60] [--interval 5] [--full] [--micro]

"off" is `health_checks: false, metrics_interval: 0`; "on" is the defaults (`metrics_interval` as given). Step time
is the median wall time between consecutive step ends after the first 5 steps (start-up and the one-off CPU matmul
measure for MFU excluded). One torch thread, like the tests. `--micro` instead times the two watchers' own work in
isolation, which a shared machine's noise does not hide: the gradient check of one optimizer step on the demo model
(all of its weights trainable) and one system-metrics sample.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())

    def seconds_per_step(self, skip: int = 5) -> float:
        gaps = [b - a for a, b in zip(self.ends[skip:], self.ends[skip + 1 :], strict=False)]
        return statistics.median(gaps)


def micro() -> None:
    import os
    from types import SimpleNamespace

    import torch

    from core.demo import ensure_demo_model
    from core.sysmetrics import Sampler
    from core.train.health import HealthCallback

    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(ensure_demo_model("tiny"))
    ids = torch.randint(0, 400, (8, 64))
    model(input_ids=ids, labels=ids).loss.backward()
    health = HealthCallback(log=None)
    args, state = SimpleNamespace(fp16=False, deepspeed=None), SimpleNamespace(global_step=1)
    for _ in range(20):
        health.on_pre_optimizer_step(args, state, None, model=model)
    runs = 500
    start = time.perf_counter()
    for _ in range(runs):
        health.on_pre_optimizer_step(args, state, None, model=model)
    check = (time.perf_counter() - start) / runs
    params = sum(p.numel() for p in model.parameters())
    print(f"gradient check: {check * 1e6:.0f} us a step over {params:,} trainable parameters")
    with tempfile.TemporaryDirectory() as tmp:
        sampler = Sampler(os.path.join(tmp, "metrics.jsonl"))
        sampler.tree.sample()
        start = time.perf_counter()
        for _ in range(runs):
            sampler.write()
        sample = (time.perf_counter() - start) / runs
    print(f"system metrics sample (no GPU): {sample * 1e3:.2f} ms each, every metrics_interval (5 s) seconds")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--full", action="store_true", help="full fine-tuning (every weight's gradient checked)")
    parser.add_argument("--micro", action="store_true", help="time the watchers' own work in isolation")
    options = parser.parse_args()
    if options.micro:
        micro()
        return

    import torch
    from trainhelp import train_args

    from core.train.tuner import run_exp

    torch.set_num_threads(1)
    figures: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(options.pairs):
            for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
                watch = {"health_checks": False, "metrics_interval": 0} if mode == "off" else {}
                if mode == "on":
                    watch["metrics_interval"] = options.interval
                clock = StepClock()
                args = train_args(
                    Path(tmp) / f"{mode}-{pair}",
                    "sft",
                    max_steps=options.steps,
                    logging_steps=5,
                    finetuning_type="full" if options.full else "lora",
                    **watch,
                )
                run_exp(args, callbacks=[clock])
                figures[mode].append(clock.seconds_per_step())
    off, on = statistics.median(figures["off"]), statistics.median(figures["on"])
    print(f"method {'full' if options.full else 'lora'}, {options.steps} steps x {options.pairs} pairs")
    print(f"off: {off * 1000:.1f} ms/step  runs {[round(x * 1000, 1) for x in figures['off']]}")
    print(
        f"on (metrics every {options.interval:g} s): {on * 1000:.1f} ms/step  runs "
        f"{[round(x * 1000, 1) for x in figures['on']]}"
    )
    print(f"overhead: {100 * (on / off - 1):+.1f} %")


if __name__ == "__main__":
    main()

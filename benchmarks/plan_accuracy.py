"""How close the planner (core/plan.py) comes to what a job really uses on this machine: peak resident memory and
seconds per step, per stage and method, on a demo model.

    python benchmarks/plan_accuracy.py [--model demo-small] [--steps 6] [--only sft_lora,dpo_full]

Each job runs as `python -m core.cli train` in a wrapper process that reports its children's peak RSS
(getrusage); seconds per step come from trainer_log.jsonl's elapsed_s between the first and last step (the first
step's warm-up left out). The planner's time model for this CPU (seconds per FLOP, per layer pass and per adapter
pass) is calibrated once, as `plan --calibrate` does (sft full and LoRA on the tiny `demo`, sft LoRA on
`demo-small`), and then predicts every job. Prints estimate, measurement and ratio per job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.plan import calibrate, estimate, read_config  # noqa: E402
from core.plan_calibrate import demo_lengths, describe, job_args, measure  # noqa: E402

JOBS = {
    "sft_lora": {"stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"},
    "sft_freeze": {"stage": "sft", "finetuning_type": "freeze", "dataset": "demo_sft"},
    "sft_full": {"stage": "sft", "finetuning_type": "full", "dataset": "demo_sft"},
    "pt_lora": {"stage": "pt", "finetuning_type": "lora", "dataset": "demo_pt"},
    "pt_freeze": {"stage": "pt", "finetuning_type": "freeze", "dataset": "demo_pt"},
    "pt_full": {"stage": "pt", "finetuning_type": "full", "dataset": "demo_pt"},
    "rm_lora": {"stage": "rm", "finetuning_type": "lora", "dataset": "demo_pref"},
    "rm_freeze": {"stage": "rm", "finetuning_type": "freeze", "dataset": "demo_pref"},
    "rm_full": {"stage": "rm", "finetuning_type": "full", "dataset": "demo_pref"},
    "dpo_lora": {"stage": "dpo", "finetuning_type": "lora", "dataset": "demo_pref"},
    "dpo_freeze": {"stage": "dpo", "finetuning_type": "freeze", "dataset": "demo_pref"},
    "dpo_full": {"stage": "dpo", "finetuning_type": "full", "dataset": "demo_pref"},
    "kto_lora": {"stage": "kto", "finetuning_type": "lora", "dataset": "demo_kto"},
    "kto_freeze": {"stage": "kto", "finetuning_type": "freeze", "dataset": "demo_kto"},
    "kto_full": {"stage": "kto", "finetuning_type": "full", "dataset": "demo_kto"},
}


def model_path(name: str) -> str:
    """`demo`, `demo-small`, or `40m`: a random Llama of 40M parameters (hidden 512, 8 layers, intermediate 2560,
    the demo tokenizer) written once into the cache by benchmarks/stage_speed.py --make-model."""
    if name != "40m":
        return name
    from core.paths import cache_dir

    path = cache_dir() / "plan-40m"
    if not (path / "config.json").is_file():
        script = ROOT / "benchmarks" / "stage_speed.py"
        make = [sys.executable, str(script), "--make-model", str(path), "--hidden", "512", "--layers", "8"]
        subprocess.run([*make, "--intermediate", "2560"], check=True, cwd=ROOT)
    return str(path)


def calibrated(tmp: Path, steps: int, stored: bool) -> dict[str, float]:
    """The CPU time model (`estimate` keyword arguments): the figure `plan --calibrate` stored, or measured now the
    same way (core.plan_calibrate.CALIBRATION_JOBS) without storing it."""
    from core.plan_calibrate import CALIBRATION_BATCH, CALIBRATION_JOBS, load_calibration

    figure = load_calibration() if stored else None
    if figure:
        return figure
    points = []
    for index, (model, job) in enumerate(CALIBRATION_JOBS):
        args = job_args(model, job, tmp / f"calibrate-{index}-{model}", steps, batch=CALIBRATION_BATCH)
        planned = estimate(args, read_config(model), device="cpu", lengths=demo_lengths(args))
        points.append((planned, measure(args, tmp)[1]))
    return calibrate(points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,40m", help="comma list: demo, demo-small, 40m or model folders")
    parser.add_argument("--steps", type=int, default=8, help="steps per job (the median leaves out the first)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--only", default="", help="comma list of job names (default: all)")
    parser.add_argument("--stored", action="store_true", help="use the figure `plan --calibrate` stored")
    options = parser.parse_args()
    names = [name for name in options.only.split(",") if name] or list(JOBS)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; {options.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        timing = calibrated(Path(tmp), options.steps, options.stored)
        print(f"calibrated: {describe(timing)}")
        print(
            f"{'model':<10} {'job':<11} {'est. MB':>8} {'RSS MB':>8} {'ratio':>6} | "
            f"{'est. s/step':>11} {'s/step':>8} {'ratio':>6}"
        )
        memory, time = [], []
        for label in [name for name in options.models.split(",") if name]:
            model = model_path(label)
            config = read_config(model)
            for name in names:
                args = job_args(model, JOBS[name], Path(tmp) / f"{label}-{name}", options.steps, options.batch)
                rss, per_step = measure(args, Path(tmp))
                lengths = demo_lengths(args)
                planned = estimate(args, config, device="cpu", lengths=lengths, **timing)
                memory.append(planned.total / rss)
                time.append(planned.seconds_per_step / per_step)
                print(
                    f"{label:<10} {name:<11} {planned.total / 2**20:8.0f} {rss / 2**20:8.0f} {memory[-1]:6.2f} | "
                    f"{planned.seconds_per_step:11.3f} {per_step:8.3f} {time[-1]:6.2f}",
                    flush=True,
                )
        inside = sum(abs(r - 1) <= 0.25 for r in memory), sum(abs(r - 1) <= 0.30 for r in time)
        load = os.getloadavg()
        print(
            f"memory within 25%: {inside[0]}/{len(memory)} (median ratio {statistics.median(memory):.2f}); "
            f"time within 30%: {inside[1]}/{len(time)} (median ratio {statistics.median(time):.2f}); "
            f"load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        )


if __name__ == "__main__":
    main()

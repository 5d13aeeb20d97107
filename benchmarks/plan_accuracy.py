"""How close the planner (core/plan.py) comes to what a job really uses: peak memory and seconds per step, per stage
and method, on a demo model.

    python benchmarks/plan_accuracy.py [--models demo,40m] [--steps 8] [--only sft_lora,dpo_full]
    python benchmarks/plan_accuracy.py --cuda H200 [--models gpu-500m] [--batch 16]

CPU (default): each job runs as `python -m core.cli train` in a wrapper process that reports its children's peak RSS
(getrusage); seconds per step come from trainer_log.jsonl's elapsed_s between the first and last step (the first
step's warm-up left out). The planner's time model for this CPU (seconds per FLOP, per layer pass and per adapter
pass and token) is calibrated once, as `plan --calibrate` does (sft full and LoRA on the tiny `demo`, sft LoRA on
`demo-small`), and then predicts every job. Prints estimate, measurement and ratio per job.

`--cuda NAME` (a GPU of core.plan.DEVICES): each job runs in bf16 on the GPU in a fresh process calling
`core.run_exp`, and its memory is torch.cuda.max_memory_allocated, compared with the estimate less its `runtime`
part (the CUDA context and cuBLAS workspace, which torch's allocator does not count). Time is
`core.plan.device_time_model(NAME)`: the table's FLOP figure (peak bf16 at core.plan.MFU), floored by the launch
cost per layer and LoRA module pass that small jobs are bound by. `gpu-500m` is a random Llama (hidden 1024, 16
layers, intermediate 2816, a 150k vocabulary, the demo tokenizer) written once into the cache.
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


MADE_MODELS = {
    "40m": ["--hidden", "512", "--layers", "8", "--intermediate", "2560"],
    "gpu-500m": ["--hidden", "1024", "--layers", "16", "--intermediate", "2816", "--vocab", "150000"],
}
"""Random Llamas with the demo tokenizer that benchmarks/stage_speed.py --make-model writes once into the cache."""

# One job on the GPU: run_exp in this process, then a line `PEAK <bytes>` with the allocator's peak.
CUDA_RUNNER = (
    "import json, sys, torch\n"
    "from core import run_exp\n"
    "torch.cuda.reset_peak_memory_stats()\n"
    "run_exp(json.load(open(sys.argv[1])))\n"
    "print('PEAK', torch.cuda.max_memory_allocated())\n"
)


def model_path(name: str) -> str:
    """`demo`, `demo-small`, a model folder, or one of MADE_MODELS (written into the cache on first use)."""
    if name not in MADE_MODELS:
        return name
    from core.paths import cache_dir

    path = cache_dir() / f"plan-{name}"
    if not (path / "config.json").is_file():
        script = ROOT / "benchmarks" / "stage_speed.py"
        subprocess.run(
            [sys.executable, str(script), "--make-model", str(path), *MADE_MODELS[name]], check=True, cwd=ROOT
        )
    return str(path)


def measure_cuda(args: dict, workdir: Path) -> tuple[int, float]:
    """(peak allocated bytes, median seconds per step) of one bf16 job on the GPU."""
    import json

    from core.plan_calibrate import step_seconds
    from core.runfolder import TRAINER_LOG, read_log_records

    config = workdir / f"{Path(args['output_dir']).name}.json"
    config.write_text(json.dumps(args))
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CUDA_RUNNER, str(config)], capture_output=True, text=True, env=env)
    peaks = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    if done.returncode or not peaks:
        raise SystemExit(f"{config} failed:\n{done.stderr[-3000:]}")
    return int(peaks[-1]), step_seconds(read_log_records(Path(args["output_dir"]) / TRAINER_LOG))


def main_cuda(options: argparse.Namespace, names: list[str]) -> None:
    import torch

    from core.plan import device_time_model

    device = torch.cuda.get_device_name()
    print(f"{device}; time from the {options.cuda} row and launch costs; {options.steps} steps, bf16")
    print(
        f"{'model':<10} {'job':<11} {'est. MB':>8} {'alloc MB':>8} {'ratio':>6} | "
        f"{'est. s/step':>11} {'s/step':>8} {'ratio':>6}"
    )
    memory, time = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label in [name for name in options.models.split(",") if name]:
            model = model_path(label)
            config = read_config(model)
            for name in names:
                args = job_args(model, JOBS[name], Path(tmp) / f"{label}-{name}", options.steps, options.batch)
                args["bf16"] = True
                allocated, per_step = measure_cuda(args, Path(tmp))
                planned = estimate(
                    args, config, device="cuda", lengths=demo_lengths(args),
                    **device_time_model(options.cuda),
                )  # fmt: skip
                counted = planned.total - planned.parts.get("runtime", 0)
                memory.append(counted / allocated)
                time.append(planned.seconds_per_step / per_step)
                print(
                    f"{label:<10} {name:<11} {counted / 2**20:8.0f} {allocated / 2**20:8.0f} {memory[-1]:6.2f} | "
                    f"{planned.seconds_per_step:11.4f} {per_step:8.4f} {time[-1]:6.2f}",
                    flush=True,
                )
    inside = sum(abs(r - 1) <= 0.25 for r in memory)
    print(
        f"memory within 25%: {inside}/{len(memory)} (median ratio {statistics.median(memory):.2f}); "
        f"time within 30%: {sum(abs(r - 1) <= 0.30 for r in time)}/{len(time)} "
        f"(median ratio {statistics.median(time):.2f})"
    )


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
    parser.add_argument("--cuda", default="", help="measure on the GPU, time from this row of core.plan.DEVICES")
    options = parser.parse_args()
    names = [name for name in options.only.split(",") if name] or list(JOBS)
    if options.cuda:
        return main_cuda(options, names)
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

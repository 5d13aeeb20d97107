"""How close the planner (core/plan.py) comes to what a job really uses on this machine: peak resident memory and
seconds per step, per stage and method, on a demo model.

    python benchmarks/plan_accuracy.py [--model demo-small] [--steps 6] [--only sft_lora,dpo_full]

Each job runs as `python -m core.cli train` in a wrapper process that reports its children's peak RSS
(getrusage); seconds per step come from trainer_log.jsonl's elapsed_s between the first and last step (the first
step's warm-up left out). The planner's time model for this CPU (seconds per FLOP and a fixed cost per step) is
calibrated once, on sft LoRA of the tiny `demo` model (almost all fixed cost) and of the chosen model, and then
predicts every job. Prints estimate, measurement and ratio per job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.plan import calibrate, data_lengths, estimate, read_config  # noqa: E402

JOBS = {
    "sft_lora": {"stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"},
    "sft_freeze": {"stage": "sft", "finetuning_type": "freeze", "dataset": "demo_sft"},
    "sft_full": {"stage": "sft", "finetuning_type": "full", "dataset": "demo_sft"},
    "pt_lora": {"stage": "pt", "finetuning_type": "lora", "dataset": "demo_pt"},
    "pt_full": {"stage": "pt", "finetuning_type": "full", "dataset": "demo_pt"},
    "rm_lora": {"stage": "rm", "finetuning_type": "lora", "dataset": "demo_pref"},
    "rm_full": {"stage": "rm", "finetuning_type": "full", "dataset": "demo_pref"},
    "dpo_lora": {"stage": "dpo", "finetuning_type": "lora", "dataset": "demo_pref"},
    "dpo_freeze": {"stage": "dpo", "finetuning_type": "freeze", "dataset": "demo_pref"},
    "dpo_full": {"stage": "dpo", "finetuning_type": "full", "dataset": "demo_pref"},
    "kto_lora": {"stage": "kto", "finetuning_type": "lora", "dataset": "demo_kto"},
    "kto_full": {"stage": "kto", "finetuning_type": "full", "dataset": "demo_kto"},
}
WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


def job_args(model: str, extra: dict, output_dir: Path, steps: int) -> dict:
    return {
        "model_name_or_path": model,
        "template": "chatml",
        "dataset_dir": "demo",
        "cutoff_len": 64,
        "max_samples": 400,
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-4,
        "max_steps": steps,
        "logging_steps": 1,
        "save_steps": 10_000,
        "report_to": "none",
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "do_train": True,
        **extra,
    }


def measure(args: dict, workdir: Path) -> tuple[int, float]:
    config = workdir / "job.json"
    config.write_text(json.dumps(args))
    command = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "core.cli", "train", str(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"job failed: {args['stage']} {args['finetuning_type']} (exit {out[0]}); run it by hand")
    records = [json.loads(line) for line in (Path(args["output_dir"]) / "trainer_log.jsonl").read_text().splitlines()]
    steps = [record for record in records if "elapsed_s" in record and "loss" in record]
    first, last = steps[0], steps[-1]
    per_step = (last["elapsed_s"] - first["elapsed_s"]) / max(1, last["current_steps"] - first["current_steps"])
    return int(out[1]), per_step


def lengths_for(args: dict):
    from transformers import AutoTokenizer

    from core.data.stats import dataset_stats
    from core.data.template import get_template_and_fix_tokenizer
    from core.demo import resolve_model_path
    from core.hparams import DataArguments

    data_args = DataArguments(
        template="chatml", dataset=args["dataset"], dataset_dir="demo", cutoff_len=64, max_samples=400
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args["model_name_or_path"]))
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    stats = dataset_stats(tokenizer, template, data_args, stage=args["stage"], batch_size=16)
    return data_lengths(stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-small")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", default="", help="comma list of job names (default: all)")
    options = parser.parse_args()
    names = [name for name in options.only.split(",") if name] or list(JOBS)
    config = read_config(options.model)
    print(f"load average {os.getloadavg()[0]:.1f}; model {options.model}; {options.steps} steps per job")
    with tempfile.TemporaryDirectory() as tmp:
        points = []
        for model in ("demo", options.model):
            args = job_args(model, JOBS["sft_lora"], Path(tmp) / f"calibrate-{model}", options.steps)
            planned = estimate(args, read_config(model), device="cpu", lengths=lengths_for(args))
            points.append((planned.flops_per_step, measure(args, Path(tmp))[1]))
        per_flop, overhead = calibrate(points[0], points[1])
        print(f"calibrated: {1 / per_flop / 1e9:.1f} GFLOP/s sustained, {overhead * 1000:.0f} ms per step fixed")
        print(
            f"{'job':<11} {'est. MB':>8} {'RSS MB':>8} {'ratio':>6} | {'est. s/step':>11} {'s/step':>8} {'ratio':>6}"
        )
        for name in names:
            args = job_args(options.model, JOBS[name], Path(tmp) / name, options.steps)
            rss, per_step = measure(args, Path(tmp))
            planned = estimate(
                args,
                config,
                device="cpu",
                lengths=lengths_for(args),
                seconds_per_flop=per_flop,
                step_overhead=overhead,
            )
            print(
                f"{name:<11} {planned.total / 2**20:8.0f} {rss / 2**20:8.0f} {planned.total / rss:6.2f} | "
                f"{planned.seconds_per_step:11.3f} {per_step:8.3f} {planned.seconds_per_step / per_step:6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

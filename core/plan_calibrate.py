"""This machine's throughput for the planner (core/plan.py): a short measured run, remembered in the cache folder.

    llamafactory-cli plan --calibrate        (the board's "Calibrate" button runs the same command)

Three real training jobs (`llamafactory-cli train`, sft on the demo data, batch 16, a few steps each): the tiny
`demo` model full (its step is almost all per-layer cost) and with LoRA (adds the adapters' cost), and `demo-small`
(31M parameters) with LoRA, whose step is mostly arithmetic; each one's seconds per step is the median over its
steps after the first (warm-up). `core.plan.calibrate` solves the three for seconds per layer pass, per adapter pass
and token, and per FLOP, written atomically to `<cache>/plan_calibration.json`; the planner then gives CPU jobs a
time. Pure at import: the jobs run in child processes, and the dataset lengths are measured with the tokenizer only.

`measure` (peak RSS and median seconds per step of one job) is shared with benchmarks/plan_accuracy.py.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.paths import PACKAGE_ROOT
from core.runfolder import TRAINER_LOG, read_log_records

CALIBRATION_JOBS = (
    ("demo", {"stage": "sft", "finetuning_type": "full", "dataset": "demo_sft"}),
    ("demo", {"stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"}),
    ("demo-small", {"stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"}),
)
CALIBRATION_STEPS = 6
CALIBRATION_BATCH = 16
TIME_KEYS = ("seconds_per_flop", "step_overhead", "layer_seconds", "adapter_token_seconds")
"""The calibration's figures that are `core.plan.estimate` keyword arguments."""

# Runs the job and prints its exit status and the peak RSS of its process tree's largest process (getrusage).
WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
)


class CalibrationError(RuntimeError):
    """A measured job failed; the message names the job and how to see why."""


def job_args(model: str, extra: dict[str, Any], output_dir: Path, steps: int, batch: int = 16) -> dict[str, Any]:
    """A short training job on the demo data: cutoff 64, `steps` steps of `batch` rows, no checkpoints."""
    return {
        "model_name_or_path": model,
        "template": "chatml",
        "dataset_dir": "demo",
        "cutoff_len": 64,
        "max_samples": 400,
        "per_device_train_batch_size": batch,
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


def step_seconds(records: list[dict[str, Any]]) -> float:
    """Median seconds per step from trainer_log.jsonl records, the first step (warm-up) left out."""
    points = [(r["current_steps"], r["elapsed_s"]) for r in records if "elapsed_s" in r and "loss" in r]
    gaps = [(t2 - t1) / max(1, s2 - s1) for (s1, t1), (s2, t2) in zip(points, points[1:], strict=False)]
    if not gaps:
        raise CalibrationError("trainer_log.jsonl has fewer than two logged steps: raise max_steps")
    return statistics.median(gaps)


def measure(args: dict[str, Any], workdir: Path) -> tuple[int, float]:
    """(peak RSS in bytes, median seconds per step) of one `llamafactory-cli train` job of `args`."""
    config = workdir / f"job-{time.monotonic_ns()}.json"
    config.write_text(json.dumps(args))
    command = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "core.cli", "train", str(config)]
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=PACKAGE_ROOT, env=env, check=False)
    out = done.stdout.split()
    if done.returncode or len(out) != 2 or out[0] != "0":
        raise CalibrationError(
            f"the measured job {args['stage']} {args['finetuning_type']} on {args['model_name_or_path']} failed — "
            f"run it by hand to see why: llamafactory-cli train {config}"
        )
    log = Path(args["output_dir"]) / TRAINER_LOG
    return int(out[1]), step_seconds(read_log_records(log))


def demo_lengths(args: dict[str, Any]):
    """The measured lengths (core.plan.DataLengths) of a demo job's dataset, with the tokenizer only."""
    from transformers import AutoTokenizer

    from core.data.stats import dataset_stats
    from core.data.template import get_template_and_fix_tokenizer
    from core.demo import resolve_model_path
    from core.hparams import DataArguments
    from core.plan import data_lengths

    data_args = DataArguments(
        template="chatml", dataset=args["dataset"], dataset_dir="demo", cutoff_len=64, max_samples=400
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args["model_name_or_path"]))
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    batch = int(args["per_device_train_batch_size"])
    return data_lengths(dataset_stats(tokenizer, template, data_args, stage=args["stage"], batch_size=batch))


def run_calibration(steps: int = CALIBRATION_STEPS, say=print) -> dict[str, Any]:
    """Measure, store and return this machine's figure (see the module docstring)."""
    from core.demo import ensure_demo_model
    from core.plan import calibrate, estimate, read_config

    points = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (model, job) in enumerate(CALIBRATION_JOBS):
            ensure_demo_model({"demo": "tiny", "demo-small": "small"}[model])
            args = job_args(model, job, Path(tmp) / f"{index}-{model}", steps, batch=CALIBRATION_BATCH)
            planned = estimate(args, read_config(model), device="cpu", lengths=demo_lengths(args))
            seconds = measure(args, Path(tmp))[1]
            say(
                f"{model} {job['finetuning_type']}: {seconds:.3f} s per step ({planned.flops_per_step / 1e9:.2f} "
                f"GFLOP, {planned.layer_passes} layer passes, {planned.adapter_token_passes:,} adapter token passes"
                " a step)"
            )
            points.append((planned, seconds))
    figure = {
        **calibrate(points),
        "gflops": 0.0,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "points": [[e.layer_passes, e.adapter_token_passes, e.flops_per_step, t] for e, t in points],
    }
    figure["gflops"] = 1 / figure["seconds_per_flop"] / 1e9
    save_calibration(figure)
    return figure


def calibration_path() -> Path:
    from core.paths import cache_dir

    return cache_dir() / "plan_calibration.json"


def save_calibration(figure: dict[str, Any]) -> Path:
    """Write the figure atomically (a temporary file renamed over the old one)."""
    path = calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".plan_calibration-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(figure, out, indent=1)
    os.replace(temporary, path)
    return path


def load_calibration() -> dict[str, float] | None:
    """This machine's time model (`core.plan.estimate`'s keyword arguments: seconds per FLOP, per layer pass, per
    adapter pass and token, and per step), or None before the first calibration (or when the file cannot be read:
    calibrating again rewrites it). A figure stored by an older version still reads: the keys it lacks (its
    per-adapter-pass figure was per pass, not per token, and is left out) count as no cost until recalibrated."""
    try:
        stored = json.loads(calibration_path().read_text())
        figure = {key: float(stored.get(key, 0.0)) for key in TIME_KEYS}
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if figure["seconds_per_flop"] <= 0 or min(figure.values()) < 0:
        return None
    return figure


def describe(figure: dict[str, Any]) -> str:
    """One line: the figure as `plan --calibrate` prints it."""
    return (
        f"{1 / figure['seconds_per_flop'] / 1e9:.1f} GFLOP/s sustained, {figure.get('layer_seconds', 0) * 1e3:.2f} ms"
        f" per layer pass, {figure.get('adapter_token_seconds', 0) * 1e6:.2f} µs per adapter pass and token, "
        f"{figure.get('step_overhead', 0) * 1e3:.0f} ms per step fixed"
    )

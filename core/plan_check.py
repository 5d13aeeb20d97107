"""Will a job fit its devices: the check `llamafactory-cli train` (and so the board's queue, whose jobs run through
it) makes before it loads anything, and the devices the board's plan bar measures against. Pure: no torch.

The devices: the GPUs nvidia-smi lists (those in CUDA_VISIBLE_DEVICES when it is set; the smallest one's memory
per device, their count as the world size), else this machine's available memory (MemAvailable) on a CPU. A job
whose estimate (core.plan, lengths assumed to fill cutoff_len) is over that is refused with the estimate and the
"Fit it" changes, unless `plan_check: false` (or `--force`). A model whose config.json is not here is not checked.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from core.plan import (
    DEVICES,
    GB,
    Estimate,
    device_time_model,
    estimate,
    fit,
    format_table,
    read_config,
)

INSIST = "plan_check: false in the YAML, or --force on the command line"


@lru_cache(maxsize=1)
def gpu_memory() -> dict[str, tuple[str, int]]:
    """GPU id -> (name, memory in bytes) from nvidia-smi; empty without NVIDIA GPUs. Asked once per process."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = {}
    for line in listed.stdout.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit() and parts[2].isdigit():
            found[parts[0]] = (parts[1], int(parts[2]) * 1024**2)
    return found


def host_memory() -> int:
    """This machine's available memory in bytes (MemAvailable: free plus what the kernel can reclaim), or its
    total memory where /proc/meminfo is not readable."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cpu_time_model() -> dict[str, float]:
    """This machine's CPU time model from `plan --calibrate` (`core.plan.estimate` keyword arguments), {} before."""
    from core.plan_calibrate import load_calibration

    return load_calibration() or {}


def device_of(devices: list[str], host: int | None = None) -> tuple[str, int, dict[str, float], int]:
    """(what, bytes per device, time model: `estimate` keyword arguments, {} when unknown, world size) for the
    chosen GPUs, all visible GPUs when none is chosen, or this machine's CPU and available memory when it has none."""
    gpus = gpu_memory()
    chosen = [gpus[device] for device in devices if device in gpus] or list(gpus.values())
    if not chosen:
        return "CPU", host_memory() if host is None else host, cpu_time_model(), 1
    name, memory = min(chosen, key=lambda item: item[1])
    known = next((key for key in DEVICES if key.split("-")[0].replace(" ", "") in name.replace(" ", "")), None)
    timing = device_time_model(known) if known else {}
    return name, memory, timing, len(chosen)


def visible_gpus() -> list[str]:
    """The GPU ids a job started here would see: CUDA_VISIBLE_DEVICES when set, else all."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [item.strip() for item in visible.split(",") if item.strip()] if visible else []


def job_plan(args: dict[str, Any], devices: list[str], lengths: Any = None) -> tuple[Estimate, int, list[str], str]:
    """The estimate of `args` on `devices`, their memory per device, the "Fit it" lines (none when it fits) and the
    devices' name. `lengths`: the dataset's measured lengths (core.plan.DataLengths), else cutoff_len per sample.
    Raises PlanError when the model's config cannot be read."""
    name, memory, timing, world = device_of(devices)
    config = read_config(str(args.get("model_name_or_path") or ""))
    options = {"world_size": world, "device": "cpu" if name == "CPU" else "cuda", **timing, "lengths": lengths}
    result = estimate(args, config, **options)
    changes = fit(args, config, memory, **options)[1] if result.verdict(memory) == "too_big" else []
    return result, memory, changes, name


def refusal(args: dict[str, Any], measure_lengths: Callable[[dict[str, Any]], Any] | None = None) -> str | None:
    """The message that refuses a job that will not fit this machine's devices, or None (it fits, the user insists
    with plan_check: false, or the plan cannot be made: no config.json here, or this is a torchrun rank, which
    the launching process already checked). The first estimate assumes every sample fills cutoff_len (no data
    read, so an ordinary job starts at once); only when that does not fit are the dataset's real lengths measured
    (`measure_lengths(args)`, the tokenizer only) and the job refused if it still does not fit."""
    if args.get("plan_check") is False or str(args.get("plan_check")).lower() == "false":
        return None
    if os.environ.get("LOCAL_RANK") is not None:
        return None
    devices = visible_gpus()
    try:
        result, memory, changes, device = job_plan(args, devices)
        if result.verdict(memory) == "too_big" and measure_lengths is not None:
            lengths = measure_lengths(args)
            if lengths is not None:
                result, memory, changes, device = job_plan(args, devices, lengths)
    except Exception:  # noqa: BLE001 — the check advises; a plan that cannot be made never blocks a job
        return None
    if result.verdict(memory) != "too_big":
        return None
    what = "available memory" if device == "CPU" else f"{device} memory per device"
    lines = [
        f"this job will not fit: the plan needs about {result.total / GB:.1f} GB, the {what} is {memory / GB:.1f} GB",
        format_table(result, memory),
    ]
    if changes:
        lines += ["Fit it:", *(f"  {line}" for line in changes)]
    lines.append(f"to start it anyway: {INSIST}")
    return "\n".join(lines)

"""The job's own system metrics, sampled every few seconds into `metrics.jsonl` of the run folder. Pure: psutil and
the standard library (NVML is imported only when a sample asks for CUDA devices, never by the board).

One JSON object a line:

    {"time": <epoch s>, "elapsed_s": <training seconds, the clock of trainer_log.jsonl; absent before training>,
     "current_steps": N, "cpu_percent": <process tree, % of one core as `top` shows it; not in the first record>,
     "rss_mb": <process tree resident memory, MiB>,
     "gpus": [{"index": i, "util": %, "mem_used_mb": MiB, "mem_total_mb": MiB, "power_w": W}, ...]}

The process tree is the job's process and its children (data loader workers); under torchrun it is the launcher
and all its workers. GPU figures come from NVML (`nvidia-ml-py`) when it is installed, else from `nvidia-smi`;
a key a device does not report is left out, and `gpus` is left out without CUDA devices. `Sampler.peaks()` gives
the highest `rss_mb` and GPU memory seen, which the job writes into its results.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from core.runfolder import METRICS_LOG

logger = logging.getLogger(__name__)

METRICS_FILE = METRICS_LOG
MIB = 1024 * 1024
_SMI_FIELDS = "index,utilization.gpu,memory.used,memory.total,power.draw"


def visible_gpu_ids(env: dict[str, str] | None = None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of ids / UUIDs; None when unset (every device is visible)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def nvml_sample(ids: list[str] | None) -> list[dict[str, Any]] | None:
    """Per-device figures through NVML; None when nvidia-ml-py is missing or NVML does not start."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as err:  # pynvml raises its own NVMLError subclasses; any of them means "no NVML"
        logger.debug("NVML unavailable: %s", err)
        return None
    try:
        if ids is None:
            ids = [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        sample = []
        for position, device_id in enumerate(ids):
            if device_id.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(device_id))
            else:
                handle = pynvml.nvmlDeviceGetHandleByUUID(device_id)
            row: dict[str, Any] = {"index": position}
            try:
                row["util"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except Exception:  # noqa: BLE001 (a device may not report one figure; the others still count)
                pass
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                row["mem_used_mb"] = round(memory.used / MIB, 1)
                row["mem_total_mb"] = round(memory.total / MIB, 1)
            except Exception:  # noqa: BLE001
                pass
            try:
                row["power_w"] = round(pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1)
            except Exception:  # noqa: BLE001
                pass
            sample.append(row)
        return sample
    except Exception as err:  # noqa: BLE001
        logger.debug("NVML sample failed: %s", err)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def smi_sample(ids: list[str] | None, timeout: float = 5.0) -> list[dict[str, Any]] | None:
    """Per-device figures from `nvidia-smi --query-gpu`; None without nvidia-smi or when it fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    argv = [smi, f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader,nounits"]
    if ids:
        argv.append(f"--id={','.join(ids)}")
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    sample = []
    for position, line in enumerate(line for line in result.stdout.splitlines() if line.strip()):
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 5:
            continue
        row: dict[str, Any] = {"index": position}
        for key, value in zip(("util", "mem_used_mb", "mem_total_mb", "power_w"), parts[1:], strict=True):
            number = _number(value)  # "[N/A]" when a device does not report it
            if number is not None:
                row[key] = number
        sample.append(row)
    return sample


def gpu_sample(ids: list[str] | None) -> list[dict[str, Any]] | None:
    """NVML when available, else nvidia-smi; None when neither answers."""
    sample = nvml_sample(ids)
    return sample if sample is not None else smi_sample(ids)


class ProcessTree:
    """CPU % and resident memory of a process and its descendants. psutil's cpu_percent compares with the previous
    call on the same Process object, so the objects are kept between samples."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self._known: dict[int, psutil.Process] = {}
        self._primed = False

    def sample(self) -> dict[str, float]:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return {}
        cpu = rss = 0.0
        alive = {}
        for process in processes:
            known = self._known.get(process.pid, process)
            try:
                with known.oneshot():
                    cpu += known.cpu_percent(interval=None)
                    rss += known.memory_info().rss
            except psutil.Error:
                continue
            alive[process.pid] = known
        self._known = alive
        sample = {"cpu_percent": round(cpu, 1)} if self._primed else {}  # the first reading has nothing to compare
        self._primed = True
        return {**sample, "rss_mb": round(rss / MIB, 1)}


class Sampler:
    """A daemon thread appending one record to `path` at `start()`, every `interval` seconds, and at `stop()`.

    `clock()` -> (elapsed_s | None, current_steps) ties a sample to the training records; `cuda` asks for GPU
    figures. Sampling errors are logged once and never reach the training."""

    def __init__(
        self,
        path: str | os.PathLike,
        interval: float = 5.0,
        clock: Callable[[], tuple[float | None, int]] | None = None,
        cuda: bool = False,
        root_pid: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self.clock = clock or (lambda: (None, 0))
        self.cuda = cuda
        self.tree = ProcessTree(root_pid or os.getpid())
        self.peak_rss_mb = 0.0
        self.peak_gpu_mb = 0.0
        self._gpu_ids = visible_gpu_ids()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def sample(self) -> dict[str, Any]:
        """One record (and the peaks updated); not written."""
        elapsed, step = self.clock()
        record: dict[str, Any] = {"time": round(time.time(), 3)}
        if elapsed is not None:
            record["elapsed_s"] = round(elapsed, 3)
        record["current_steps"] = step
        record.update(self.tree.sample())
        self.peak_rss_mb = max(self.peak_rss_mb, record.get("rss_mb", 0.0))
        if self.cuda:
            gpus = gpu_sample(self._gpu_ids)
            if gpus:
                record["gpus"] = gpus
                self.peak_gpu_mb = max([self.peak_gpu_mb] + [g.get("mem_used_mb", 0.0) for g in gpus])
        return record

    def write(self) -> None:
        try:
            record = self.sample()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except Exception as err:  # noqa: BLE001 (a metrics failure must never stop training)
            if not self._warned:
                logger.warning("System metrics not written: %s", err)
                self._warned = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def start(self) -> None:
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()  # memory right away (cpu_percent needs a second reading)
        self._thread = threading.Thread(target=self._run, name="llamaboard-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.interval + 10)
        self._thread = None
        self.write()

    def peaks(self) -> dict[str, float]:
        """Highest process-tree memory seen (and GPU memory used on one device when sampled), MiB."""
        peaks = {"peak_rss_mb": self.peak_rss_mb}
        if self.peak_gpu_mb:
            peaks["peak_gpu_mem_mb"] = self.peak_gpu_mb
        return peaks

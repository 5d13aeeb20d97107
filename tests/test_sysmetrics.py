"""core.sysmetrics: the process tree's CPU and memory, GPU figures through a stand-in NVML and nvidia-smi (this
machine has no GPU), and the sampler's metrics.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
import types

from core import sysmetrics


def _fake_pynvml(calls: list) -> types.ModuleType:
    """The calls of nvidia-ml-py that sysmetrics uses, over two devices; device 1 cannot report power."""
    module = types.ModuleType("pynvml")
    devices = {
        0: {"util": 87, "used": 30 * 2**30, "total": 80 * 2**30, "power": 312_500},
        1: {"util": 5, "used": 2**30, "total": 80 * 2**30, "power": None},
    }

    class NVMLError(Exception):
        pass

    module.NVMLError = NVMLError
    module.nvmlInit = lambda: calls.append("init")
    module.nvmlShutdown = lambda: calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: 2
    module.nvmlDeviceGetHandleByIndex = lambda i: devices[i]
    module.nvmlDeviceGetHandleByUUID = lambda uuid: devices[1]
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h["util"], memory=0)
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=h["used"], total=h["total"])

    def power(handle):
        if handle["power"] is None:
            raise NVMLError("Not Supported")
        return handle["power"]

    module.nvmlDeviceGetPowerUsage = power
    return module


def test_nvml_figures_per_visible_device(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(calls))
    sample = sysmetrics.nvml_sample(None)
    assert sample == [
        {"index": 0, "util": 87.0, "mem_used_mb": 30720.0, "mem_total_mb": 81920.0, "power_w": 312.5},
        {"index": 1, "util": 5.0, "mem_used_mb": 1024.0, "mem_total_mb": 81920.0},
    ]
    assert calls == ["init", "shutdown"]
    # CUDA_VISIBLE_DEVICES=1 (or a UUID): the job's device 0 is the machine's device 1.
    assert sysmetrics.nvml_sample(["1"])[0]["util"] == 5.0
    assert sysmetrics.nvml_sample(["GPU-1234"])[0]["mem_used_mb"] == 1024.0
    assert sysmetrics.visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert sysmetrics.visible_gpu_ids({}) is None


def test_nvidia_smi_is_the_fallback(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert sysmetrics.nvml_sample(None) is None
    smi = tmp_path / "nvidia-smi"
    smi.write_text(  # builtins only: PATH holds nothing but this folder
        f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\n'
        "echo '0, 91, 40000, 81559, 350.12'\necho '1, 3, 500, 81559, [N/A]'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    sample = sysmetrics.gpu_sample(["4", "5"])
    assert sample == [
        {"index": 0, "util": 91.0, "mem_used_mb": 40000.0, "mem_total_mb": 81559.0, "power_w": 350.12},
        {"index": 1, "util": 3.0, "mem_used_mb": 500.0, "mem_total_mb": 81559.0},
    ]
    argv = (tmp_path / "argv").read_text()
    assert "--query-gpu=index,utilization.gpu,memory.used,memory.total,power.draw" in argv and "--id=4,5" in argv


def test_no_gpu_tool_gives_no_gpu_figures(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sysmetrics.gpu_sample(None) is None


def test_the_process_tree_counts_children():
    """A child holding 200 MiB shows in the tree's resident memory."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; b = bytearray(200 * 2**20); sys.stdout.write('ok\\n'); "
            "sys.stdout.flush(); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline() == b"ok\n"
        alone = sysmetrics.ProcessTree(child.pid).sample()["rss_mb"]
        tree = sysmetrics.ProcessTree(__import__("os").getpid())
        tree.sample()
        sample = tree.sample()
        assert alone > 200 and sample["rss_mb"] > alone
        assert sample["cpu_percent"] >= 0
    finally:
        child.kill()
        child.wait()


def test_the_sampler_writes_records_on_the_training_clock(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(calls))
    clock = iter([(None, 0), (1.5, 3), (2.5, 5)])
    sampler = sysmetrics.Sampler(
        tmp_path / "metrics.jsonl", interval=0.05, clock=lambda: next(clock, (3.0, 6)), cuda=True
    )
    sampler.write()
    sampler.write()
    sampler.start()
    sampler.stop()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "elapsed_s" not in records[0] and records[1]["elapsed_s"] == 1.5 and records[1]["current_steps"] == 3
    assert all({"time", "rss_mb", "gpus"} <= set(r) for r in records)
    assert "cpu_percent" not in records[0] and all("cpu_percent" in r for r in records[1:])
    assert records[1]["gpus"][0]["power_w"] == 312.5
    peaks = sampler.peaks()
    assert peaks["peak_rss_mb"] == max(r["rss_mb"] for r in records)
    assert peaks["peak_gpu_mem_mb"] == 30720.0


def test_a_failing_sample_is_logged_once_and_never_raised(tmp_path, caplog):
    sampler = sysmetrics.Sampler(tmp_path / "missing-dir" / "metrics.jsonl", clock=lambda: 1 / 0)
    sampler.write()
    sampler.write()
    assert caplog.text.count("System metrics not written") == 1

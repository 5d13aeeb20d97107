"""Time from starting the board to its first HTTP 200, and the board's resident memory.

    python benchmarks/board_startup.py [--runs 3] [--port 7861]

Starts the real entry point (`llamafactory-webui`, else `python -m webui.app`) as a subprocess in a scratch
saves / cache folder, polls http://127.0.0.1:<port>/ every 20 ms until it answers 200, reads the process's RSS,
stops it, and prints one line per run plus the median. Goal: under 3 s on a 2-core machine.

Wall time depends on what else the machine runs, so each line also gives the CPU time the board had used by its
first 200 (user + system): on an otherwise idle machine the wall time is close to it. The load average is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import psutil


def entry_point() -> list[str]:
    beside_python = os.path.join(os.path.dirname(sys.executable), "llamafactory-webui")
    script = beside_python if os.path.exists(beside_python) else shutil.which("llamafactory-webui")
    return [script] if script else [sys.executable, "-m", "webui.app"]


def measure(port: int, timeout_s: float = 60.0) -> tuple[float, float, float, float]:
    """(seconds to first 200, CPU seconds used by then, RSS in MB right then, RSS in MB after a page load)."""
    with tempfile.TemporaryDirectory(prefix="board-startup-") as scratch:
        env = {
            **os.environ,
            "LLAMABOARD_SAVES": os.path.join(scratch, "saves"),
            "LLAMABOARD_CACHE": os.path.join(scratch, "cache"),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        url = f"http://127.0.0.1:{port}/"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*entry_point(), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the board exited with code {proc.returncode} before answering")
                if time.perf_counter() - start > timeout_s:
                    raise RuntimeError(f"no HTTP 200 from {url} within {timeout_s} s")
                try:
                    with urllib.request.urlopen(url, timeout=1) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.02)
            seconds = time.perf_counter() - start
            cpu = psutil.Process(proc.pid).cpu_times()
            cpu_s = cpu.user + cpu.system
            rss_first = _rss_mb(proc.pid)
            with urllib.request.urlopen(f"{url}config", timeout=10) as response:
                response.read()
            time.sleep(3)
            rss_idle = _rss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return seconds, cpu_s, rss_first, rss_idle


def _rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=7861)
    options = parser.parse_args()
    times = []
    for run in range(options.runs):
        load = os.getloadavg()[0]
        seconds, cpu_s, rss_first, rss_idle = measure(options.port)
        times.append((seconds, cpu_s))
        print(
            f"run {run + 1}: first HTTP 200 after {seconds:.2f} s (CPU {cpu_s:.2f} s, load average {load:.1f}), "
            f"RSS {rss_first:.0f} MB (after a page load {rss_idle:.0f} MB)"
        )
    wall = statistics.median(t for t, _ in times)
    cpu = statistics.median(c for _, c in times)
    print(f"median: {wall:.2f} s wall, {cpu:.2f} s CPU over {len(times)} runs ({' '.join(entry_point())})")


if __name__ == "__main__":
    main()

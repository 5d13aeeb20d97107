"""What one page load costs the board, alone and under many concurrent loads (loopback only).

    python benchmarks/board_page_load.py [--concurrency 200] [--rounds 3] [--repeat 20] [--port 7862]

Part 1, in process: the board's own work per page load, median of `--repeat` calls: building the page config that
GET /config sends (gradio's `Blocks.get_config_file()` + JSON encoding, with its size) and the page-load handler
`Board.on_load` (running job or newest run, remembered choices).

Part 2, over HTTP: starts the real board (`python -m webui.app`) on 127.0.0.1 in a scratch saves / cache folder
and fires `--concurrency` page loads at once (GET / then GET /config, one load per thread: a bounded loop, no
retries), `--rounds` times; prints p50 / p99 latency of a whole load and the bytes it moved. The board's on-load
event itself goes through gradio's queue, whose cost is part 1's `on_load` figure.

Timings depend on what else the machine runs: the load average is printed; compare runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def in_process(repeat: int) -> None:
    from webui.app import create_ui

    demo = create_ui("en")
    board = demo.board
    config_s, sizes = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        text = json.dumps(demo.get_config_file(), default=str)
        config_s.append(time.perf_counter() - start)
        sizes.append(len(text))
    from webui.handlers.top import TOP_BAR

    # The page-load handler's inputs as webui.app binds them, with the values the page was built with.
    page = ["top.lang", "train.notes", "train.view_run", "train.poll_state", "train.loss_log_y", *TOP_BAR]
    values = {key: getattr(board.manager[key], "value", None) for key in page}
    load_s = []
    for _ in range(repeat):
        start = time.perf_counter()
        board.on_load(values)
        load_s.append(time.perf_counter() - start)
    print(
        f"in process: config {statistics.median(config_s) * 1000:.1f} ms ({sizes[-1] / 1024:.0f} KiB), "
        f"on_load {statistics.median(load_s) * 1000:.1f} ms (median of {repeat})"
    )


def _page_load(url: str, results: list, barrier: threading.Barrier) -> None:
    barrier.wait()
    start = time.perf_counter()
    size = 0
    try:
        for path in ("", "config"):
            with urllib.request.urlopen(url + path, timeout=120) as response:
                size += len(response.read())
        results.append((time.perf_counter() - start, size))
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        results.append((float("nan"), repr(err)))


def over_http(port: int, concurrency: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="board-page-load-") as scratch:
        env = {
            **os.environ,
            "LLAMABOARD_SAVES": os.path.join(scratch, "saves"),
            "LLAMABOARD_CACHE": os.path.join(scratch, "cache"),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        url = f"http://127.0.0.1:{port}/"
        proc = subprocess.Popen(
            [sys.executable, "-m", "webui.app", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the board exited with code {proc.returncode}")
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no answer from {url} within 120 s") from None
                    time.sleep(0.1)
            for round_ in range(1, rounds + 1):
                results: list = []
                barrier = threading.Barrier(concurrency)
                threads = [
                    threading.Thread(target=_page_load, args=(url, results, barrier)) for _ in range(concurrency)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                times = sorted(t for t, _ in results if t == t)
                failed = len(results) - len(times)
                size = next((s for t, s in results if t == t), 0)
                p99 = times[min(len(times) - 1, int(0.99 * len(times)))] if times else float("nan")
                print(
                    f"round {round_}: {concurrency} concurrent loads: p50 {statistics.median(times):.2f} s, "
                    f"p99 {p99:.2f} s, {size / 1024:.0f} KiB a load, {failed} failed"
                )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--port", type=int, default=7862)
    parser.add_argument("--skip-http", action="store_true", help="only the in-process figures")
    options = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    in_process(options.repeat)
    if not options.skip_http:
        over_http(options.port, options.concurrency, options.rounds)


if __name__ == "__main__":
    main()

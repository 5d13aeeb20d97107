"""What one page load costs the board, alone and under many concurrent loads (loopback only).

    python benchmarks/board_page_load.py [--concurrency 200] [--rounds 3] [--repeat 20] [--port 7862]
        [--baseline-src DIR] [--no-events] [--skip-http | --skip-in-process]

Part 1, in process: the board's own work per page load, median of `--repeat` calls: building the page config that
GET /config sends (gradio's `Blocks.get_config_file()` + JSON encoding, with its size) and the page-load handler
`Board.on_load` (running job or newest run, remembered choices).

Part 2, over HTTP: starts the real board (`python -m webui.app`) of this tree on 127.0.0.1 in a scratch saves /
cache folder and fires `--concurrency` page loads at once, `--rounds` times. A load is what a browser asks for:
GET /, GET /config, then every event the page fires on load (the top bar's, `on_load`, `plan`) through gradio's
queue, answers read from one event stream (`--no-events`: the two GETs only). One load per thread, no retries.
Prints p50 / p90 / p99 latency of a whole load, the board process's CPU time per load (/proc) and the bytes moved.
With `--baseline-src DIR` (a checkout of main: `git archive main | tar -x -C /tmp/base`) a second board runs from
that tree and the rounds alternate between the two (the order flips each round); the medians over the rounds and
their ratio come last.

Timings depend on what else the machine runs: the load average is printed with every round.
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
import uuid


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
    # The on-load event's answer as gradio turns it into what the page gets: gradio's own Blocks against the
    # board's (which skips rebuilding the outputs the event leaves alone).
    import asyncio

    import gradio as gr
    from gradio.state_holder import SessionState

    event = next(fn for fn in demo.fns.values() if fn.api_name == "on_load")
    inputs = {block: getattr(block, "value", None) for block in event.inputs}
    post: dict[str, list[float]] = {"gradio": [], "board": []}
    for _ in range(repeat):
        for name, postprocess in (("gradio", gr.Blocks.postprocess_data), ("board", type(demo).postprocess_data)):
            predictions = event.fn(inputs)
            start = time.perf_counter()
            asyncio.run(postprocess(demo, event, predictions, SessionState(demo)))
            post[name].append(time.perf_counter() - start)
    print(
        f"in process: config {statistics.median(config_s) * 1000:.1f} ms ({sizes[-1] / 1024:.0f} KiB), "
        f"on_load {statistics.median(load_s) * 1000:.1f} ms, its answer's postprocessing "
        f"{statistics.median(post['board']) * 1000:.1f} ms (gradio's Blocks: "
        f"{statistics.median(post['gradio']) * 1000:.1f} ms, {len(event.outputs)} outputs) (median of {repeat})"
    )


def _page_load(url: str, events: list, results: list, barrier: threading.Barrier) -> None:
    """One browser page load: GET /, GET /config, then the page's on-load events through gradio's queue (all
    joined at once, answers read from one event stream, as the browser does)."""
    barrier.wait()
    start = time.perf_counter()
    size = 0
    try:
        for path in ("", "config"):
            with urllib.request.urlopen(url + path, timeout=120) as response:
                size += len(response.read())
        if events:
            session = uuid.uuid4().hex[:11]
            for fn_index, data in events:
                body = {"data": data, "event_data": None, "fn_index": fn_index, "trigger_id": None}
                request = urllib.request.Request(
                    url + "gradio_api/queue/join",
                    data=json.dumps({**body, "session_hash": session}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=120) as response:
                    response.read()
            left = len(events)
            with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
                for line in stream:
                    size += len(line)
                    if line.startswith(b"data:"):
                        message = json.loads(line[5:])
                        if message.get("msg") == "process_completed":
                            if not message.get("success", False):
                                raise ConnectionError(f"an on-load event failed: {str(message)[:200]}")
                            left -= 1
                    if left == 0:
                        break
        results.append((time.perf_counter() - start, size))
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
        results.append((float("nan"), repr(err)))


def _load_events(url: str) -> list[tuple[int, list]]:
    """(fn_index, input values) of every event the page fires on load, the inputs at the values the page shows."""
    with urllib.request.urlopen(url + "config", timeout=120) as response:
        config = json.loads(response.read())
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    return [
        (dep["id"], [values.get(i) for i in dep["inputs"]])
        for dep in config["dependencies"]
        if any(target[1] == "load" for target in dep["targets"])
    ]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Board:
    """A board process started from `src` (a source tree) on `port`, in its own scratch saves / cache."""

    def __init__(self, name: str, src: str, port: int, scratch: str) -> None:
        self.name, self.url = name, f"http://127.0.0.1:{port}/"
        env = {
            **os.environ,
            "PYTHONPATH": src,
            "LLAMABOARD_SAVES": os.path.join(scratch, name, "saves"),
            "LLAMABOARD_CACHE": os.path.join(scratch, name, "cache"),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webui.app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=src,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.rows: list[tuple[float, float, float, float]] = []  # p50, p90, p99, CPU s per load

    def wait(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.name} board exited with code {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no answer from {self.url} within 120 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


def _round(board: Board, concurrency: int, events: bool) -> str:
    results: list = []
    barrier = threading.Barrier(concurrency)
    plan = _load_events(board.url) if events else []
    cpu = _cpu_seconds(board.proc.pid)
    threads = [
        threading.Thread(target=_page_load, args=(board.url, plan, results, barrier)) for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu_per_load = (_cpu_seconds(board.proc.pid) - cpu) / concurrency
    times = sorted(t for t, _ in results if t == t)
    failed = len(results) - len(times)

    def pick(q: float) -> float:
        return times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")

    board.rows.append((pick(0.5), pick(0.9), pick(0.99), cpu_per_load))
    size = next((s for t, s in results if t == t), 0)
    errors = {s for t, s in results if t != t}
    return (
        f"p50 {pick(0.5):.2f} s, p90 {pick(0.9):.2f} s, p99 {pick(0.99):.2f} s, board CPU "
        f"{cpu_per_load * 1000:.1f} ms a load, {size / 1024:.0f} KiB a load, {failed} failed"
        + (f" ({sorted(errors)[0][:120]})" if errors else "")
    )


def over_http(port: int, concurrency: int, rounds: int, events: bool, baseline_src: str | None) -> None:
    """`rounds` rounds of `concurrency` loads on the board of this tree and, with `baseline_src`, alternately on
    a board started from that tree (the order flips each round); medians per board and their ratio at the end."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="board-page-load-") as scratch:
        boards = [Board("this tree", here, port, scratch)]
        if baseline_src:
            boards.append(Board("baseline", os.path.abspath(baseline_src), port + 1, scratch))
        try:
            for board in boards:
                board.wait()
            for round_ in range(1, rounds + 1):
                for board in boards if round_ % 2 else boards[::-1]:
                    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                    print(
                        f"round {round_}, {board.name}, {concurrency} concurrent loads (load average {load}): "
                        + _round(board, concurrency, events),
                        flush=True,
                    )
        finally:
            for board in boards:
                board.stop()
    medians = {b.name: [statistics.median(column) for column in zip(*b.rows, strict=True)] for b in boards}
    for name, (p50, p90, p99, cpu) in medians.items():
        print(
            f"median over {rounds} rounds, {name}: p50 {p50:.2f} s, p90 {p90:.2f} s, p99 {p99:.2f} s, "
            f"board CPU {cpu * 1000:.1f} ms a load"
        )
    if baseline_src:
        new, old = medians["this tree"], medians["baseline"]
        print(
            "this tree / baseline: "
            + ", ".join(
                f"{label} {n / o:.2f}" for label, n, o in zip(("p50", "p90", "p99", "CPU"), new, old, strict=True) if o
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--port", type=int, default=7862)
    parser.add_argument("--skip-http", action="store_true", help="only the in-process figures")
    parser.add_argument("--skip-in-process", action="store_true", help="only the HTTP figures")
    parser.add_argument("--no-events", action="store_true", help="GET / and /config only, not the on-load events")
    parser.add_argument("--baseline-src", metavar="DIR", help="also a board from this source tree (e.g. main)")
    options = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not options.skip_in_process:
        in_process(options.repeat)
    if not options.skip_http:
        over_http(options.port, options.concurrency, options.rounds, not options.no_events, options.baseline_src)


if __name__ == "__main__":
    main()

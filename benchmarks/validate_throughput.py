"""Throughput and memory of the dataset studio's row check (core.data.validate) on a large JSON Lines file.

    python benchmarks/validate_throughput.py [--mb 1024] [--file existing.jsonl] [--keep]

Writes an alpaca jsonl of `--mb` MB (default 1 GB; rows of 0.1-3 KB, one bad row in 10,000), then, each in a fresh
process so that its peak RSS is its own: reading the lines only, `json.loads` of every line (the floor for any
check that parses rows), and validate() with a progress callback. Prints MB/s, rows/s and peak RSS for each and the
ratio of validate to the json.loads pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = {"columns": {"prompt": "instruction", "query": "input", "response": "output"}}
WORDS = "the a model answer question data train token loss step batch learn rate python file row check".split()


def _text(rng: random.Random, chars: int) -> str:
    words = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def generate(path: Path, mb: float, seed: int = 0) -> int:
    """Write about `mb` MB of alpaca rows to `path`; returns the number of rows."""
    rng = random.Random(seed)
    pool = []
    for i in range(2000):
        row = {
            "instruction": _text(rng, rng.randint(40, 400)),
            "input": _text(rng, rng.randint(0, 300)) if i % 3 == 0 else "",
            "output": _text(rng, rng.randint(60, 2400)),
        }
        pool.append(json.dumps(row, ensure_ascii=False) + "\n")
    target, written, rows = int(mb * 1e6), 0, 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            if rows % 10_000 == 9_999:
                line = '{"instruction": "a bad row", "output": ' + "\n"  # broken JSON: one problem per 10,000
            else:
                line = pool[rows % len(pool)]
            f.write(line)
            written += len(line.encode("utf-8"))
            rows += 1
    return rows


def _measure(mode: str, path: Path) -> dict:
    """Run in a child process: one pass of `mode` over `path`."""
    import resource

    started = time.perf_counter()
    calls = 0
    if mode == "lines":
        with path.open("r", encoding="utf-8") as f:
            rows = sum(1 for _ in f)
        extra = {}
    elif mode == "json":
        with path.open("r", encoding="utf-8") as f:
            rows = 0
            for line in f:
                try:
                    json.loads(line)
                except json.JSONDecodeError:
                    pass
                rows += 1
        extra = {}
    else:
        from core.data.validate import validate

        def progress(done: int, total: int, n: int) -> None:
            nonlocal calls
            calls += 1

        result = validate(path, ENTRY, stage="sft", progress=progress)
        rows = result["rows"]
        extra = {"bad_rows": result["bad_rows"], "counts": result["counts"], "progress_calls": calls}
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "seconds": seconds, "rows": rows, "mb_s": size / 1e6 / seconds, "rows_s": rows / seconds,
            "peak_rss_mb": peak_mb, **extra}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1024, help="size of the generated file in MB (default 1024)")
    parser.add_argument("--file", type=Path, help="measure this jsonl instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--modes", default="lines,json,validate", help="which passes to run (comma separated)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(_measure(options.child, options.file)))
        return
    scratch = Path(tempfile.mkdtemp(prefix="validate-throughput-"))
    path = options.file or scratch / "big.jsonl"
    try:
        if options.file is None:
            started = time.perf_counter()
            rows = generate(path, options.mb)
            print(f"generated {path} : {path.stat().st_size / 1e6:,.0f} MB, {rows:,} rows "
                  f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        results = {}
        for mode in options.modes.split(","):
            cmd = [sys.executable, __file__, "--child", mode, "--file", str(path)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            results[mode] = r = json.loads(out)
            extra = {k: r[k] for k in ("bad_rows", "counts", "progress_calls") if k in r}
            print(f"{mode:>8}: {r['seconds']:7.1f} s  {r['mb_s']:7.1f} MB/s  {r['rows_s']:10,.0f} rows/s  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB  {extra or ''}")  # fmt: skip
        if "json" in results and "validate" in results:
            ratio = results["validate"]["seconds"] / results["json"]["seconds"]
            print(f"validate takes {ratio:.2f}x the time of json.loads alone on the same file")
    finally:
        if options.file is None and not options.keep:
            path.unlink(missing_ok=True)
            scratch.rmdir()


if __name__ == "__main__":
    main()

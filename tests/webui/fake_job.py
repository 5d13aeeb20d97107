"""A stand-in for `python -m core.cli train <run>/job.yaml` that needs no training, for runner and board tests.

    python tests/webui/fake_job.py [--steps N] [--interval S] [--mode MODE] <run>/job.yaml

It appends trainer_log.jsonl records (the DESIGN.md section 3 keys) into the folder of the YAML at a pace, and
prints to stdout and stderr. A YAML with `stage: grpo` gets grpo's keys (reward, reward/<function>, kl,
completion_length ...) and two samples.jsonl lines a step. On SIGTERM it "saves" (writes
checkpoint-N/adapter_model.safetensors and train_results.json) and exits 0, like the real job. Modes:
  train        the above (default)
  ignore-term  ignores SIGTERM (so the runner must SIGKILL it)
  spawn-child  starts a child that ignores SIGTERM, like a torchrun worker; its pid goes to child.pid
  setsid-child starts a child that leaves the process group (setsid) and ignores SIGTERM; pid in child.pid
  fail         raises an exception with a traceback after the second step
  bad-args     prints an argument problem list and exits 2, as `llamafactory-cli train` does
  flood        writes `--flood-bytes` bytes to stderr first (a pipe would stall; a file must not)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD_CODE = """
import os, signal, sys, time
if sys.argv[1] == "setsid":
    os.setsid()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[2] + ".tmp", "w") as handle:
    handle.write(str(os.getpid()))
os.replace(sys.argv[2] + ".tmp", sys.argv[2])  # written once SIGTERM is ignored: the test waits for it
time.sleep(600)
"""


def _save(run_dir: Path, step: int) -> None:
    checkpoint = run_dir / f"checkpoint-{step}"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"fake")
    (run_dir / "adapter_model.safetensors").write_bytes(b"fake")
    (run_dir / "train_results.json").write_text(json.dumps({"global_step": step}))


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _record(step: int, total: int, start: float) -> dict:
    elapsed = time.time() - start
    remaining = elapsed / step * (total - step) if step else 0.0
    return {
        "current_steps": step,
        "total_steps": total,
        "percentage": round(100.0 * step / total, 2),
        "epoch": round(step / total, 2),
        "elapsed_time": _hms(elapsed),
        "remaining_time": _hms(remaining),
        "elapsed_s": round(elapsed, 3),
        "remaining_s": round(remaining, 3),
        "loss": round(2.0 / (1 + 0.1 * step), 4),
        "lr": 1e-4 * (1 - step / total),
        "rewards/accuracies": min(1.0, 0.5 + 0.05 * step),
        "rewards/margins": 0.1 * step,
    }


def _grpo_record(step: int) -> dict:
    return {
        "reward": round(0.2 + 0.1 * step, 4),
        "reward_std": 0.3,
        "reward/exact_match": round(0.1 * step, 4),
        "reward/format": 1.0,
        "kl": 0.01 * step,
        "clip_fraction": 0.0,
        "completion_length": 10.0 + step,
        "completion_length_max": 16.0,
        "completion_cut": 0.25,
    }


def _grpo_samples(step: int) -> list[dict]:
    return [
        {
            "step": step,
            "prompt": "Reverse the words: red fox",
            "reference": "fox red",
            "completion": f"fox red (step {step}, try {index})",
            "reward": float(index),
            "rewards": {"exact_match": float(index), "format": 1.0},
            "advantage": index - 0.5,
            "length": 16,
            "cut": index == 0,
        }
        for index in range(2)
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--mode", default="train")
    parser.add_argument("--flood-bytes", type=int, default=2 * 1024 * 1024)
    parser.add_argument("yaml")
    args = parser.parse_args()
    run_dir = Path(args.yaml).parent
    state = {"step": 0}

    def on_term(signum, frame):
        print(f"SIGTERM received at step {state['step']}: saving", flush=True)
        _save(run_dir, state["step"])
        print("saved", flush=True)
        sys.exit(0)

    if args.mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    if args.mode in ("spawn-child", "setsid-child"):
        kind = "setsid" if args.mode == "setsid-child" else "group"
        subprocess.Popen([sys.executable, "-c", CHILD_CODE, kind, str(run_dir / "child.pid")])
        while not (run_dir / "child.pid").exists():
            time.sleep(0.01)
    if args.mode == "bad-args":
        print("1 problem with the arguments:\n  - lora_rnak: received 3 — unknown key", file=sys.stderr)
        return 2
    if args.mode == "flood":
        chunk = "x" * 1023 + "\n"
        for _ in range(args.flood_bytes // 1024):
            sys.stderr.write(chunk)
        sys.stderr.flush()

    print(f"fake job: {args.steps} steps, pid {os.getpid()}", flush=True)
    grpo = "stage: grpo" in Path(args.yaml).read_text(encoding="utf-8")
    start = time.time()
    with (run_dir / "trainer_log.jsonl").open("a", encoding="utf-8") as log:
        for step in range(1, args.steps + 1):
            time.sleep(args.interval)
            state["step"] = step
            record = _record(step, args.steps, start)
            if grpo:
                record = {key: value for key, value in record.items() if not key.startswith("rewards/")}
                record.update(_grpo_record(step))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if grpo:
                with (run_dir / "samples.jsonl").open("a", encoding="utf-8") as samples:
                    samples.write("".join(json.dumps(row) + "\n" for row in _grpo_samples(step)))
            print(f"step {step}/{args.steps}", flush=True)
            print(f"warning at step {step}", file=sys.stderr, flush=True)
            if args.mode == "fail" and step == 2:
                raise ValueError(f"fake failure at step {step}: the dataset column 'text' is missing")
    _save(run_dir, args.steps)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

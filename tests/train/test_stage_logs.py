"""What a job's log shows, for every stage: one progress line per logging step, and no raw log dicts (the
Trainer's own printer, which the stage workflows switch off through trainer_utils.train_and_save)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from trainhelp import train_args

STAGES = ("pt", "sft", "rm", "dpo", "kto", "ppo", "grpo")
PROGRESS = re.compile(r"(?<!eval )(?<!predict )\bstep (\d+)/(\d+) \(")
RAW_DICT = re.compile(r"\{'[\w/]+': ")

# One interpreter for the six jobs (torch is imported once); each job's stdout and stderr go to its own job.log,
# as the board's runner sends a job's output there.
SCRIPT = """
import json, os, sys
from core.train.tuner import run_exp
for args in json.loads(sys.argv[1]):
    sys.stdout.flush(); sys.stderr.flush()
    with open(os.path.join(args["output_dir"], "job.log"), "wb") as log:
        os.dup2(log.fileno(), 1); os.dup2(log.fileno(), 2)
    run_exp(args)
"""


def test_every_stage_logs_one_progress_line_per_logging_step(demo_model, tmp_path):
    jobs = []
    for stage in STAGES:
        args = train_args(tmp_path / stage, stage, max_steps=4, logging_steps=2, max_samples=16)
        args["per_device_train_batch_size"] = 4
        if stage == "ppo":
            args.update(reward_model="uppercase", reward_model_type="rule", max_new_tokens=4)
        if stage == "grpo":
            args.update(num_generations=4, max_new_tokens=4)
        Path(args["output_dir"]).mkdir()
        jobs.append(args)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(jobs)], capture_output=True, text=True, timeout=600, check=False
    )
    logs = {stage: (tmp_path / stage / "job.log").read_text(encoding="utf-8") for stage in STAGES}
    assert result.returncode == 0, result.stderr[-3000:] + "".join(logs.values())[-3000:]
    for stage, text in logs.items():
        steps = [(int(m.group(1)), int(m.group(2))) for m in PROGRESS.finditer(text)]
        assert steps == [(2, 4), (4, 4)], f"{stage}: progress lines {steps} in\n{text}"
        raw = [line for line in text.splitlines() if RAW_DICT.search(line)]
        assert not raw, f"{stage}: raw log dicts in job.log:\n" + "\n".join(raw)
        # the demo model's activations fit with room to spare: no recomputation, and the log says why
        assert "Gradient checkpointing: off: the job needs about" in text, f"{stage}:\n{text}"

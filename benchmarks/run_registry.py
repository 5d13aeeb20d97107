"""Time to list 1,000 run folders for the Runs tab and `llamafactory-cli runs list` (core.registry.list_runs).

    python benchmarks/run_registry.py [--runs 1000] [--records 200]

Generates board run folders under a temporary saves folder: job.json, a job.yaml of the board's size (about 40
keys), train_results.json, and a trainer_log.jsonl of `--records` records (one eval record in ten; dpo / rm runs
log accuracy, ppo runs reward). Then, three times each and reported as medians: a cold listing (the row cache
emptied, every folder read), a warm one (Refresh with nothing changed), and as the baseline from the same run the
Runs tab's listing before the registry (webui.jobs.list_runs: job.json, the arguments and the last log record,
no metrics). The page cache is warm for all three (the files were just written or read).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from core import registry
from core.runfolder import JOB_JSON, JOB_YAML, TRAINER_LOG
from webui import jobs

STAGES = ("sft", "dpo", "rm", "ppo", "kto")


def make_run(run_dir: Path, index: int, records: int) -> None:
    run_dir.mkdir(parents=True)
    stage = STAGES[index % len(STAGES)]
    args = {
        "model_name_or_path": f"org/model-{index % 5}",
        "trust_remote_code": False,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8 * (1 + index % 3),
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target": "all",
        "dataset": "identity,alpaca_en_demo",
        "dataset_dir": "data",
        "template": "chatml",
        "cutoff_len": 1024,
        "max_samples": 100000,
        "val_size": 0.1,
        "preprocessing_num_workers": 16,
        "output_dir": str(run_dir),
        "logging_steps": 5,
        "save_steps": 100,
        "eval_strategy": "steps",
        "eval_steps": 50,
        "plot_loss": True,
        "overwrite_output_dir": False,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "gradient_accumulation_steps": 8,
        "learning_rate": 1e-4 * (1 + index % 5),
        "num_train_epochs": 3.0,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 10,
        "max_grad_norm": 1.0,
        "bf16": True,
        "optim": "adamw_torch",
        "seed": 42,
        "report_to": "none",
        "include_num_input_tokens_seen": True,
        "packing": False,
        "neat_packing": False,
        "pref_beta": 0.1,
        "pref_loss": "sigmoid",
        "save_total_limit": 3,
    }
    (run_dir / JOB_YAML).write_text(yaml.safe_dump(args), encoding="utf-8")
    job = {"id": str(index), "state": "finished", "stage": stage, "created": 1.7e9 + index, "pid": None}
    (run_dir / JOB_JSON).write_text(json.dumps(job, indent=2), encoding="utf-8")
    (run_dir / "train_results.json").write_text(json.dumps({"train_loss": 1.0}), encoding="utf-8")
    lines = []
    for step in range(1, records + 1):
        record = {
            "current_steps": step * 5,
            "total_steps": records * 5,
            "percentage": 100 * step / records,
            "epoch": 3 * step / records,
            "elapsed_time": "0:01:00",
            "remaining_time": "0:00:00",
            "elapsed_s": step * 0.5,
            "remaining_s": 0.0,
            "loss": 2.0 / step,
            "lr": 1e-4,
            "grad_norm": 1.0,
            "throughput": 1234.5,
        }
        if stage in ("dpo", "rm", "kto"):
            record["accuracy"] = min(1.0, step / records)
        if stage == "ppo":
            record["reward"] = step / records
        lines.append(json.dumps(record))
        if step % 10 == 0:
            lines.append(json.dumps({"current_steps": step * 5, "total_steps": records * 5, "eval_loss": 1.5 / step}))
    (run_dir / TRAINER_LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--records", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        saves = Path(tmp)
        for index in range(options.runs):
            make_run(saves / f"model-{index % 5}" / "lora" / f"run-{index:04d}", index, options.records)
        cold, warm, before = [], [], []
        for _ in range(3):
            before.append(timed(jobs.list_runs, saves)[0])
            registry._CACHE.clear()
            seconds, rows = timed(registry.list_runs, saves)
            cold.append(seconds)
            warm.append(timed(registry.list_runs, saves)[0])
        assert len(rows) == options.runs, len(rows)
        assert all(row["train_loss"] is not None and row["eval_loss"] is not None for row in rows)
        size = sum(path.stat().st_size for path in saves.rglob("*") if path.is_file())
        print(f"{options.runs} runs x {options.records} log records ({size / 1e6:.0f} MB of run files)")
        print(f"registry, cold (every folder read): {statistics.median(cold):.3f} s")
        print(f"registry, warm (row cache, nothing changed): {statistics.median(warm):.3f} s")
        print(f"baseline, webui.jobs.list_runs (no metrics): {statistics.median(before):.3f} s")


if __name__ == "__main__":
    main()

"""Whole-run cost of the reference pass: dpo / kto over several epochs with the reference run in every step
against `precompute_ref_log_probs: true` (one pass before the first step, cached in the run folder).

    python benchmarks/precompute_ref.py [--model DIR|demo|demo-small] [--stages kto,dpo] [--epochs 3]
        [--samples 96] [--batch-size 8]

Each run is a fresh process (one torch thread) on the demo data, LoRA rank 16 on all linear layers; it prints wall
seconds, process CPU seconds (steadier on a shared machine), the Trainer's train_runtime (which includes the
precomputing pass) and the final train_loss, which must be the same for both variants.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = {"kto": "demo_kto", "dpo": "demo_pref"}


def run_worker(stage: str, model: str, precompute: str, out: str, epochs: str, samples: str, batch: str) -> None:
    import torch

    from core import run_exp
    from core.demo import resolve_model_path

    torch.set_num_threads(1)
    job = {
        "model_name_or_path": resolve_model_path(model), "stage": stage, "do_train": True, "finetuning_type": "lora",
        "lora_rank": 16, "lora_target": "all", "template": "chatml", "dataset_dir": "demo",
        "dataset": DATASETS[stage], "cutoff_len": 128, "max_samples": int(samples), "output_dir": out,
        "per_device_train_batch_size": int(batch), "per_device_eval_batch_size": int(batch),
        "learning_rate": 1e-4, "num_train_epochs": float(epochs), "logging_steps": 1000, "save_strategy": "no",
        "report_to": "none", "seed": 42, "pref_beta": 0.1, "precompute_ref_log_probs": precompute == "1",
    }  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    run_exp(job)
    results = json.loads((Path(out) / "all_results.json").read_text(encoding="utf-8"))
    print(json.dumps({
        "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
        "train_runtime": results["train_runtime"], "train_loss": results["train_loss"],
    }))  # fmt: skip


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        run_worker(*sys.argv[2:9])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-small")
    parser.add_argument("--stages", default="kto,dpo")
    parser.add_argument("--epochs", default="3")
    parser.add_argument("--samples", default="96")
    parser.add_argument("--batch-size", default="8")
    options = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    print(f"{'stage':<5} {'reference':<12} {'wall s':>7} {'cpu s':>7} {'runtime':>8} {'train_loss':>11}")
    with tempfile.TemporaryDirectory(prefix="precompute_ref-") as tmp:
        for stage in options.stages.split(","):
            for precompute in ("0", "1"):
                output_dir = str(Path(tmp) / f"{stage}-{precompute}")
                argv = [sys.executable, __file__, "--worker", stage, options.model, precompute, output_dir,
                        options.epochs, options.samples, options.batch_size]  # fmt: skip
                done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    print(f"{stage} precompute={precompute} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                name = "precomputed" if precompute == "1" else "every step"
                print(
                    f"{stage:<5} {name:<12} {row['wall']:>7.1f} {row['cpu']:>7.1f} {row['train_runtime']:>8.1f} "
                    f"{row['train_loss']:>11.6f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""streaming: true — pt and sft read and tokenize their training data while training, so a dataset larger than the
memory the process may use trains all the same."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.runfolder import read_log_records

REPO_ROOT = Path(__file__).resolve().parents[2]
WORDS = "the quick brown fox jumps over a lazy dog while seven bold wizards quietly hum old songs".split()

# The child trains once on small files (every lazy import, the model, the first allocations), then limits its address
# space to what it uses then plus HEADROOM and trains on the big files.
CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from core import run_exp

    warm, big, headroom = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    run_exp(warm)
    def status(key):
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key))

    size = status("VmSize:")
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))
    print(f"LIMIT {size + headroom}", flush=True)
    run_exp(big)
    print(f"TRAINED, using up to {(status('VmPeak:') - size) >> 20} MB more", flush=True)
    """
)
HEADROOM = 64 << 20  # memory the big run may add: a third of the 200 MB of data (streaming adds ~35 MB)
FILE_MB = 100  # per dataset, two datasets


def write_pt_files(folder: Path, name: str, megabytes: int) -> int:
    """A jsonl pt dataset of ~8 KB rows, `megabytes` MB; returns its size in bytes."""
    rng = random.Random(name)
    block = "".join(
        json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(1400))}) + "\n" for _ in range(125)
    ).encode()
    path = folder / f"{name}.jsonl"
    with path.open("wb") as f:
        for _ in range(max(1, megabytes * (1 << 20) // len(block))):
            f.write(block)
    return path.stat().st_size


def child_run(folder: Path, streaming: bool, output: Path) -> subprocess.Popen:
    common = {
        "model_name_or_path": "demo", "stage": "pt", "do_train": True, "finetuning_type": "lora", "lora_rank": 8,
        "lora_target": "all", "dataset_dir": str(folder), "cutoff_len": 64, "per_device_train_batch_size": 8,
        "learning_rate": 5e-3, "max_steps": 6, "logging_steps": 2, "save_strategy": "no", "report_to": "none",
        "use_cpu": True, "plot_loss": False, "mix_strategy": "interleave_under", "streaming": streaming,
        "buffer_size": 1000, "preprocessing_batch_size": 100,
    }  # fmt: skip
    warm = {**common, "dataset": "small_a,small_b", "output_dir": str(output / "warm")}
    big = {**common, "dataset": "big_a,big_b", "output_dir": str(output / "big")}
    env = {
        **os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
    }  # fmt: skip
    argv = [sys.executable, "-c", CHILD, json.dumps(warm), json.dumps(big), str(HEADROOM)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_dataset_larger_than_the_memory_limit_streams_through(demo_model, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    size = sum(write_pt_files(folder, name, FILE_MB) for name in ("big_a", "big_b"))
    for name in ("small_a", "small_b"):
        write_pt_files(folder, name, 0)
    info = {
        name: {"file_name": f"{name}.jsonl", "columns": {"prompt": "text"}}
        for name in ("big_a", "big_b", "small_a", "small_b")
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    assert size > HEADROOM + (50 << 20)

    # Both at once (the slow part is starting Python with torch twice). Without streaming, the same run mixes
    # the two datasets in memory first: it cannot stay under the limit.
    runs = {streaming: child_run(folder, streaming, tmp_path / str(streaming)) for streaming in (True, False)}
    (out, err), (held_out, held_err) = (runs[k].communicate(timeout=300) for k in (True, False))
    assert runs[True].returncode == 0 and "TRAINED" in out, out[-2000:] + err[-3000:]
    losses = [r["loss"] for r in read_log_records(tmp_path / "True" / "big" / "trainer_log.jsonl") if "loss" in r]
    assert len(losses) == 3
    assert "LIMIT" in held_out, held_err[-3000:]
    assert runs[False].returncode != 0 and "TRAINED" not in held_out
    assert "MemoryError" in held_err or "Cannot allocate memory" in held_err, held_err[-3000:]

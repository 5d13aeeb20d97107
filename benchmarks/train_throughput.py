"""Training throughput: sft + lora for a fixed number of steps on the ~30M-parameter demo model.

    python benchmarks/train_throughput.py [--steps 20] [--batch-size 8] [--cutoff-len 128] [--model demo-small]

Prints seconds per optimizer step (the first step, which pays for warm-up, is left out), real tokens per second
(non-padding tokens, as counted by the Trainer with include_num_input_tokens_seen=non_padding) and peak memory
(process RSS on CPU, torch.cuda.max_memory_allocated on GPU). Runs offline; the demo model is built on first use.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Wall time and token count at each optimizer step end."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append((time.perf_counter(), state.num_input_tokens_seen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo-small", help="model_name_or_path (default: the ~30M demo model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cutoff-len", type=int, default=128)
    parser.add_argument("--finetuning-type", default="lora", choices=["lora", "freeze", "full"])
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    options = parser.parse_args(argv)

    import torch

    from core import run_exp

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as output_dir:
        args = {
            "model_name_or_path": options.model,
            "stage": "sft",
            "do_train": True,
            "finetuning_type": options.finetuning_type,
            "lora_target": "all",
            "template": "chatml",
            "dataset_dir": "demo",
            "dataset": "demo_sft,demo_sharegpt",
            "cutoff_len": options.cutoff_len,
            "output_dir": output_dir,
            "per_device_train_batch_size": options.batch_size,
            "learning_rate": 1e-4,
            "max_steps": options.steps,
            "logging_steps": max(1, options.steps // 4),
            "save_strategy": "no",
            "report_to": "none",
            "bf16": options.bf16,
        }
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        run_exp(args, callbacks=[timer])
        total = time.perf_counter() - start

    if len(timer.marks) < 2:
        print("too few steps to time; use --steps 2 or more", file=sys.stderr)
        return 1
    (t0, tokens0), (t1, tokens1) = timer.marks[0], timer.marks[-1]
    seconds_per_step = (t1 - t0) / (len(timer.marks) - 1)
    tokens_per_second = (tokens1 - tokens0) / (t1 - t0)
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
        peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (torch.cuda.max_memory_allocated)"
    else:
        device = f"CPU, {torch.get_num_threads()} threads"
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (peak RSS)"
    print(
        f"model {options.model}, sft + {options.finetuning_type}, batch {options.batch_size}, "
        f"cutoff_len {options.cutoff_len}, {options.steps} steps on {device}"
    )
    print(f"seconds per step: {seconds_per_step:.3f}")
    print(f"real tokens per second: {tokens_per_second:.0f}")
    print(f"peak memory: {peak}")
    print(f"whole run (load, preprocess, train, save): {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

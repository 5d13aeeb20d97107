"""DeepSpeed ZeRO configs from a choice (stage 2 or 3, CPU offload or not), for the board and for people.

    python -m core.deepspeed --stage 3 --offload saves/ds_z3_offload_config.json

Pure: no torch, no deepspeed import. Batch sizes, gradient clipping and the precision flags are "auto", so the
Trainer fills them from the job's own arguments and the config never contradicts them. Use the file with
`deepspeed: <path>` in the job's arguments; the job then runs under torchrun (see core/launcher.py).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

STAGES = (2, 3)


def zero_config_name(stage: int, offload: bool = False) -> str:
    """The usual file name, as in LLaMA-Factory's examples: ds_z2_config.json, ds_z3_offload_config.json."""
    return f"ds_z{stage}{'_offload' if offload else ''}_config.json"


def zero_config(stage: int, offload: bool = False) -> dict[str, Any]:
    """A ZeRO-`stage` config; `offload` moves optimizer states (and with stage 3 the parameters) to CPU memory.

    Offload trades speed for GPU memory: the optimizer step runs on the CPU. Raises ValueError for another stage.
    """
    if stage not in STAGES:
        raise ValueError(
            f"ZeRO stage: received {stage!r} — use 2 (shard optimizer states and gradients) or 3 "
            "(also shard the parameters)."
        )
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 2:
        zero.update(
            allgather_partitions=True,
            allgather_bucket_size=500_000_000,
            reduce_scatter=True,
            round_robin_gradients=True,
        )
    else:
        zero.update(
            sub_group_size=1_000_000_000,
            stage3_prefetch_bucket_size="auto",
            stage3_param_persistence_threshold="auto",
            stage3_max_live_parameters=1_000_000_000,
            stage3_max_reuse_distance=1_000_000_000,
            # Without it a ZeRO-3 run saves sharded weights that transformers cannot load back.
            stage3_gather_16bit_weights_on_model_save=True,
        )
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        # Our optimizers come from transformers (adamw_torch, ...), which DeepSpeed has not certified for ZeRO.
        "zero_allow_untested_optimizer": True,
        "fp16": {
            "enabled": "auto",
            "loss_scale": 0,
            "loss_scale_window": 1000,
            "initial_scale_power": 16,
            "hysteresis": 2,
            "min_loss_scale": 1,
        },
        "bf16": {"enabled": "auto"},
        "zero_optimization": zero,
    }


def write_zero_config(path: str | os.PathLike, stage: int, offload: bool = False) -> Path:
    """Write `zero_config(stage, offload)` as JSON to `path` (folders created); returns the path."""
    config = zero_config(stage, offload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.deepspeed", description="Write a DeepSpeed ZeRO config.")
    parser.add_argument("--stage", type=int, choices=STAGES, required=True, help="ZeRO stage")
    parser.add_argument("--offload", action="store_true", help="offload optimizer states (and stage 3 params) to CPU")
    parser.add_argument("path", nargs="?", help="output file (default: the usual name in the current folder)")
    options = parser.parse_args(argv)
    path = write_zero_config(
        options.path or zero_config_name(options.stage, options.offload), options.stage, options.offload
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gradient (activation) checkpointing only where it pays.

Checkpointing recomputes every layer's forward during the backward pass: one more forward per step (the planner
counts +2 FLOPs per parameter and token, +50% on a LoRA step's 4), in exchange for keeping one tensor per layer
instead of all of a layer's activations. LLaMA-Factory turns it on for every run
(unless `disable_gradient_checkpointing: true`); on a model whose activations fit with room to spare that only
makes each step slower. Here, when the job does not choose (`gradient_checkpointing` / `activation_checkpointing`
unset), the planner (`core.plan.estimate`) decides: off while the whole job (weights, gradients, optimizer,
activations, logits) fits in 90% of the device's memory without it, on when it does not. An explicit true / false
is always obeyed, and LLaMA-Factory's `disable_gradient_checkpointing: true` means false.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# The share of the device's memory the planned job may take before checkpointing is turned on: the planner's
# figures are estimates (within ~15% on the benchmarked jobs, benchmarks/plan_accuracy.py), so leave room.
FIT_SHARE = 0.9
EXPLICIT_KEYS = ("activation_checkpointing", "gradient_checkpointing")


def device_memory_bytes() -> tuple[int | None, str]:
    """Memory the job's tensors may use, and where: the first GPU's total memory, else this host's available RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            index = torch.cuda.current_device()
            return int(torch.cuda.get_device_properties(index).total_memory), "GPU"
    except Exception:  # pragma: no cover - a broken CUDA setup: decide as on the CPU
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "RAM"
    except OSError:
        pass
    return None, "RAM"


def plan_args(raw: dict[str, Any], data_args: Any, training_args: Any, finetuning_args: Any) -> dict[str, Any]:
    """The raw job with the parsed values (defaults filled in) of the keys the planner reads."""
    args = dict(raw)
    args.update(
        stage=finetuning_args.stage,
        finetuning_type=finetuning_args.finetuning_type,
        per_device_train_batch_size=training_args.per_device_train_batch_size,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        cutoff_len=data_args.cutoff_len,
        packing=bool(getattr(data_args, "packing", False)),
        bf16=bool(training_args.bf16),
        fp16=bool(training_args.fp16),
    )
    args.pop("activation_checkpointing", None)
    return args


def choose(
    args: dict[str, Any], config: dict[str, Any], device_bytes: int | None, where: str = "RAM"
) -> tuple[bool, str]:
    """(on, why) for a job whose planner arguments are `args`, on a model whose config.json is `config`."""
    from core.plan import estimate, format_bytes

    if device_bytes is None:
        return False, "off (the device's memory is unknown)"
    without = estimate({**args, "gradient_checkpointing": False}, config, device="cuda" if where == "GPU" else "cpu")
    budget = FIT_SHARE * device_bytes
    if without.total <= budget:
        return False, (
            f"off: the job needs about {format_bytes(without.total)} without it "
            f"({format_bytes(without.parts['activations'])} of activations), within the "
            f"{format_bytes(device_bytes)} of {where}; recomputing activations would only slow each step"
        )
    with_it = estimate({**args, "gradient_checkpointing": True}, config, device="cuda" if where == "GPU" else "cpu")
    return True, (
        f"on: the job needs about {format_bytes(without.total)} without it and {format_bytes(with_it.total)} with it, "
        f"against {format_bytes(device_bytes)} of {where}"
    )


def decide(raw: dict[str, Any], model_args: Any, data_args: Any, training_args: Any, finetuning_args: Any) -> None:
    """Set `training_args.activation_checkpointing` when the job left it unset, and log why."""
    if not training_args.do_train:
        return
    if any(raw.get(key) is not None for key in EXPLICIT_KEYS):
        return  # the job chose: obeyed as it is
    if raw.get("disable_gradient_checkpointing") is True:
        training_args.activation_checkpointing = False
        logger.info("Gradient checkpointing: off (disable_gradient_checkpointing: true)")
        return
    from core.plan import PlanError, read_config

    try:
        config = read_config(model_args.model_name_or_path)
        device_bytes, where = device_memory_bytes()
        on, why = choose(plan_args(raw, data_args, training_args, finetuning_args), config, device_bytes, where)
    except (PlanError, OSError, ValueError, KeyError, TypeError) as err:  # not a model the planner reads
        training_args.activation_checkpointing = False
        logger.info("Gradient checkpointing: off (set gradient_checkpointing: true to force it; %s)", err)
        return
    training_args.activation_checkpointing = on
    logger.info("Gradient checkpointing: %s (set gradient_checkpointing: true / false to choose)", why)

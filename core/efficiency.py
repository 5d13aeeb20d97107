"""How efficiently a job trains: model FLOPs per token, model FLOPs utilisation (MFU) and device peaks. Pure.

Training FLOPs per real (non-padding) token, counting matrix multiplications only (2 FLOPs per multiply-add):

    forward                      2 * P              P = parameters of the model's linear layers (lm_head included,
    backward, activation grads   2 * P                  the input embedding lookup is no multiplication)
    backward, weight grads       2 * P_trainable    P_trainable = those of P that train (all for full fine-tuning,
                                                        the adapter's for LoRA; frozen weights get no gradient)
    attention scores and values  12 * L * d * T     L layers, d hidden size, T tokens a sequence attends over
                                                        (forward 4 * L * d * T, backward twice that)

For full fine-tuning this is the usual 6 * P + 12 * L * d * T (PaLM, appendix B). Recomputation for gradient
checkpointing is not counted: MFU measures useful work, not what the hardware repeated.

    MFU = tokens per second * FLOPs per token / (peak FLOPs per device * devices)

`PEAK_TFLOPS` holds dense (no sparsity) peaks from the vendors' datasheets: bf16 / fp16 tensor-core figures, and
plain fp32 ones for jobs that train in fp32 (where TF32 matmuls are allowed the measured MFU can exceed what the
fp32 peak suggests). CPUs have no table: the job measures a matmul's speed on its own threads at start
(`core.train.monitor.measure_cpu_flops`) and uses that figure as the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

TERA = 1e12


@dataclass(frozen=True)
class DevicePeak:
    """A device's dense peak in TFLOPS: `half` for bf16 / fp16 tensor cores, `fp32` without them (None: unknown)."""

    half: float | None
    fp32: float | None


# Matched against the device name (torch.cuda.get_device_name / nvidia-smi) in this order: the first pattern found
# in the lower-cased name wins, so the more specific names come first.
PEAK_TFLOPS: list[tuple[str, DevicePeak]] = [
    ("gh200", DevicePeak(989.4, 66.9)),
    ("h200", DevicePeak(989.4, 66.9)),
    ("h100 pcie", DevicePeak(756.0, 51.2)),
    ("h100", DevicePeak(989.4, 66.9)),  # SXM
    ("h800", DevicePeak(989.4, 66.9)),
    ("h20", DevicePeak(148.0, 44.0)),
    ("b200", DevicePeak(2250.0, None)),
    ("a100", DevicePeak(312.0, 19.5)),
    ("a800", DevicePeak(312.0, 19.5)),
    ("l40s", DevicePeak(362.1, 91.6)),
    ("l40", DevicePeak(181.0, 90.5)),
    ("l4", DevicePeak(121.0, 30.3)),
    ("a6000", DevicePeak(154.8, 38.7)),
    ("a10g", DevicePeak(None, None)),  # AWS's variant of the A10, slower than it: no figure we could check
    ("a10", DevicePeak(125.0, 31.2)),
    ("4090", DevicePeak(165.2, 82.6)),
    ("3090", DevicePeak(71.0, 35.6)),
    ("v100", DevicePeak(125.0, 15.7)),  # fp16 only: V100 has no bf16
    ("t4", DevicePeak(65.0, 8.1)),  # fp16 only
    ("mi300x", DevicePeak(1307.4, 163.4)),
    ("mi250x", DevicePeak(383.0, 47.9)),
]


def device_peak_flops(name: str, half_precision: bool) -> float | None:
    """Peak FLOP/s of one device named `name` for bf16 / fp16 (`half_precision`) or fp32 training; None unknown."""
    lowered = name.lower()
    for pattern, peak in PEAK_TFLOPS:
        if pattern in lowered:
            tflops = peak.half if half_precision else peak.fp32
            return tflops * TERA if tflops else None
    return None


def train_flops_per_token(
    matmul_params: int, trainable_matmul_params: int, num_layers: int, hidden_size: int, seq_len: float
) -> float:
    """Model FLOPs to train on one token (see the module docstring for the terms)."""
    dense = 2 * matmul_params + 2 * matmul_params + 2 * trainable_matmul_params
    attention = 12 * num_layers * hidden_size * seq_len
    return float(dense + attention)


def mfu_percent(tokens_per_second: float, flops_per_token: float, peak_flops: float, devices: int = 1) -> float | None:
    """Model FLOPs utilisation in percent (0-100, more is impossible in theory); None when the peak is unknown."""
    if not peak_flops or devices < 1:
        return None
    return 100.0 * tokens_per_second * flops_per_token / (peak_flops * devices)

"""Will this job fit, and how long will it take: memory and time from the argument dict and the model's config.json
alone, no weights loaded and no torch imported (the board may call it on every form change).

    llamafactory-cli plan job.yaml [key=value ...] [--devices N] [--device-memory-gb G] [--device NAME]

Memory, per device, in bytes (`estimate(args, config)`):
- weights: parameters x bytes of the load dtype (4-bit: 4.127 bits per quantized parameter, NF4 with double
  quantization, QLoRA paper section 3; 8-bit: 1 byte + one fp32 scale per 4096); embeddings and norms stay in the
  compute dtype. Full / freeze training under mixed precision keeps trainable weights in fp32 (as the Trainer does).
- gradients and optimizer state for the trainable parameters: AdamW keeps two fp32 moments (8 bytes), pure_bf16 two
  bf16 ones; under DeepSpeed the ZeRO accounting (2 + 2 + 12 bytes per parameter, Rajbhandari et al. 2020, "ZeRO",
  section 3) divided over the world size: stage 2 the gradients and optimizer, stage 3 the weights too; offload moves
  the optimizer (and, stage 3, the weights) to host memory.
- activations: per token and layer, what the backward pass keeps (the inputs of each matmul, norms and the SwiGLU
  MLP; the attention kernel keeps O(s) state, not s^2); with gradient checkpointing one layer input per layer plus
  one layer's full activations while it is recomputed (Korthikanti et al. 2022, "Reducing Activation Recomputation
  in Large Transformer Models", section 4: 34*s*b*h bytes per layer without the attention scores, 2*s*b*h with full
  recomputation; tests/test_plan.py checks ours against both). Published totals checked by the tests: LLaMA-Factory's
  README "Hardware Requirement" table for 7B (full AMP 120 GB, full / freeze 16-bit 60 / 16, LoRA 16, QLoRA 8-bit
  10, 4-bit 6) and the ZeRO paper's figure 1.
- logits: the vocabulary peak of the loss (bf16 logits, their fp32 copy, the log-softmax and its gradient) over the
  tokens whose logits are kept; preference stages compute chosen and rejected together.
- reference model (dpo / kto): none with LoRA (the adapter is switched off), else a second copy of the weights.
- ppo / grpo: the reward model (an adapter when reward_model_type is lora, else a copy) and the generation KV cache.
- runtime: the framework's own resident memory (CUDA context, or the Python + torch process on a CPU).

Time: tokens per step x FLOPs per token (6 x parameters to train every weight, 4 x when only adapters learn since
the frozen weights still pass gradients back, +2 x with gradient checkpointing, + attention) / the device's
sustained FLOP/s (a table of common GPUs at a stated model-FLOPs utilisation, or a figure measured on this machine).
On a CPU, eager PyTorch also pays per operation, whatever the tensor sizes, and on small models that is most of the
step: the calibrated figure adds seconds per layer pass (each layer's forward, and twice that for its backward) and
per adapter pass and token (each LoRA module's forward and backward: its dropout, down and up projections and the
sum are element-wise work over every token, which on small models outweighs their FLOPs), counted for every
forward the stage makes (the reference of dpo / kto, the KL pairs of kto, the recomputation of gradient
checkpointing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GB = 1024**3

# Sustained training throughput: peak dense bf16 tensor FLOP/s (vendor data sheets) x a typical model-FLOPs
# utilisation of 40% for single-GPU LoRA / full fine-tuning with the Trainer.
MFU = 0.4
DEVICES: dict[str, dict[str, float]] = {
    "H200": {"memory_gb": 141, "tflops": 989},
    "H100": {"memory_gb": 80, "tflops": 989},
    "A100-80GB": {"memory_gb": 80, "tflops": 312},
    "A100-40GB": {"memory_gb": 40, "tflops": 312},
    "L40S": {"memory_gb": 48, "tflops": 362},
    "A10G": {"memory_gb": 24, "tflops": 125},
    "RTX 4090": {"memory_gb": 24, "tflops": 165},
    "RTX 3090": {"memory_gb": 24, "tflops": 71},
    "V100": {"memory_gb": 32, "tflops": 125},
    "T4": {"memory_gb": 16, "tflops": 65},
}
# On a GPU the host launches every operation; a step can be no faster than those launches, however small the model:
# per layer pass (a forward, a backward counted as two) and per LoRA module pass, fitted to 22 bf16 jobs of a 359M
# model on an H200 (torch 2.11, eager; benchmarks/plan_accuracy.py --cuda H200), whose steps ran at 1-8% of the
# FLOP figure. The step takes the longer of that and the FLOP time, since launches overlap the GPU's work.
GPU_LAYER_SECONDS = 1.5e-3
GPU_ADAPTER_SECONDS = 1.6e-4
CUDA_RUNTIME_BYTES = int(0.6 * GB)  # CUDA context + cuBLAS workspace, outside torch's allocator
# Peak RSS of a training job whose model is negligible (the 155k-parameter demo, sft LoRA: 574 MB measured by
# benchmarks/plan_accuracy.py --model demo): Python, torch, transformers, peft, trl, datasets and the tokenizer.
CPU_RUNTIME_BYTES = int(0.56 * GB)

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class PlanError(ValueError):
    """A config that cannot be read; the message says which file and what to do."""


@dataclass(frozen=True)
class Shape:
    """What the estimate needs from config.json."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def module_sizes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder block."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def layer_linear_params(self) -> int:
        return sum(a * b for a, b in self.module_sizes.values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def params(self) -> int:
        return self.layers * (self.layer_linear_params + 2 * self.hidden) + self.embedding_params + self.hidden


def shape_of(config: dict[str, Any]) -> Shape:
    """A Shape from a decoder config.json (Llama, Qwen, Mistral, Gemma style keys; multimodal text_config)."""
    config = config.get("text_config") or config
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        return Shape(
            vocab=int(config["vocab_size"]),
            hidden=hidden,
            intermediate=int(config.get("intermediate_size") or 4 * hidden),
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            tied=bool(config.get("tie_word_embeddings", False)),
        )
    except KeyError as err:
        raise PlanError(f"config.json has no {err.args[0]}: the planner reads decoder-only language models") from err


def read_config(model_name_or_path: str) -> dict[str, Any]:
    """config.json of a local folder, the demo models, or a hub model already in the local cache."""
    from core.demo import MODEL_DIR_NAMES, SIZES
    from core.paths import cache_dir

    demo = {"demo": "tiny", "demo-small": "small"}.get(model_name_or_path)
    if demo and not Path(model_name_or_path).exists():
        built = cache_dir() / MODEL_DIR_NAMES[demo] / "config.json"
        if built.is_file():
            return json.loads(built.read_text())
        size = SIZES[demo]
        return {
            "vocab_size": size.vocab_size,
            "hidden_size": size.hidden_size,
            "intermediate_size": size.intermediate_size,
            "num_hidden_layers": size.num_hidden_layers,
            "num_attention_heads": size.num_attention_heads,
            "num_key_value_heads": size.num_key_value_heads,
            "tie_word_embeddings": True,
        }
    local = Path(model_name_or_path).expanduser()
    if local.is_dir():
        path = local / "config.json"
        if not path.is_file():
            raise PlanError(f"{local} has no config.json — point model_name_or_path at the model's folder")
        return json.loads(path.read_text())
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_name_or_path, "config.json")
    if isinstance(cached, str):
        return json.loads(Path(cached).read_text())
    raise PlanError(
        f"{model_name_or_path}: config.json is not available offline — download the model once "
        f"(huggingface-cli download {model_name_or_path} config.json) or give a local folder"
    )


@dataclass(frozen=True)
class DataLengths:
    """What time and memory need from the dataset: rows, the longest sequence and the mean padded length of a
    batch's sequences (the collator pads each batch to its longest), all in tokens."""

    rows: int
    longest: int
    mean_padded: float


def data_lengths(stats: dict[str, Any]) -> DataLengths:
    """DataLengths from `core.data.stats.dataset_stats`' result."""
    total = stats["total_tokens"]
    padding = float(stats.get("padding_fraction") or 0.0)
    return DataLengths(
        rows=int(stats["rows"]),
        longest=int(min(total["max"], stats["cutoff_len"])),
        mean_padded=float(total["mean"]) / max(1e-6, 1.0 - padding),
    )


@dataclass
class Estimate:
    """Bytes per device by part, host bytes (offload), and the time figures when a throughput is known."""

    parts: dict[str, int]
    host: dict[str, int] = field(default_factory=dict)
    params: int = 0
    trainable: int = 0
    tokens_per_step: int = 0
    flops_per_step: float = 0.0
    layer_passes: int = 0  # layer forwards per step, a backward counted as two
    adapter_passes: int = 0  # the same for each adapted (LoRA) module
    adapter_token_passes: int = 0  # adapter passes times the tokens each pass covers
    seconds_per_step: float | None = None
    steps: int | None = None

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def total_seconds(self) -> float | None:
        if self.seconds_per_step is None or self.steps is None:
            return None
        return self.seconds_per_step * self.steps

    def verdict(self, device_bytes: int) -> str:
        """fits (under 85% of the device), tight (85-100%), or too_big."""
        if self.total > device_bytes:
            return "too_big"
        return "tight" if self.total > 0.85 * device_bytes else "fits"


def _dtype_bytes(args: dict[str, Any]) -> int:
    return 2 if args.get("bf16") or args.get("fp16") or args.get("pure_bf16") else 4


def _lora_targets(args: dict[str, Any]) -> list[str]:
    target = str(args.get("lora_target") or "all")
    if target == "all":
        return list(LORA_MODULES)
    return [name.strip() for name in target.split(",") if name.strip() in LORA_MODULES]


def trainable_params(args: dict[str, Any], shape: Shape) -> int:
    method = args.get("finetuning_type", "lora")
    if method == "full":
        return shape.params
    if method == "freeze":
        layers = int(args.get("freeze_trainable_layers", 2))
        return min(abs(layers), shape.layers) * (shape.layer_linear_params + 2 * shape.hidden)
    rank = int(args.get("lora_rank", 8))
    sizes = shape.module_sizes
    return shape.layers * sum(rank * (sizes[name][0] + sizes[name][1]) for name in _lora_targets(args))


def _weights(args: dict[str, Any], shape: Shape, trainable: int) -> int:
    compute = _dtype_bytes(args)
    linear = shape.layers * shape.layer_linear_params
    other = shape.params - linear
    bits = args.get("quantization_bit")
    if bits in (4, "4"):
        base = linear * 4.127 / 8 + other * compute
    elif bits in (8, "8"):
        base = linear * (1 + 4 / 4096) + other * compute
    else:
        base = shape.params * compute
    method = args.get("finetuning_type", "lora")
    if method in ("full", "freeze") and not args.get("pure_bf16") and compute == 2 and not args.get("deepspeed"):
        base += trainable * 2  # trainable weights upcast to fp32 under mixed precision
    if method in ("lora", "oft"):
        base += trainable * 4  # adapter weights are kept in fp32
    return int(base)


def _activations(args: dict[str, Any], shape: Shape, batch: int, seq: int) -> int:
    act = _dtype_bytes(args) if not args.get("pure_bf16") else 2
    h, i = shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    # kept for backward per token and layer: 2 norms' inputs and outputs (4h), q/k/v/attention output (2h + 2kv),
    # o_proj input (h), residual (h), MLP input (h), gate, up, act(gate) and their product (4i)
    per_token_layer = (9 * h + 2 * kv + 4 * i) * act
    tokens = batch * seq
    layers = _layers_backward(args, shape)
    if args.get("gradient_checkpointing"):
        return tokens * (layers * h * act + per_token_layer)
    return tokens * layers * per_token_layer


def _layers_backward(args: dict[str, Any], shape: Shape) -> int:
    """The layers the backward pass goes through: all, except freeze of the last N layers (positive
    freeze_trainable_layers), where the frozen layers below them keep nothing (their inputs need no gradient)."""
    layers = int(args.get("freeze_trainable_layers", 2))
    if args.get("finetuning_type", "lora") == "freeze" and layers > 0:
        return min(layers, shape.layers)
    return shape.layers


def _logits(args: dict[str, Any], shape: Shape, batch: int, seq: int) -> int:
    # transformers' causal LM loss (pt, sft): bf16 / fp32 logits, their fp32 copy, log-softmax and its gradient.
    # dpo / kto (core/train/pref_trainer.py): the logits (of the labelled window only, bounded here by the whole
    # sequence), the fp32 copy of each chunk that logsumexp keeps for the backward pass, and the logits' gradient;
    # no log-softmax tensor (an H200 run of a 150k-vocabulary model measured 1.20-1.42x with the sft figure).
    compute = _dtype_bytes(args)
    per_element = 2 * compute + 4 if args.get("stage") in ("dpo", "kto") else compute + 3 * 4
    return batch * seq * shape.vocab * per_element


def estimate(
    args: dict[str, Any],
    config: dict[str, Any],
    world_size: int = 1,
    device: str = "cuda",
    seconds_per_flop: float | None = None,
    step_overhead: float = 0.0,
    layer_seconds: float = 0.0,
    adapter_token_seconds: float = 0.0,
    adapter_seconds: float = 0.0,
    lengths: DataLengths | None = None,
) -> Estimate:
    """Memory per device (and time, when `seconds_per_flop` is known) of the job `args` on the model `config`.

        `seconds_per_flop`, `step_overhead` (seconds a step costs whatever its size: Python, optimizer, data),
    `layer_seconds`, `adapter_token_seconds` (per layer pass, per adapter pass and token: the module docstring) and
    `adapter_seconds` (per adapter pass: a GPU's launch cost) describe the device: `device_time_model(name)` for a
    GPU of the table, `calibrate` for this machine.
        `lengths`: the dataset's measured lengths (`data_lengths`); without them every sample is assumed to fill
        cutoff_len (the upper bound), as packing does.
    """
    shape = shape_of(config)
    stage = args.get("stage", "sft")
    method = args.get("finetuning_type", "lora")
    batch = int(args.get("per_device_train_batch_size", 1))
    cutoff = int(args.get("cutoff_len", 2048))
    packing = args.get("packing")
    # pt packs by default (data_args.packing None -> on for pt): every sequence is cutoff_len tokens
    packed = bool(packing or args.get("neat_packing") or (packing is None and stage == "pt"))
    seq = cutoff if lengths is None or packed else min(cutoff, lengths.longest)
    mean_tokens = None if lengths is None or packed else min(cutoff, lengths.mean_padded)
    dataset_rows = None if lengths is None else lengths.rows
    trainable = trainable_params(args, shape)
    compute = _dtype_bytes(args)
    parts: dict[str, int] = {}
    host: dict[str, int] = {}

    parts["weights"] = _weights(args, shape, trainable)
    pure = bool(args.get("pure_bf16"))
    grad_bytes = 2 if pure else 4
    optim_bytes = 4 if pure else 8
    zero = _zero_stage(args)
    if zero:
        # ZeRO's accounting: 16-bit weights and gradients, fp32 master weights and moments (12 bytes) in the optimizer
        grads, optimizer = trainable * 2, trainable * 12
        if zero >= 2:
            grads //= world_size
        optimizer //= world_size
        if zero >= 3:
            parts["weights"] //= world_size
        if _offload(args):
            host["optimizer"] = optimizer
            optimizer = 0
            if zero >= 3:
                host["weights"] = parts["weights"]
                parts["weights"] = 0
        parts["gradients"], parts["optimizer"] = grads, optimizer
    else:
        parts["gradients"] = trainable * grad_bytes
        parts["optimizer"] = trainable * optim_bytes

    rows = batch * (2 if stage in ("dpo", "rm") else 1)  # chosen and rejected in one batch
    # kto: the mismatched KL pairs go through the policy (and reference) under no_grad, so they keep nothing for
    # the backward pass; their time is counted below
    if stage in ("ppo", "grpo"):
        rows = batch * int(args.get("num_generations", 1) if stage == "grpo" else 1)
    parts["activations"] = _activations(args, shape, rows, seq)
    if device == "cpu" and method in ("lora", "oft"):
        # Each adapted module's forward makes a new output-sized tensor (the base output plus the adapter's); the
        # old one is freed, but glibc keeps it in the heap (its mmap threshold rose while the weights loaded), so
        # it shows in the job's resident memory. Measured on the 40M model, pt LoRA, 16 x 64 tokens: the saved
        # tensors are 452 MB (autograd's saved-tensor hooks) while the forward grows RSS by 1015 MB.
        sizes = shape.module_sizes
        out = sum(sizes[name][1] for name in _lora_targets(args))
        parts["cpu_heap"] = rows * seq * shape.layers * out * _dtype_bytes(args)
    logit_rows = rows if stage != "rm" else 0
    parts["logits"] = _logits(args, shape, logit_rows, seq)
    if stage in ("dpo", "kto") and method not in ("lora", "oft"):
        parts["reference"] = shape.params * compute
    if stage == "ppo":
        parts["reward_model"] = 0 if args.get("reward_model_type", "lora") == "lora" else shape.params * compute
    if stage in ("ppo", "grpo") or args.get("do_predict"):
        new = int(args.get("max_new_tokens") or 128)
        kv = shape.kv_heads * shape.head_dim
        parts["kv_cache"] = rows * (seq + new) * shape.layers * 2 * kv * compute
    parts["runtime"] = CUDA_RUNTIME_BYTES if device == "cuda" else CPU_RUNTIME_BYTES

    result = Estimate(parts=parts, host=host, params=shape.params, trainable=trainable)
    tokens = mean_tokens or seq
    accumulation = int(args.get("gradient_accumulation_steps", 1))
    result.tokens_per_step = int(rows * tokens * accumulation * world_size)
    per_token = (6 if method in ("full",) else 4) * shape.params
    if method == "freeze":
        # forward over everything; backward (input and weight gradients) only through the trainable layers
        backward = _layers_backward(args, shape) * (shape.layer_linear_params + 2 * shape.hidden)
        per_token = 2 * shape.params + 2 * backward + 2 * trainable + 2 * shape.vocab * shape.hidden
    if args.get("gradient_checkpointing"):
        per_token += 2 * shape.params
    # QK^T and AV: 4 FLOPs per token, position and width forward in every layer, twice that backward in the layers
    # the backward pass goes through (freeze of the last N layers: only those)
    attention = (4 * shape.layers + 8 * _layers_backward(args, shape)) * shape.hidden * tokens
    if stage == "dpo":
        per_token += 2 * shape.params  # the reference's forward (the adapter switched off, or the reference model)
    if stage == "kto":
        # the policy's forward of the KL pairs (no_grad), and the reference's over the answers and the KL pairs
        per_token += 2 * shape.params + 4 * shape.params
    result.flops_per_step = float(result.tokens_per_step * (per_token + attention)) / world_size
    # forwards without gradients: dpo's reference; kto's KL pairs through the policy, then the reference over both
    no_grad = {"dpo": 1, "kto": 2}.get(stage, 0)
    recompute = shape.layers if args.get("gradient_checkpointing") else 0
    layer_passes = shape.layers * (1 + no_grad) + recompute + 2 * _layers_backward(args, shape)
    adapted = len(_lora_targets(args)) * shape.layers if method in ("lora", "oft") else 0
    result.layer_passes = layer_passes * accumulation
    adapter_passes = adapted * (1 + no_grad + 2 + (1 if recompute else 0))
    result.adapter_passes = adapter_passes * accumulation
    result.adapter_token_passes = adapter_passes * result.tokens_per_step // world_size
    if seconds_per_flop:
        operations = (
            layer_seconds * result.layer_passes
            + adapter_seconds * result.adapter_passes
            + adapter_token_seconds * result.adapter_token_passes
        )
        arithmetic = result.flops_per_step * seconds_per_flop
        # a CPU does both in turn; a GPU computes while the host launches the next operations
        busy = max(operations, arithmetic) if device == "cuda" else operations + arithmetic
        result.seconds_per_step = step_overhead + busy
    result.steps = _steps(args, dataset_rows, batch * accumulation * world_size)
    return result


def fit(
    args: dict[str, Any], config: dict[str, Any], device_bytes: int, **options: Any
) -> tuple[dict[str, Any], list[str]]:
    """ "Fit it": the changes that make the job fit in `device_bytes`, tried in order: the largest per-device batch
    that fits (gradient accumulation raised to keep the effective batch), gradient checkpointing, LoRA instead of
    full / freeze, 4-bit QLoRA, then halving cutoff_len. Returns the new args and one line per change ([] when the
    job already fits); the last args may still not fit (the lines say so)."""
    args = dict(args)
    changes: list[str] = []

    def fits(candidate: dict[str, Any]) -> bool:
        return estimate(candidate, config, **options).total <= device_bytes

    if fits(args):
        return args, []
    effective = int(args.get("per_device_train_batch_size", 1)) * int(args.get("gradient_accumulation_steps", 1))

    def smallest_batch(candidate: dict[str, Any]) -> dict[str, Any] | None:
        batch = int(candidate.get("per_device_train_batch_size", 1))
        while batch >= 1:
            trial = {**candidate, "per_device_train_batch_size": batch,
                     "gradient_accumulation_steps": max(1, math.ceil(effective / batch))}  # fmt: skip
            if fits(trial):
                return trial
            batch //= 2
        return None

    steps = [
        ("gradient_checkpointing", True, "gradient_checkpointing: true (activations recomputed in the backward pass)"),
        ("finetuning_type", "lora", "finetuning_type: lora (only adapters learn)"),
        ("quantization_bit", 4, "quantization_bit: 4 (QLoRA: the base weights in 4 bits)"),
    ]
    candidate = dict(args)
    for key, value, line in [(None, None, None), *steps]:
        if key is not None:
            if candidate.get(key) == value or (key == "finetuning_type" and candidate.get(key) in ("lora", "oft")):
                continue
            candidate[key] = value
            changes.append(line)
        found = smallest_batch(candidate)
        if found is not None:
            return _note_batch(found, args, changes)
    cutoff = int(candidate.get("cutoff_len", 2048))
    while cutoff > 64:
        cutoff //= 2
        candidate["cutoff_len"] = cutoff
        found = smallest_batch(candidate)
        if found is not None:
            changes.append(f"cutoff_len: {cutoff} (longer samples are truncated)")
            return _note_batch(found, args, changes)
    changes.append("still too big for this device: use more devices with DeepSpeed ZeRO-3, or a smaller model")
    return candidate, changes


def _note_batch(found: dict[str, Any], before: dict[str, Any], changes: list[str]) -> tuple[dict[str, Any], list[str]]:
    batch = found["per_device_train_batch_size"]
    if batch != int(before.get("per_device_train_batch_size", 1)):
        changes.insert(
            0,
            f"per_device_train_batch_size: {batch}, gradient_accumulation_steps: "
            f"{found['gradient_accumulation_steps']} (the same effective batch)",
        )
    return found, changes


def _zero_stage(args: dict[str, Any]) -> int:
    config = str(args.get("deepspeed") or "")
    for stage in (3, 2):
        if f"z{stage}" in config or f"zero{stage}" in config or f"stage{stage}" in config:
            return stage
    return 2 if config else 0


def _offload(args: dict[str, Any]) -> bool:
    return "offload" in str(args.get("deepspeed") or "")


def _steps(args: dict[str, Any], rows: int | None, per_step: int) -> int | None:
    if int(args.get("max_steps") or -1) > 0:
        return int(args["max_steps"])
    if rows is None:
        return None
    limit = args.get("max_samples")
    rows = min(rows, int(limit)) if limit else rows
    return math.ceil(rows / max(per_step, 1)) * max(1, math.ceil(float(args.get("num_train_epochs", 3))))


def calibrate(points: list[tuple[Estimate, float]]) -> dict[str, float]:
    """The CPU time model (`estimate`'s keyword arguments) from three measured jobs, each (its estimate, measured
    seconds per step): one whose step is mostly per-layer cost (a tiny model, full), one that adds adapters (the same
    with LoRA), and one whose step is mostly arithmetic (a bigger model). Solves the three equations
    seconds = layer_seconds x layer passes + adapter_token_seconds x adapter token passes + seconds_per_flop x FLOPs;
    a cost the measurements make negative (noise) is taken as none and the others solved again."""
    names = ("layer_seconds", "adapter_token_seconds", "seconds_per_flop")
    rows = [[e.layer_passes, e.adapter_token_passes, e.flops_per_step] for e, _ in points]
    seconds = [t for _, t in points]
    free = list(range(3))
    while True:
        solved = _least_squares([[row[i] for i in free] for row in rows], seconds)
        negative = [i for i, value in zip(free, solved, strict=True) if value <= 0 and i != 2]
        if not negative or len(free) == 1:
            break
        free.remove(negative[0])
    figure = dict.fromkeys(names, 0.0)
    for i, value in zip(free, solved, strict=True):
        figure[names[i]] = max(value, 0.0)
    figure["seconds_per_flop"] = max(figure["seconds_per_flop"], 1e-15)
    figure["step_overhead"] = 0.0
    return figure


def _least_squares(rows: list[list[float]], values: list[float]) -> list[float]:
    """x minimising |rows x - values| (the normal equations, Gauss-Jordan; a handful of unknowns), columns scaled
    to 1 first so FLOPs (1e10) and pass counts (1e2) solve together."""
    size = len(rows[0])
    scale = [max(abs(row[j]) for row in rows) or 1.0 for j in range(size)]
    a = [[row[j] / scale[j] for j in range(size)] for row in rows]
    matrix = [
        [sum(r[i] * r[j] for r in a) for j in range(size)] + [sum(r[i] * v for r, v in zip(a, values, strict=True))]
        for i in range(size)
    ]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(matrix[r][col]))
        matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
        if abs(matrix[col][col]) < 1e-12:
            continue
        for r in range(size):
            if r != col:
                factor = matrix[r][col] / matrix[col][col]
                matrix[r] = [x - factor * y for x, y in zip(matrix[r], matrix[col], strict=True)]
    return [matrix[i][size] / matrix[i][i] / scale[i] if abs(matrix[i][i]) >= 1e-12 else 0.0 for i in range(size)]


def device_seconds_per_flop(name: str) -> float:
    return 1.0 / (DEVICES[name]["tflops"] * 1e12 * MFU)


def device_time_model(name: str) -> dict[str, float]:
    """`estimate`'s time keyword arguments for a GPU of the table: its FLOP figure and the launch cost per layer
    and per adapter pass."""
    return {
        "seconds_per_flop": device_seconds_per_flop(name),
        "layer_seconds": GPU_LAYER_SECONDS,
        "adapter_seconds": GPU_ADAPTER_SECONDS,
    }


def format_bytes(count: float) -> str:
    return f"{count / GB:.2f} GB" if count >= 0.1 * GB else f"{count / 1024**2:.1f} MB"


def format_table(result: Estimate, device_bytes: int | None = None) -> str:
    lines = [f"parameters {result.params:,}, trainable {result.trainable:,}"]
    width = max(len(name) for name in result.parts)
    for name, value in result.parts.items():
        if value:
            lines.append(f"  {name:<{width}}  {format_bytes(value):>10}")
    lines.append(f"  {'total':<{width}}  {format_bytes(result.total):>10} per device")
    for name, value in result.host.items():
        lines.append(f"  host {name}: {format_bytes(value)} (offloaded)")
    if device_bytes:
        verdict = {"fits": "fits", "tight": "fits, but tight (over 85%)", "too_big": "will NOT fit"}
        share = 100 * result.total / device_bytes
        lines.append(
            f"device memory {format_bytes(device_bytes)}: {verdict[result.verdict(device_bytes)]} ({share:.0f}%)"
        )
    lines.append(f"tokens per step {result.tokens_per_step:,}, {result.flops_per_step / 1e12:.3g} TFLOP per step")
    if result.seconds_per_step is not None:
        text = f"about {result.seconds_per_step:.3g} s per step"
        if result.total_seconds is not None:
            from core.runfolder import format_hms

            text += f", {result.steps} steps, about {format_hms(result.total_seconds)} in all"
        lines.append(text)
    return "\n".join(lines)

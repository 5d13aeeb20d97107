"""Which parameters train: `lora` (peft adapters), `freeze` (the last or first N decoder layers), or `full`.

`init_adapter` is called by `load_model` after the weights are loaded; it returns the model to train (a
`PeftModel` for lora) with `requires_grad` set, and trainable parameters in fp32 unless `pure_bf16` asked for
bf16 everywhere (half-precision master weights lose small updates). Under autocast a trainable LoRA layer takes
its 16-bit input as it is rather than an fp32 copy (`no_recast_under_autocast`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError

logger = logging.getLogger(__name__)

_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")
# Output projections that LoRA "all" must leave alone: they map to the vocabulary (or to the value head).
_OUTPUT_MODULES = {"lm_head", "output", "embed_out", "v_head", "score"}


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _is_quantized(model: nn.Module) -> bool:
    return getattr(model, "quantization_method", None) is not None or getattr(model, "is_quantized", False)


def find_all_linear_modules(model: nn.Module) -> list[str]:
    """Leaf names of every linear layer except the output projection (what `lora_target: all` means)."""
    names: set[str] = set()
    for full_name, module in model.named_modules():
        leaf = full_name.split(".")[-1]
        if leaf in _OUTPUT_MODULES:
            continue
        if isinstance(module, nn.Linear) or "Linear" in type(module).__name__ and hasattr(module, "weight"):
            names.add(leaf)
    return sorted(names)


def _upcast_trainable(model: nn.Module, finetuning_args: Any) -> None:
    if getattr(finetuning_args, "pure_bf16", False):
        return
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()


def no_recast_under_autocast(model: nn.Module) -> None:
    """Under autocast (bf16 / fp16 mixed precision), a LoRA layer's input is not cast to the fp32 adapter's dtype.

    peft casts each adapted layer's input to the adapter weights' dtype; with fp32 adapters in a 16-bit model under
    autocast that makes an fp32 copy which autocast at once casts back to 16 bits: two copies per layer and pass,
    and the second is kept for the backward pass instead of the input that other layers already keep (k, v share
    q's input, up shares gate's). Autocast casts the adapter weights itself, so the values, the loss and the
    gradients are the same bits; peft's own 4-bit LoRA layer (lora.bnb.Linear4bit) already skips the cast under
    autocast, this does the same for the plain one. Without autocast (or for DoRA and the other variants) peft casts
    as before."""
    from peft.tuners.lora import Linear as LoraLinear

    def decide(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs.get("x")
        autocast = isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type)
        module.cast_input_dtype_enabled = not (autocast and not module.lora_variant)

    for module in model.modules():
        if type(module) is LoraLinear:
            module.register_forward_pre_hook(decide, with_kwargs=True)


def _setup_full(model: nn.Module) -> nn.Module:
    model.requires_grad_(True)
    return model


def trainable_layer_ids(num_layers: int, count: int, llama_pro: bool = False) -> set[int]:
    """Layers freeze tuning trains: the last `count` (first `-count`), or with LLaMA Pro the `count` blocks that
    `llamafactory-cli expand` added, the last of every `num_layers / count` layers."""
    if not llama_pro:
        return set(range(num_layers - count, num_layers)) if count > 0 else set(range(-count))
    if count < 1 or num_layers % count:
        raise ValueError(
            f"freeze_trainable_layers: received {count} — with use_llama_pro it is the number of blocks added by "
            f"`llamafactory-cli expand --num-expand`, which divides this model's {num_layers} layers."
        )
    stride = num_layers // count
    return set(range(stride - 1, num_layers, stride))


def _setup_freeze(config: Any, model: nn.Module, finetuning_args: Any) -> nn.Module:
    num_layers = config.get_text_config().num_hidden_layers
    count = int(getattr(finetuning_args, "freeze_trainable_layers", 2))
    if count == 0 or abs(count) > num_layers:
        raise ConfigError(
            f"freeze_trainable_layers: received {count} — this model has {num_layers} layers; use 1..{num_layers} "
            f"(the last layers) or -1..-{num_layers} (the first layers)."
        )
    layer_ids = trainable_layer_ids(num_layers, count, finetuning_args.use_llama_pro)

    layer_children: set[str] = set()
    extra_children: set[str] = set()
    for name, _ in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        if match:
            layer_children.add(name[match.end() :].split(".")[0])
        else:
            extra_children.update(name.split(".")[:-1])

    modules = _split(getattr(finetuning_args, "freeze_trainable_modules", "all")) or ["all"]
    if modules != ["all"]:
        unknown = [m for m in modules if m not in layer_children]
        if unknown:
            raise ConfigError(
                f"freeze_trainable_modules: received {','.join(unknown)} — not a module of a decoder layer; "
                f"choose from all, {', '.join(sorted(layer_children))}."
            )
    extras = _split(getattr(finetuning_args, "freeze_extra_modules", None))
    unknown = [m for m in extras if m not in extra_children]
    if unknown:
        raise ConfigError(
            f"freeze_extra_modules: received {','.join(unknown)} — not a module outside the decoder layers; "
            f"choose from {', '.join(sorted(extra_children))}."
        )

    for name, param in model.named_parameters():
        match = _LAYER_INDEX.search(name)
        if match:
            child = name[match.end() :].split(".")[0]
            trainable = int(match.group(1)) in layer_ids and (modules == ["all"] or child in modules)
        else:
            trainable = any(part in extras for part in name.split(".")[:-1])
        param.requires_grad_(trainable)
    logger.info("Freeze: training layers %s (modules %s) and %s", sorted(layer_ids), ",".join(modules), extras or "-")
    return model


def _setup_lora(model: nn.Module, model_args: Any, finetuning_args: Any, is_trainable: bool) -> nn.Module:
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model

    adapters = _split(getattr(model_args, "adapter_name_or_path", None))
    quantized = _is_quantized(model)
    create_new = bool(getattr(finetuning_args, "create_new_adapter", False))

    if is_trainable and not create_new and adapters:
        to_merge, to_resume = adapters[:-1], adapters[-1]
    elif not is_trainable and quantized and adapters:
        to_merge, to_resume = adapters[:-1], adapters[-1]
    else:
        to_merge, to_resume = adapters, None
    if quantized and to_merge:
        raise ConfigError(
            f"adapter_name_or_path: {len(adapters)} adapters on a quantized model — a quantized model cannot merge "
            "adapters; give one adapter, or export a merged model first and quantize that."
        )

    for adapter in to_merge:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    if to_merge:
        logger.info("Merged %d adapter(s): %s", len(to_merge), ", ".join(to_merge))
    if to_resume is not None:
        model = PeftModel.from_pretrained(model, to_resume, is_trainable=is_trainable)
        logger.info("Loaded adapter %s (%s)", to_resume, "training on" if is_trainable else "frozen")

    if is_trainable and to_resume is None and finetuning_args.finetuning_type == "oft":
        return get_peft_model(model, _oft_config(model, finetuning_args))
    if is_trainable and to_resume is None:
        targets = _split(getattr(finetuning_args, "lora_target", "all")) or ["all"]
        if targets == ["all"]:
            targets = find_all_linear_modules(model)
        else:
            available = set(find_all_linear_modules(model))
            unknown = [t for t in targets if t not in available]
            if unknown:
                raise ConfigError(
                    f"lora_target: received {','.join(unknown)} — no linear layer of that name in this model; "
                    f"use all, or some of {', '.join(sorted(available))}."
                )
        rank = int(getattr(finetuning_args, "lora_rank", 8))
        alpha = getattr(finetuning_args, "lora_alpha", None) or 2 * rank
        init_weights: bool | str = True
        if getattr(finetuning_args, "pissa_init", False):
            niter = int(getattr(finetuning_args, "pissa_iter", 16))
            init_weights = "pissa" if niter == -1 else f"pissa_niter_{niter}"
        lora_config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=rank,
            lora_alpha=alpha,
            lora_dropout=float(getattr(finetuning_args, "lora_dropout", 0.0)),
            target_modules=targets,
            modules_to_save=_split(getattr(finetuning_args, "additional_target", None)) or None,
            use_rslora=bool(getattr(finetuning_args, "use_rslora", False)),
            use_dora=bool(getattr(finetuning_args, "use_dora", False)),
            init_lora_weights=init_weights,
        )
        model = get_peft_model(model, lora_config)
        logger.info("LoRA rank %d alpha %s on %s", rank, alpha, ",".join(targets))
    return model


def _oft_config(model: nn.Module, finetuning_args: Any):
    """peft's OFT: each targeted linear layer's output rotated by a learned block-diagonal orthogonal matrix."""
    from peft import OFTConfig, TaskType

    targets = _split(finetuning_args.oft_target) or ["all"]
    available = find_all_linear_modules(model)
    if targets == ["all"]:
        targets = available
    elif unknown := [t for t in targets if t not in available]:
        raise ValueError(
            f"oft_target: received {','.join(unknown)} — no linear layer of that name in this model; "
            f"use all, or some of {', '.join(sorted(available))}."
        )
    logger.info("OFT rank %d block size %d on %s", finetuning_args.oft_rank, finetuning_args.oft_block_size, targets)
    return OFTConfig(
        task_type=TaskType.CAUSAL_LM,
        r=finetuning_args.oft_rank,
        oft_block_size=finetuning_args.oft_block_size,
        module_dropout=finetuning_args.module_dropout,
        target_modules=targets,
        modules_to_save=_split(finetuning_args.additional_target) or None,
    )


def init_adapter(
    config: Any, model: nn.Module, model_args: Any, finetuning_args: Any, is_trainable: bool
) -> nn.Module:
    """Set up the fine-tuning method; see the module docstring."""
    method = getattr(finetuning_args, "finetuning_type", "lora")
    if method not in ("lora", "oft") and getattr(model_args, "adapter_name_or_path", None):
        raise ConfigError(
            f"adapter_name_or_path: set with finetuning_type: {method}; adapters load only with finetuning_type: "
            "lora (or oft)."
        )
    if method not in ("lora", "freeze", "full", "oft"):
        raise ConfigError(f"finetuning_type: received {method!r} — use lora, freeze, full or oft.")
    if _is_quantized(model) and is_trainable and method != "lora":
        raise ConfigError(
            f"quantization_bit with finetuning_type: {method} — a quantized model trains only with lora."
        )

    if not is_trainable:
        if method in ("lora", "oft"):
            model = _setup_lora(model, model_args, finetuning_args, is_trainable=False)
        return model

    if method == "full":
        model = _setup_full(model)
    elif method == "freeze":
        model = _setup_freeze(config, model, finetuning_args)
    else:
        model = _setup_lora(model, model_args, finetuning_args, is_trainable=True)
        no_recast_under_autocast(model)
    _upcast_trainable(model, finetuning_args)
    return model

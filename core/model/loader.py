"""Load the tokenizer and the model for a run: path resolution, compute dtype, quantization, adapters, value head.

Every check that can fail (missing path, quantization without CUDA, a dtype the device lacks) runs before any
weights are read, so a mistake costs a second, not a model load.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from core.errors import ConfigError, ModelPathError
from core.model.adapter import init_adapter
from core.model.valuehead import ValueHeadModel, load_value_head
from core.preflight import model_path_problem

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_ATTN_IMPLEMENTATION = {
    "auto": None,
    "disabled": "eager",
    "eager": "eager",
    "sdpa": "sdpa",
    "fa2": "flash_attention_2",
}


def resolve_model_path(name_or_path: str) -> str:
    """`demo` / `demo-small` -> the offline demo model (built on first use); a local folder or hub id unchanged."""
    if not name_or_path:
        raise ConfigError("model_name_or_path: received nothing — set it to a model folder, a hub id, or `demo`.")
    from core.demo import resolve_model_path as resolve_demo

    return str(resolve_demo(name_or_path))


def _check_model_path(path: str, model_args: Any) -> None:
    """A missing local folder or an uncached hub id gives one error naming it, not a hub traceback."""
    problem = model_path_problem(path, model_args.cache_dir)
    if problem:
        raise ModelPathError(problem)


def _common_kwargs(model_args: Any) -> dict[str, Any]:
    return {
        "trust_remote_code": bool(model_args.trust_remote_code),
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision or "main",
    }


def _split(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def load_tokenizer(model_args: Any) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with `new_special_tokens` added. Resolves `demo` and fails clearly on a bad path."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_args.model_name_or_path)
    _check_model_path(path, model_args)
    tokenizer = AutoTokenizer.from_pretrained(
        path,
        use_fast=model_args.use_fast_tokenizer,
        split_special_tokens=model_args.split_special_tokens,
        **_common_kwargs(model_args),
    )
    new_tokens = _split(model_args.new_special_tokens)
    if new_tokens:
        added = tokenizer.add_special_tokens({"extra_special_tokens": new_tokens}, replace_extra_special_tokens=False)
        if added and not model_args.resize_vocab:
            model_args.resize_vocab = True
            logger.info("Added %d new special tokens; resize_vocab turned on so the embeddings grow.", added)
    return tokenizer


def infer_compute_dtype(training_args: Any, finetuning_args: Any) -> torch.dtype:
    """fp32 / fp16 / bf16 / pure_bf16 -> the torch dtype, with an error when the device cannot compute in it."""
    pure_bf16 = bool(finetuning_args.pure_bf16)
    cuda = torch.cuda.is_available() and not training_args.use_cpu
    if pure_bf16 or training_args.bf16:
        key = "pure_bf16" if pure_bf16 else "bf16"
        if cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"{key}: true, but this GPU ({torch.cuda.get_device_name()}) has no bfloat16 support — "
                "use fp16: true, or no mixed precision."
            )
        return torch.bfloat16
    if training_args.fp16:
        if not cuda:
            raise ConfigError(
                "fp16: true needs a CUDA GPU; this run is on the CPU — remove fp16 (train in fp32), or use bf16: true "
                "on a CPU that supports it."
            )
        return torch.float16
    return torch.float32


def _check_quantization(model_args: Any) -> dict[str, Any]:
    bits = model_args.quantization_bit
    if not bits:
        return {}
    if int(bits) not in (4, 8):
        raise ConfigError(f"quantization_bit: received {bits} — use 4 or 8 (bitsandbytes), or leave it empty.")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"quantization_bit: {bits} needs a CUDA GPU (bitsandbytes QLoRA); this machine has none — remove "
            "quantization_bit to train the model unquantized."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"quantization_bit: {bits} needs the bitsandbytes package — `pip install llamaboard[gpu]`."
        ) from err
    from transformers import BitsAndBytesConfig

    compute_dtype = model_args.compute_dtype or torch.float16
    if int(bits) == 8:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=bool(model_args.double_quantization),
            bnb_4bit_quant_type=model_args.quantization_type or "nf4",
            bnb_4bit_quant_storage=compute_dtype,
        )
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def _load_dtype(model_args: Any, finetuning_args: Any, is_trainable: bool) -> torch.dtype:
    """Frozen weights live in the compute dtype; a full fine-tune keeps fp32 master weights unless pure_bf16."""
    compute_dtype = model_args.compute_dtype
    if compute_dtype is None:
        infer = model_args.infer_dtype or "auto"
        compute_dtype = {
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
            "float32": torch.float32,
        }.get(infer, torch.float32)
    full = finetuning_args.finetuning_type == "full"
    if is_trainable and full and not finetuning_args.pure_bf16:
        return torch.float32
    return compute_dtype


def _apply_rope_scaling(config: Any, model_args: Any) -> None:
    """`rope_scaling` (linear / dynamic / yarn / llama3) stretches the positions the model was trained on to
    cutoff_len; the factor is the smallest whole number that covers it."""
    kind = model_args.rope_scaling
    if not kind:
        return
    text_config = config.get_text_config()
    trained = getattr(text_config, "max_position_embeddings", None)
    wanted = model_args.model_max_length
    if not trained or not wanted or wanted <= trained:
        logger.warning(
            "rope_scaling: %s not applied — cutoff_len (%s) fits the model's %s positions.", kind, wanted, trained
        )
        return
    factor = float(math.ceil(wanted / trained))
    params = dict(getattr(text_config, "rope_parameters", None) or {})
    params.update({"rope_type": kind, "factor": factor})
    if kind in ("yarn", "llama3"):
        params["original_max_position_embeddings"] = trained
    if kind == "llama3":
        params.setdefault("low_freq_factor", 1.0)
        params.setdefault("high_freq_factor", 4.0)
    text_config.rope_parameters = params
    text_config.max_position_embeddings = int(trained * factor)
    logger.info("rope_scaling: %s, factor %.0f (%d -> %d positions)", kind, factor, trained, trained * factor)


def load_model(
    tokenizer: PreTrainedTokenizerBase,
    model_args: Any,
    finetuning_args: Any,
    is_trainable: bool,
    add_valuehead: bool = False,
) -> PreTrainedModel | ValueHeadModel:
    """The causal LM with adapters set up for `finetuning_args.finetuning_type`.

    `is_trainable=False` gives an eval-mode model with every adapter merged or loaded frozen (chat, export, reference
    and reward models). `add_valuehead=True` wraps it in `ValueHeadModel`; the head is restored from
    `value_head.safetensors` in the last adapter folder (or the model folder) when there is one.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(model_args.model_name_or_path)
    _check_model_path(path, model_args)
    quant_kwargs = _check_quantization(model_args)
    common = _common_kwargs(model_args)

    config = AutoConfig.from_pretrained(path, **common)
    _apply_rope_scaling(config, model_args)
    if model_args.enable_liger_kernel:
        logger.warning("enable_liger_kernel: not applied by this version; training uses the standard kernels.")
    dtype = _load_dtype(model_args, finetuning_args, is_trainable)
    kwargs: dict[str, Any] = {"config": config, "dtype": dtype, **common, **quant_kwargs}
    attn = _ATTN_IMPLEMENTATION.get(model_args.flash_attn or "auto")
    if attn:
        kwargs["attn_implementation"] = attn
    if model_args.train_from_scratch:
        kwargs.pop("quantization_config", None)
        kwargs.pop("device_map", None)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=common["trust_remote_code"])
    else:
        model = AutoModelForCausalLM.from_pretrained(path, low_cpu_mem_usage=model_args.low_cpu_mem_usage, **kwargs)

    if model_args.resize_vocab and model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
        logger.info(
            "Resized embeddings to %d for the tokenizer's %d tokens.",
            model.get_input_embeddings().num_embeddings,
            len(tokenizer),
        )

    # The padded batches we feed carry attention masks; a missing pad id would only produce warnings in generate.
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id

    if quant_kwargs and is_trainable:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)

    model = init_adapter(config, model, model_args, finetuning_args, is_trainable)

    if add_valuehead:
        model = ValueHeadModel(model)
        sources = _split(model_args.adapter_name_or_path) or [path]
        if not load_value_head(model, sources[-1]) and not is_trainable:
            raise ModelPathError(
                f"{sources[-1]}: no value_head.safetensors — a reward model must be a folder written by the rm stage."
            )

    if is_trainable:
        model.train()
    else:
        model.requires_grad_(False)
        model.eval()

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    if is_trainable:
        logger.info("Trainable parameters: %s of %s (%.4f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    else:
        logger.info("Loaded %s for inference: %s parameters", path, f"{total:,}")
    if model_args.print_param_status:
        for name, param in model.named_parameters():
            logger.info("%s: %s %s trainable=%s", name, param.dtype, param.device, param.requires_grad)
    return model

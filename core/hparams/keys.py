"""What a key of the argument dict may hold, and the keys that are not fields. Pure: no training stack imported.

A key's `Spec` is derived from its dataclass field's type hint (`int | None` -> kind "int", optional). The
training keys come from transformers' `Seq2SeqTrainingArguments`, which the board may not import, so
`TRAINING_SPECS` is a snapshot of them; `tests/test_hparams.py` fails with the fresh snapshot to paste when the
installed transformers adds or changes a field.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = [
    "IGNORED_KEYS",
    "REWARD_FUNCS",
    "TRAINING_SPECS",
    "UNSUPPORTED_KEYS",
    "UNSUPPORTED_VALUES",
    "Spec",
    "coerce",
    "field_specs",
    "spec_of",
    "split_arg",
]

# grpo's built-in reward functions (core/train/rewards.py implements them; a test keeps the two in step).
REWARD_FUNCS = ("exact_match", "numeric", "math", "format", "length", "rm")

_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n"}


@dataclass(frozen=True)
class Spec:
    """A key's type: kind is bool, int, float, str, choice (one of `choices`) or any (passed through)."""

    kind: str
    optional: bool = False
    choices: tuple[str, ...] = ()

    def encode(self) -> str:
        text = self.kind + (":" + ",".join(self.choices) if self.choices else "")
        return text + ("?" if self.optional else "")

    @classmethod
    def decode(cls, text: str) -> Spec:
        optional = text.endswith("?")
        text = text.rstrip("?")
        kind, _, choices = text.partition(":")
        return cls(kind, optional, tuple(choices.split(",")) if choices else ())


def spec_of(hint: Any) -> Spec:
    """The Spec of a type hint: `str | None` -> Spec("str", True); `Literal["a", "b"]` -> a choice."""
    if get_origin(hint) in (Union, types.UnionType):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        optional = len(members) < len(get_args(hint))
    else:
        members, optional = [hint], False
    if len(members) == 1:
        member = members[0]
        if get_origin(member) is Literal:
            return Spec("choice", optional, tuple(str(choice) for choice in get_args(member)))
        if member in _SCALARS:
            return Spec(_SCALARS[member], optional)
        return Spec("any", optional)
    # transformers types its named options as `SomeEnum | str`: a plain string for us.
    if str in members and all(
        member is str or (isinstance(member, type) and issubclass(member, enum.Enum)) for member in members
    ):
        return Spec("str", optional)
    return Spec("any", optional)


def field_specs(cls: type) -> dict[str, Spec]:
    """The Spec of every init field of a dataclass, by name."""
    try:
        hints = get_type_hints(cls)
    except Exception:  # a forward reference that does not resolve: fall back to the raw annotations
        hints = {}
    return {f.name: spec_of(hints.get(f.name, f.type)) for f in fields(cls) if f.init}


def coerce(value: Any, spec: Spec) -> Any:
    """`value` converted to the spec's kind, or ValueError saying what was expected (YAML's "1e-4" is a str)."""
    if value is None:
        if spec.optional or spec.kind == "any":
            return None
        raise ValueError(f"expected {_expected(spec)}, not null")
    kind = spec.kind
    if kind == "any":
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif kind == "float":
        number = _number(value)
        if number is not None:
            return float(number)
    elif kind in ("str", "choice"):
        text = _text(value)
        if text is not None and (kind == "str" or text in spec.choices):
            return text
    raise ValueError(f"expected {_expected(spec)}")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip().replace("_", ""))
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    # `dataset: [a, b]` in YAML means the comma list "a,b".
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return ",".join(str(item) for item in value)
    return None


def _expected(spec: Spec) -> str:
    return {
        "bool": "true or false",
        "int": "a whole number",
        "float": "a number",
        "str": "text",
        "choice": "one of " + ", ".join(spec.choices),
    }.get(spec.kind, "a value")


def split_arg(value: str | list[str] | None) -> list[str]:
    """A comma list as YAML gives it ("a, b" or [a, b]) -> ["a", "b"]; None -> []."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


# LLaMA-Factory keys for features we do not have. A YAML that leaves them at LLaMA-Factory's default runs; one
# that turns them on gets "not supported yet" instead of "unknown key". key -> (values meaning off, what it is).
_MULTIMODAL = "multimodal (image / video / audio) training"
UNSUPPORTED_KEYS: dict[str, tuple[tuple[Any, ...], str]] = {
    "use_mca": ((False,), "Megatron-Core training"),
    "use_megatron_bridge": ((False,), "Megatron Bridge training"),
    "use_hyper_parallel": ((False,), "HyperParallel training"),
    "use_unsloth_gc": ((False,), "Unsloth gradient checkpointing"),
    "use_kt": ((False,), "KTransformers"),
    "use_v1_kernels": ((False, None), "LLaMA-Factory v1 kernels"),
    "fp8": ((False,), "FP8 training"),
    "add_tokens": ((None,), "adding plain (non-special) tokens"),
    "shift_attn": ((False,), "shift short attention (S^2-Attn)"),
    "mixture_of_depths": ((None,), "mixture of depths"),
    "moe_aux_loss_coef": ((None,), "a custom MoE auxiliary loss coefficient"),
    "upcast_layernorm": ((False,), "upcasting layer norms"),
    "upcast_lmhead_output": ((False,), "upcasting the LM head output"),
    "enable_torch_profiler": ((False,), "the torch profiler"),
    "ray_num_workers": ((1,), "Ray training"),
    "infer_backend": (("huggingface", "hf"), "vLLM / SGLang inference (infer_backend: huggingface works)"),
    "quantization_device_map": ((None,), "a device map for quantized training"),
    "export_quantization_bit": ((None,), "quantizing on export (GPTQ)"),
    "ref_model_quantization_bit": ((None,), "quantizing the reference model"),
    "reward_model_quantization_bit": ((None,), "quantizing the reward model"),
    "pref_bco_weight": ((0, 0.0), "the BCO loss term"),
    "ld_alpha": ((None,), "LD-DPO"),
    "image_max_pixels": ((768 * 768,), _MULTIMODAL),
    "image_min_pixels": ((32 * 32,), _MULTIMODAL),
    "video_max_pixels": ((256 * 256,), _MULTIMODAL),
    "video_min_pixels": ((16 * 16,), _MULTIMODAL),
    "video_fps": ((2, 2.0), _MULTIMODAL),
    "video_maxlen": ((128,), _MULTIMODAL),
    "image_do_pan_and_scan": ((False,), _MULTIMODAL),
    "crop_to_patches": ((False,), _MULTIMODAL),
    "use_audio_in_video": ((False,), _MULTIMODAL),
    "media_dir": ((None,), _MULTIMODAL),
    "freeze_vision_tower": ((True,), _MULTIMODAL),
    "freeze_multi_modal_projector": ((True,), _MULTIMODAL),
    "freeze_language_model": ((False,), _MULTIMODAL),
}

# Choices of real fields that LLaMA-Factory has and we do not: key -> {value: what it is}.
UNSUPPORTED_VALUES: dict[str, dict[str, str]] = {
    "quantization_method": {
        method: f"loading {method.upper()}-quantized models"
        for method in ("gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8")
    },
    "reward_model_type": {"api": "a reward model behind an API"},
    "mix_strategy": {"interleave_once": "interleave_once mixing"},
    "flash_attn": {"fa3": "FlashAttention-3"},
    "tool_format": {
        name: f"the {family} tool-call format; that family has no template here"
        for name, family in (
            ("glm4_moe", "GLM-4.5 MoE"),
            ("minimax1", "MiniMax-M1"),
            ("minimax2", "MiniMax-M2"),
            ("seed_oss", "Seed-OSS"),
            ("ling", "Ling"),
            ("lfm", "LFM2"),
        )
    },  # fmt: skip
}

# LLaMA-Factory keys that have no effect here: accepted and dropped with a note saying why.
IGNORED_KEYS: dict[str, str] = {
    "disable_gradient_checkpointing": (
        "gradient checkpointing is on only when the job would not fit in memory without it; "
        "true keeps it off (as gradient_checkpointing: false does)"
    ),
    "use_reentrant_gc": "gradient checkpointing options go in gradient_checkpointing_kwargs",
    "hf_hub_token": "set the HF_TOKEN environment variable instead, so the token never lands in job.yaml",
    "ms_hub_token": "ModelScope is not supported; models load from local folders or the Hugging Face hub",
    "om_hub_token": "Modelers is not supported; models load from local folders or the Hugging Face hub",
    "offload_folder": "models are not offloaded to disk",
    "use_kv_cache": "generation always uses the KV cache",
    "data_shared_file_system": "every node prepares its own dataset cache",
    "eval_num_beams": "set generation_num_beams instead",
    "adapter_folder": "list the adapters in adapter_name_or_path",
    "init_special_tokens": "new special tokens start from the model's default initialization",
    "new_special_tokens_config": "list new special tokens in new_special_tokens",
    "preserve_thinking": "thinking content is kept as the dataset gives it",
    "master_addr": "torchrun reads MASTER_ADDR from the environment",
    "master_port": "torchrun reads MASTER_PORT from the environment",
}
# Settings of features that are off (see UNSUPPORTED_KEYS): harmless on their own.
_SETTINGS_OF_UNSUPPORTED = {
    "secrets stay in the environment: set SWANLAB_API_KEY (Lark alerts are not wired)": "swanlab_api_key "
    "swanlab_lark_webhook_url swanlab_lark_secret",
    "vLLM is not supported": "vllm_maxlen vllm_gpu_util vllm_enforce_eager vllm_max_lora_rank vllm_config",
    "SGLang is not supported": "sglang_maxlen sglang_mem_fraction sglang_tp_size sglang_config sglang_lora_backend",
    "KTransformers is not supported": "kt_cpu_activation kt_weight_path kt_non_expert_weight_path "
    "kt_expert_checkpoint_path kt_use_lora_experts kt_lora_expert_num kt_lora_expert_intermediate_size",
    "quantizing on export is not supported": "export_quantization_dataset export_quantization_nsamples "
    "export_quantization_maxlen",
    "Ray is not supported": "ray_init_kwargs ray_run_name ray_storage_path ray_storage_filesystem "
    "resources_per_worker placement_strategy",
    "the torch profiler is not supported": "profiler_output_dir profiler_wait_steps profiler_warmup_steps "
    "profiler_active_steps profiler_repeat profiler_record_shapes profiler_profile_memory profiler_with_stack "
    "profile_modules",
    "FP8 training is not supported": "fp8_backend fp8_enable_fsdp_float8_all_gather",
    "blocks are added by `llamafactory-cli expand --num-expand N`": "llama_pro_num_layers",
    "HyperParallel and Megatron are not supported": "hyper_parallel_args hyper_parallel_cp_size megatron_bridge_args",
    "audio input is not supported": "audio_sampling_rate",
    "BAdam runs in layer mode here (badam_mode: layer)": "badam_update_ratio badam_mask_mode",
}
IGNORED_KEYS.update({key: why for why, keys in _SETTINGS_OF_UNSUPPORTED.items() for key in keys.split()})

# Snapshot of our TrainingArguments (transformers 5.24 Seq2SeqTrainingArguments plus overwrite_output_dir), so
# that check_dict knows these keys without importing transformers. Regenerate when tests/test_hparams.py says so.
_TRAINING_SPEC_TEXT = {
    "output_dir": "str?",
    "per_device_train_batch_size": "int",
    "num_train_epochs": "float",
    "max_steps": "int",
    "learning_rate": "float",
    "lr_scheduler_type": "str",
    "lr_scheduler_kwargs": "any?",
    "warmup_steps": "float",
    "optim": "str",
    "optim_args": "str?",
    "weight_decay": "float",
    "adam_beta1": "float",
    "adam_beta2": "float",
    "adam_epsilon": "float",
    "optim_target_modules": "any?",
    "gradient_accumulation_steps": "int",
    "average_tokens_across_devices": "bool",
    "max_grad_norm": "float",
    "label_smoothing_factor": "float",
    "bf16": "bool",
    "fp16": "bool",
    "bf16_full_eval": "bool",
    "fp16_full_eval": "bool",
    "tf32": "bool?",
    "activation_checkpointing": "bool?",
    "activation_checkpointing_kwargs": "any?",
    "gradient_checkpointing": "bool?",
    "gradient_checkpointing_kwargs": "any?",
    "torch_compile": "bool",
    "torch_compile_backend": "str?",
    "torch_compile_mode": "str?",
    "use_liger_kernel": "bool",
    "liger_kernel_config": "any?",
    "use_cache": "bool",
    "neftune_noise_alpha": "float?",
    "torch_empty_cache_steps": "int?",
    "auto_find_batch_size": "bool",
    "logging_strategy": "str",
    "logging_steps": "float",
    "logging_first_step": "bool",
    "log_on_each_node": "bool",
    "logging_nan_inf_filter": "bool",
    "include_num_input_tokens_seen": "any",
    "log_level": "str",
    "log_level_replica": "str",
    "disable_tqdm": "bool?",
    "report_to": "any?",
    "run_name": "str?",
    "project": "str",
    "trackio_space_id": "str?",
    "trackio_bucket_id": "str?",
    "trackio_static_space_id": "any?",
    "eval_strategy": "str",
    "eval_steps": "float?",
    "eval_delay": "float",
    "per_device_eval_batch_size": "int",
    "prediction_loss_only": "bool",
    "eval_on_start": "bool",
    "eval_do_concat_batches": "bool",
    "eval_use_gather_object": "bool",
    "eval_accumulation_steps": "int?",
    "include_for_metrics": "any",
    "batch_eval_metrics": "bool",
    "save_only_model": "bool",
    "save_strategy": "str",
    "save_steps": "float",
    "save_on_each_node": "bool",
    "save_total_limit": "int?",
    "enable_jit_checkpoint": "bool",
    "push_to_hub": "bool",
    "hub_token": "str?",
    "hub_private_repo": "bool?",
    "hub_model_id": "str?",
    "hub_strategy": "str",
    "hub_always_push": "bool",
    "hub_revision": "str?",
    "load_best_model_at_end": "bool",
    "metric_for_best_model": "str?",
    "greater_is_better": "bool?",
    "ignore_data_skip": "bool",
    "restore_callback_states_from_checkpoint": "bool",
    "full_determinism": "bool",
    "seed": "int",
    "data_seed": "int?",
    "use_cpu": "bool",
    "accelerator_config": "any?",
    "parallelism_config": "any?",
    "dataloader_drop_last": "bool",
    "dataloader_num_workers": "int",
    "dataloader_pin_memory": "bool",
    "dataloader_persistent_workers": "bool",
    "dataloader_prefetch_factor": "int?",
    "dataloader_multiprocessing_context": "str?",
    "dataloader_in_order": "bool",
    "remove_unused_columns": "bool",
    "label_names": "any?",
    "train_sampling_strategy": "str",
    "length_column_name": "str",
    "ddp_find_unused_parameters": "bool?",
    "ddp_bucket_cap_mb": "int?",
    "ddp_broadcast_buffers": "bool?",
    "ddp_static_graph": "bool?",
    "ddp_backend": "str?",
    "ddp_timeout": "int",
    "fsdp": "str?",
    "fsdp_config": "any?",
    "deepspeed": "any?",
    "debug": "any",
    "skip_memory_metrics": "bool",
    "do_train": "bool",
    "do_eval": "bool",
    "do_predict": "bool",
    "resume_from_checkpoint": "str?",
    "local_rank": "int",
    "sortish_sampler": "bool",
    "predict_with_generate": "bool",
    "generation_max_length": "int?",
    "generation_num_beams": "int?",
    "generation_config": "any?",
    "overwrite_output_dir": "bool",
}
TRAINING_SPECS: dict[str, Spec] = {name: Spec.decode(text) for name, text in _TRAINING_SPEC_TEXT.items()}

"""Which model to load and how: ModelArguments. Pure: no training stack imported."""

from dataclasses import dataclass, field
from typing import Any, Literal

from core.hparams.keys import split_arg


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelArguments:
    """The model, its tokenizer, adapters to load, quantization, attention and export settings.

    Defaults that differ from LLaMA-Factory's: none in value. `trust_remote_code` is False here as there, but the
    board never turns it on for you (LlamaBoard always did).
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata=_help(
            "Local model folder, Hugging Face hub id, or `demo` for the offline demo model (`demo-small`: ~30M). "
            "Required by every stage."
        ),
    )
    adapter_name_or_path: str | None = field(
        default=None,
        metadata=_help(
            "Comma list of LoRA adapter folders, applied in order. Training continues the last one (the others are "
            "merged first) unless create_new_adapter; chat and export apply them all. None: no adapter."
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_help("Where downloaded hub models are cached. None: the Hugging Face default (HF_HOME)."),
    )
    use_fast_tokenizer: bool = field(
        default=True, metadata=_help("Use the Rust (tokenizers) tokenizer when the model has one. All stages.")
    )
    resize_vocab: bool = field(
        default=False,
        metadata=_help("Resize the embeddings to the tokenizer's vocabulary (and make them trainable). Training."),
    )
    split_special_tokens: bool = field(
        default=False,
        metadata=_help("Tokenize special-token text found in the data as plain text instead of as one special token."),
    )
    new_special_tokens: str | None = field(
        default=None,
        metadata=_help(
            "Comma list of special tokens to add to the tokenizer (turns resize_vocab on). None: add none."
        ),
    )
    model_revision: str = field(
        default="main", metadata=_help("Hub revision to load: a branch, tag or commit id. Ignored for local folders.")
    )
    low_cpu_mem_usage: bool = field(
        default=True, metadata=_help("Load weights without a second full copy in memory. All stages.")
    )
    rope_scaling: Literal["linear", "dynamic", "yarn", "llama3"] | None = field(
        default=None,
        metadata=_help(
            "RoPE scaling to reach a cutoff_len beyond the model's context; the factor is cutoff_len / context. "
            "None: the model's own setting."
        ),
    )
    flash_attn: Literal["auto", "disabled", "sdpa", "fa2"] = field(
        default="auto",
        metadata=_help(
            "Attention kernel: auto lets transformers pick (sdpa where available), disabled = eager, sdpa = "
            "torch scaled_dot_product_attention, fa2 = FlashAttention-2 (CUDA and the flash-attn package)."
        ),
    )
    enable_liger_kernel: bool = field(
        default=False, metadata=_help("Use Liger kernels (needs the liger-kernel package and a CUDA GPU). Training.")
    )
    use_unsloth: bool = field(
        default=False, metadata=_help("Unsloth's patched training. Not supported yet: must stay false.")
    )
    quantization_bit: int | None = field(
        default=None,
        metadata=_help(
            "Load the base model in 4 or 8 bits (QLoRA) through bitsandbytes, CUDA only; needs finetuning_type "
            "lora. None: no quantization."
        ),
    )
    quantization_method: Literal["bnb"] = field(
        default="bnb", metadata=_help("How to quantize on load: bnb (bitsandbytes) is the one method supported.")
    )
    quantization_type: Literal["nf4", "fp4"] = field(
        default="nf4", metadata=_help("4-bit number format for bitsandbytes: nf4 (normal float) or fp4.")
    )
    double_quantization: bool = field(
        default=True, metadata=_help("Also quantize the 4-bit quantization constants (saves ~0.4 bit/parameter).")
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=_help(
            "Run Python code shipped with a hub model or dataset. Only turn on for sources you trust. All stages."
        ),
    )
    infer_dtype: Literal["auto", "float16", "bfloat16", "float32"] = field(
        default="auto",
        metadata=_help("Weights dtype for chat, predict and export: auto = the dtype in the model's config."),
    )
    export_dir: str | None = field(
        default=None, metadata=_help("Export: folder to write the merged model to. Required by export.")
    )
    export_size: float = field(
        default=5, metadata=_help("Export: largest shard file, in GB (a fraction such as 0.5 is allowed).")
    )
    export_device: Literal["cpu", "auto"] = field(
        default="cpu", metadata=_help("Export: device used to merge adapters; auto = the GPU when there is one.")
    )
    export_hub_model_id: str | None = field(
        default=None, metadata=_help("Export: also push to this hub repository (needs HF_TOKEN). None: do not push.")
    )
    export_overwrite: bool = field(
        default=False,
        metadata=_help("Export: write into an export_dir that already holds files (they may be replaced)."),
    )
    export_legacy_format: bool = field(
        default=False,
        metadata=_help("Export: write .bin files instead of safetensors. Ignored: we always write safetensors."),
    )
    print_param_status: bool = field(
        default=False, metadata=_help("Log every parameter's name, dtype, device and trainable flag after loading.")
    )
    train_from_scratch: bool = field(
        default=False,
        metadata=_help("Initialize the weights randomly from the config instead of loading them. Training."),
    )

    # Filled by get_train_args / get_infer_args from the other groups; not keys of the argument dict.
    compute_dtype: Any = field(
        default=None, init=False, metadata=_help("torch dtype of training (bf16 / fp16), None = float32.")
    )
    model_max_length: int | None = field(default=None, init=False, metadata=_help("= cutoff_len."))
    block_diag_attn: bool = field(
        default=False, init=False, metadata=_help("= neat_packing: packed samples must not attend to each other.")
    )

    @property
    def adapters(self) -> list[str]:
        """adapter_name_or_path as a list."""
        return split_arg(self.adapter_name_or_path)

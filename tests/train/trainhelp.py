"""Helpers shared by the training tests, under a module name of their own (`from conftest import ...` is
ambiguous when pytest collects several conftest.py files in one run)."""

from __future__ import annotations

import os
from typing import Any

_DATASETS = {
    "pt": "demo_pt",
    "sft": "demo_sft",
    "rm": "demo_pref",
    "dpo": "demo_pref",
    "kto": "demo_kto",
    "ppo": "demo_ppo",
    "grpo": "demo_grpo",
}


def train_args(output_dir: str | os.PathLike, stage: str = "sft", **overrides: Any) -> dict[str, Any]:
    """An argument dict for a short CPU run of `stage` on the demo model and demo data."""
    args: dict[str, Any] = {
        "model_name_or_path": "demo",
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "template": "chatml",
        "dataset_dir": "demo",
        "dataset": _DATASETS[stage],
        "cutoff_len": 64,
        "max_samples": 200,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-3,
        "max_steps": 20,
        "logging_steps": 2,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "plot_loss": False,
    }
    args.update(overrides)
    return args


# A tiny random Llama for trainer unit tests (no tokenizer, no demo model), and LoRA on it.
def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))

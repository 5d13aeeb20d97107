"""What ppo's and grpo's own training loops (ppo_trainer.PPOTrainer, grpo_trainer.GRPOTrainer) share with each other
and with the Trainer-based stages: the optimizer rules, activation checkpointing and checkpoint rotation."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer


def enable_activation_checkpointing(causal_lm: nn.Module, training_args: Any) -> None:
    """Recompute the decoder's activations in backward, as the Trainer does for the other stages; generation runs
    in eval mode and keeps its cache."""
    kwargs = dict(training_args.activation_checkpointing_kwargs or {})
    every_n_layers, offload = kwargs.pop("every_n_layers", 1), kwargs.pop("offload", False)
    # Non-reentrant checkpointing needs no input that requires grad, which a LoRA model's embeddings lack.
    kwargs.setdefault("use_reentrant", False)
    causal_lm.activation_checkpointing_enable(
        activation_checkpointing_kwargs=kwargs, every_n_layers=every_n_layers, offload=offload
    )


class LoopTrainerBase:
    """Mixed into a loop trainer that sets `self.args` (its TrainingArguments)."""

    args: Any

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return Trainer.get_decay_parameter_names(self, model)

    def _create_optimizer(self, model: nn.Module, training_args: Any, finetuning_args: Any) -> torch.optim.Optimizer:
        """The optimizer `optim` names (AdamW by default), no weight decay on biases and norms; LoRA+ groups when
        `loraplus_lr_ratio` is set: the same rules as the Trainer-based stages."""
        from core.train.trainer_utils import create_loraplus_optimizer

        self.model = model
        optimizer = create_loraplus_optimizer(self, finetuning_args)
        if optimizer is not None:
            return optimizer
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
        decay = set(self.get_decay_parameter_names(model))
        trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
        groups = [
            {"params": [p for n, p in trainable if n in decay], "weight_decay": training_args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
        ]
        return optimizer_cls([g for g in groups if g["params"]], **kwargs)

    def _rotate_checkpoints(self) -> None:
        """Keep the newest `save_total_limit` checkpoints, as the Trainer does."""
        limit = self.args.save_total_limit
        if not limit:
            return
        found = sorted(
            (int(p.name.split("-")[1]), p)
            for p in Path(self.args.output_dir).glob("checkpoint-*")
            if p.is_dir() and p.name.split("-")[1].isdigit()
        )
        for _, path in found[: max(0, len(found) - limit)]:
            shutil.rmtree(path, ignore_errors=True)

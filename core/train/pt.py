"""Stage `pt`: continued pre-training, next-token loss on every token of plain text cut into cutoff_len blocks."""

from __future__ import annotations

import logging
from typing import Any

from transformers import Trainer, TrainerCallback

from core.data.collator import SFTDataCollator, default_pad_to_multiple_of
from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.train.trainer_utils import create_loraplus_optimizer, evaluate_and_save, train_and_save

logger = logging.getLogger(__name__)


class CustomTrainer(Trainer):
    """transformers' Trainer plus the LoRA+ optimizer."""

    def __init__(self, finetuning_args: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.finetuning_args = finetuning_args

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = create_loraplus_optimizer(self, self.finetuning_args)
        return super().create_optimizer(model)


def run_pt(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    finetuning_args: FinetuningArguments,
    generating_args: GeneratingArguments | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> None:
    # Tokenizer
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)

    # Dataset
    dataset = get_dataset(template, model_args, data_args, training_args, stage="pt", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=training_args.do_train)

    # Collator
    collator = SFTDataCollator(tokenizer=tokenizer, pad_to_multiple_of=default_pad_to_multiple_of())

    # Trainer
    trainer = CustomTrainer(
        finetuning_args=finetuning_args,
        model=model,
        args=training_args,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
        train_dataset=dataset.get("train_dataset"),
        eval_dataset=dataset.get("eval_dataset"),
    )

    # Train
    if training_args.do_train:
        train_and_save(trainer, training_args, finetuning_args, plot_keys=("loss", "eval_loss"))

    # Evaluate
    if training_args.do_eval and dataset.get("eval_dataset") is not None:
        evaluate_and_save(trainer, perplexity=True)

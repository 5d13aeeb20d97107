"""Stage `dpo`: preference optimisation on chosen / rejected pairs (`pref_loss` sigmoid, hinge, ipo, orpo, simpo).

    llamafactory-cli train examples/dpo_lora.yaml

The losses live in `pref_losses.py`, the trainer in `pref_trainer.py` (why not trl's DPOTrainer: see there).
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

from core.data.collator import PairwiseDataCollator, default_pad_to_multiple_of
from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.train.pref_losses import REFERENCE_FREE_LOSSES
from core.train.pref_trainer import PreferenceTrainer, create_ref_model
from core.train.trainer_utils import evaluate_and_save, train_and_save

logger = logging.getLogger(__name__)

PLOT_KEYS = ("loss", "eval_loss", "rewards/accuracies", "rewards/margins")


def run_dpo(
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
    dataset = get_dataset(template, model_args, data_args, training_args, stage="dpo", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=training_args.do_train)
    if finetuning_args.pref_loss in REFERENCE_FREE_LOSSES:
        ref_model = None
    else:
        ref_model = create_ref_model(
            tokenizer, model_args, finetuning_args, policy_is_trainable=training_args.do_train, policy=model
        )

    # Collator
    collator = PairwiseDataCollator(tokenizer=tokenizer, pad_to_multiple_of=default_pad_to_multiple_of())

    # Trainer
    training_args.remove_unused_columns = False  # the chosen_* / rejected_* columns are ours, not forward()'s
    trainer = PreferenceTrainer(
        finetuning_args=finetuning_args,
        ref_model=ref_model,
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
        train_and_save(trainer, training_args, finetuning_args, plot_keys=PLOT_KEYS)

    # Evaluate
    if training_args.do_eval and dataset.get("eval_dataset") is not None:
        evaluate_and_save(trainer)

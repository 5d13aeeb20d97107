"""Stage `kto`: preference optimisation on single answers tagged desirable or undesirable (`kto_tag`).

    llamafactory-cli train examples/kto_lora.yaml

The losses live in `pref_losses.py`, the trainer in `pref_trainer.py` (why not trl's KTOTrainer: see there).
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

from core.data.collator import KTODataCollator, default_pad_to_multiple_of
from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.train.pref_trainer import KTOTrainer, create_ref_model
from core.train.trainer_utils import evaluate_and_save, train_and_save

logger = logging.getLogger(__name__)

PLOT_KEYS = ("loss", "eval_loss", "rewards/accuracies", "rewards/margins", "kl")


def run_kto(
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
    dataset = get_dataset(template, model_args, data_args, training_args, stage="kto", tokenizer=tokenizer)
    if dataset.get("train_dataset") is not None:
        log_balance(dataset["train_dataset"], finetuning_args)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=training_args.do_train)
    ref_model = create_ref_model(
        tokenizer, model_args, finetuning_args, policy_is_trainable=training_args.do_train, policy=model
    )

    # Collator
    collator = KTODataCollator(tokenizer=tokenizer, pad_to_multiple_of=default_pad_to_multiple_of())

    # Trainer
    training_args.remove_unused_columns = False  # the kl_* and kto_tags columns are ours, not forward()'s
    trainer = KTOTrainer(
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


def log_balance(train_dataset, finetuning_args) -> None:
    """Desirable / undesirable counts and the weighted ratio; the KTO paper advises a ratio between 1 and 4/3,
    reached by setting kto_chosen_weight / kto_rejected_weight."""
    if not hasattr(train_dataset, "column_names") or "kto_tags" not in train_dataset.column_names:
        return
    desirable = sum(bool(tag) for tag in train_dataset["kto_tags"])
    undesirable = len(train_dataset) - desirable
    if desirable and undesirable:
        ratio = (finetuning_args.kto_chosen_weight * desirable) / (finetuning_args.kto_rejected_weight * undesirable)
        logger.info(
            "KTO: %d desirable, %d undesirable examples; weighted ratio %.2f (advised: 1 to 1.33)",
            desirable,
            undesirable,
            ratio,
        )
    else:
        logger.warning("KTO: all %d examples are %s", len(train_dataset), "desirable" if desirable else "undesirable")

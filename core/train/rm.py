"""Stage `rm`: a reward model, the causal LM plus a scalar value head trained on preference pairs.

Loss: -log sigmoid(r_chosen - r_rejected), r = the head's value at the last non-padding token of each sequence.
Logs `accuracy` (share of pairs with r_chosen > r_rejected) in training and `eval_accuracy` at evaluation. The
head is saved as `value_head.safetensors` beside the adapter or model, so ppo can load the run as its reward model.
`do_predict` writes `generated_predictions.jsonl` with each pair's two scores.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from core.data.collator import PairwiseDataCollator, default_pad_to_multiple_of
from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.model.valuehead import load_valuehead_checkpoint
from core.runfolder import PREDICTIONS
from core.train.trainer_utils import create_loraplus_optimizer, evaluate_and_save, train_and_save, write_results

logger = logging.getLogger(__name__)

PLOT_KEYS = ("loss", "eval_loss", "accuracy", "eval_accuracy")


def last_token_values(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The value at each row's last attended position (right or left padding alike)."""
    positions = torch.arange(attention_mask.size(1), device=attention_mask.device).expand_as(attention_mask)
    last = torch.where(attention_mask.bool(), positions, -1).max(dim=1).values
    return values.gather(1, last.unsqueeze(1)).squeeze(1)


class PairwiseTrainer(Trainer):
    """Trainer for `ValueHeadModel` on batches of B chosen rows followed by B rejected rows."""

    def __init__(self, finetuning_args: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.finetuning_args = finetuning_args
        self._train_accuracy: list[float] = []

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = create_loraplus_optimizer(self, self.finetuning_args)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        _, values = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], return_logits=False)
        scores = last_token_values(values, inputs["attention_mask"])
        chosen, rejected = scores.chunk(2)
        loss = -F.logsigmoid(chosen - rejected).mean()
        if model.training:
            self._train_accuracy.append((chosen > rejected).float().mean().item())
        if return_outputs:
            return loss, (chosen, rejected)
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, (chosen, rejected) = self.compute_loss(model, inputs, return_outputs=True)
        if prediction_loss_only:
            return loss.detach(), None, None
        # The eval loop calls compute_metrics only when labels exist; the pair's scores are all it needs.
        return loss.detach(), torch.stack([chosen, rejected], dim=-1), torch.zeros_like(chosen)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._train_accuracy and "loss" in logs:
            logs["accuracy"] = round(sum(self._train_accuracy) / len(self._train_accuracy), 4)
            self._train_accuracy.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, Path(output_dir) / "training_args.bin")

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        load_valuehead_checkpoint(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)


def compute_pair_accuracy(eval_preds) -> dict[str, float]:
    scores = np.asarray(eval_preds.predictions)
    return {"accuracy": float((scores[:, 0] > scores[:, 1]).mean())}


def save_scores(output_dir: str | Path, scores: np.ndarray) -> Path:
    """`generated_predictions.jsonl` for rm: {"chosen": score, "rejected": score} per pair."""
    path = Path(output_dir) / PREDICTIONS
    with path.open("w", encoding="utf-8") as handle:
        for chosen, rejected in np.asarray(scores).tolist():
            handle.write(json.dumps({"chosen": round(chosen, 4), "rejected": round(rejected, 4)}) + "\n")
    return path


def run_rm(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    finetuning_args: FinetuningArguments,
    generating_args: GeneratingArguments | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> None:
    if training_args.do_predict and not training_args.do_train:
        # Without training, the data layer reads do_predict as "generate from prompts", which has no pairs to score.
        raise ValueError(
            "do_predict: true for stage rm without do_train — to score preference pairs with a trained reward "
            "model use do_eval: true with eval_dataset (eval_accuracy), or train and predict in one run."
        )
    # Tokenizer
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)

    # Dataset
    dataset = get_dataset(template, model_args, data_args, training_args, stage="rm", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=training_args.do_train, add_valuehead=True)

    # Collator
    collator = PairwiseDataCollator(tokenizer=tokenizer, pad_to_multiple_of=default_pad_to_multiple_of())

    # Trainer
    trainer = PairwiseTrainer(
        finetuning_args=finetuning_args,
        model=model,
        args=training_args,
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=callbacks,
        compute_metrics=compute_pair_accuracy,
        train_dataset=dataset.get("train_dataset"),
        eval_dataset=dataset.get("eval_dataset"),
    )

    # Train
    if training_args.do_train:
        train_and_save(
            trainer, training_args, finetuning_args, plot_keys=("loss", "eval_loss", "accuracy", "eval_accuracy")
        )

    # Evaluate
    if training_args.do_eval and dataset.get("eval_dataset") is not None:
        evaluate_and_save(trainer)

    # Predict
    if training_args.do_predict and dataset.get("eval_dataset") is not None:
        output = trainer.predict(dataset["eval_dataset"], metric_key_prefix="predict")
        write_results(trainer, "predict", output.metrics)
        if trainer.is_world_process_zero():
            save_scores(training_args.output_dir, output.predictions)

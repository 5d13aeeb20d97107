"""Stage `sft`: supervised fine-tuning, loss on the answer tokens; `do_predict` generates answers and scores them.

Prediction (`do_predict: true`, a run of its own, as LlamaBoard's Evaluate & Predict tab starts it) writes
`generated_predictions.jsonl` (prompt, label, predict per line) and `predict_results.json` with BLEU-4,
ROUGE-1/2/L and exact match. Evaluation during training (`val_size` / `eval_dataset`) reports `eval_loss` only:
generating at every eval step would cost far more than the training steps between them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Seq2SeqTrainer, Trainer, TrainerCallback

from core.data.collator import SFTDataCollator, default_pad_to_multiple_of
from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.decoding import decode_text, printable
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.runfolder import PREDICTIONS
from core.train.metrics import compute_generation_metrics
from core.train.sft_losses import sft_loss_func
from core.train.trainer_utils import create_loraplus_optimizer, evaluate_and_save, train_and_save, write_results

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class CustomSeq2SeqTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer that generates with decoder-only models (prompt in, answer out) and uses LoRA+ when asked."""

    def __init__(self, finetuning_args: Any, gen_kwargs: dict[str, Any] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.finetuning_args = finetuning_args
        self.generation_kwargs = gen_kwargs or {}
        self._generating = False

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = create_loraplus_optimizer(self, self.finetuning_args)
        return super().create_optimizer(model)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if not self._generating or prediction_loss_only:
            return Trainer.prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        # The labels are the reference answer, not aligned with the prompt: keep them out of the forward pass.
        labels = inputs.pop("labels", None)
        inputs = self._prepare_inputs(inputs)
        prompt_length = inputs["input_ids"].size(-1)
        with torch.no_grad():
            generated = self.accelerator.unwrap_model(model).generate(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"), **self.generation_kwargs
            )
        generated = generated[:, prompt_length:].contiguous()
        if labels is not None:
            labels = labels.to(generated.device)
        return None, generated, labels

    def generate_predictions(self, dataset) -> Any:
        """`Trainer.predict` with generation on; metrics get the `predict_` prefix."""
        self._generating = True
        try:
            return self.predict(dataset, metric_key_prefix="predict")
        finally:
            self._generating = False


def _decode(tokenizer, rows: np.ndarray | list, skip_special_tokens: bool) -> list[str]:
    texts = []
    for row in rows:
        ids = [int(i) for i in row if int(i) not in (IGNORE_INDEX, tokenizer.pad_token_id)]
        texts.append(decode_text(tokenizer, ids, skip_special_tokens).strip())
    return texts


class GenerationMetrics:
    """`compute_metrics` for prediction: decodes answers and references and scores them."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens

    def __call__(self, eval_preds) -> dict[str, float]:
        predictions = _decode(self.tokenizer, eval_preds.predictions, self.skip_special_tokens)
        labels = _decode(self.tokenizer, eval_preds.label_ids, self.skip_special_tokens)
        return compute_generation_metrics(predictions, labels)


def save_predictions(output_dir: str | Path, dataset, output, tokenizer, skip_special_tokens: bool = True) -> Path:
    """`generated_predictions.jsonl`: one {"prompt", "label", "predict"} object per predicted sample; the prompt is
    the user's text (a dataset tokenized before it had that column: the decoded prompt without special tokens)."""
    if "prompt" in dataset.column_names:
        prompts = [printable(text) for text in dataset["prompt"]]
    else:
        prompts = [decode_text(tokenizer, ids).strip() for ids in dataset["input_ids"]]
    labels = _decode(tokenizer, output.label_ids, skip_special_tokens)
    predictions = _decode(tokenizer, output.predictions, skip_special_tokens)
    path = Path(output_dir) / PREDICTIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for prompt, label, predict in zip(prompts, labels, predictions, strict=True):
            handle.write(json.dumps({"prompt": prompt, "label": label, "predict": predict}, ensure_ascii=False) + "\n")
    logger.info("Saved %d predictions to %s", len(predictions), path)
    return path


def _generation_kwargs(generating_args: Any, tokenizer) -> dict[str, Any]:
    kwargs = generating_args.to_generate_kwargs() if generating_args is not None else {"max_new_tokens": 64}
    kwargs["eos_token_id"] = tokenizer.eos_token_id
    kwargs["pad_token_id"] = tokenizer.pad_token_id
    return kwargs


def run_sft(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    finetuning_args: FinetuningArguments,
    generating_args: GeneratingArguments | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> None:
    if training_args.do_train and training_args.do_predict:
        raise ValueError(
            "do_predict: true together with do_train: true — prediction generates with the trained model; run it "
            "as a second job with do_train: false and adapter_name_or_path (or the model) set to this run's output."
        )
    # Tokenizer
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)

    # Dataset
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=training_args.do_train)

    # Collator
    collator = SFTDataCollator(tokenizer=tokenizer, pad_to_multiple_of=default_pad_to_multiple_of())

    # Trainer
    trainer = CustomSeq2SeqTrainer(
        finetuning_args=finetuning_args,
        gen_kwargs=_generation_kwargs(generating_args, tokenizer),
        model=model,
        args=training_args,
        processing_class=tokenizer,
        data_collator=collator,
        compute_loss_func=sft_loss_func(finetuning_args),
        callbacks=callbacks,
        train_dataset=dataset.get("train_dataset"),
        eval_dataset=dataset.get("eval_dataset"),
    )

    # Train
    if training_args.do_train:
        train_and_save(trainer, training_args, finetuning_args, plot_keys=("loss", "eval_loss"))

    # Evaluate
    if training_args.do_eval and dataset.get("eval_dataset") is not None and not training_args.do_predict:
        evaluate_and_save(trainer, perplexity=True)

    # Predict
    if training_args.do_predict:
        predict_dataset = dataset.get("eval_dataset")
        if predict_dataset is None:
            raise ValueError("do_predict: true but there is nothing to predict — set eval_dataset (or dataset).")
        skip = generating_args.skip_special_tokens if generating_args is not None else True
        # Batched generation needs the prompts to end at the same position: pad on the left from here on.
        tokenizer.padding_side = "left"
        trainer.compute_metrics = GenerationMetrics(tokenizer, skip)
        output = trainer.generate_predictions(predict_dataset)
        write_results(trainer, "predict", output.metrics)
        if trainer.is_world_process_zero():
            save_predictions(training_args.output_dir, predict_dataset, output, tokenizer, skip)

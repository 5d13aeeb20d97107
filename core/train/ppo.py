"""Stage `ppo`: reinforcement learning from a reward model (trained by the rm stage) or a reward rule.

    llamafactory-cli train examples/ppo_lora.yaml

The algorithm is in `ppo_trainer.py` (ours: trl 1.13 removed PPO), the rewards in `ppo_rewards.py`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback

from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import DataArguments, FinetuningArguments, GeneratingArguments, ModelArguments, TrainingArguments
from core.model import load_model, load_tokenizer
from core.train.ppo_rewards import create_reward_fn
from core.train.ppo_trainer import PPOTrainer
from core.train.pref_trainer import create_ref_model
from core.train.trainer_utils import finish_run

logger = logging.getLogger(__name__)

PLOT_KEYS = ("loss", "reward", "kl", "value_loss")


def run_ppo(
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
    dataset = get_dataset(template, model_args, data_args, training_args, stage="ppo", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=True, add_valuehead=True)
    ref_model = create_ref_model(tokenizer, model_args, finetuning_args)
    reward_fn = create_reward_fn(model, tokenizer, model_args, finetuning_args, training_args.device)

    # Trainer
    trainer = PPOTrainer(
        model=model,
        tokenizer=tokenizer,
        training_args=training_args,
        finetuning_args=finetuning_args,
        generating_args=generating_args,
        train_dataset=dataset["train_dataset"],
        reward_fn=reward_fn,
        ref_model=ref_model,
        callbacks=callbacks,
        stop_token_ids=stop_token_ids(template, tokenizer),
    )

    # Train
    metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    if trainer.accelerator.is_main_process:
        trainer.state.save_to_json(str(Path(training_args.output_dir) / "trainer_state.json"))
        write_metrics(training_args.output_dir, metrics)
        finish_run(training_args, finetuning_args, PLOT_KEYS)


def stop_token_ids(template, tokenizer) -> list[int]:
    """The eos token plus any stop word the template adds (ChatML's <|im_end|>)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for word in getattr(template, "stop_words", None) or []:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids


def write_metrics(output_dir, metrics: dict) -> None:
    """`train_results.json` and `all_results.json`, as the Trainer-based stages write them."""
    for name in ("train_results.json", "all_results.json"):
        (Path(output_dir) / name).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    logger.info("***** train metrics *****\n%s", "\n".join(f"  {k} = {v}" for k, v in metrics.items()))

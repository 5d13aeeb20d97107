"""Stage `grpo`: reinforcement learning with rewards computed from each answer (GRPO, no value model).

    llamafactory-cli train examples/grpo_lora.yaml

For every prompt of a prompt dataset (the reference answer, when the row has one, is what rewards compare with),
the policy samples `num_generations` answers; `reward_funcs` score them; each answer's advantage is its reward
against its group's. The algorithm is in `grpo_trainer.py`, the reward functions in `rewards.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from core.data.loader import get_dataset
from core.data.template import get_template_and_fix_tokenizer
from core.hparams import (
    DataArguments,
    FinetuningArguments,
    GeneratingArguments,
    ModelArguments,
    TrainingArguments,
    split_arg,
)
from core.model import load_model, load_tokenizer
from core.train.grpo_trainer import GRPOTrainer
from core.train.ppo import stop_token_ids, write_metrics
from core.train.pref_trainer import create_ref_model
from core.train.rewards import build_rewards, reward_model_scorer
from core.train.trainer_utils import plot_loss

logger = logging.getLogger(__name__)

PLOT_KEYS = ("loss", "reward", "kl", "completion_length")


def run_grpo(
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
    dataset = get_dataset(template, model_args, data_args, training_args, stage="grpo", tokenizer=tokenizer)

    # Model
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=True)
    ref_model = create_ref_model(tokenizer, model_args, finetuning_args) if finetuning_args.grpo_beta > 0 else None

    # Rewards
    rm_scorer = None
    if "rm" in split_arg(finetuning_args.reward_funcs):
        rm_scorer = reward_model_scorer(tokenizer, model_args, finetuning_args, training_args.device)
    rewards = build_rewards(finetuning_args, rm_scorer)
    logger.info("Rewards: %s", ", ".join(f"{n} x {w:g}" for n, w in zip(rewards.names, rewards.weights, strict=True)))

    # Trainer
    trainer = GRPOTrainer(
        model=model,
        tokenizer=tokenizer,
        training_args=training_args,
        finetuning_args=finetuning_args,
        generating_args=generating_args,
        train_dataset=dataset["train_dataset"],
        rewards=rewards,
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
        if finetuning_args.plot_loss:
            plot_loss(training_args.output_dir, keys=PLOT_KEYS)

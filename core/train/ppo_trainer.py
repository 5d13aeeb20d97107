"""Our PPO trainer for the ppo stage (trl removed its PPOTrainer in 1.13).

One step, read top to bottom in `train()`:
1. Rollout: take `batch_size` prompts, sample a response for each from the policy (plain sampling at
   temperature 1, so the log-probabilities we compute are those of the distribution we sampled from).
2. Score: one reward per response from the reward model or rule (`ppo_rewards.py`); `ppo_score_norm` scales
   it with running statistics.
3. Experience, without gradients: log-probabilities and values of the policy, log-probabilities of the
   reference (the LoRA base with the adapter off, or a frozen copy). Per-token reward = -kl_coef * (logp -
   ref_logp), plus the score on the last response token; `ppo_whiten_rewards` whitens those.
4. GAE (gamma 1, lambda 0.95) gives advantages and returns.
5. `ppo_epochs` passes over the buffer in mini-batches of `per_device_train_batch_size`, an optimizer step every
   `gradient_accumulation_steps` mini-batches: clipped policy loss + `VF_COEF` * clipped value loss.
6. The KL coefficient adapts towards `ppo_target` (Ziegler et al. 2019); the scheduler steps once per PPO step.
7. Diagnosis (`Diagnosis`): when every step since the last log had the same reward for every response, a KL penalty
   larger than the scores' spread, or (nearly) every response cut at `max_new_tokens`, an alert record says so in
   trainer_log.jsonl and a WARNING line in the log (once, and again only after the sign went away).

Defaults chosen so that a run learns with the settings a user brings (a LLaMA-Factory ppo YAML, LoRA at lr 1e-3,
no max_new_tokens, no ppo_score_norm), each from a measurement on the demo model and the `uppercase` rule:
- `ppo_score_norm` on (LLaMA-Factory: off), so the KL penalty and the value head's targets see scores of std 1
  whatever the reward's scale. LLaMA-Factory's pair (off, KL coefficient 0.2) left the issue's runs flat; on the
  demo (LoRA lr 1e-3, rule, 20 steps of 32 prompts, 4 tokens) the last 5 steps' reward beat the first 5's by 0.12
  with it on, and by 0.12 with it off once the KL coefficient is scaled to the scores (below): either fixes the
  scale of the first batch, only the norm follows the scores as the policy moves them.
- responses cut at `PPO_MAX_NEW_TOKENS` (128) when `max_new_tokens` is not given (core.hparams.generating_args).
- the KL coefficient starts at `INIT_KL_COEF` (0.05, scaled to the score), see there.

`batch_size` = per_device_train_batch_size * gradient_accumulation_steps * ppo_buffer_size, as in LLaMA-Factory.
transformers' callbacks (our LogCallback, GracefulStopCallback, DefaultFlowCallback) see the same
`TrainerState` / `TrainerControl` events as under Trainer; logs carry `loss`, `reward`, `kl`, `policy_loss`,
`value_loss`, `learning_rate`, `kl_coef`, `response_length`, `truncated` (share of responses cut at
`max_new_tokens`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import GenerationConfig, TrainerControl, TrainerState
from transformers.optimization import get_scheduler
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

from core.train.loop_trainer import LoopTrainerBase, enable_activation_checkpointing
from core.train.pref_losses import token_logps

logger = logging.getLogger(__name__)

CLIP_RANGE = 0.2  # policy ratio clip
CLIP_RANGE_VALUE = 0.2  # value clip, around the values of the rollout
VF_COEF = 0.1  # weight of the value loss
GAMMA = 1.0  # no discount within one response
LAM = 0.95  # GAE lambda
# The KL coefficient starts at INIT_KL_COEF in units of a normalised score (std 1; LLaMA-Factory / trl 0.x start at
# 0.2). Without ppo_score_norm it is scaled by the first batch's score spread, so the penalty weighs the same against
# the reward whatever its scale. Measured on the demo model (full, lr 1e-2, 16-token answers, uppercase rule, 20
# steps): reward 0.28 -> 0.52 at 0.2 (penalty about 6 per response by the end, against a score spread of 1),
# 0.28 -> 0.66 at 0.05.
INIT_KL_COEF = 0.05
KL_HORIZON = 10000
TRUNCATED_SHARE = 0.9  # responses cut at max_new_tokens from this share on are "always cut" (Diagnosis)
DIAGNOSIS_STEPS = 5  # Diagnosis judges on at least this many steps (fewer at the start of a run)

OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
PPO_STATE_FILE = "ppo_state.json"


@dataclass
class Rollout:
    """Prompts (left-padded) and sampled responses (right-padded), concatenated into `input_ids`."""

    input_ids: torch.Tensor  # [B, Q + R]
    attention_mask: torch.Tensor  # [B, Q + R]
    response_mask: torch.Tensor  # [B, R]: 1 on sampled tokens up to and including the stop token
    prompts: list[str]
    responses: list[str]
    references: list[str]

    def select(self, index: torch.Tensor) -> Rollout:
        idx = index.tolist()
        return Rollout(
            self.input_ids[index],
            self.attention_mask[index],
            self.response_mask[index],
            [self.prompts[i] for i in idx],
            [self.responses[i] for i in idx],
            [self.references[i] for i in idx],
        )


RewardFn = Callable[[Rollout], torch.Tensor]
"""A reward: one float per sequence of a rollout, shape [B] (core.train.ppo_rewards makes them)."""


def cut_after_stop(response: torch.Tensor, stop_ids: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each response up to and including its first stop token; later positions become padding (mask 0)."""
    is_stop = torch.isin(response, torch.tensor(stop_ids, device=response.device)).long()
    after_stop = (is_stop.cumsum(-1) - is_stop) > 0
    return response.masked_fill(after_stop, pad_id), (~after_stop).long()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns (advantages, returns)."""
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last)
        delta = rewards[:, t] + GAMMA * next_value - values[:, t]
        last = delta + GAMMA * LAM * last
        advantages[:, t] = last
    return advantages, advantages + values


def ppo_losses(
    logprobs: torch.Tensor,
    values: torch.Tensor,
    old_logprobs: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate policy loss and clipped value loss (both masked means); plus the clip fraction."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg_losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - CLIP_RANGE, 1 + CLIP_RANGE))
    policy_loss = masked_mean(pg_losses, mask)
    clipped_values = old_values + (values - old_values).clamp(-CLIP_RANGE_VALUE, CLIP_RANGE_VALUE)
    value_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped_values - returns) ** 2), mask)
    clipfrac = masked_mean(((ratio - 1).abs() > CLIP_RANGE).float(), mask)
    return policy_loss, value_loss, clipfrac


class RunningMoments:
    """Running mean and standard deviation of the scores (for `ppo_score_norm`)."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def update(self, values: torch.Tensor) -> None:
        batch_mean, batch_var, n = values.mean().item(), values.var(unbiased=False).item(), values.numel()
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        return max(math.sqrt(self.var), 1e-6)


@dataclass
class StepSigns:
    """What one PPO step shows about whether the run can learn (numbers from `make_experience`)."""

    score_spread: float  # max - min of the raw scores in the batch
    score_mean: float  # mean raw score
    penalty: float  # mean KL penalty per response: kl_coef * sum over tokens of (logp - ref_logp)
    signal: float  # std of the scores the policy is trained on (normalised when ppo_score_norm is on)
    truncated: float  # share of responses cut at max_new_tokens without a stop token


class Diagnosis:
    """Why a PPO run is not learning, when its numbers can tell: `step(signs)` each step, `check()` at each log.

    `check()` looks at the steps since the last log, or at the last `DIAGNOSIS_STEPS` steps when fewer (one PPO
    step is too noisy to judge on). No signal: every batch gave every response the same reward. KL: the mean penalty
    outweighs the mean spread of the scores. Cut: `TRUNCATED_SHARE` of the responses or more reached max_new_tokens.
    It returns the (kind, message) pairs that just appeared; a kind is raised again only after it went away."""

    def __init__(self, max_new_tokens: int, score_norm: bool) -> None:
        self.max_new_tokens = max_new_tokens
        self.score_norm = score_norm
        self.since_log: list[StepSigns] = []
        self.recent: deque[StepSigns] = deque(maxlen=DIAGNOSIS_STEPS)
        self.active: set[str] = set()

    def step(self, signs: StepSigns) -> None:
        self.since_log.append(signs)
        self.recent.append(signs)

    def check(self) -> list[tuple[str, str]]:
        steps = self.since_log if len(self.since_log) >= DIAGNOSIS_STEPS else list(self.recent)
        self.since_log = []
        if not steps:
            return []
        n = len(steps)
        span = f"the last {n} steps" if n > 1 else "the last step"
        found: dict[str, str] = {}
        if all(s.score_spread <= 1e-6 * max(1.0, abs(s.score_mean)) for s in steps):
            found["ppo_no_signal"] = (
                f"every response in {span} got the same reward ({steps[-1].score_mean:.4g}): PPO has nothing to "
                "learn from — check that the reward model or rule tells this model's answers apart"
            )
        penalty, signal = sum(s.penalty for s in steps) / n, sum(s.signal for s in steps) / n
        if "ppo_no_signal" not in found and penalty > signal:
            fix = "shorten the responses (max_new_tokens) or raise ppo_target"
            found["ppo_kl_over_score"] = (
                f"the KL penalty ({penalty:.3g} per response) outweighs the spread of the scores ({signal:.3g}) "
                f"over {span}: the policy is held near the reference instead of following the reward — "
                + (fix if self.score_norm else f"turn ppo_score_norm on, or {fix}")
            )
        truncated = sum(s.truncated for s in steps) / n
        if truncated >= TRUNCATED_SHARE:
            found["ppo_truncated"] = (
                f"{truncated:.0%} of the responses in {span} were cut at max_new_tokens ({self.max_new_tokens}) "
                "before a stop token: the reward scores unfinished answers — raise max_new_tokens, or teach the "
                "model to stop (sft) first"
            )
        new = [(kind, message) for kind, message in found.items() if kind not in self.active]
        self.active = set(found)
        return new


class PPOTrainer(LoopTrainerBase):
    """PPO on a `ValueHeadModel` policy; see the module docstring for the algorithm."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        training_args: Any,
        finetuning_args: Any,
        generating_args: Any,
        train_dataset: Any,
        reward_fn: RewardFn,
        ref_model: nn.Module | None = None,
        callbacks: list | None = None,
        stop_token_ids: list[int] | None = None,
    ) -> None:
        from accelerate import Accelerator

        if getattr(training_args, "deepspeed", None) or getattr(training_args, "fsdp", None):
            raise ValueError(
                "ppo: deepspeed / fsdp are not supported by the PPO trainer yet — remove them (several GPUs still "
                "work, with plain data parallelism), or use lora to fit the model."
            )
        self.args = training_args
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn
        self.ppo_epochs = int(finetuning_args.ppo_epochs)
        self.score_norm = bool(finetuning_args.ppo_score_norm)
        self.whiten_rewards = bool(finetuning_args.ppo_whiten_rewards)
        self.target_kl = float(finetuning_args.ppo_target)
        self.kl_coef = INIT_KL_COEF
        self.kl_coef_scaled = self.score_norm  # without score_norm, scaled to the first batch's scores
        self.score_moments = RunningMoments()
        self.mini_batch_size = training_args.per_device_train_batch_size
        self.accumulation = training_args.gradient_accumulation_steps
        self.batch_size = self.mini_batch_size * self.accumulation * int(finetuning_args.ppo_buffer_size)

        mixed = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no"
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=bool(getattr(training_args, "use_cpu", False)))
        self.device = self.accelerator.device

        loader = DataLoader(
            train_dataset,
            batch_size=self.batch_size,
            shuffle=not getattr(finetuning_args, "disable_shuffling", False),
            collate_fn=self._collate_prompts,
            drop_last=True,
            generator=torch.Generator().manual_seed(training_args.seed),
        )
        # Each process takes its own batches of prompts.
        self.dataloader = self.accelerator.prepare_data_loader(loader)
        if len(self.dataloader) == 0:
            raise ValueError(
                f"ppo: the dataset has {len(train_dataset)} prompts, fewer than one PPO batch of {self.batch_size} "
                f"per process (per_device_train_batch_size * gradient_accumulation_steps * ppo_buffer_size, on "
                f"{self.accelerator.num_processes} process(es)) — lower those or raise max_samples."
            )
        steps_per_epoch = len(self.dataloader)
        if training_args.max_steps > 0:
            self.max_steps = training_args.max_steps
        else:
            self.max_steps = max(1, math.ceil(training_args.num_train_epochs * steps_per_epoch))
        self.steps_per_epoch = steps_per_epoch

        if getattr(training_args, "activation_checkpointing", False):
            self._enable_activation_checkpointing(model, training_args)
        optimizer = self._create_optimizer(model, training_args, finetuning_args)
        warmup = training_args.get_warmup_steps(self.max_steps)
        scheduler = get_scheduler(
            training_args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=self.max_steps
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scheduler = scheduler
        self.ref_model = ref_model.to(self.device).eval() if ref_model is not None else None

        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad_id
        self.stop_token_ids = stop_token_ids or [tokenizer.eos_token_id]
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=int(getattr(generating_args, "max_new_tokens", None) or 64),
            eos_token_id=self.stop_token_ids,
            pad_token_id=pad_id,
        )
        self.diagnosis = Diagnosis(self.generation_config.max_new_tokens, self.score_norm)

        def steps(value: float | None) -> int:
            # Trainer reads a value below 1 as a share of max_steps.
            value = value or training_args.logging_steps
            return max(1, math.ceil(self.max_steps * value)) if value < 1 else int(value)

        self.state = TrainerState(
            max_steps=self.max_steps,
            logging_steps=steps(training_args.logging_steps),
            save_steps=steps(training_args.save_steps),
            eval_steps=steps(training_args.eval_steps),
            num_train_epochs=math.ceil(self.max_steps / steps_per_epoch),
            train_batch_size=self.batch_size,
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process,
        )
        self.state.log_history = []
        self.control = TrainerControl()
        self.callback_handler = CallbackHandler(
            [DefaultFlowCallback(), *(callbacks or [])], self.model, tokenizer, self.optimizer, self.scheduler
        )

    @staticmethod
    def _enable_activation_checkpointing(model: nn.Module, training_args: Any) -> None:
        causal_lm = model.pretrained_model
        if hasattr(causal_lm, "get_base_model"):
            causal_lm = causal_lm.get_base_model()
        enable_activation_checkpointing(causal_lm, training_args)

    # Data
    def _collate_prompts(self, rows: list[dict]) -> dict[str, Any]:
        """Left-pad the prompts (generation appends on the right) and keep the reference answers for rules."""
        width = max(len(row["input_ids"]) for row in rows)
        ids = [[self.pad_id] * (width - len(r["input_ids"])) + list(r["input_ids"]) for r in rows]
        mask = [[0] * (width - len(r["input_ids"])) + [1] * len(r["input_ids"]) for r in rows]
        references = [
            self.tokenizer.decode([t for t in row.get("labels", []) if t >= 0], skip_special_tokens=True)
            for row in rows
        ]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "references": references}

    # Rollout
    @torch.no_grad()
    def generate(self, batch: dict[str, Any]) -> Rollout:
        policy = self.accelerator.unwrap_model(self.model)
        policy.eval()
        query, query_mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        chunks = []
        for start in range(0, query.shape[0], self.mini_batch_size):
            q, m = query[start : start + self.mini_batch_size], query_mask[start : start + self.mini_batch_size]
            out = policy.generate(input_ids=q, attention_mask=m, generation_config=self.generation_config)
            chunks.append(out[:, q.shape[1] :])
        width = max(c.shape[1] for c in chunks)
        response = torch.cat([nn.functional.pad(c, (0, width - c.shape[1]), value=self.pad_id) for c in chunks])

        response, response_mask = cut_after_stop(response, self.stop_token_ids, self.pad_id)

        prompts = self.tokenizer.batch_decode(
            [q[m.bool()] for q, m in zip(query, query_mask, strict=True)], skip_special_tokens=True
        )
        texts = self.tokenizer.batch_decode(
            [r[m.bool()] for r, m in zip(response, response_mask, strict=True)], skip_special_tokens=True
        )
        return Rollout(
            input_ids=torch.cat([query, response], dim=1),
            attention_mask=torch.cat([query_mask, response_mask], dim=1),
            response_mask=response_mask,
            prompts=prompts,
            responses=texts,
            references=batch["references"],
        )

    def _forward(self, model: nn.Module, rollout: Rollout, with_values: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the response tokens (and the values at the positions that predict them)."""
        length = rollout.response_mask.shape[1]
        position_ids = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask, position_ids=position_ids)
        logits, values = out if isinstance(out, tuple) else (out.logits, None)
        logprobs = token_logps(logits[:, -length - 1 : -1], rollout.input_ids[:, -length:])
        if with_values:
            return logprobs, values[:, -length - 1 : -1]
        return logprobs, None

    @torch.no_grad()
    def _reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        if self.ref_model is not None:
            return self._forward(self.ref_model, rollout, with_values=False)[0]
        policy = self.accelerator.unwrap_model(self.model)
        with policy.pretrained_model.disable_adapter():
            return self._forward(policy, rollout, with_values=False)[0]

    @torch.no_grad()
    def make_experience(self, rollout: Rollout) -> dict[str, torch.Tensor]:
        scores = self.reward_fn(rollout).to(self.device).float()
        raw_scores = scores.clone()
        if self.score_norm:
            self.score_moments.update(scores)
            scores = (scores - self.score_moments.mean) / self.score_moments.std
        elif not self.kl_coef_scaled:
            spread = scores.std().item() if scores.numel() > 1 else 0.0
            if spread > 0:
                self.kl_coef = INIT_KL_COEF * spread
                logger.info("PPO: KL coefficient starts at %.3g (%.3g x the first scores' std)", self.kl_coef, spread)
            self.kl_coef_scaled = True

        old_logprobs, old_values, ref_logprobs = [], [], []
        for start in range(0, len(rollout.prompts), self.mini_batch_size):
            part = rollout.select(torch.arange(start, min(start + self.mini_batch_size, len(rollout.prompts))))
            logprobs, values = self._forward(self.model, part, with_values=True)
            old_logprobs.append(logprobs)
            old_values.append(values)
            ref_logprobs.append(self._reference_logprobs(part))
        mask = rollout.response_mask.float()
        old_logprobs, old_values = torch.cat(old_logprobs) * mask, torch.cat(old_values) * mask
        ref_logprobs = torch.cat(ref_logprobs) * mask

        kl = old_logprobs - ref_logprobs
        rewards = -self.kl_coef * kl
        last = (mask.sum(-1).long() - 1).clamp(min=0)
        rewards[torch.arange(rewards.shape[0]), last] += scores
        if self.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask
        advantages, returns = gae(rewards, old_values, mask)
        advantages = masked_whiten(advantages, mask) * mask

        width = rollout.response_mask.shape[1]
        ends_open = ~torch.isin(rollout.input_ids[:, -1], torch.tensor(self.stop_token_ids, device=self.device))
        truncated = (rollout.response_mask[:, -1].bool() & ends_open).float() * float(
            width >= self.generation_config.max_new_tokens
        )
        self.diagnosis.step(
            StepSigns(
                score_spread=(raw_scores.max() - raw_scores.min()).item(),
                score_mean=raw_scores.mean().item(),
                penalty=self.kl_coef * (kl * mask).sum(-1).mean().item(),
                signal=scores.std(unbiased=False).item(),
                truncated=truncated.mean().item(),
            )
        )
        return {
            "truncated": truncated,
            "old_logprobs": old_logprobs,
            "old_values": old_values,
            "advantages": advantages,
            "returns": returns,
            "mask": mask,
            "scores": raw_scores,
            "kl": (kl * mask).sum(-1),
        }

    # Optimisation
    def optimize(self, rollout: Rollout, experience: dict[str, torch.Tensor]) -> dict[str, float]:
        self.model.train()
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "loss": 0.0, "clipfrac": 0.0}
        passes, micro = 0, 0
        grad_norm = None
        for _ in range(self.ppo_epochs):
            order = torch.randperm(len(rollout.prompts))
            for start in range(0, len(order), self.mini_batch_size):
                index = order[start : start + self.mini_batch_size]
                part = rollout.select(index)
                exp = {key: value[index] for key, value in experience.items()}
                logprobs, values = self._forward(self.model, part, with_values=True)
                policy_loss, value_loss, clipfrac = ppo_losses(
                    logprobs,
                    values,
                    exp["old_logprobs"],
                    exp["old_values"],
                    exp["advantages"],
                    exp["returns"],
                    exp["mask"],
                )
                loss = policy_loss + VF_COEF * value_loss
                self.accelerator.backward(loss / self.accumulation)
                micro += 1
                if micro % self.accumulation == 0:
                    if self.args.max_grad_norm:
                        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss), ("clipfrac", clipfrac)):
                    sums[key] += value.item()
                sums["loss"] += loss.item()
                passes += 1
        stats = {key: value / max(passes, 1) for key, value in sums.items()}
        if grad_norm is not None:
            stats["grad_norm"] = float(grad_norm)
        return stats

    def _update_kl_coef(self, kl: float) -> None:
        error = max(-0.2, min(0.2, kl / self.target_kl - 1))
        self.kl_coef *= 1 + error * self.batch_size / KL_HORIZON

    # Loop
    def train(self, resume_from_checkpoint: str | None = None) -> dict[str, float]:
        if resume_from_checkpoint:
            self.load_checkpoint(resume_from_checkpoint)
        args, state, control = self.args, self.state, self.control
        logger.info(
            "PPO: %d steps, %d prompts per step, responses up to %d tokens, %d epochs over mini-batches of %d",
            self.max_steps,
            self.batch_size,
            self.generation_config.max_new_tokens,
            self.ppo_epochs,
            self.mini_batch_size,
        )
        start_time = time.time()
        control = self.callback_handler.on_train_begin(args, state, control)
        pending: dict[str, list[float]] = {}
        data = iter(self.dataloader)
        while state.global_step < self.max_steps:
            try:
                batch = next(data)
            except StopIteration:
                data = iter(self.dataloader)
                batch = next(data)
            control = self.callback_handler.on_step_begin(args, state, control)

            rollout = self.generate(batch)
            experience = self.make_experience(rollout)
            stats = self.optimize(rollout, experience)
            self.scheduler.step()

            mean_kl = self.accelerator.reduce(experience["kl"].mean(), "mean").item()
            self._update_kl_coef(mean_kl)
            stats.update(
                reward=self.accelerator.reduce(experience["scores"].mean(), "mean").item(),
                kl=mean_kl,
                kl_coef=self.kl_coef,
                response_length=experience["mask"].sum(-1).mean().item(),
                truncated=experience["truncated"].mean().item(),
            )
            for key, value in stats.items():
                pending.setdefault(key, []).append(value)
            state.num_input_tokens_seen += int(rollout.attention_mask.sum()) * self.accelerator.num_processes
            state.global_step += 1
            state.epoch = state.global_step / self.steps_per_epoch

            control = self.callback_handler.on_step_end(args, state, control)
            if state.global_step % self.steps_per_epoch == 0:
                control = self.callback_handler.on_epoch_end(args, state, control)
            if control.should_log or control.should_training_stop:
                logs = {key: sum(values) / len(values) for key, values in pending.items()}
                logs["learning_rate"] = self.scheduler.get_last_lr()[0]
                self.alert(self.diagnosis.check())
                self.log(logs)
                pending.clear()
            if control.should_save:
                self.save_checkpoint()
                control = self.callback_handler.on_save(args, state, control)
                control.should_save = False
            if control.should_training_stop:
                break

        runtime = time.time() - start_time
        metrics = {
            "train_runtime": round(runtime, 4),
            "train_steps_per_second": round(state.global_step / max(runtime, 1e-9), 3),
            "epoch": state.epoch,
        }
        rewards = [h["reward"] for h in state.log_history if "reward" in h]
        if rewards:
            metrics["train_reward"] = rewards[-1]
        control = self.callback_handler.on_train_end(args, state, control)
        return metrics

    def alert(self, found: list[tuple[str, str]]) -> None:
        """An alert record in trainer_log.jsonl (through the LogCallback, when there is one) and a log line each."""
        writers = [cb for cb in self.callback_handler.callbacks if hasattr(cb, "write_alert")]
        for kind, message in found:
            for writer in writers:
                writer.write_alert(self.state, kind, message)
            if self.accelerator.is_main_process:
                logger.warning("alert %s at step %d: %s", kind, self.state.global_step, message)

    def log(self, logs: dict[str, float]) -> None:
        logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)
        self.control.should_log = False

    # Saving
    def save_model(self, output_dir: str | Path | None = None) -> None:
        """The policy's adapter (or model) and the value head, plus the tokenizer; main process only.

        A LoRA reward model loaded beside the policy is a second adapter of the same model: only the policy's is
        saved."""
        output_dir = Path(output_dir or self.args.output_dir)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            policy = self.accelerator.unwrap_model(self.model)
            kwargs = {}
            if hasattr(policy.pretrained_model, "active_adapter"):
                kwargs["selected_adapters"] = [policy.pretrained_model.active_adapter]
            policy.save_pretrained(output_dir, **kwargs)
            self.tokenizer.save_pretrained(output_dir)

    def save_checkpoint(self) -> Path:
        """`checkpoint-N/`: weights, value head, optimizer, scheduler and PPO state, then trainer_state.json."""
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        self.save_model(folder)
        if self.accelerator.is_main_process:
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)
            torch.save(self.scheduler.state_dict(), folder / SCHEDULER_FILE)
            ppo_state = {"kl_coef": self.kl_coef, "score_moments": vars(self.score_moments)}
            (folder / PPO_STATE_FILE).write_text(json.dumps(ppo_state), encoding="utf-8")
            # trainer_state.json is written last: its presence marks the checkpoint as complete.
            self.state.save_to_json(str(folder / "trainer_state.json"))
            self._rotate_checkpoints()
        self.accelerator.wait_for_everyone()
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Continue from `checkpoint-N/`: weights, value head, optimizer, schedule, KL coefficient, step and log.

        The prompt order restarts from the start of the dataset (no sampler state is kept)."""
        from core.model.valuehead import load_valuehead_checkpoint

        folder = Path(folder)
        load_valuehead_checkpoint(self.accelerator.unwrap_model(self.model), folder)
        if (folder / OPTIMIZER_FILE).is_file():
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, weights_only=True))
            self.scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
        if (folder / PPO_STATE_FILE).is_file():
            ppo_state = json.loads((folder / PPO_STATE_FILE).read_text(encoding="utf-8"))
            self.kl_coef = ppo_state["kl_coef"]
            self.kl_coef_scaled = True
            vars(self.score_moments).update(ppo_state["score_moments"])
        saved = TrainerState.load_from_json(str(folder / "trainer_state.json"))
        self.state.global_step = saved.global_step
        self.state.epoch = saved.epoch
        self.state.num_input_tokens_seen = saved.num_input_tokens_seen
        self.state.log_history = saved.log_history or []
        logger.info("PPO: resumed from %s at step %d", folder, saved.global_step)

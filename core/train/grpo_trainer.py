"""Our GRPO trainer for the grpo stage (group relative policy optimisation, Shao et al. 2024, DeepSeekMath).

It lives beside the PPO trainer and shares its rollout pieces (`Rollout`, `cut_after_stop`, `masked_mean` from
ppo_trainer.py, `token_logps` from pref_losses.py); it needs no value head and no reward model unless one is asked
for. trl's GRPOTrainer is not used: it tokenizes prompts itself (the tokenizer's chat template, or the raw text),
which would bypass our templates, cutoff and processed datasets; see the grpo section of docs/architecture.md.

One step, read top to bottom in `train()`:
1. Sample: `prompts_per_step` prompts, `num_generations` completions each, with the generating arguments
   (temperature, top_p, top_k, max_new_tokens; always sampled). Each group is drawn with a seed of its own
   (seed, step, the prompt's row), so one process and several ranks sample the same completions.
2. Score: every reward function in `rewards.py`; the reward is their weighted sum.
3. Advantage: the reward minus its group's mean, divided by the group's standard deviation (`grpo_scale_rewards`),
   the same for every token of the completion.
4. Old log-probabilities (only for `grpo_epochs` > 1; with one pass the ratio is 1 by construction) and the
   reference's (`grpo_beta` > 0: the LoRA base with the adapter off, or a frozen copy).
5. `grpo_epochs` passes over the completions in mini-batches of `per_device_train_batch_size`, an optimizer step
   every `gradient_accumulation_steps` mini-batches. Per completion: the mean over its tokens of
   -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + beta * KL, with KL the k3 estimator
   exp(ref - logp) - (ref - logp) - 1; the loss is the mean over completions (the paper's normalisation).

A step uses per_device_train_batch_size * gradient_accumulation_steps completions per process, i.e. that divided
by num_generations prompts; groups never straddle processes. transformers' callbacks see the usual events, so
LogCallback and GracefulStopCallback work unchanged. Logged per logging step (means over its steps): `loss`,
`reward`, `reward_std`, `reward/<function>`, `kl` (with grpo_beta > 0), `clip_fraction`, `completion_length`,
`completion_length_max`, `completion_cut` (share that reached max_new_tokens), `learning_rate`, `grad_norm`; and a
few prompts with their completions and rewards in `samples.jsonl`.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import GenerationConfig, TrainerControl, TrainerState
from transformers.optimization import get_scheduler
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

from core import runfolder
from core.train.loop_trainer import LoopTrainerBase, enable_activation_checkpointing
from core.train.ppo_trainer import Rollout, cut_after_stop, masked_mean
from core.train.pref_losses import token_logps
from core.train.rewards import Rewards

logger = logging.getLogger(__name__)

SAMPLES_FILE = runfolder.SAMPLES
SAMPLE_GROUPS = 2  # prompts written to samples.jsonl per logging step
SAMPLE_COMPLETIONS = 4  # completions per prompt written
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """Each reward minus its group's mean, divided by the group's standard deviation when `scale` (groups are
    consecutive runs of `group_size`). A group whose rewards are all equal gets advantage 0: no signal."""
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(dim=1, keepdim=True) + 1e-4)
    return centred.view(-1)


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, kl, clip fraction): the clipped surrogate per token plus beta * k3 KL, averaged over each
    completion's tokens, then over completions. `kl` is the mean per-token KL (0 without a reference)."""
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)
    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None:
        diff = ref_logprobs - logprobs
        kl = torch.exp(diff) - diff - 1
        per_token = per_token + beta * kl
    lengths = mask.sum(-1).clamp(min=1)
    loss = ((per_token * mask).sum(-1) / lengths).mean()
    mean_kl = ((kl * mask).sum(-1) / lengths).mean()
    # Tokens whose ratio the clip held back: above 1 + eps with a positive advantage, below 1 - eps with a negative.
    clipped = ((ratio > 1 + epsilon) & (adv > 0)) | ((ratio < 1 - epsilon) & (adv < 0))
    return loss, mean_kl.detach(), masked_mean(clipped.float(), mask).detach()


class _Indexed(Dataset):
    """The processed dataset with each row's index, so a prompt's sampling seed does not depend on its batch."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}


class GRPOTrainer(LoopTrainerBase):
    """GRPO on a causal LM policy (lora, freeze or full); see the module docstring for the algorithm."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        training_args: Any,
        finetuning_args: Any,
        generating_args: Any,
        train_dataset: Any,
        rewards: Rewards,
        ref_model: nn.Module | None = None,
        callbacks: list | None = None,
        stop_token_ids: list[int] | None = None,
    ) -> None:
        from accelerate import Accelerator

        if getattr(training_args, "deepspeed", None) or getattr(training_args, "fsdp", None):
            raise ValueError(
                "grpo: deepspeed / fsdp are not supported by the GRPO trainer yet — remove them (several GPUs still "
                "work, with plain data parallelism), or use lora to fit the model."
            )
        self.args = training_args
        self.tokenizer = tokenizer
        self.rewards = rewards
        self.group_size = int(finetuning_args.num_generations)
        self.beta = float(finetuning_args.grpo_beta)
        self.epsilon = float(finetuning_args.grpo_epsilon)
        self.passes = int(finetuning_args.grpo_epochs)
        self.scale_rewards = bool(finetuning_args.grpo_scale_rewards)
        self.mini_batch_size = training_args.per_device_train_batch_size
        self.accumulation = training_args.gradient_accumulation_steps
        completions = self.mini_batch_size * self.accumulation
        if completions % self.group_size:
            raise ValueError(
                f"num_generations: {self.group_size} does not divide per_device_train_batch_size * "
                f"gradient_accumulation_steps = {completions} — make that product a multiple of it."
            )
        self.prompts_per_step = completions // self.group_size

        mixed = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no"
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=bool(getattr(training_args, "use_cpu", False)))
        self.device = self.accelerator.device

        loader = DataLoader(
            _Indexed(train_dataset),
            batch_size=self.prompts_per_step,
            shuffle=not getattr(finetuning_args, "disable_shuffling", False),
            collate_fn=self._collate_prompts,
            drop_last=True,
            generator=torch.Generator().manual_seed(training_args.seed),
        )
        # Each process takes its own prompts.
        self.dataloader = self.accelerator.prepare_data_loader(loader)
        if len(self.dataloader) == 0:
            raise ValueError(
                f"grpo: the dataset has {len(train_dataset)} prompts, fewer than one step's {self.prompts_per_step} "
                f"prompts per process on {self.accelerator.num_processes} process(es) — lower "
                "per_device_train_batch_size or raise num_generations, or raise max_samples."
            )
        self.steps_per_epoch = len(self.dataloader)
        if training_args.max_steps > 0:
            self.max_steps = training_args.max_steps
        else:
            self.max_steps = max(1, math.ceil(training_args.num_train_epochs * self.steps_per_epoch))

        if getattr(training_args, "activation_checkpointing", False):
            self._enable_activation_checkpointing(model, training_args)
        optimizer = self._create_optimizer(model, training_args, finetuning_args)
        scheduler = get_scheduler(
            training_args.lr_scheduler_type,
            optimizer,
            num_warmup_steps=training_args.get_warmup_steps(self.max_steps),
            num_training_steps=self.max_steps,
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scheduler = scheduler
        self.ref_model = ref_model.to(self.device).eval() if ref_model is not None else None

        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_token_ids = stop_token_ids or [tokenizer.eos_token_id]
        self.max_new_tokens = int(getattr(generating_args, "max_new_tokens", None) or 0) or 1024
        self.temperature = float(getattr(generating_args, "temperature", None) or 1.0)
        if not getattr(generating_args, "do_sample", True):
            logger.info("grpo samples its completions: do_sample: false is ignored (greedy groups carry no signal).")
        self.generation_config = GenerationConfig(
            do_sample=True,
            temperature=self.temperature,
            top_p=float(getattr(generating_args, "top_p", 1.0)),
            top_k=int(getattr(generating_args, "top_k", 0)),
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.stop_token_ids,
            pad_token_id=self.pad_id,
        )

        def steps(value: float | None) -> int:
            # Trainer reads a value below 1 as a share of max_steps.
            value = value or training_args.logging_steps
            return max(1, math.ceil(self.max_steps * value)) if value < 1 else int(value)

        self.state = TrainerState(
            max_steps=self.max_steps,
            logging_steps=steps(training_args.logging_steps),
            save_steps=steps(training_args.save_steps),
            eval_steps=steps(training_args.eval_steps),
            num_train_epochs=math.ceil(self.max_steps / self.steps_per_epoch),
            train_batch_size=completions,
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process,
        )
        self.state.log_history = []
        self.control = TrainerControl()
        self.callback_handler = CallbackHandler(
            [DefaultFlowCallback(), *(callbacks or [])], self.model, tokenizer, self.optimizer, self.scheduler
        )
        self.samples_path = Path(training_args.output_dir) / SAMPLES_FILE

    @staticmethod
    def _enable_activation_checkpointing(model: nn.Module, training_args: Any) -> None:
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        enable_activation_checkpointing(causal_lm, training_args)

    # Data
    def _collate_prompts(self, rows: list[dict]) -> dict[str, Any]:
        """The prompts' ids as lists (each group is sampled on its own, unpadded), references as text."""
        references = [
            self.tokenizer.decode([t for t in row.get("labels", []) if t >= 0], skip_special_tokens=True).strip()
            for row in rows
        ]
        return {
            "input_ids": [list(row["input_ids"]) for row in rows],
            "index": [int(row["index"]) for row in rows],
            "references": references,
        }

    # Sampling
    def _group_seed(self, index: int) -> int:
        return zlib.crc32(f"{self.args.seed}:{self.state.global_step}:{index}".encode())

    @torch.no_grad()
    def generate(self, batch: dict[str, Any]) -> Rollout:
        """`num_generations` completions per prompt, as one Rollout: prompts left-padded, completions right-padded
        and cut after their first stop token; rows of one group are consecutive."""
        policy = self.accelerator.unwrap_model(self.model)
        policy.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        queries, responses = [], []
        for ids, index in zip(batch["input_ids"], batch["index"], strict=True):
            query = torch.tensor([ids] * self.group_size, device=self.device)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self._group_seed(index))
                out = policy.generate(
                    input_ids=query,
                    attention_mask=torch.ones_like(query),
                    generation_config=self.generation_config,
                )
            queries.append(query)
            responses.append(out[:, query.shape[1] :])
        q_width = max(q.shape[1] for q in queries)
        r_width = max(max(r.shape[1] for r in responses), 1)
        query = torch.cat([nn.functional.pad(q, (q_width - q.shape[1], 0), value=self.pad_id) for q in queries])
        query_mask = torch.cat(
            [nn.functional.pad(torch.ones_like(q), (q_width - q.shape[1], 0), value=0) for q in queries]
        )
        response = torch.cat([nn.functional.pad(r, (0, r_width - r.shape[1]), value=self.pad_id) for r in responses])
        response, response_mask = cut_after_stop(response, self.stop_token_ids, self.pad_id)

        prompts = self.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        texts = self.tokenizer.batch_decode(
            [r[m.bool()] for r, m in zip(response, response_mask, strict=True)], skip_special_tokens=True
        )
        repeat = self.group_size
        return Rollout(
            input_ids=torch.cat([query, response], dim=1),
            attention_mask=torch.cat([query_mask, response_mask], dim=1),
            response_mask=response_mask,
            prompts=[p for p in prompts for _ in range(repeat)],
            responses=texts,
            references=[r for r in batch["references"] for _ in range(repeat)],
        )

    def _logprobs(self, model: nn.Module, rollout: Rollout) -> torch.Tensor:
        """Log-probabilities of the completion tokens under `model`, at the sampling temperature."""
        length = rollout.response_mask.shape[1]
        position_ids = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=rollout.input_ids,
            attention_mask=rollout.attention_mask,
            position_ids=position_ids,
            logits_to_keep=length + 1,
        )
        logits = out.logits[:, :-1] / self.temperature
        return token_logps(logits, rollout.input_ids[:, -length:])

    @torch.no_grad()
    def _reference_logprobs(self, rollout: Rollout) -> torch.Tensor:
        if self.ref_model is not None:
            return self._logprobs(self.ref_model, rollout)
        policy = self.accelerator.unwrap_model(self.model)
        with policy.disable_adapter():
            return self._logprobs(policy, rollout)

    def _mini_batches(self, count: int) -> list[torch.Tensor]:
        return [torch.arange(s, min(s + self.mini_batch_size, count)) for s in range(0, count, self.mini_batch_size)]

    @torch.no_grad()
    def score(self, rollout: Rollout) -> dict[str, Any]:
        """Rewards, advantages, and the old / reference log-probabilities the passes need."""
        mask = rollout.response_mask
        lengths = mask.sum(-1)
        ends_with_stop = torch.isin(
            rollout.input_ids[torch.arange(len(lengths)), rollout.input_ids.shape[1] - mask.shape[1] + lengths - 1],
            torch.tensor(self.stop_token_ids, device=mask.device),
        )
        cut = (lengths >= self.max_new_tokens) & ~ends_with_stop
        completion_ids = [
            r[m.bool()].tolist() for r, m in zip(rollout.input_ids[:, -mask.shape[1] :], mask, strict=True)
        ]
        totals, per_func = self.rewards.score(
            rollout.prompts,
            rollout.responses,
            reference=rollout.references,
            completion_ids=completion_ids,
            cut=cut.tolist(),
            max_new_tokens=self.max_new_tokens,
            rollout=rollout,
        )
        rewards = torch.tensor(totals, dtype=torch.float32, device=self.device)
        scored: dict[str, Any] = {
            "rewards": rewards,
            "per_func": {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in per_func.items()},
            "advantages": group_advantages(rewards, self.group_size, self.scale_rewards),
            "lengths": lengths.float(),
            "cut": cut.float(),
            "old_logprobs": None,
            "ref_logprobs": None,
        }
        parts = self._mini_batches(len(rollout.prompts))
        if self.passes > 1:
            self.model.eval()
            scored["old_logprobs"] = torch.cat([self._logprobs(self.model, rollout.select(i)) for i in parts])
        if self.beta > 0:
            scored["ref_logprobs"] = torch.cat([self._reference_logprobs(rollout.select(i)) for i in parts])
        return scored

    # Optimisation
    def optimize(self, rollout: Rollout, scored: dict[str, Any]) -> dict[str, float]:
        self.model.train()
        sums = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0}
        count, micro = 0, 0
        grad_norm = None
        mask = rollout.response_mask.float()
        for _ in range(self.passes):
            for index in self._mini_batches(len(rollout.prompts)):
                logprobs = self._logprobs(self.model, rollout.select(index))
                old = scored["old_logprobs"][index] if scored["old_logprobs"] is not None else logprobs.detach()
                ref = scored["ref_logprobs"][index] if scored["ref_logprobs"] is not None else None
                loss, kl, clipped = grpo_loss(
                    logprobs, old, ref, scored["advantages"][index], mask[index], self.epsilon, self.beta
                )
                self.accelerator.backward(loss / self.accumulation)
                micro += 1
                if micro % self.accumulation == 0:
                    if self.args.max_grad_norm:
                        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                sums["loss"] += loss.item()
                sums["kl"] += kl.item()
                sums["clip_fraction"] += clipped.item()
                count += 1
        stats = {key: value / max(count, 1) for key, value in sums.items()}
        if grad_norm is not None:
            stats["grad_norm"] = float(grad_norm)
        return stats

    def _step_stats(self, stats: dict[str, float], scored: dict[str, Any]) -> dict[str, float]:
        """The step's figures over every process: the reward's mean and spread, each function's mean, lengths."""
        acc = self.accelerator
        rewards = acc.gather(scored["rewards"])
        lengths = acc.gather(scored["lengths"])
        out = {key: acc.reduce(torch.tensor(value, device=self.device), "mean").item() for key, value in stats.items()}
        out.update(
            reward=rewards.mean().item(),
            reward_std=rewards.std().item() if rewards.numel() > 1 else 0.0,
            completion_length=lengths.mean().item(),
            completion_length_max=lengths.max().item(),
            completion_cut=acc.gather(scored["cut"]).mean().item(),
        )
        for name, values in scored["per_func"].items():
            out[f"reward/{name}"] = acc.gather(values).mean().item()
        if self.beta <= 0:
            out.pop("kl", None)  # no reference model: nothing was measured
        return out

    # Loop
    def train(self, resume_from_checkpoint: str | None = None) -> dict[str, float]:
        if resume_from_checkpoint:
            self.load_checkpoint(resume_from_checkpoint)
        elif self.accelerator.is_main_process:
            self.samples_path.unlink(missing_ok=True)  # a run started over keeps no samples of the last one
        args, state, control = self.args, self.state, self.control
        logger.info(
            "GRPO: %d steps, %d prompts x %d completions per step and process, %d pass(es) over mini-batches of %d",
            self.max_steps,
            self.prompts_per_step,
            self.group_size,
            self.passes,
            self.mini_batch_size,
        )
        start_time = time.time()
        control = self.callback_handler.on_train_begin(args, state, control)
        pending: dict[str, list[float]] = {}
        data = self._batches(skip=state.global_step)
        last_samples: list[dict] = []
        while state.global_step < self.max_steps:
            batch = next(data)
            control = self.callback_handler.on_step_begin(args, state, control)

            rollout = self.generate(batch)
            scored = self.score(rollout)
            stats = self.optimize(rollout, scored)
            self.scheduler.step()

            for key, value in self._step_stats(stats, scored).items():
                pending.setdefault(key, []).append(value)
            last_samples = self._samples(rollout, scored)
            tokens = self.accelerator.reduce(rollout.attention_mask.sum(), "sum")
            state.num_input_tokens_seen += int(tokens)
            state.global_step += 1
            state.epoch = state.global_step / self.steps_per_epoch

            control = self.callback_handler.on_step_end(args, state, control)
            if state.global_step % self.steps_per_epoch == 0:
                control = self.callback_handler.on_epoch_end(args, state, control)
            if control.should_log or control.should_training_stop:
                logs = {
                    key: max(values) if key == "completion_length_max" else sum(values) / len(values)
                    for key, values in pending.items()
                }
                logs["learning_rate"] = self.scheduler.get_last_lr()[0]
                self.log(logs)
                self._write_samples(last_samples)
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

    def _batches(self, skip: int = 0):
        """Batches of prompts forever, epoch after epoch; the first `skip` are drawn and dropped, so a resumed run
        sees the prompts the uninterrupted run would have."""
        drawn = 0
        while True:
            for batch in self.dataloader:
                drawn += 1
                if drawn > skip:
                    yield batch

    def log(self, logs: dict[str, float]) -> None:
        logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)
        self.control.should_log = False

    # Samples
    def _samples(self, rollout: Rollout, scored: dict[str, Any]) -> list[dict]:
        """A few completions of the first prompts of this process, with what each reward function gave them."""
        rows = []
        for group in range(min(SAMPLE_GROUPS, len(rollout.prompts) // self.group_size)):
            for i in range(group * self.group_size, group * self.group_size + SAMPLE_COMPLETIONS):
                if i >= (group + 1) * self.group_size:
                    break
                rows.append(
                    {
                        "prompt": rollout.prompts[i],
                        "reference": rollout.references[i],
                        "completion": rollout.responses[i],
                        "reward": round(scored["rewards"][i].item(), 4),
                        "rewards": {k: round(v[i].item(), 4) for k, v in scored["per_func"].items()},
                        "advantage": round(scored["advantages"][i].item(), 4),
                        "length": int(scored["lengths"][i].item()),
                        "cut": bool(scored["cut"][i].item()),
                    }
                )
        return rows

    def _write_samples(self, rows: list[dict]) -> None:
        """Append this logging step's samples to samples.jsonl (main process), one flushed line each."""
        if not self.accelerator.is_main_process or not rows:
            return
        self.samples_path.parent.mkdir(parents=True, exist_ok=True)
        with self.samples_path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({"step": self.state.global_step, **row}, ensure_ascii=False) + "\n")
            f.flush()

    # Saving
    def save_model(self, output_dir: str | Path | None = None) -> None:
        """The policy's adapter (or model) and the tokenizer; main process only."""
        output_dir = Path(output_dir or self.args.output_dir)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir)
            self.tokenizer.save_pretrained(output_dir)

    def save_checkpoint(self) -> Path:
        """`checkpoint-N/`: weights, optimizer and scheduler, then trainer_state.json."""
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        self.save_model(folder)
        if self.accelerator.is_main_process:
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_FILE)
            torch.save(self.scheduler.state_dict(), folder / SCHEDULER_FILE)
            # trainer_state.json is written last: its presence marks the checkpoint as complete.
            self.state.save_to_json(str(folder / "trainer_state.json"))
            self._rotate_checkpoints()
        self.accelerator.wait_for_everyone()
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Continue from `checkpoint-N/`: weights, optimizer, schedule, step and log; samples.jsonl keeps the
        records up to that step. The prompts continue where the checkpoint left them."""
        folder = Path(folder)
        policy = self.accelerator.unwrap_model(self.model)
        if hasattr(policy, "load_adapter") and (folder / "adapter_config.json").is_file():
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(policy, load_file(str(folder / "adapter_model.safetensors")))
        elif (folder / "model.safetensors").is_file():
            from safetensors.torch import load_file

            policy.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
        if (folder / OPTIMIZER_FILE).is_file():
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, weights_only=True))
            self.scheduler.load_state_dict(torch.load(folder / SCHEDULER_FILE, weights_only=True))
        saved = TrainerState.load_from_json(str(folder / "trainer_state.json"))
        self.state.global_step = saved.global_step
        self.state.epoch = saved.epoch
        self.state.num_input_tokens_seen = saved.num_input_tokens_seen
        self.state.log_history = saved.log_history or []
        if self.accelerator.is_main_process and self.samples_path.is_file():
            kept = [
                line
                for line in self.samples_path.read_text(encoding="utf-8").splitlines()
                if _sample_step(line) is not None and _sample_step(line) <= saved.global_step
            ]
            self.samples_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        logger.info("GRPO: resumed from %s at step %d", folder, saved.global_step)


def _sample_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None

"""Health checks inside the job: a callback every stage gets, so the CLI has them as much as the board.

Each alert is one record in trainer_log.jsonl (`{"alert": kind, "level", "message", "current_steps", ...}`, through
`LogCallback.write_alert`), one plain line in job.log (`alert <kind> at step N: <message>`) and, with a webhook
configured (`core.notify`), one POST. An alert is raised when its sign appears and again only after it went away.

Kinds and what raises them (keys in `FinetuningArguments`, `health_*`; `health_checks: false` turns all off):

    nan            the gradients (checked before every optimizer step) or the logged loss / grad_norm are NaN or
                   Inf. With `health_stop_on_nan` (default) the run stops at once: the last good step is saved as
                   checkpoint-N (weights, optimizer, scheduler, trainer_state.json; the bad update is never
                   applied) and `TrainingHealthError` ends the job, failed, with that cause. Not with fp16 (its loss
                   scaler skips overflowing steps by design) nor DeepSpeed (gradients are partitioned): there the
                   logged loss / grad_norm are checked, and the newest checkpoint already saved is the good one.
    divergence     the smoothed loss (EMA, weight 0.5) stays above `health_divergence_factor` x its lowest value
                   (and 0.1 above it) for `health_patience` logging steps in a row; only for positive losses.
    overfitting    eval_loss rose `health_overfit_evals` evaluations in a row while the smoothed loss fell.
    kl             ppo / grpo: the logged `kl` above `health_max_kl` for `health_patience` logging steps.
    response_length  ppo / grpo: the mean response length below 1 token, or at the maximum (every response cut at
                   `max_new_tokens`), for `health_patience` logging steps.
    disk           before a checkpoint is written: free space on the output disk below 1.2 x the estimated size
                   (the last checkpoint's size; before the first, weights + Adam states of the trainable part).
    lr_zero        learning_rate 0, or the scheduler's rate 0 after warmup and before the last step.
    masked_labels  training rows with no token to learn from (every label masked, e.g. an answer cut away by
                   cutoff_len): an alert when every row is such, or when the run will likely meet a batch made only
                   of them (a step that learns nothing: transformers gives it loss 0).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core import notify
from core.errors import UserError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
EMA_WEIGHT = 0.5
DIVERGENCE_MARGIN = 0.1
DISK_SAFETY = 1.2
SCAN_ROWS = 5000  # rows read for the label check: enough for the share, cheap on any dataset
RL_STAGES = ("ppo", "grpo")
LENGTH_KEYS = ("response_length", "completions/mean_length")


class TrainingHealthError(UserError):
    """The run stopped itself because its numbers went bad (NaN / Inf); the message says where and what to do."""


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # not a number: nothing to judge


def human_size(size: float) -> str:
    """Bytes as `512 KiB`, `3.2 MiB`, `41 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.3g} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    return f"{size:.3g} TiB"


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under `path`."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                continue
    return total


def estimate_checkpoint_bytes(model: Any) -> int:
    """A first checkpoint's size before any exists: the saved weights (the adapter's for peft models, the whole
    model otherwise) plus two fp32 Adam states per trainable parameter."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    adapter_only = hasattr(model, "peft_config") or hasattr(getattr(model, "pretrained_model", None), "peft_config")
    saved = trainable if adapter_only else list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in saved)
    return int(weights + sum(8 * p.numel() for p in trainable))


def masked_label_rows(dataset: Any, limit: int = SCAN_ROWS) -> tuple[int, int]:
    """(rows with no label to learn from, rows read) over the first `limit` rows of a processed training set.

    A causal LM predicts token t+1 from t, so the first label never counts; pairwise rows are judged by their
    chosen answer."""
    if not hasattr(dataset, "select"):  # a stream (streaming: true) is read while training, not ahead
        return 0, 0
    columns = getattr(dataset, "column_names", None) or []
    column = next((c for c in ("labels", "chosen_labels") if c in columns), None)
    if column is None:
        return 0, 0
    rows = dataset.select(range(min(limit, len(dataset))))[column]
    masked = sum(1 for labels in rows if all(label == IGNORE_INDEX for label in labels[1:]))
    return masked, len(rows)


class HealthCallback(TrainerCallback):
    """The checks of the module docstring. `log` is the run's LogCallback (the writer of trainer_log.jsonl)."""

    def __init__(self, log: Any, finetuning_args: Any = None, generating_args: Any = None) -> None:
        self.log = log
        self.stage = getattr(finetuning_args, "stage", "sft")
        self.stop_on_nan = bool(getattr(finetuning_args, "health_stop_on_nan", True))
        self.factor = float(getattr(finetuning_args, "health_divergence_factor", 3.0))
        self.patience = int(getattr(finetuning_args, "health_patience", 3))
        self.overfit_evals = int(getattr(finetuning_args, "health_overfit_evals", 3))
        self.max_kl = float(getattr(finetuning_args, "health_max_kl", 20.0))
        self.max_new_tokens = int(getattr(generating_args, "max_new_tokens", None) or 64)
        self.alerts: list[dict[str, Any]] = []
        self._active: set[str] = set()
        self._streaks: dict[str, int] = {}
        self._ema: float | None = None
        self._ema_min: float | None = None
        self._evals: list[tuple[float, float | None]] = []  # (eval_loss, smoothed loss at that time)
        self._checkpoint_bytes: int | None = None
        self._skip_grad_check = False

    # Raising
    def _alert(self, state: Any, kind: str, message: str, level: str = "warning") -> None:
        self.alerts.append({"alert": kind, "message": message, "current_steps": state.global_step})
        if not state.is_world_process_zero:
            return
        self.log.write_alert(state, kind, message, level)
        logger.warning("alert %s at step %d: %s", kind, state.global_step, message)
        output_dir = self.log.path.parent if getattr(self.log, "path", None) else Path(".")
        notify.notify(notify.build_payload("alert", output_dir, "running", cause=message, kind=kind))

    def _sign(self, state: Any, kind: str, present: bool, message: str, level: str = "warning") -> None:
        """Raise `kind` when its sign appears; forget it when the sign goes away, so a later return alerts again."""
        if not present:
            self._active.discard(kind)
            return
        if kind not in self._active:
            self._active.add(kind)
            self._alert(state, kind, message, level)

    def _streak(self, key: str, present: bool) -> int:
        self._streaks[key] = self._streaks.get(key, 0) + 1 if present else 0
        return self._streaks[key]

    # Events
    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self._skip_grad_check = bool(getattr(args, "fp16", False) or getattr(args, "deepspeed", None))
        if args.learning_rate == 0:
            self._sign(state, "lr_zero", True, "learning_rate is 0: no weight will change — set a learning rate")
        dataset = getattr(train_dataloader, "dataset", None)
        if self.stage in RL_STAGES or dataset is None:
            return
        try:
            masked, read = masked_label_rows(dataset)
        except (TypeError, KeyError, IndexError, AttributeError):
            return  # not a processed datasets.Dataset (an iterable stream): nothing to count
        if not read or not masked:
            return
        share = masked / read
        batch = max(1, args.per_device_train_batch_size)
        batches = max(1, state.max_steps) * max(1, args.gradient_accumulation_steps)
        expected = batches * share**batch
        if masked == read or expected >= 0.1:
            every = "every one" if masked == read else f"{masked} of {read}"
            self._sign(
                state,
                "masked_labels",
                True,
                f"{every} of the training rows read has no answer token to learn from (all labels masked): a batch "
                "of only such rows learns nothing — raise cutoff_len, check the dataset's answers and the template, "
                "or turn train_on_prompt on",
            )

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if self._skip_grad_check or model is None:
            return
        import torch

        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch._foreach_norm(grads)
        devices = {n.device for n in norms}
        total = torch.stack(norms).sum() if len(devices) == 1 else sum(n.sum().cpu() for n in norms)
        if bool(torch.isfinite(total)):
            self._active.discard("nan")
            return
        step = state.global_step + 1
        what = f"the gradients of step {step} are NaN or Inf (the loss or its gradient overflowed)"
        if not self.stop_on_nan:
            self._sign(state, "nan", True, f"{what} — training goes on (health_stop_on_nan: false)", "error")
            return
        saved = self._save_last_good(args, state, model, optimizer, lr_scheduler, kwargs.get("processing_class"))
        where = f"saved {saved.name}, the last good step" if saved else "no earlier step to save"
        self._stop(state, f"{what}; {where}")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not control.should_save or not state.is_local_process_zero or model is None:
            return
        output_dir = Path(args.output_dir)
        need = self._checkpoint_bytes or estimate_checkpoint_bytes(model)
        try:
            free = shutil.disk_usage(output_dir).free
        except OSError:
            return
        self._sign(
            state,
            "disk",
            free < DISK_SAFETY * need,
            f"{human_size(free)} free on the disk of {output_dir}, checkpoint-{state.global_step} needs about "
            f"{human_size(need)} — free space, or raise save_steps / lower save_total_limit",
            "error",
        )

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self._checkpoint_bytes = folder_bytes(folder)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        self._check_nan(args, state, logs)
        if "loss" in logs and _finite(logs["loss"]):
            self._check_divergence(state, float(logs["loss"]))
        if "eval_loss" in logs and _finite(logs["eval_loss"]):
            self._check_overfitting(state, float(logs["eval_loss"]))
        lr = logs.get("learning_rate")
        if lr is not None and "loss" in logs:
            warmup = args.get_warmup_steps(state.max_steps) if state.max_steps else 0
            zero = float(lr) == 0.0 and warmup < state.global_step < state.max_steps
            self._sign(
                state,
                "lr_zero",
                zero,
                f"the learning rate is 0 at step {state.global_step}, after warmup — check lr_scheduler_type and "
                "its arguments",
            )
        if self.stage in RL_STAGES:
            self._check_rl(state, logs)

    # Checks
    def _check_nan(self, args, state, logs: dict[str, Any]) -> None:
        bad = [key for key in ("loss", "grad_norm") if key in logs and not _finite(logs[key])]
        if not bad:
            return
        what = " and ".join(bad) + f" {'is' if len(bad) == 1 else 'are'} NaN or Inf at step {state.global_step}"
        if not self.stop_on_nan:
            self._sign(state, "nan", True, f"{what} — training goes on (health_stop_on_nan: false)", "error")
            return
        from core.train.trainer_utils import last_complete_checkpoint

        last = last_complete_checkpoint(args.output_dir)
        where = f"the newest checkpoint before it is {last.name}" if last else "no checkpoint was saved before it"
        self._stop(state, f"{what}; {where}")

    def _stop(self, state, what: str) -> None:
        message = f"{what} — lower learning_rate, check the data, or set health_stop_on_nan: false to keep going"
        self._alert(state, "nan", message, "error")
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # the main process saved; everyone stops together
        raise TrainingHealthError(f"training stopped: {message}")

    def _save_last_good(self, args, state, model, optimizer, lr_scheduler, tokenizer) -> Path | None:
        """checkpoint-N of the last finished step, before the bad update is applied; None at step 0."""
        if state.global_step == 0:
            return None
        from core.train.trainer_utils import is_complete_checkpoint

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if is_complete_checkpoint(folder) or not state.is_world_process_zero:
            return folder
        import torch

        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        if lr_scheduler is not None:
            torch.save(lr_scheduler.state_dict(), folder / "scheduler.pt")
        # trainer_state.json last: its presence marks the checkpoint complete (trainer_utils.is_complete_checkpoint).
        state.save_to_json(str(folder / "trainer_state.json"))
        logger.info("Saved %s, the last step before the NaN / Inf", folder)
        return folder

    def _check_divergence(self, state, loss: float) -> None:
        self._ema = loss if self._ema is None else EMA_WEIGHT * loss + (1 - EMA_WEIGHT) * self._ema
        self._ema_min = self._ema if self._ema_min is None else min(self._ema_min, self._ema)
        lowest = self._ema_min
        high = lowest > 0 and self._ema > self.factor * lowest and self._ema - lowest > DIVERGENCE_MARGIN
        streak = self._streak("divergence", high)
        self._sign(
            state,
            "divergence",
            streak >= self.patience,
            f"the smoothed loss is {self._ema:.4g}, above {self.factor:g}x its lowest ({lowest:.4g}) for "
            f"{streak} logging steps: training is diverging — lower learning_rate or raise warmup",
            "error",
        )

    def _check_overfitting(self, state, eval_loss: float) -> None:
        self._evals.append((eval_loss, self._ema))
        window = self._evals[-(self.overfit_evals + 1) :]
        rising = len(window) == self.overfit_evals + 1 and all(
            b[0] > a[0] for a, b in zip(window, window[1:], strict=False)
        )
        first_train, last_train = window[0][1], window[-1][1]
        falling = first_train is not None and last_train is not None and last_train < first_train
        self._sign(
            state,
            "overfitting",
            rising and falling,
            f"eval_loss rose {self.overfit_evals} evaluations in a row (to {eval_loss:.4g}) while the training loss "
            "fell: the model is overfitting — keep an earlier checkpoint, train fewer epochs or add data",
        )

    def _check_rl(self, state, logs: dict[str, Any]) -> None:
        if "kl" in logs and _finite(logs["kl"]):
            kl = float(logs["kl"])
            streak = self._streak("kl", kl > self.max_kl)
            self._sign(
                state,
                "kl",
                streak >= self.patience,
                f"the KL to the reference is {kl:.3g}, above health_max_kl {self.max_kl:g} for {streak} logging "
                "steps: "
                "the policy is drifting away, perhaps exploiting the reward — raise the KL weight (ppo_target lower) "
                "or lower learning_rate",
            )
        key = next((k for k in LENGTH_KEYS if k in logs), None)
        if key is None or not _finite(logs[key]):
            return
        length = float(logs[key])
        collapsed = length < 1.0
        # ppo logs the share of cut answers and raises its own ppo_truncated alert (core.train.ppo_trainer.Diagnosis)
        at_max = length >= 0.98 * self.max_new_tokens and "truncated" not in logs
        streak = self._streak("response_length", collapsed or at_max)
        shape = "collapsed to empty answers" if collapsed else f"stuck at the maximum ({self.max_new_tokens} tokens)"
        self._sign(
            state,
            "response_length",
            streak >= self.patience,
            f"the mean response length is {length:.3g}, {shape} for {streak} logging steps: a sign of reward "
            "hacking — check the reward and the stop words",
        )

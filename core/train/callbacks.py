"""Callbacks every stage uses: the `trainer_log.jsonl` writer, graceful stop on SIGTERM/SIGINT, early stopping,
PiSSA conversion.

`LogCallback` is the only writer of `trainer_log.jsonl` (DESIGN.md section 3): one JSON object a line, flushed, on
the main process only. It works with any loop that calls `on_train_begin`, `on_log` and `on_train_end` with a
`TrainerState` (the Trainer does; a hand-written loop such as ppo's can too). Keys it writes:

    current_steps, total_steps, percentage, epoch, elapsed_time, remaining_time (H:MM:SS), elapsed_s, remaining_s,
    loss, eval_loss, lr, grad_norm, throughput (real tokens/s since this process started training), total_tokens,
    and every other number in the log dict (accuracy, eval_accuracy, rewards/*, reward, kl, ...).

Alert records (`{"alert": kind, "level", "message"}` plus the progress keys) come from `write_alert`, which
`core.train.health.HealthCallback` calls; `mfu` comes from `core.train.monitor.EfficiencyCallback`.

`rewards/accuracies` is also written as `accuracy` (and `eval_rewards/accuracies` as `eval_accuracy`). A key with
no value is left out. On resume the file keeps the records up to the checkpoint's step and continues after them.

`write_alert(state, kind, message, level)` appends an alert record instead (`alert`, `level`, `message` and the
progress keys; DESIGN.md section 6): a loop that can tell why a run is going wrong (ppo) calls it.

A job that only evaluates or predicts (no `on_train_begin`) gets progress records from `on_prediction_step`:
`phase` (`predict` with `do_predict`, else `eval`), `current_steps` / `total_steps` counting batches of that pass,
`percentage` and the four time keys, no epoch and no metrics. They are appended every `_prediction_interval`
batches and at the last one, so the board can draw a progress bar while answers are generated. A training run
writes none (its evaluation passes stay out of the file): its records keep meaning training steps.

Data preparation appends `phase: prepare` records before training starts (core.data.progress); `on_train_begin`
drops every record with a `phase`, so the file holds training records only once training runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core.runfolder import KEEP_BEST, TRAINER_LOG, format_hms, read_log_records

logger = logging.getLogger(__name__)

# About this many prediction records per pass, however many batches it has.
PREDICTION_RECORDS = 50

# Log-dict keys that are bookkeeping, not curves: the record carries them in its own form or not at all.
_NOT_METRICS = {
    "epoch",
    "step",
    "learning_rate",
    "num_input_tokens_seen",
    "train_tokens_per_second",
    "total_flos",
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
    "eval_num_input_tokens_seen",
    "eval_tokens_per_second",
}
_RENAMED = {"learning_rate": "lr"}


class LogCallback(TrainerCallback):
    """Writes `trainer_log.jsonl` and a short progress line per log step; see the module docstring."""

    def __init__(self, output_dir: str | os.PathLike | None = None) -> None:
        self.output_dir = Path(output_dir) if output_dir else None
        self.path: Path | None = None
        self.start_time: float | None = None
        self.start_step = 0
        self.start_tokens = 0
        self.elapsed_before = 0.0
        self._last_eval: tuple[int, float] | None = None
        self._training = False
        # The prediction pass in progress: batches done, when it began and when its first batch ended.
        self._pass_steps = 0
        self._pass_start = time.time()
        self._first_step_end: float | None = None

    def on_init_end(self, args, state, control, **kwargs):
        # The model is loaded and the data prepared by now: a prediction pass's time starts here, not before.
        self._pass_start = time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True
        self.start_time = time.time()
        self.start_step = state.global_step
        self.start_tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        if not state.is_world_process_zero:
            return
        self.path = (self.output_dir or Path(args.output_dir)) / TRAINER_LOG
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Progress records of other phases (data preparation: `phase: prepare`) make way for training's.
        records = read_log_records(self.path)
        kept = [r for r in records if "phase" not in r and r.get("current_steps", 0) <= state.global_step]
        if state.global_step == 0:
            kept = []
        # Rewritten whole (not truncated in place) so the board never reads a record from the abandoned future.
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        if kept:
            self.elapsed_before = float(kept[-1].get("elapsed_s", 0.0))
            logger.info("Resuming the log at step %d (%d records kept)", state.global_step, len(kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.path is None or not logs or "train_loss" in logs:
            return
        if "eval_loss" in logs:
            # The workflow's final evaluate repeats the Trainer's eval at the last step: one record is enough.
            key = (state.global_step, logs["eval_loss"])
            if key == self._last_eval:
                return
            self._last_eval = key
        record = self._record(state, logs)
        self._append(record)
        logger.info(self._progress_line(record))

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self._training or not state.is_world_process_zero:
            return
        now = time.time()
        self._pass_steps += 1
        if self._pass_steps == 1:
            self._first_step_end = now
        try:
            total = len(eval_dataloader) if eval_dataloader is not None else 0
        except TypeError:  # an iterable dataset has no length: steps are counted, the total stays unknown
            total = 0
        done = self._pass_steps
        interval = max(1, -(-total // PREDICTION_RECORDS)) if total else 1
        if done % interval and done != total:
            return
        if self.path is None:
            self.path = (self.output_dir or Path(args.output_dir)) / TRAINER_LOG
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elapsed = now - self._pass_start
        # The first batch also holds the set-up before it, so the pace is measured from its end when possible.
        if done > 1 and self._first_step_end is not None:
            pace = (now - self._first_step_end) / (done - 1)
        else:
            pace = elapsed / done
        remaining = pace * max(0, total - done) if total else 0.0
        record = {
            "phase": "predict" if getattr(args, "do_predict", False) else "eval",
            "current_steps": done,
            "total_steps": total,
            "percentage": round(100 * done / total, 2) if total else 0.0,
            "elapsed_time": format_hms(elapsed),
            "remaining_time": format_hms(remaining),
            "elapsed_s": round(elapsed, 3),
            "remaining_s": round(remaining, 3),
        }
        self._append(record)
        logger.info(self._progress_line(record))

    def _end_pass(self) -> None:
        self._pass_steps = 0
        self._pass_start = time.time()
        self._first_step_end = None

    def on_evaluate(self, args, state, control, **kwargs):
        self._end_pass()

    def on_predict(self, args, state, control, **kwargs):
        self._end_pass()

    def elapsed_s(self, now: float | None = None) -> float | None:
        """Seconds of training so far on the clock of the records' `elapsed_s` (None before training starts)."""
        if self.start_time is None:
            return None
        return self.elapsed_before + (now or time.time()) - self.start_time

    def _progress(self, state) -> dict[str, Any]:
        now = time.time()
        session = now - (self.start_time or now)
        done = state.global_step - self.start_step
        total = state.max_steps or 0
        remaining = session / done * (total - state.global_step) if done > 0 and total else 0.0
        return {
            "current_steps": state.global_step,
            "total_steps": total,
            "percentage": round(100 * state.global_step / total, 2) if total else 0.0,
            "epoch": round(state.epoch, 4) if state.epoch is not None else None,
            "elapsed_time": format_hms(self.elapsed_before + session),
            "remaining_time": format_hms(remaining),
            "elapsed_s": round(self.elapsed_before + session, 3),
            "remaining_s": round(remaining, 3),
        }

    def write_alert(self, state, kind: str, message: str, level: str = "warning") -> dict[str, Any] | None:
        """Append an alert record (`alert`, `level`, `message` and the progress keys); main process only.

        The progress keys are there so a reader that takes the last record for the progress bar stays right."""
        if not state.is_world_process_zero or self.path is None:
            return None
        record = {"alert": kind, "level": level, "message": message, **self._progress(state)}
        record = {key: value for key, value in record.items() if value is not None}
        self._append(record)
        return record

    def _append(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()

    def _record(self, state, logs: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        session = now - (self.start_time or now)
        record: dict[str, Any] = self._progress(state)
        for key in ("loss", "eval_loss", "learning_rate", "grad_norm"):
            if logs.get(key) is not None:
                record[_RENAMED.get(key, key)] = logs[key]
        tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        if tokens and "eval_loss" not in logs:
            record["throughput"] = round((tokens - self.start_tokens) / session, 2) if session > 0 else 0.0
            record["total_tokens"] = tokens
        for key, value in logs.items():
            if key in record or key in _NOT_METRICS or key in _RENAMED or not isinstance(value, (int, float)):
                continue
            record[key] = value
        for prefix in ("", "eval_"):
            if f"{prefix}rewards/accuracies" in record and f"{prefix}accuracy" not in record:
                record[f"{prefix}accuracy"] = record[f"{prefix}rewards/accuracies"]
        return {key: value for key, value in record.items() if value is not None}

    @staticmethod
    def _progress_line(record: dict[str, Any]) -> str:
        step = f"{record['phase']} step" if "phase" in record else "step"
        parts = [f"{step} {record['current_steps']}/{record['total_steps']} ({record['percentage']:.0f}%)"]
        for key in ("loss", "eval_loss", "accuracy", "eval_accuracy", "reward", "lr", "throughput"):
            value = record.get(key)
            if value is not None:
                parts.append(f"{key} {value:.3g}" if key != "throughput" else f"{value:.0f} tok/s")
        parts.append(f"elapsed {record['elapsed_time']}, left {record['remaining_time']}")
        return " | ".join(parts)


class GracefulStopCallback(TrainerCallback):
    """SIGTERM / SIGINT -> finish the current step, save a checkpoint, stop training (the workflow then saves the
    model and results and the process exits 0). A second signal falls back to the previous handler (kill now).

    With several processes every rank receives the signal, maybe at different steps; the flag is or-reduced at each
    step end so all ranks stop at the same step instead of leaving one waiting in a collective.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.stop_requested = False
        self.keep_best = False
        self.stopped_at_step: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.stop_requested:
            self.restore()
            signal.raise_signal(signum)
            return
        self.stop_requested = True
        logger.warning("Received %s: stopping after this step and saving.", signal.Signals(signum).name)
        notice = getattr(self._previous.get(signum), "notice", None)
        if callable(notice):  # a handler that wants to know (core.sweep: run no further member)
            notice(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _agreed(self, args) -> bool:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.stop_requested
        import torch

        flag = torch.tensor([int(self.stop_requested)], device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_train_begin(self, args, state, control, **kwargs):
        self.install()

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed(args):
            self.stop_requested = True
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
            logger.warning(
                "Stopped at step %d of %d; saving checkpoint-%d.",
                state.global_step,
                state.max_steps,
                state.global_step,
            )
            output_dir = getattr(args, "output_dir", None)
            if output_dir and (Path(output_dir) / KEEP_BEST).exists() and not args.load_best_model_at_end:
                # The Trainer reloads state.best_model_checkpoint after its loop when this is set.
                args.load_best_model_at_end = True
                self.keep_best = True
                logger.warning("Stop and keep best: the final model will be the best checkpoint.")

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()
        if self.keep_best and state.is_world_process_zero:
            if state.best_model_checkpoint:
                logger.warning(
                    "Best checkpoint: %s (eval %s %.4g); the final model is its weights.",
                    Path(state.best_model_checkpoint).name, args.metric_for_best_model, state.best_metric,
                )  # fmt: skip
            else:
                logger.warning("Stop and keep best: no evaluated checkpoint yet; the final model is the last step.")

    def close(self) -> None:
        """A run that raised never reaches on_train_end: run_exp calls this so the handlers do not outlive it."""
        self.restore()


class EarlyStopCallback(TrainerCallback):
    """`early_stopping_patience`: stop training when `metric_for_best_model` (the eval loss unless set) has not
    improved for `patience` evaluations in a row, as transformers' EarlyStoppingCallback, but tracking the best value
    itself (so it needs no checkpoint saving) and saying in the job log after each evaluation without improvement
    how long it has waited, and when and why it stopped. At the end of training it names the best
    checkpoint (`state.best_model_checkpoint`) and whether the final model is its weights
    (`load_best_model_at_end`). Evaluations outside training (the workflow's final evaluate) are not counted.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.waited = 0
        self.stopped_at_step: int | None = None
        self._training = False

    @staticmethod
    def metric_key(args) -> str:
        key = args.metric_for_best_model or "loss"
        return key if key.startswith("eval_") else f"eval_{key}"

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._training:
            return
        key = self.metric_key(args)
        value = (metrics or {}).get(key)
        if not isinstance(value, (int, float)):
            logger.warning("Early stopping: this evaluation has no %s (metric_for_best_model); not counted.", key)
            return
        greater = bool(args.greater_is_better)
        improved = value == value and (self.best is None or (value > self.best if greater else value < self.best))
        if improved:
            self.best, self.best_step, self.waited = float(value), state.global_step, 0
            return
        self.waited += 1
        stop = self.waited >= self.patience
        if stop:
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
        if not state.is_world_process_zero:
            return
        if stop:
            logger.warning(
                "Early stopping at step %d: %s has not improved for %d evaluations (best %.4g at step %d, "
                "early_stopping_patience %d).",
                state.global_step, key, self.waited, self.best, self.best_step, self.patience,
            )  # fmt: skip
        else:
            logger.warning(
                "Early stopping: %s %.4g at step %d is no better than %.4g at step %d (%d of %d evaluations).",
                key, value, state.global_step, self.best, self.best_step, self.waited, self.patience,
            )  # fmt: skip

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        if not state.is_world_process_zero:
            return
        if state.best_model_checkpoint:
            kept = (
                "the final model is its weights" if args.load_best_model_at_end else "the final model is the last step"
            )
            logger.warning(
                "Best checkpoint: %s (%s %.4g); %s.",
                Path(state.best_model_checkpoint).name, self.metric_key(args), state.best_metric, kept,
            )  # fmt: skip
        elif self.best_step is not None:
            logger.warning(
                "Best evaluation: %s %.4g at step %d (no checkpoint was saved at that step).",
                self.metric_key(args), self.best, self.best_step,
            )  # fmt: skip

    def close(self) -> None:
        """A run that raised never reaches on_train_end: run_exp calls this so the handlers do not outlive it."""
        self.restore()


class PissaConvertCallback(TrainerCallback):
    """`pissa_convert`: keep the PiSSA initial adapter, and at the end also save the adapter converted to a plain
    LoRA on the original base model (`<output_dir>/pissa_converted`), the one to use for chat and export."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.init_dir = Path(output_dir) / "pissa_init"
        self.converted_dir = Path(output_dir) / "pissa_converted"

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None or state.global_step > 0:
            return
        model = getattr(model, "pretrained_model", model)
        config = model.peft_config["default"]
        init = config.init_lora_weights
        # Saved as if initialised plainly, so peft can subtract it from the trained adapter later.
        config.init_lora_weights = True
        model.save_pretrained(self.init_dir)
        config.init_lora_weights = init
        logger.info("Saved the PiSSA initial adapter to %s", self.init_dir)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None or not self.init_dir.is_dir():
            return
        model = getattr(model, "pretrained_model", model)
        model.save_pretrained(self.converted_dir, path_initial_model_for_weight_conversion=str(self.init_dir))
        logger.info("Saved the PiSSA adapter converted to LoRA to %s", self.converted_dir)

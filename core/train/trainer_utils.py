"""Pieces the stage workflows share: output-dir and resume rules, the LoRA+ optimizer, and the steps every stage
runs alike (train_and_save, evaluate_and_save: quiet logging, saving, results, the loss plot).

Resume rule: an `output_dir` holding `checkpoint-N/` folders resumes from the newest COMPLETE one, where complete
means `trainer_state.json` parses (the Trainer writes it last) and weights are there. A folder cut off mid-save
is skipped with a log line. A non-empty `output_dir` without checkpoints needs `overwrite_output_dir: true`; the
board's own files (job.yaml, job.json, job.log) do not count.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

from core.runfolder import BOARD_FILES, TRAINER_LOG, read_log_records

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def is_complete_checkpoint(path: str | Path) -> bool:
    """True when `path` has a readable trainer_state.json and model or adapter weights."""
    path = Path(path)
    state = path / "trainer_state.json"
    if not state.is_file() or not any((path / name).is_file() for name in _WEIGHTS):
        return False
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """`checkpoint-N` folders, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete checkpoint; newer incomplete ones are reported and skipped."""
    for path in reversed(list_checkpoints(output_dir)):
        if is_complete_checkpoint(path):
            return path
        logger.warning("Skipping %s: it was cut off while saving (no trainer_state.json or no weights).", path)
    return None


def prepare_output_dir(training_args: Any) -> None:
    """Apply the resume / overwrite rule above; sets `training_args.resume_from_checkpoint` when resuming."""
    if not getattr(training_args, "do_train", False):
        return
    output_dir = Path(training_args.output_dir)
    if getattr(training_args, "resume_from_checkpoint", None):
        checkpoint = Path(training_args.resume_from_checkpoint)
        if not is_complete_checkpoint(checkpoint):
            raise ValueError(
                f"resume_from_checkpoint: {checkpoint} is not a complete checkpoint (it needs trainer_state.json "
                "and weights) — pick another checkpoint-N folder, or remove the key to start over."
            )
        return
    if not output_dir.is_dir():
        return
    overwrite = bool(getattr(training_args, "overwrite_output_dir", False))
    checkpoints = list_checkpoints(output_dir)
    if overwrite:
        if int(os.environ.get("RANK", "0")) != 0:
            return  # one process clears the folder; the others would race it
        for path in checkpoints:
            shutil.rmtree(path, ignore_errors=True)
        (output_dir / TRAINER_LOG).unlink(missing_ok=True)
        if checkpoints:
            logger.info("overwrite_output_dir: removed %d old checkpoints in %s", len(checkpoints), output_dir)
        return
    last = last_complete_checkpoint(output_dir)
    if last is not None:
        training_args.resume_from_checkpoint = str(last)
        logger.info("Resuming from %s", last)
        return
    others = sorted(p.name for p in output_dir.iterdir() if p.name not in BOARD_FILES)
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ValueError(
            f"output_dir: {output_dir} already holds files ({shown}) and no complete checkpoint to resume from — "
            "set overwrite_output_dir: true to train over it, or choose a new output_dir."
        )


def create_loraplus_optimizer(trainer: Any, finetuning_args: Any):
    """LoRA+: the B matrices learn `loraplus_lr_ratio` times faster than A (embedding B at `loraplus_lr_embedding`).
    Returns None when the ratio is unset, so the Trainer builds its usual optimizer. Adam-mini, Muon and BAdam
    (core.train.optimizers) are built here too, since every stage's Trainer asks this function first."""
    from core.train.optimizers import create_custom_optimizer

    custom = create_custom_optimizer(trainer, finetuning_args)
    if custom is not None:
        return custom
    ratio = getattr(finetuning_args, "loraplus_lr_ratio", None)
    if not ratio:
        return None
    from transformers import Trainer

    args = trainer.args
    model = trainer.model
    decay = set(trainer.get_decay_parameter_names(model))
    embedding_lr = getattr(finetuning_args, "loraplus_lr_embedding", None) or 1e-6
    groups: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "lora_embedding_B" in name:
            lr = embedding_lr
        elif "lora_B" in name or param.ndim == 1 and "lora_magnitude" in name:
            lr = args.learning_rate * float(ratio)
        else:
            lr = args.learning_rate
        weight_decay = args.weight_decay if name in decay else 0.0
        groups.setdefault((lr, weight_decay), []).append(param)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    param_groups = [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]
    logger.info("LoRA+ optimizer: B matrices at %.3g x the learning rate", float(ratio))
    return optimizer_cls(param_groups, **optimizer_kwargs)


def quiet_trainer(trainer: Any) -> Any:
    """Drop the Trainer's own printing of every log dict: LogCallback already writes one readable line per log."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def train_and_save(trainer: Any, training_args: Any, finetuning_args: Any, plot_keys: tuple[str, ...]) -> None:
    """Train (resuming from the checkpoint prepare_output_dir chose), save the model and the trainer state, write
    train_results.json / all_results.json, and on the main process plot `plot_keys` when plot_loss is set.

    The Trainer's own printing of each log dict is switched off first (quiet_trainer): LogCallback already writes
    one readable line a log step, and the job's log would show every step twice."""
    quiet_trainer(trainer)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()
    write_results(trainer, "train", result.metrics)
    if trainer.is_world_process_zero() and finetuning_args.plot_loss:
        plot_loss(training_args.output_dir, keys=plot_keys)


def evaluate_and_save(trainer: Any, perplexity: bool = False) -> dict[str, Any]:
    """Evaluate on the eval split, add the perplexity of eval_loss on request, write eval_results.json /
    all_results.json (quietly, as train_and_save)."""
    quiet_trainer(trainer)
    metrics = trainer.evaluate(metric_key_prefix="eval")
    if perplexity:
        try:
            metrics["perplexity"] = math.exp(metrics["eval_loss"])
        except OverflowError:
            metrics["perplexity"] = float("inf")
    write_results(trainer, "eval", metrics)
    return metrics


def write_results(trainer: Any, split: str, metrics: dict[str, Any]) -> None:
    """`<split>_results.json` and `all_results.json` as transformers writes them, plus a log line."""
    trainer.log_metrics(split, metrics)
    trainer.save_metrics(split, metrics)


def plot_loss(output_dir: str | Path, keys: tuple[str, ...] = ("loss", "eval_loss")) -> list[Path]:
    """Save `training_<key>.png` for each key found in trainer_log.jsonl (needs matplotlib; skipped without)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("plot_loss: matplotlib is not installed, no plot saved (pip install matplotlib).")
        return []
    records = read_log_records(Path(output_dir) / TRAINER_LOG)
    saved = []
    for key in keys:
        points = [(r["current_steps"], r[key]) for r in records if key in r]
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        plt.figure()
        plt.plot(steps, values, color="#1f77b4", alpha=0.4, label="original")
        if len(values) > 2:
            smooth, last = [], values[0]
            for value in values:
                last = 0.8 * last + 0.2 * value
                smooth.append(last)
            plt.plot(steps, smooth, color="#1f77b4", label="smoothed")
        plt.title(f"{key} of {Path(output_dir).name}")
        plt.xlabel("step")
        plt.ylabel(key)
        plt.legend()
        path = Path(output_dir) / f"training_{key.replace('/', '_')}.png"
        plt.savefig(path, format="png", dpi=100)
        plt.close()
        saved.append(path)
    logger.info("Saved plots: %s", ", ".join(p.name for p in saved) or "none (no such keys logged)")
    return saved

"""Pieces the stage workflows share: output-dir and resume rules, the LoRA+ optimizer, and the steps every stage
runs alike (train_and_save, evaluate_and_save: quiet logging, saving, results, the loss plot).

Resume rule: an `output_dir` holding `checkpoint-N/` folders resumes from the newest COMPLETE one, where complete
means `trainer_state.json` parses (the Trainer writes it last) and weights are there. A folder cut off mid-save
is skipped with a log line. A non-empty `output_dir` without checkpoints needs `overwrite_output_dir: true`; the
board's own files (job.yaml, job.json, job.log) do not count.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

from core.checkpoints import (  # noqa: F401 - re-exported: the resume rule below and its callers use them
    checkpoint_problem,
    is_complete_checkpoint,
    last_complete_checkpoint,
    list_checkpoints,
    resume_problem,
)
from core.errors import ConfigError
from core.runfolder import BOARD_FILES, REPRO_JSON, TRAINER_LOG, is_cache_file, read_log_records

logger = logging.getLogger(__name__)


def _only_progress(path: Path) -> bool:
    """A trainer_log.jsonl without a training record (data preparation progress of a run that stopped before its
    first step) holds nothing to keep."""
    if path.name != TRAINER_LOG or not path.is_file():
        return False
    return all("phase" in record for record in read_log_records(path))


def prepare_output_dir(training_args: Any) -> None:
    """Apply the resume / overwrite rule above; sets `training_args.resume_from_checkpoint` when resuming."""
    if not getattr(training_args, "do_train", False):
        return
    output_dir = Path(training_args.output_dir)
    if getattr(training_args, "resume_from_checkpoint", None):
        problem = resume_problem(training_args.resume_from_checkpoint)
        if problem:
            raise ConfigError(problem)
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
    # repro.json is written at start like job.yaml: a job that failed before training leaves the folder reusable.
    others = sorted(
        p.name
        for p in output_dir.iterdir()
        if p.name not in BOARD_FILES | {REPRO_JSON} and not _only_progress(p) and not is_cache_file(p.name)
    )
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ConfigError(
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
    train_results.json / all_results.json, and on the main process finish the run folder (finish_run: charts, model
    card, hub push).

    The Trainer's own printing of each log dict is switched off first (quiet_trainer): LogCallback already writes
    one readable line a log step, and the job's log would show every step twice."""
    quiet_trainer(trainer)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()
    write_results(trainer, "train", result.metrics)
    if trainer.is_world_process_zero():
        finish_run(training_args, finetuning_args, plot_keys)


def finish_run(training_args: Any, finetuning_args: Any, plot_keys: tuple[str, ...]) -> None:
    """After a training run has saved everything (main process only): the charts when plot_loss is set, the model
    card (README.md), then the hub push when push_to_hub asked for one. Neither can fail the finished run."""
    from core.train.model_card import push_output_dir, write_model_card

    if finetuning_args.plot_loss:
        plot_loss(training_args.output_dir, keys=plot_keys)
    try:
        write_model_card(training_args, finetuning_args)
    except OSError as err:
        logger.warning("Model card not written (%s); the trained model is saved.", err)
    if finetuning_args.push_at_end:
        push_output_dir(training_args)


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
    """`plot_loss: true`: the run's charts as the board draws them, in `training_charts.html` (one self-contained
    page: plotly.js inlined, opens offline), plus `training_<chart>.png` when plotly's image exporter (kaleido)
    works. Charts: loss with its smoothing and eval loss; the learning rate; rewards (accuracy, margins, ppo's
    reward) when `keys` names a reward metric and the log has one.

    The figures are webui/plots.py's (pure: plotly and numpy only): the one board module the core reads, so a
    chart looks the same in the board, in the run folder and in a `runs compare` page."""
    from webui import plots

    output_dir = Path(output_dir)
    records = read_log_records(output_dir / TRAINER_LOG)
    name = output_dir.name
    figures = {"loss": plots.loss_figure(records, title=f"Loss of {name}")}
    if any("lr" in record for record in records):
        figures["lr"] = plots.lr_figure(records, title=f"Learning rate of {name}")
    reward_keys = {"rewards/accuracies", "rewards/margins", "accuracy", "eval_accuracy", "reward"}
    if reward_keys & set(keys) and any(reward_keys & record.keys() for record in records):
        figures["rewards"] = plots.reward_figure(records, title=f"Rewards of {name}")
    if not any(figure.data for figure in figures.values()):
        logger.info("plot_loss: nothing to plot (no loss logged in %s)", output_dir)
        return []
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=index == 0, default_width="100%")
        for index, figure in enumerate(figures.values())
    ]
    page = output_dir / "training_charts.html"
    page.write_text(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{name}</title></head>\n<body>\n'
        + "\n".join(parts)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    saved = [page]
    saved += _write_pngs(output_dir, figures)
    logger.info("Saved plots: %s", ", ".join(path.name for path in saved))
    return saved


def _write_pngs(output_dir: Path, figures: dict[str, Any]) -> list[Path]:
    """PNG copies through kaleido when it is installed and can render (it drives a Chrome); else none, said once."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        logger.info("plot_loss: PNG charts need the kaleido package (pip install kaleido); the HTML page has them.")
        return []
    saved = []
    for chart, figure in figures.items():
        path = output_dir / f"training_{chart}.png"
        try:
            figure.write_image(path, format="png", width=900, height=320)
        except Exception as err:  # noqa: BLE001 — an exporter that cannot start must not fail a finished run
            logger.info("plot_loss: no PNG (%s: %s); the HTML page has the charts.", type(err).__name__, err)
            return saved
        saved.append(path)
    return saved

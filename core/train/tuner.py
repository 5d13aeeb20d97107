"""Run one training job from one argument dict: `python -m core.cli train job.yaml [key=value ...]`.

`run_exp` reads and checks the arguments, writes `<output_dir>/job.yaml`, applies the resume / overwrite rule,
and hands over to the stage's workflow from `STAGES`, with the console copied into `<output_dir>/job.log` (unless
stdout is that file already, as in a board job); a training run ends with its seconds per step and real tokens/s.
Every workflow has the signature
`run_<stage>(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from core import notify
from core.errors import ConfigError
from core.runfolder import JOB_YAML, TRAINER_LOG, read_log_records
from core.secrets import without_secrets
from core.train.console import console_log, summary
from core.train.pt import run_pt
from core.train.rm import run_rm
from core.train.sft import run_sft

logger = logging.getLogger(__name__)

_LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s: %(message)s"


def _run_ppo(*args, **kwargs):
    from core.train.ppo import run_ppo

    return run_ppo(*args, **kwargs)


def _run_dpo(*args, **kwargs):
    from core.train.dpo import run_dpo

    return run_dpo(*args, **kwargs)


def _run_kto(*args, **kwargs):
    from core.train.kto import run_kto

    return run_kto(*args, **kwargs)


def _run_grpo(*args, **kwargs):
    from core.train.grpo import run_grpo

    return run_grpo(*args, **kwargs)


# ppo / dpo / kto / grpo are imported on dispatch: their modules live beside ours and may pull in more of trl.
STAGES = {
    "pt": run_pt,
    "sft": run_sft,
    "rm": run_rm,
    "ppo": _run_ppo,
    "dpo": _run_dpo,
    "kto": _run_kto,
    "grpo": _run_grpo,
}


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def configure_logging() -> None:
    """Our progress lines to stdout (the board tails job.log); the libraries' chatter down to errors."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.checkpoint")
    level = logging.INFO if _is_main_process() else logging.WARNING
    core_logger = logging.getLogger("core")
    core_logger.setLevel(level)
    if not core_logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
        core_logger.addHandler(handler)
        core_logger.propagate = False


def write_job_yaml(output_dir: str | os.PathLike, args: dict[str, Any]) -> Path:
    """`<output_dir>/job.yaml` with the argument dict as run, unless an identical one is there (the board's)."""
    path = Path(output_dir) / JOB_YAML
    args = without_secrets(args)  # refused by the checks already; this keeps a direct caller's token out too
    if path.is_file():
        try:
            if yaml.safe_load(path.read_text(encoding="utf-8")) == args:
                return path
        except yaml.YAMLError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def default_callbacks(
    training_args: Any, finetuning_args: Any, generating_args: Any = None, data_args: Any = None
) -> list:
    """The callbacks every run gets: the `mfu` figure (before the log writes it), the jsonl log, graceful stop,
    health checks (`health_checks`), system metrics (`metrics_interval`), and early stopping and PiSSA conversion
    when asked."""
    from core.train.callbacks import EarlyStopCallback, GracefulStopCallback, LogCallback, PissaConvertCallback
    from core.train.health import HealthCallback
    from core.train.monitor import EfficiencyCallback, SystemMetricsCallback

    log = LogCallback(training_args.output_dir)
    efficiency = EfficiencyCallback(
        finetuning_args.stage, bool(getattr(data_args, "packing", False)), getattr(data_args, "cutoff_len", None)
    )
    callbacks = [efficiency, log, GracefulStopCallback()]
    if getattr(finetuning_args, "health_checks", True):
        callbacks.append(HealthCallback(log, finetuning_args, generating_args))
    interval = float(getattr(finetuning_args, "metrics_interval", 5.0) or 0)
    if interval > 0:
        callbacks.append(SystemMetricsCallback(log, interval))
    if getattr(finetuning_args, "early_stopping_patience", None):
        callbacks.append(EarlyStopCallback(finetuning_args.early_stopping_patience))
    if getattr(finetuning_args, "pissa_init", False) and getattr(finetuning_args, "pissa_convert", False):
        callbacks.append(PissaConvertCallback(training_args.output_dir))
    return callbacks


def add_results(output_dir: str | os.PathLike, callbacks: list) -> dict[str, Any]:
    """Add the callbacks' figures (`results()`: peak memory, real tokens/s, MFU) to train_results.json and
    all_results.json, when training wrote them. Returns the train results as they stand."""
    figures: dict[str, Any] = {}
    for callback in callbacks:
        if hasattr(callback, "results"):
            figures.update(callback.results())
    results: dict[str, Any] = {}
    for name in ("train_results.json", "all_results.json"):
        path = Path(output_dir) / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data.update(figures)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=4, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        if name == "train_results.json":
            results = data
    return results


def run_exp(args: dict[str, Any] | str | list[str] | None = None, callbacks: list | None = None) -> None:
    """Run the job the argument dict (or YAML path, or argv list; None = sys.argv[1:]) describes."""
    configure_logging()
    from core.hparams import ArgumentError, get_train_args, read_args
    from core.preflight import input_problems
    from core.train.trainer_utils import prepare_output_dir

    raw = read_args(args if args is not None else sys.argv[1:])
    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(raw)
    stage = finetuning_args.stage
    if stage not in STAGES:
        raise ConfigError(f"stage: received {stage!r} — use one of {', '.join(STAGES)}.")

    problems = input_problems(raw)  # a missing dataset or model must not leave an empty run folder behind
    if problems:
        raise ArgumentError(problems)
    prepare_output_dir(training_args)  # before anything is written, so a refused folder stays as it was
    if _is_main_process():
        write_job_yaml(training_args.output_dir, raw)
        from core.repro import write_repro

        write_repro(training_args.output_dir, raw, training_args.seed)
    log = console_log(training_args.output_dir) if _is_main_process() else contextlib.nullcontext()
    with log:
        from core.train.checkpointing import decide

        decide(raw, model_args, data_args, training_args, finetuning_args)  # gradient checkpointing where it pays
        _run_stage(model_args, data_args, training_args, finetuning_args, generating_args, callbacks)


def _run_stage(model_args, data_args, training_args, finetuning_args, generating_args, callbacks) -> None:
    from transformers import set_seed

    from core.model.loader import infer_compute_dtype

    stage = finetuning_args.stage
    if getattr(model_args, "compute_dtype", None) is None:
        model_args.compute_dtype = infer_compute_dtype(training_args, finetuning_args)
    if training_args.include_num_input_tokens_seen == "no":
        # Throughput in the log counts real tokens, so the padding a batch carries is not reported as speed.
        training_args.include_num_input_tokens_seen = "non_padding"
    set_seed(training_args.seed)

    method, output_dir = finetuning_args.finetuning_type, training_args.output_dir
    if training_args.do_train:
        logger.info("Stage %s, %s, output in %s", stage, method, output_dir)
    else:  # the log's first line says what the run is: an evaluation, not an sft training run
        logger.info("Evaluation, no training (stage %s, %s), results in %s", stage, method, output_dir)
    all_callbacks = default_callbacks(training_args, finetuning_args, generating_args, data_args)
    all_callbacks += list(callbacks or [])
    try:
        STAGES[stage](model_args, data_args, training_args, finetuning_args, generating_args, all_callbacks)
    except BaseException as err:
        for callback in all_callbacks:
            if hasattr(callback, "close"):
                callback.close()
        if _is_main_process() and not isinstance(err, KeyboardInterrupt):
            cause = str(err).splitlines()[0] if str(err) else type(err).__name__
            notify.notify(notify.build_payload("failed", output_dir, "failed", cause=cause))
            notify.flush()
        raise
    if _is_main_process():
        results = add_results(output_dir, all_callbacks)
        # A run stopped by SIGTERM / SIGINT was aborted by someone who knows: no notification.
        if not any(getattr(callback, "stop_requested", False) for callback in all_callbacks):
            notify.notify(notify.build_payload("finished", output_dir, "finished", metrics=results))
            notify.flush()
        if line := summary(read_log_records(Path(output_dir) / TRAINER_LOG)):
            logger.info("%s; output in %s", line, output_dir)

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    # `python -m core.train.tuner job.yaml [key=value ...]`: the same as `llamafactory-cli train`, minus the CLI.
    run_exp(sys.argv[1:])

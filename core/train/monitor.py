"""What the job uses and how efficiently it trains: `metrics.jsonl` sampling and the `mfu` figure of the log.

`SystemMetricsCallback` runs `core.sysmetrics.Sampler` on the main process from the end of the Trainer's set-up to
the end of training (every `metrics_interval` seconds), on the clock of trainer_log.jsonl's `elapsed_s`.
`EfficiencyCallback` adds `mfu` (percent, `core.efficiency`) to each training log, before LogCallback writes it;
the peak is the device's from `core.efficiency.PEAK_TFLOPS`, or on a CPU a matmul measured on the job's threads.
ppo / grpo get no MFU: most of their time is generation, which the training formula does not describe.

Both hand figures for the run's results (`results()`), which run_exp adds to train_results.json / all_results.json:
`train_peak_rss_mb`, `train_peak_gpu_mem_mb` (CUDA), `train_real_tokens_per_second`, `train_mfu`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from core.efficiency import device_peak_flops, mfu_percent, train_flops_per_token
from core.sysmetrics import METRICS_FILE, Sampler

logger = logging.getLogger(__name__)

SEQ_LEN_ROWS = 2000  # rows read for the mean sequence length
NO_MFU_STAGES = ("ppo", "grpo")


def measure_cpu_flops(dtype: Any = None, size: int = 512, seconds: float = 0.3) -> float:
    """FLOP/s of a square matmul on this process's torch threads (the best of repeats for about `seconds`)."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)  # warm-up
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        took = time.perf_counter() - start
        if took > 0:
            best = max(best, 2 * size**3 / took)
    return best


def matmul_params(model: Any) -> tuple[int, int]:
    """(parameters of the linear layers, of which trainable); a tied output layer counts once."""
    import torch

    seen: set[int] = set()
    total = trainable = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel()
            trainable += module.weight.numel() if module.weight.requires_grad else 0
    return total, trainable


def mean_seq_len(dataset: Any, limit: int = SEQ_LEN_ROWS) -> float | None:
    """Mean tokens per training row (of the first `limit` rows); None when the dataset cannot say."""
    if not hasattr(dataset, "select"):  # a stream (streaming: true) is read while training, not ahead
        return None
    columns = getattr(dataset, "column_names", None) or []
    column = next((c for c in ("input_ids", "chosen_input_ids") if c in columns), None)
    if column is None:
        return None
    rows = dataset.select(range(min(limit, len(dataset))))[column]
    return sum(len(r) for r in rows) / len(rows) if rows else None


def _config(model: Any) -> Any:
    for candidate in (model, getattr(model, "pretrained_model", None), getattr(model, "base_model", None)):
        config = getattr(candidate, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            return config
    return None


class SystemMetricsCallback(TrainerCallback):
    """Samples the job's CPU, memory and GPU use into `<output_dir>/metrics.jsonl`; main process only."""

    def __init__(self, log: Any, interval: float = 5.0) -> None:
        self.log = log
        self.interval = interval
        self.sampler: Sampler | None = None
        self.cuda_peak_mb: float | None = None
        self._step = 0

    def _clock(self) -> tuple[float | None, int]:
        return self.log.elapsed_s(), self._step

    def on_init_end(self, args, state, control, **kwargs):
        if self.interval <= 0 or not state.is_world_process_zero or self.sampler is not None:
            return
        import os

        import torch

        path = Path(args.output_dir) / METRICS_FILE
        if not args.resume_from_checkpoint:
            path.unlink(missing_ok=True)
        # Under torchrun the launcher is the parent of every worker: its tree is the whole job.
        root = os.getppid() if os.environ.get("LOCAL_RANK") is not None else os.getpid()
        self.sampler = Sampler(path, self.interval, self._clock, cuda=torch.cuda.is_available(), root_pid=root)
        self.sampler.start()

    def on_step_end(self, args, state, control, **kwargs):
        self._step = state.global_step

    def close(self) -> None:
        """Stop sampling (with a last sample); run_exp calls it when the stage fails, on_train_end otherwise."""
        if self.sampler is not None:
            self.sampler.stop()

    def on_train_end(self, args, state, control, **kwargs):
        self._step = state.global_step
        self.close()
        import torch

        if torch.cuda.is_available():
            self.cuda_peak_mb = round(torch.cuda.max_memory_reserved() / 2**20, 1)

    def results(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        if self.sampler is not None:
            figures.update({f"train_{key}": value for key, value in self.sampler.peaks().items()})
        if self.cuda_peak_mb:
            # This process's own peak (torch's allocator) is exact, NVML's counts the device as a whole.
            figures["train_peak_gpu_mem_mb"] = self.cuda_peak_mb
        return figures


class EfficiencyCallback(TrainerCallback):
    """Adds `mfu` to training logs and keeps the final tokens/s and MFU for the results. Goes before LogCallback."""

    def __init__(self, stage: str = "sft", packing: bool = False, cutoff_len: int | None = None) -> None:
        self.stage = stage
        self.packing = packing
        self.cutoff_len = cutoff_len
        self.flops_per_token: float | None = None
        self.peak_flops: float | None = None
        self.devices = 1
        self.tokens_per_second: float | None = None
        self.mfu: float | None = None
        self._start: float | None = None
        self._start_tokens = 0

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self._start = time.time()
        self._start_tokens = getattr(state, "num_input_tokens_seen", 0) or 0
        if self.stage in NO_MFU_STAGES or model is None:
            return
        config = _config(model)
        if config is None:
            return
        seq_len = float(self.cutoff_len or 0) if self.packing else None
        if seq_len is None:
            try:
                seq_len = mean_seq_len(getattr(train_dataloader, "dataset", None))
            except (TypeError, KeyError, IndexError, AttributeError):
                seq_len = None
        total, trainable = matmul_params(model)
        self.flops_per_token = train_flops_per_token(
            total, trainable, config.num_hidden_layers, config.hidden_size, seq_len or float(self.cutoff_len or 0)
        )
        self.devices = max(1, int(getattr(args, "world_size", 1) or 1))
        self.peak_flops = self._peak(args)
        if self.peak_flops:
            logger.info(
                "MFU against %.4g GFLOPS a device x %d, %.3g FLOPs a token",
                self.peak_flops / 1e9,
                self.devices,
                self.flops_per_token,
            )

    @staticmethod
    def _peak(args) -> float | None:
        import torch

        half = bool(getattr(args, "bf16", False) or getattr(args, "fp16", False))
        device = getattr(args, "device", None)
        if device is not None and device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peak = device_peak_flops(name, half)
            if peak is None:
                logger.info("No peak FLOPs known for %s: no MFU (add it to core.efficiency.PEAK_TFLOPS)", name)
            return peak
        if device is not None and device.type == "cpu":
            return measure_cpu_flops(torch.bfloat16 if getattr(args, "bf16", False) else torch.float32)
        return None

    def _update(self, state) -> None:
        elapsed = time.time() - (self._start or time.time())
        tokens = (getattr(state, "num_input_tokens_seen", 0) or 0) - self._start_tokens
        if elapsed <= 0 or tokens <= 0:
            return
        self.tokens_per_second = tokens / elapsed
        if self.flops_per_token and self.peak_flops:
            self.mfu = mfu_percent(self.tokens_per_second, self.flops_per_token, self.peak_flops, self.devices)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or self._start is None:
            return
        self._update(state)
        if self.mfu is not None:
            logs["mfu"] = round(self.mfu, 4)

    def on_train_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self._update(state)

    def results(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        if self.tokens_per_second is not None:
            figures["train_real_tokens_per_second"] = round(self.tokens_per_second, 2)
        if self.mfu is not None:
            figures["train_mfu"] = round(self.mfu, 4)
        return figures

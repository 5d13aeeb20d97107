"""Our preference trainers (dpo and kto) on transformers' Trainer.

Why not trl's DPOTrainer / KTOTrainer: in trl 1.16 they tokenize the raw dataset themselves (we already have
pairwise and feedback processors with our templates and `cutoff_len` rule), DPOTrainer rejects `orpo` and
`simpo`, and their logging keys and reference handling change between releases. Here the trainer only turns our
collated batches into log-probabilities and calls the loss functions of `core.train.pref_losses`; everything
else (optimizer, schedule, checkpoints, resume, callbacks, distributed) is transformers' Trainer.

Batches (see docs/architecture.md):
- dpo: `input_ids`, `attention_mask`, `labels` of 2B rows, the B chosen rows first, then the B rejected rows.
- kto: `input_ids`, `attention_mask`, `labels`, `kto_tags` (True = desirable) and the mismatched
  `kl_input_ids`, `kl_attention_mask`, `kl_labels` used to estimate KL(policy || reference).

Reference model: `ref_model` when given (full / freeze runs, or an explicit `ref_model`); otherwise the policy
itself with its LoRA adapter switched off, so LoRA runs keep one copy of the weights in memory; none at all for
the reference-free losses orpo and simpo.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from core.runfolder import ref_logps_name
from core.train.pref_losses import (
    AVERAGED_LOSSES,
    PREF_LOSSES,
    REFERENCE_FREE_LOSSES,
    dpo_loss,
    kto_loss,
    kto_pair_loss,
    orpo_loss,
    simpo_loss,
    token_logps,
)

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Reward metrics mean nothing when the reference is the policy itself (evaluation without training): left out.
REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "accuracy")


def label_window(labels: torch.Tensor) -> tuple[int, int]:
    """The positions `[start, end)` whose logits predict a labelled token in some row (position t predicts the
    token at t + 1): prompts and padding outside it need no logits. (0, 0) when nothing is labelled."""
    columns = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    if columns.numel() == 0:
        return 0, 0
    return int(columns[0]), int(columns[-1]) + 1


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and per-token mean of the log-probabilities of the labelled tokens of each row.

    `logits` `[N, L, V]` predict the token after each position, so they are compared with `labels` shifted left
    by one; positions labelled IGNORE_INDEX (prompt, padding) do not count."""
    labels = labels[:, 1:]
    mask = labels != IGNORE_INDEX
    logps = token_logps(logits[:, :-1], labels.masked_fill(~mask, 0))
    sums = (logps * mask).sum(-1)
    counts = mask.sum(-1).clamp(min=1)
    return sums, sums / counts


def window_logps(
    logits: torch.Tensor, labels: torch.Tensor, start: int, end: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_logps` from the logits of positions `[start, end)` only (see `label_window`)."""
    targets = labels[:, start + 1 : end + 1]
    mask = targets != IGNORE_INDEX
    logps = token_logps(logits, targets.masked_fill(~mask, 0))
    sums = (logps * mask).sum(-1)
    return sums, sums / mask.sum(-1).clamp(min=1)


def stack_rows(*groups: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(input_ids, attention_mask, labels) groups as one batch, each padded on the right to the longest: padding
    is masked and comes after every real token, so the real positions' logits are those of each group alone."""
    length = max(group[0].shape[1] for group in groups)
    out = []
    for index, fill in enumerate((0, 0, IGNORE_INDEX)):
        parts = [nn.functional.pad(group[index], (0, length - group[index].shape[1]), value=fill) for group in groups]
        out.append(torch.cat(parts))
    return tuple(out)


def adapter_layers(model: nn.Module) -> list[nn.Module]:
    """The PEFT layers whose adapters `disable_adapter()` switches off, found once.

    peft's `PeftModel.disable_adapter()` walks every module twice and builds a status report of all layers each
    time it is entered; per training step that walk cost a quarter of a 2M-parameter model's kto step. Switching
    the same layers through their own `enable_adapters` does the same work minus the walks."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [module for module in model.modules() if isinstance(module, BaseTunerLayer)]


REF_LOGPS_COLUMN = "ref_logps"


def ref_logps_file(output_dir: str, dataset: Any, reference: nn.Module) -> Path:
    """`<output_dir>/ref_logps-<fingerprint>.safetensors`: the fingerprint covers the processed dataset (datasets'
    own fingerprint, or a hash of its token ids) and the reference's weights (a checksum of every frozen tensor), so
    a changed dataset, cutoff, template or reference gets a file of its own and a resumed run finds its file."""
    digest = hashlib.sha256()
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint:
        digest.update(str(fingerprint).encode())
    else:
        for row in dataset:
            digest.update(json.dumps({k: v for k, v in row.items() if k.endswith("input_ids")}).encode())
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if "lora_" in name:  # the adapter is off in the reference
                continue
            values = param.detach().double()
            digest.update(
                f"{name}{tuple(param.shape)}{values.sum().item():.10e}{values.abs().sum().item():.10e}".encode()
            )
    return Path(output_dir) / ref_logps_name(digest.hexdigest()[:16])


@dataclasses.dataclass
class RefLogpsCollator:
    """Our collator, plus the precomputed reference log-probabilities of each example when the dataset has them."""

    collator: Any

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        if REF_LOGPS_COLUMN in features[0]:
            batch[REF_LOGPS_COLUMN] = torch.tensor([f[REF_LOGPS_COLUMN] for f in features], dtype=torch.float32)
        return batch


class MetricStore:
    """Running sums of a fixed set of metrics per split, reduced across processes when logged.

    Fixed keys and (sum, count) pairs keep the collective call the same shape on every process even when a
    micro-batch had, say, no desirable example."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._sums: dict[str, dict[str, list]] = {"train": {}, "eval": {}}

    def add(self, split: str, key: str, values: torch.Tensor) -> None:
        if values.numel() == 0:
            return
        total, count = self._sums[split].get(key, (0.0, 0))
        self._sums[split][key] = (total + values.detach().float().sum(), count + values.numel())

    def pending(self, split: str) -> bool:
        return bool(self._sums[split])

    def pop(self, split: str, accelerator: Any) -> dict[str, float]:
        """Means since the last call, over every process; keys without any value are left out."""
        stored = self._sums[split]
        rows = [
            [float(stored[k][0]) if k in stored else 0.0, float(stored[k][1]) if k in stored else 0.0]
            for k in self.keys
        ]
        stored.clear()
        table = torch.tensor(rows, dtype=torch.float64, device=accelerator.device)
        table = accelerator.reduce(table, reduction="sum")
        return {k: float(s / c) for k, (s, c) in zip(self.keys, table.tolist(), strict=True) if c > 0}


class _ReferenceMixin:
    """Reference log-probabilities from `self.ref_model`, or from the policy with its adapter off (or the policy
    itself when it is its own reference)."""

    ref_model: nn.Module | None
    reference_is_policy: bool = False

    def _setup_reference(self, ref_model: nn.Module | None, needs_reference: bool) -> None:
        if not needs_reference:
            self.ref_model = None
            return
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
            self.ref_model = ref_model.to(self.args.device)
            return
        if not hasattr(self.accelerator.unwrap_model(self.model), "disable_adapter"):
            raise ValueError(
                "This preference run needs a reference model: the policy has no LoRA adapter to switch off. "
                "Use finetuning_type: lora, set ref_model: <path>, or choose pref_loss: orpo / simpo."
            )
        self.ref_model = None

    def _setup_forward(self) -> None:
        """What `_forward_logps` needs to know about the policy, found once: its adapter layers, and whether its
        forward takes `logits_to_keep` (transformers' causal LMs do), so logits are made only where labels are."""
        policy = self.accelerator.unwrap_model(self.model)
        self._adapter_layers = adapter_layers(policy) if hasattr(policy, "disable_adapter") else []
        base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
        models = [m for m in (base, self.ref_model) if m is not None]
        self._keeps_logits = all("logits_to_keep" in inspect.signature(m.forward).parameters for m in models)

    @contextlib.contextmanager
    def _reference(self, model: nn.Module) -> Iterator[nn.Module]:
        if self.ref_model is not None or self.reference_is_policy:
            yield self.ref_model or model
            return
        layers = getattr(self, "_adapter_layers", None)
        if not layers:
            with self.accelerator.unwrap_model(model).disable_adapter():
                yield model
            return
        for layer in layers:
            layer.enable_adapters(False)
        try:
            yield model
        finally:
            for layer in layers:
                layer.enable_adapters(True)

    def _forward_logps(self, model: nn.Module, input_ids, attention_mask, labels) -> tuple[torch.Tensor, ...]:
        """Sum and mean log-probability of each row's labelled tokens. Logits are computed only for the positions
        that predict a label (`logits_to_keep`), so the prompt's positions never reach the output projection."""
        start, end = label_window(labels)
        kwargs = {"logits_to_keep": torch.arange(start, end, device=input_ids.device)} if self._keeps_logits else {}
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs).logits
        if not self._keeps_logits:
            logits = logits[:, start:end]
        return window_logps(logits, labels, start, end)


def _split_of(logs: dict[str, float]) -> tuple[str | None, str]:
    """Which stored metrics a Trainer log belongs to, and their key prefix: training steps carry `loss`,
    evaluations `eval_loss` (or `eval_<dataset>_loss` with eval_on_each_dataset), the final summary neither."""
    if "loss" in logs:
        return "train", ""
    if "eval_loss" in logs:
        return "eval", "eval_"
    for key in logs:
        if key.startswith("eval_") and key.endswith("_loss"):
            return "eval", key[: -len("loss")]
    return None, ""


class _PreferenceBase(_ReferenceMixin, Trainer):
    """What dpo and kto share: metric storage, logging of `rewards/*`, loss-only evaluation."""

    metric_keys: tuple[str, ...] = ()
    # compute_loss returns the mean over the micro-batch; Trainer divides by gradient accumulation itself.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args: Any, finetuning_args: Any, ref_model: nn.Module | None, needs_reference: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.finetuning_args = finetuning_args
        self.metrics = MetricStore(self.metric_keys)
        # The policy serves as its own reference (evaluation without training): rewards would all be 0.
        self.reference_is_policy = ref_model is not None and ref_model is kwargs.get("model")
        if getattr(finetuning_args, "disable_dropout", True):
            # What trl.trainer.utils.disable_dropout_in_model does, without importing trl for it (0.7 s of CPU,
            # about 6 s on a busy 2-core machine, for every dpo / kto start).
            for module in (self.model, ref_model):
                for layer in module.modules() if module is not None else ():
                    if isinstance(layer, nn.Dropout):
                        layer.p = 0.0
        if self.reference_is_policy:
            self._setup_reference(None, needs_reference=False)
        else:
            self._setup_reference(ref_model, needs_reference=needs_reference)
        self._setup_forward()
        # A frozen reference gives the same log-probabilities every epoch: computed once, read from the batch.
        self.precompute_ref_log_probs = bool(getattr(finetuning_args, "precompute_ref_log_probs", False)) and (
            needs_reference and not self.reference_is_policy
        )
        if self.precompute_ref_log_probs:
            self.data_collator = RefLogpsCollator(self.data_collator)

    def reference_logps(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The reference log-probabilities one batch needs, one row per example (the stage decides the columns)."""
        raise NotImplementedError

    def get_train_dataloader(self):
        columns = getattr(self.train_dataset, "column_names", None)  # a datasets.Dataset can take a column
        if self.precompute_ref_log_probs and columns is not None and REF_LOGPS_COLUMN not in columns:
            self.train_dataset = self._with_ref_logps(self.train_dataset)
        return super().get_train_dataloader()

    def _with_ref_logps(self, dataset: Any) -> Any:
        """`dataset` with a `ref_logps` column: read from the run folder's cache file, else computed in one pass
        (no gradients, the adapter off) and written there atomically by the main process."""
        from safetensors.torch import load_file, save_file

        with self._reference(self.model) as reference:
            path = ref_logps_file(self.args.output_dir, dataset, reference)
        if path.is_file():
            values = load_file(str(path))[REF_LOGPS_COLUMN]
            logger.info("Reference log-probabilities: read from %s", path.name)
        else:
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_size=self.args.per_device_eval_batch_size,
                collate_fn=self.data_collator.collator,
                shuffle=False,
            )
            rows = []
            training = self.model.training
            self.model.eval()
            with torch.no_grad():
                for batch in loader:
                    rows.append(self.reference_logps(self.model, self._prepare_inputs(batch)).float().cpu())
            self.model.train(training)
            values = torch.cat(rows)
            if self.is_world_process_zero():
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".partial")
                save_file({REF_LOGPS_COLUMN: values.contiguous()}, str(partial))
                partial.replace(path)
            logger.info("Reference log-probabilities: %d examples computed once, cached in %s", len(values), path.name)
        if len(values) != len(dataset):
            raise ValueError(f"{path}: {len(values)} rows for a dataset of {len(dataset)}; delete the file to redo it")
        return dataset.add_column(REF_LOGPS_COLUMN, values.tolist())

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            from core.train.trainer_utils import create_loraplus_optimizer

            self.optimizer = create_loraplus_optimizer(self, self.finetuning_args)  # None unless loraplus_lr_ratio
        return super().create_optimizer(model)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict]:
        loss = self.batch_loss(model, inputs, "train")
        return (loss, {}) if return_outputs else loss

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.batch_loss(model, inputs, "eval")
        return loss.detach(), None, None

    def batch_loss(self, model: nn.Module, inputs: dict[str, Any], split: str) -> torch.Tensor:
        raise NotImplementedError

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        split, prefix = _split_of(logs)
        if split is not None and self.metrics.pending(split):
            means = self.metrics.pop(split, self.accelerator)
            if "rewards/chosen" in means and "rewards/rejected" in means and "rewards/margins" not in means:
                means["rewards/margins"] = means["rewards/chosen"] - means["rewards/rejected"]
            if "rewards/accuracies" in means:
                means["accuracy"] = means["rewards/accuracies"]  # the key LLaMA-Factory's board plots
            if self.reference_is_policy:
                means = {key: value for key, value in means.items() if key not in REWARD_METRICS}
            logs.update({prefix + key: value for key, value in means.items()})
        super().log(logs, start_time)


class PreferenceTrainer(_PreferenceBase):
    """dpo: pairwise batches, `pref_loss` in sigmoid, hinge, ipo, orpo, simpo, plus an SFT term (`pref_ftx`)."""

    metric_keys = (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
        "sft_loss",
    )

    def __init__(self, *args: Any, finetuning_args: Any, ref_model: nn.Module | None = None, **kwargs: Any) -> None:
        loss_type = finetuning_args.pref_loss
        if loss_type not in PREF_LOSSES:
            raise ValueError(f"pref_loss: received {loss_type!r} — unknown; use one of {', '.join(PREF_LOSSES)}.")
        super().__init__(
            *args,
            finetuning_args=finetuning_args,
            ref_model=ref_model,
            needs_reference=loss_type not in REFERENCE_FREE_LOSSES,
            **kwargs,
        )
        self.loss_type = loss_type
        self.beta = float(finetuning_args.pref_beta)
        self.ftx = float(finetuning_args.pref_ftx or 0.0)
        self.label_smoothing = float(finetuning_args.dpo_label_smoothing or 0.0)
        self.simpo_gamma = float(finetuning_args.simpo_gamma)
        if self.label_smoothing and self.loss_type not in ("sigmoid", "simpo"):
            logger.warning(
                "dpo_label_smoothing applies to pref_loss sigmoid and simpo; ignored for %s.", self.loss_type
            )

    def reference_logps(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """`[B, 4]`: reference sum (chosen, rejected), then reference mean (chosen, rejected) of each pair."""
        batch = (inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        with torch.no_grad(), self._reference(model) as ref_model:
            sums, avgs = self._forward_logps(ref_model, *batch)
        half = sums.shape[0] // 2
        return torch.stack((sums[:half], sums[half:], avgs[:half], avgs[half:]), dim=1)

    def batch_loss(self, model: nn.Module, inputs: dict[str, Any], split: str) -> torch.Tensor:
        batch = (inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        # The reference first: its forward keeps nothing, and run before the policy's it does not add its working
        # memory on top of the activations the policy's forward keeps for the backward pass.
        precomputed = inputs.get(REF_LOGPS_COLUMN)
        if precomputed is None and self.loss_type not in REFERENCE_FREE_LOSSES:
            precomputed = self.reference_logps(model, inputs)
        sums, avgs = self._forward_logps(model, *batch)
        half = sums.shape[0] // 2
        use_avg = self.loss_type in AVERAGED_LOSSES
        policy = avgs if use_avg else sums
        if self.loss_type == "orpo":
            losses, chosen_rewards, rejected_rewards = orpo_loss(policy[:half], policy[half:], self.beta)
        elif self.loss_type == "simpo":
            losses, chosen_rewards, rejected_rewards = simpo_loss(
                policy[:half], policy[half:], self.beta, self.simpo_gamma, self.label_smoothing
            )
        else:
            ref_sums = torch.cat((precomputed[:, 0], precomputed[:, 1]))
            ref_avgs = torch.cat((precomputed[:, 2], precomputed[:, 3]))
            ref = ref_avgs if use_avg else ref_sums
            if self.loss_type == "kto_pair":
                losses, chosen_rewards, rejected_rewards = kto_pair_loss(
                    policy[:half], policy[half:], ref[:half], ref[half:], self.beta
                )
            else:
                losses, chosen_rewards, rejected_rewards = dpo_loss(
                    policy[:half],
                    policy[half:],
                    ref[:half],
                    ref[half:],
                    self.beta,
                    self.loss_type,
                    self.label_smoothing,
                )
        sft_losses = -avgs[:half]
        if self.ftx > 0:
            losses = losses + self.ftx * sft_losses

        self.metrics.add(split, "rewards/chosen", chosen_rewards)
        self.metrics.add(split, "rewards/rejected", rejected_rewards)
        self.metrics.add(split, "rewards/accuracies", (chosen_rewards > rejected_rewards).float())
        self.metrics.add(split, "rewards/margins", chosen_rewards - rejected_rewards)
        self.metrics.add(split, "logps/chosen", sums[:half])
        self.metrics.add(split, "logps/rejected", sums[half:])
        self.metrics.add(split, "sft_loss", sft_losses)
        return losses.mean()


class KTOTrainer(_PreferenceBase):
    """kto: unpaired desirable / undesirable examples weighted by `kto_chosen_weight` / `kto_rejected_weight`.

    `rewards/accuracies` is the share of examples whose implicit reward has the sign of their tag (positive for
    desirable, negative for undesirable): KTO has no pairs to compare, and this is what it learns to separate."""

    metric_keys = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "kl", "logps/chosen", "logps/rejected")

    def __init__(self, *args: Any, finetuning_args: Any, ref_model: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, finetuning_args=finetuning_args, ref_model=ref_model, needs_reference=True, **kwargs)
        self.beta = float(finetuning_args.pref_beta)
        self.ftx = float(finetuning_args.pref_ftx or 0.0)
        self.desirable_weight = float(finetuning_args.kto_chosen_weight)
        self.undesirable_weight = float(finetuning_args.kto_rejected_weight)

    def reference_logps(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """`[B, 2]`: the reference sum of each example's answer and of its mismatched KL answer.

        Both groups go through the reference in one forward of 2B rows (the shorter group padded on the right,
        where masked positions change nothing before them): one call instead of two, which on a small model
        saves the per-call cost of every layer (see benchmarks/stage_speed.py)."""
        batch = stack_rows(
            (inputs["input_ids"], inputs["attention_mask"], inputs["labels"]),
            (inputs["kl_input_ids"], inputs["kl_attention_mask"], inputs["kl_labels"]),
        )
        with torch.no_grad(), self._reference(model) as ref_model:
            sums, _ = self._forward_logps(ref_model, *batch)
        half = sums.shape[0] // 2
        return torch.stack((sums[:half], sums[half:]), dim=1)

    def batch_loss(self, model: nn.Module, inputs: dict[str, Any], split: str) -> torch.Tensor:
        batch = (inputs["input_ids"], inputs["attention_mask"], inputs["labels"])
        kl_batch = (inputs["kl_input_ids"], inputs["kl_attention_mask"], inputs["kl_labels"])
        tags = inputs["kto_tags"].bool()
        # The forwards without gradients first (the KL pairs through the policy, then the reference): run before
        # the policy's own forward, their working memory does not stack on the activations it keeps.
        with torch.no_grad():
            kl_sums, _ = self._forward_logps(model, *kl_batch)
            precomputed = inputs.get(REF_LOGPS_COLUMN)
            if precomputed is None:
                precomputed = self.reference_logps(model, inputs)
            ref_sums, ref_kl_sums = precomputed[:, 0], precomputed[:, 1]
            # One KL estimate for the whole (global) batch; it only shifts the target, no gradient flows through it.
            kl = self.accelerator.gather((kl_sums - ref_kl_sums).mean().reshape(1)).mean().clamp(min=0)
        sums, avgs = self._forward_logps(model, *batch)

        losses, chosen_rewards, rejected_rewards = kto_loss(
            sums[tags],
            sums[~tags],
            ref_sums[tags],
            ref_sums[~tags],
            kl,
            self.beta,
            self.desirable_weight,
            self.undesirable_weight,
        )
        loss = losses.mean()
        if self.ftx > 0 and tags.any():
            loss = loss + self.ftx * (-avgs[tags]).mean()

        self.metrics.add(split, "rewards/chosen", chosen_rewards)
        self.metrics.add(split, "rewards/rejected", rejected_rewards)
        self.metrics.add(
            split, "rewards/accuracies", torch.cat(((chosen_rewards > 0).float(), (rejected_rewards < 0).float()))
        )
        self.metrics.add(split, "kl", kl.reshape(1))
        self.metrics.add(split, "logps/chosen", sums[tags])
        self.metrics.add(split, "logps/rejected", sums[~tags])
        return loss


def create_ref_model(
    tokenizer: Any,
    model_args: Any,
    finetuning_args: Any,
    add_valuehead: bool = False,
    policy_is_trainable: bool = True,
    policy: nn.Module | None = None,
):
    """The frozen reference a full / freeze run needs (LoRA runs switch their adapter off instead).

    `ref_model` (+ `ref_model_adapters`) names another model; otherwise the run's own starting weights are
    loaded a second time. Returns None when the run's policy can serve as its own reference. A LoRA policy
    loaded only to evaluate has its adapters merged, so there is nothing to switch off: the reference is then the
    base model without them. Evaluating without training and without adapters, the starting weights ARE the
    policy: `policy` itself is returned (when given) rather than a second copy, and the trainers then leave the
    reward metrics, all zero by construction, out of the results (as LLaMA-Factory does)."""
    from core.model import load_model

    if finetuning_args.ref_model:
        ref_model_args = dataclasses.replace(
            model_args,
            model_name_or_path=finetuning_args.ref_model,
            adapter_name_or_path=finetuning_args.ref_model_adapters,
        )
        ref_finetuning_args = dataclasses.replace(
            finetuning_args, finetuning_type="lora" if finetuning_args.ref_model_adapters else "full"
        )
        logger.info("Reference model: %s", finetuning_args.ref_model)
        return load_model(
            tokenizer, ref_model_args, ref_finetuning_args, is_trainable=False, add_valuehead=add_valuehead
        )
    if finetuning_args.finetuning_type == "lora" and policy_is_trainable:
        return None
    if (
        policy is not None
        and not policy_is_trainable
        and not (finetuning_args.finetuning_type == "lora" and model_args.adapter_name_or_path)
    ):
        logger.info("Reference model: the evaluated model itself; reward metrics are left out")
        return policy
    if finetuning_args.finetuning_type == "lora":
        logger.info("Reference model: %s without adapters", model_args.model_name_or_path)
        base_args = dataclasses.replace(model_args, adapter_name_or_path=None)
        return load_model(tokenizer, base_args, finetuning_args, is_trainable=False, add_valuehead=add_valuehead)
    logger.info("Reference model: a frozen copy of %s", model_args.model_name_or_path)
    return load_model(tokenizer, model_args, finetuning_args, is_trainable=False, add_valuehead=add_valuehead)

"""Memory-saving optimizers LLaMA-Factory offers, built for any stage's Trainer: Adam-mini, Muon and BAdam.

GaLore and APOLLO need nothing here: `core.hparams.parser.get_train_args` turns `use_galore` / `use_apollo` into
transformers' own `optim` names (`galore_adamw`, `apollo_adamw`, their `_layerwise` forms) with
`optim_target_modules` and `optim_args`, and the Trainer builds them from the `galore-torch` / `apollo-torch`
packages. The packages come with `pip install 'llamaboard[optim]'`; the argument checks name it when one is missing.

- Adam-mini (`adam-mini` package): one learning rate per parameter block instead of per entry, about half of
  AdamW's optimizer state. It needs the model's hidden size and head counts to cut attention weights into heads.
- Muon (`torch.optim.Muon`, torch >= 2.9): orthogonalised momentum for the 2-D weight matrices inside the layers;
  embeddings, the output head and every 1-D parameter (norms, biases) stay on AdamW, as the Muon authors advise.
  The two run as one optimizer (`MuonWithAdamW`) so the Trainer's scheduler and checkpoints see a single object.
- BAdam (`badam` package, full fine-tuning): block coordinate descent, one decoder layer trained at a time, Adam
  state for that layer only; the active layer changes every `badam_switch_interval` steps.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def create_custom_optimizer(trainer: Any, finetuning_args: Any) -> torch.optim.Optimizer | None:
    """The optimizer `finetuning_args` asks for (use_adam_mini / use_muon / use_badam), or None for the Trainer's."""
    # getattr: the trainers also take argument objects that name only their own keys (the dpo / kto unit tests).
    if getattr(finetuning_args, "use_adam_mini", False):
        return _adam_mini(trainer)
    if getattr(finetuning_args, "use_muon", False):
        return _muon(trainer)
    if getattr(finetuning_args, "use_badam", False):
        return _badam(trainer, finetuning_args)
    return None


def _decay_groups(trainer: Any, params: list[tuple[str, torch.nn.Parameter]]) -> list[dict[str, Any]]:
    """Weight decay on what the Trainer decays (no norms, no biases), none on the rest."""
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    with_decay = [param for name, param in params if name in decay]
    without = [param for name, param in params if name not in decay]
    groups = [{"params": with_decay, "weight_decay": trainer.args.weight_decay}]
    if without:
        groups.append({"params": without, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


def _trainable(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(name, param) for name, param in model.named_parameters() if param.requires_grad]


def _adam_mini(trainer: Any) -> torch.optim.Optimizer:
    from adam_mini import Adam_mini

    args, config = trainer.args, trainer.model.config
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    heads = getattr(config, "num_attention_heads", None)
    optimizer = Adam_mini(
        named_parameters=_trainable(trainer.model),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        model_sharding=False,
        dim=hidden,
        n_heads=heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        verbose=False,
    )
    logger.info("Optimizer: Adam-mini (hidden %s, %s heads)", hidden, heads)
    return optimizer


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for the hidden 2-D weights and AdamW for the rest, stepped together as one optimizer.

    `param_groups` is the two optimizers' groups (the same dicts, read afresh each time), so a learning-rate
    scheduler that sets `group["lr"]` reaches both; `state_dict()` / `load_state_dict()` carry both for
    checkpoints and resume.
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer) -> None:
        self.optimizers = [opt for opt in (muon, adamw) if opt is not None]
        self.defaults = {}
        self.state = {}
        # Hooks and step counters the base class would set up, left empty: each inner optimizer keeps its own.
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}
        self._optimizer_state_dict_pre_hooks = {}
        self._optimizer_state_dict_post_hooks = {}
        self._optimizer_load_state_dict_pre_hooks = {}
        self._optimizer_load_state_dict_post_hooks = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        # Read afresh: an inner load_state_dict() replaces its group dicts.
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for optimizer, state in zip(self.optimizers, state_dict["optimizers"], strict=True):
            optimizer.load_state_dict(state)


def _is_muon_param(name: str, param: torch.nn.Parameter) -> bool:
    # Embeddings and the output head are lookups / a classifier, not hidden transforms: AdamW trains them.
    return param.ndim == 2 and not any(part in name for part in ("embed", "lm_head", "wte", "score", "v_head"))


def _muon(trainer: Any) -> torch.optim.Optimizer:
    if not hasattr(torch.optim, "Muon"):
        raise RuntimeError(f"use_muon needs torch >= 2.9 (torch.optim.Muon); this is torch {torch.__version__}.")
    args = trainer.args
    params = _trainable(trainer.model)
    hidden = [(name, param) for name, param in params if _is_muon_param(name, param)]
    rest = [(name, param) for name, param in params if not _is_muon_param(name, param)]
    muon = None
    if hidden:
        # "match_rms_adamw" scales Muon's update to AdamW's size, so the usual AdamW learning rates apply.
        muon = torch.optim.Muon(_decay_groups(trainer, hidden), lr=args.learning_rate, adjust_lr_fn="match_rms_adamw")
    adamw = None
    if rest:
        adamw = torch.optim.AdamW(
            _decay_groups(trainer, rest),
            lr=args.learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            eps=args.adam_epsilon,
        )
    logger.info("Optimizer: Muon for %d weight matrices, AdamW for %d other tensors", len(hidden), len(rest))
    return MuonWithAdamW(muon, adamw)


def _badam(trainer: Any, finetuning_args: Any) -> torch.optim.Optimizer:
    from badam import BlockOptimizer

    args = trainer.args
    model = trainer.model
    base = torch.optim.AdamW(
        _decay_groups(trainer, _trainable(model)),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    layers = _layer_prefixes(model)
    optimizer = BlockOptimizer(
        base_optimizer=base,
        named_parameters_list=list(model.named_parameters()),
        block_prefix_list=[[prefix] for prefix in layers],
        switch_block_every=finetuning_args.badam_switch_interval,
        start_block=finetuning_args.badam_start_block,
        switch_mode=finetuning_args.badam_switch_mode,
        verbose=finetuning_args.badam_verbose,
    )
    logger.info(
        "Optimizer: BAdam over %d layer blocks, switching every %d steps (%s)",
        len(layers),
        finetuning_args.badam_switch_interval,
        finetuning_args.badam_switch_mode,
    )
    return optimizer


def _layer_prefixes(model: torch.nn.Module) -> list[str]:
    """`model.layers.0.`, `model.layers.1.`, ...: the decoder layers BAdam trains one at a time."""
    prefixes: list[str] = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        for index, part in enumerate(parts[:-1]):
            if part in ("layers", "h", "blocks") and parts[index + 1].isdigit():
                prefix = ".".join(parts[: index + 2]) + "."
                if prefix not in prefixes:
                    prefixes.append(prefix)
                break
    if not prefixes:
        raise ValueError("use_badam: found no decoder layers (model.layers.N) to train block by block.")
    return prefixes

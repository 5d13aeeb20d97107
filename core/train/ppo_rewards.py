"""Where PPO's rewards come from: a reward model trained by the rm stage, or a named rule.

`reward_model_type`:
- `lora`: `reward_model` is the output folder of a LoRA rm run (adapter + `value_head.safetensors`), trained on
  the policy's base model. The policy must be LoRA too: the reward adapter is loaded onto the policy's own base
  model as a second adapter and switched on only to score, so the base weights are in memory once.
- `full`: `reward_model` is a full (or freeze) rm output folder (model weights + `value_head.safetensors`), or a
  base model with `reward_model_adapters` naming LoRA rm folders (merged into a separate copy; for a LoRA rm
  when the policy is not LoRA).
- `rule`: `reward_model` names a function in `REWARD_RULES` below. Rules score decoded text; they exist for the
  demo, for tests, and as the place to add a programmatic reward (unit tests passing, an answer checker...).

A scorer takes a `Rollout` (see ppo_trainer.py) and returns one float reward per sequence, shape `[B]`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from core.train.ppo_trainer import RewardFn, Rollout

logger = logging.getLogger(__name__)

REWARD_ADAPTER = "reward"


def _words(text: str) -> list[str]:
    return text.split()


def reference_f1(prompt: str, response: str, reference: str) -> float:
    """Word-level F1 between the response and the dataset's reference answer: 1.0 for an exact match."""
    got, want = _words(response), _words(reference)
    if not got or not want:
        return float(got == want)
    common = sum(min(got.count(w), want.count(w)) for w in set(got))
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def uppercase(prompt: str, response: str, reference: str) -> float:
    """Share of the response's letters that are capitals (0 when it has none): a toy target any model can chase."""
    letters = [c for c in response if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


# name -> fn(prompt, response, reference) -> float. Add yours here and name it in `reward_model`.
REWARD_RULES: dict[str, Callable[[str, str, str], float]] = {
    "reference_f1": reference_f1,
    "uppercase": uppercase,
}


def _score_with_value_head(
    model: nn.Module, head: nn.Module, rollout: Rollout, position_ids: torch.Tensor
) -> torch.Tensor:
    """The value head's output at each sequence's last real token, as the rm stage scores a pair."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    hidden = decoder(
        input_ids=rollout.input_ids, attention_mask=rollout.attention_mask, position_ids=position_ids
    ).last_hidden_state
    last = rollout.attention_mask.shape[1] - 1 - rollout.attention_mask.flip(-1).argmax(-1)
    last_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return head(last_hidden.to(head.weight.dtype)).squeeze(-1).float()


def _causal_lm(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def create_reward_fn(
    policy: nn.Module, tokenizer: Any, model_args: Any, finetuning_args: Any, device: torch.device
) -> RewardFn:
    """The scorer `ppo` uses, per `reward_model_type` (see the module docstring)."""
    kind = finetuning_args.reward_model_type
    name = finetuning_args.reward_model
    if kind == "rule":
        if name not in REWARD_RULES:
            raise ValueError(
                f"reward_model: received {name!r} with reward_model_type: rule — no such rule; "
                f"use one of {', '.join(REWARD_RULES)} (core/train/ppo_rewards.py)."
            )
        rule = REWARD_RULES[name]
        logger.info("Reward: rule %s", name)

        def score_rule(rollout: Rollout) -> torch.Tensor:
            values = [
                rule(*texts) for texts in zip(rollout.prompts, rollout.responses, rollout.references, strict=True)
            ]
            return torch.tensor(values, dtype=torch.float32, device=rollout.input_ids.device)

        return score_rule

    from core.model.valuehead import VALUE_HEAD_FILE

    folder = Path(name)
    adapters = [a.strip() for a in str(finetuning_args.reward_model_adapters or "").split(",") if a.strip()]
    head_dir = Path(adapters[-1]) if kind == "full" and adapters else folder
    if not (head_dir / VALUE_HEAD_FILE).is_file():
        key = "reward_model_adapters" if head_dir != folder else "reward_model"
        raise FileNotFoundError(
            f"{key}: {head_dir} has no {VALUE_HEAD_FILE} — point it at the output folder of an rm run "
            "(or use reward_model_type: rule with a rule name)."
        )
    if kind == "lora":
        if not hasattr(policy.pretrained_model, "load_adapter"):
            raise ValueError(
                "reward_model_type: lora puts the reward adapter on the policy's own base model, which needs "
                "finetuning_type: lora — use a full reward model (reward_model_type: full), or train with lora."
            )
        return _shared_base_scorer(policy, folder, model_args)
    return _separate_scorer(tokenizer, model_args, finetuning_args, folder, device)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _shared_base_scorer(policy: nn.Module, folder: Path, model_args: Any) -> RewardFn:
    """The reward adapter as a second adapter of the policy's base; its value head as a separate linear layer."""
    from safetensors.torch import load_file

    from core.model.valuehead import VALUE_HEAD_FILE

    peft_model = policy.pretrained_model
    policy_adapter = peft_model.active_adapter
    config_file = folder / "adapter_config.json"
    if config_file.is_file():
        base = json.loads(config_file.read_text()).get("base_model_name_or_path")
        from core.model.loader import resolve_model_path

        policy_base = resolve_model_path(str(model_args.model_name_or_path))
        if base and Path(base).name != Path(policy_base).name:
            logger.warning(
                "reward_model %s was trained on %s, the policy is %s", folder, base, model_args.model_name_or_path
            )
    peft_model.load_adapter(str(folder), adapter_name=REWARD_ADAPTER, is_trainable=False)
    peft_model.set_adapter(policy_adapter)
    state = load_file(str(folder / VALUE_HEAD_FILE))
    head = nn.Linear(state["weight"].shape[1], 1).to(policy.v_head.weight.device)
    head.load_state_dict({k: v.to(head.weight.dtype) for k, v in state.items()})
    head.requires_grad_(False)
    logger.info("Reward: LoRA reward model %s on the policy's base model", folder)

    def score_shared(rollout: Rollout) -> torch.Tensor:
        peft_model.set_adapter(REWARD_ADAPTER, inference_mode=True)
        try:
            with torch.no_grad():
                return _score_with_value_head(
                    _causal_lm(peft_model), head, rollout, _position_ids(rollout.attention_mask)
                )
        finally:
            # set_adapter also decides which adapter's weights require grad: hand training back to the policy.
            peft_model.set_adapter(policy_adapter)

    return score_shared


def _separate_scorer(
    tokenizer: Any, model_args: Any, finetuning_args: Any, folder: Path, device: torch.device
) -> RewardFn:
    """A reward model of its own: a full (or freeze) rm folder, or a base model (`reward_model`) with rm adapters
    (`reward_model_adapters`, merged; the value head comes from the last one)."""
    from core.model import load_model

    adapters = finetuning_args.reward_model_adapters or None
    rm_model_args = dataclasses.replace(model_args, model_name_or_path=str(folder), adapter_name_or_path=adapters)
    rm_finetuning_args = dataclasses.replace(finetuning_args, finetuning_type="lora" if adapters else "full")
    reward_model = load_model(tokenizer, rm_model_args, rm_finetuning_args, is_trainable=False, add_valuehead=True)
    reward_model.to(device)
    logger.info("Reward: %s reward model %s", finetuning_args.reward_model_type, folder)

    def score_separate(rollout: Rollout) -> torch.Tensor:
        with torch.no_grad():
            return _score_with_value_head(
                _causal_lm(reward_model.pretrained_model),
                reward_model.v_head,
                rollout,
                _position_ids(rollout.attention_mask),
            )

    return score_separate

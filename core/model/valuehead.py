"""A causal LM with a scalar value head, for the rm stage (reward) and ppo (critic).

The head is one linear layer on the last hidden state. It is saved next to the adapter or model weights as
`value_head.safetensors` (keys `weight`, `bias`), so a LoRA reward model is an ordinary adapter folder plus that
file, and `load_model(..., add_valuehead=True)` with `adapter_name_or_path: <rm run>` restores both.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

VALUE_HEAD_FILE = "value_head.safetensors"


def _unwrap_peft(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class ValueHeadModel(nn.Module):
    """`pretrained_model` (a causal LM, possibly a peft model) plus `v_head`: hidden_size -> 1.

    `forward(...)` returns `(logits, values)`: logits `(B, T, V)` or None when `return_logits=False` (the rm stage
    never needs them, and for a real vocabulary they are the largest tensor in the step), values `(B, T)` in fp32.
    """

    main_input_name = "input_ids"
    # The pairwise and ppo losses are means over the batch; the Trainer must scale them for gradient accumulation.
    accepts_loss_kwargs = False

    def __init__(self, pretrained_model: nn.Module) -> None:
        super().__init__()
        self.pretrained_model = pretrained_model
        text_config = pretrained_model.config.get_text_config()
        hidden_size = text_config.hidden_size
        self.v_head = nn.Linear(hidden_size, 1)
        # A small init keeps the first rewards near zero, so the first pairwise losses sit near log(2).
        nn.init.normal_(self.v_head.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.v_head.bias)

    # Attributes the Trainer and generation code read from the model they are given.
    @property
    def config(self):
        return self.pretrained_model.config

    @property
    def generation_config(self):
        return self.pretrained_model.generation_config

    @property
    def is_peft(self) -> bool:
        return hasattr(self.pretrained_model, "peft_config")

    def generate(self, *args, **kwargs):
        return self.pretrained_model.generate(*args, **kwargs)

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.pretrained_model.gradient_checkpointing_enable(**kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.pretrained_model.gradient_checkpointing_disable()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_logits: bool = True,
        **kwargs,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        kwargs.pop("labels", None)
        causal_lm = _unwrap_peft(self.pretrained_model)
        # Running the decoder directly (LoRA layers are injected in place, so they still apply) skips the lm head
        # when logits are not wanted.
        outputs = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = outputs.last_hidden_state
        logits = causal_lm.get_output_embeddings()(hidden) if return_logits else None
        values = self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1).float()
        return logits, values

    def save_pretrained(self, output_dir: str | Path, **kwargs) -> None:
        """Adapter or model weights as the wrapped model saves them, plus `value_head.safetensors`."""
        self.pretrained_model.save_pretrained(output_dir, **kwargs)
        save_value_head(self, output_dir)


def save_value_head(model: ValueHeadModel, output_dir: str | Path) -> Path:
    """Write the head's weights to `<output_dir>/value_head.safetensors`."""
    path = Path(output_dir) / VALUE_HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().float().cpu().contiguous() for name, tensor in model.v_head.state_dict().items()}
    save_file(state, str(path))
    return path


def load_value_head(model: ValueHeadModel, model_dir: str | Path) -> bool:
    """Load `<model_dir>/value_head.safetensors` into `model.v_head`; False when the folder has none."""
    path = Path(model_dir) / VALUE_HEAD_FILE
    if not path.is_file():
        return False
    state = load_file(str(path))
    model.v_head.load_state_dict({k: v.to(model.v_head.weight.dtype) for k, v in state.items()})
    logger.info("Loaded value head from %s", path)
    return True


def load_valuehead_checkpoint(model: ValueHeadModel, checkpoint_dir: str | Path) -> None:
    """Restore a `checkpoint-N/` written by `ValueHeadModel.save_pretrained` (used when a run resumes)."""
    checkpoint_dir = Path(checkpoint_dir)
    if model.is_peft:
        from peft import set_peft_model_state_dict

        adapter_file = checkpoint_dir / "adapter_model.safetensors"
        set_peft_model_state_dict(model.pretrained_model, load_file(str(adapter_file)))
    else:
        from transformers.modeling_utils import load_sharded_checkpoint

        if (checkpoint_dir / "model.safetensors.index.json").is_file():
            load_sharded_checkpoint(model.pretrained_model, str(checkpoint_dir), strict=False)
        else:
            state = load_file(str(checkpoint_dir / "model.safetensors"))
            # Tied embeddings are saved once; strict=False lets the tied lm_head stay tied.
            model.pretrained_model.load_state_dict(state, strict=False)
    if not load_value_head(model, checkpoint_dir):
        raise FileNotFoundError(f"{checkpoint_dir}: no {VALUE_HEAD_FILE}; this checkpoint was not written by rm/ppo.")

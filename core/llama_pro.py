"""LLaMA Pro block expansion: `llamafactory-cli expand <model> <output_dir> --num-expand N`.

LLaMA Pro (Wu et al. 2024) adds N decoder layers to a model, one after every L / N original layers, each a copy of
the layer before it with its two output projections (attention `o_proj`, MLP `down_proj`) set to zero. Through the
residual stream a zeroed block is the identity, so the expanded model answers exactly as the original did; then
`finetuning_type: freeze` with `use_llama_pro: true` and `freeze_trainable_layers: N` trains only the added blocks
and leaves the original knowledge untouched (core.model.adapter picks every (L + N) / N-th layer).
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

from core.errors import UserError

logger = logging.getLogger(__name__)

ZEROED_PROJECTIONS = ("o_proj", "down_proj")


class ExpandError(UserError):
    """A model that cannot be expanded as asked: the message says why and what to do."""


def expand_model(model_path: str, output_dir: str | Path, num_expand: int) -> Path:
    """Write the model at `model_path` with `num_expand` identity blocks added into `output_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ExpandError(f"output_dir: {output_dir} is not empty — choose a new folder for the expanded model.")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto")
    layers = model.model.layers
    num_layers = len(layers)
    if num_expand < 1 or num_layers % num_expand:
        raise ExpandError(
            f"--num-expand: received {num_expand} — it must divide the model's {num_layers} layers "
            f"(one new block after every {num_layers} / N layers); try one of "
            f"{', '.join(str(n) for n in range(1, num_layers + 1) if num_layers % n == 0)}."
        )
    split = num_layers // num_expand
    expanded = []
    for index, layer in enumerate(layers):
        expanded.append(layer)
        if (index + 1) % split == 0:
            block = copy.deepcopy(layer)
            for name, param in block.named_parameters():
                if any(part in name for part in ZEROED_PROJECTIONS):
                    with torch.no_grad():
                        param.zero_()
            expanded.append(block)
    for index, layer in enumerate(expanded):
        if hasattr(layer, "self_attn") and hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = index  # the KV cache is indexed by layer
    model.model.layers = torch.nn.ModuleList(expanded)
    config = model.config
    config.num_hidden_layers = len(expanded)
    if getattr(config, "layer_types", None):  # per-layer attention kinds (sliding / full) follow their source layer
        types = list(config.layer_types)
        config.layer_types = [t for i, t in enumerate(types) for t in ([t, t] if (i + 1) % split == 0 else [t])]
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(output_dir)
    logger.info(
        "Expanded %s from %d to %d layers into %s; train it with finetuning_type: freeze, use_llama_pro: true, "
        "freeze_trainable_layers: %d",
        model_path,
        num_layers,
        len(expanded),
        output_dir,
        num_expand,
    )
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llamafactory-cli expand",
        description="LLaMA Pro: add identity blocks to a model, to train only them (use_llama_pro: true).",
    )
    parser.add_argument("model", help="model folder or hub id (demo for the demo model)")
    parser.add_argument("output_dir", help="new, empty folder for the expanded model")
    parser.add_argument("--num-expand", type=int, required=True, help="blocks to add; must divide the layer count")
    options = parser.parse_args(argv)
    model = options.model
    if model in ("demo", "demo-small"):
        from core.demo import ensure_demo_model

        model = str(ensure_demo_model("tiny" if model == "demo" else "small"))
    expand_model(model, options.output_dir, options.num_expand)
    print(
        f"Expanded model written to {options.output_dir}. Train it with: model_name_or_path: {options.output_dir}, "
        f"finetuning_type: freeze, use_llama_pro: true, freeze_trainable_layers: {options.num_expand}"
    )
    return 0

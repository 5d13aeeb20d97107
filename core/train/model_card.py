"""The model card (README.md) a training run leaves in its output folder, and the hub push at the end of training.

The card says what a reader needs to use or reproduce the weights: base model, datasets, stage and method, the
hyperparameters that shape the result, the final metrics, the framework versions and how to load it. Only the keys
listed here are written, so no secret can reach it. LLaMA-Factory writes a card through transformers'
`Trainer.create_model_card`; ours is our own text because that card knows neither stages nor adapters' base.

`push_to_hub: true` (with `hub_model_id`, `hub_private_repo`) uploads the output folder once training has ended and
everything is saved, with the token from HF_TOKEN only. A push that fails (offline, no token, no permission) is
one log line saying so and what to do; the run itself has succeeded and keeps its files.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
FRAMEWORKS = ("llamaboard", "torch", "transformers", "peft", "trl", "datasets", "accelerate")
# (argument group, key) shown under "Training hyperparameters" when set.
HYPERPARAMETERS = {
    "training": (
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "optim",
        "seed",
        "bf16",
        "fp16",
    ),
    "data": ("cutoff_len", "packing", "neat_packing", "train_on_prompt", "max_samples"),
    "finetuning": (
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "lora_target",
        "use_dora",
        "use_rslora",
        "oft_block_size",
        "freeze_trainable_layers",
        "pref_beta",
        "pref_loss",
        "pref_ftx",
        "use_dft_loss",
        "use_eaft_loss",
    ),
}
_ADAPTERS = ("lora", "oft")


def _versions() -> dict[str, str]:
    found = {}
    for name in FRAMEWORKS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _final_metrics(output_dir: Path) -> dict[str, Any]:
    try:
        metrics = json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}


def _hyperparameters(model_args, data_args, training_args, finetuning_args) -> dict[str, Any]:
    groups = {"training": training_args, "data": data_args, "finetuning": finetuning_args}
    method = finetuning_args.finetuning_type
    shown = {}
    for group, keys in HYPERPARAMETERS.items():
        for key in keys:
            value = getattr(groups[group], key, None)
            if value in (None, False, "", 0) and key not in ("weight_decay",):
                continue
            if key.startswith("lora_") and method != "lora" or key.startswith("oft_") and method != "oft":
                continue
            if key == "freeze_trainable_layers" and method != "freeze":
                continue
            if key.startswith("pref_") and finetuning_args.stage not in ("dpo", "kto"):
                continue
            shown[key] = value
    return shown


def render_model_card(model_args, data_args, training_args, finetuning_args, output_dir: Path) -> str:
    """The card's text: YAML front matter for the hub, then the sections."""
    base = model_args.model_name_or_path
    method, stage = finetuning_args.finetuning_type, finetuning_args.stage
    datasets = data_args.datasets
    library = "peft" if method in _ADAPTERS else "transformers"
    front = [
        "---",
        f"library_name: {library}",
        f"base_model: {base}",
        "tags:",
        "- llamaboard",
        f"- {stage}",
        f"- {method}",
    ]
    if datasets:
        front += ["datasets:"] + [f"- {name}" for name in datasets]
    front.append("---")
    name = Path(output_dir).name
    lines = [*front, "", f"# {name}", ""]
    lines.append(
        f"Fine-tuned from `{base}` with stage `{stage}` and method `{method}` on "
        f"{', '.join(f'`{d}`' for d in datasets) or 'no named dataset'} by LlamaBoard."
    )
    lines += ["", "## Training hyperparameters", "", "| key | value |", "| --- | --- |"]
    lines += [
        f"| {key} | {value} |"
        for key, value in _hyperparameters(model_args, data_args, training_args, finetuning_args).items()
    ]
    metrics = _final_metrics(Path(output_dir))
    if metrics:
        lines += ["", "## Results", "", "| metric | value |", "| --- | --- |"]
        lines += [
            f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |"
            for key, value in sorted(metrics.items())
        ]
    lines += ["", "## How to load it", "", "```python"]
    if method in _ADAPTERS:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            'model = PeftModel.from_pretrained(base, "<this folder or hub id>")',
            f'tokenizer = AutoTokenizer.from_pretrained("{base}")',
        ]
    else:
        lines += [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            'model = AutoModelForCausalLM.from_pretrained("<this folder or hub id>")',
            'tokenizer = AutoTokenizer.from_pretrained("<this folder or hub id>")',
        ]
    lines += ["```", "", f"Chat template: `{data_args.template}`." if data_args.template else ""]
    lines += ["", "## Framework versions", ""]
    lines += [f"- {name} {version}" for name, version in _versions().items()]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(training_args, finetuning_args) -> Path:
    """Write README.md into the output folder (atomically) from the run's job.yaml, and return its path.

    The model and data arguments are read back from job.yaml (the workflows' shared tail sees only the trainer's
    and the method's arguments), resolved with the same defaults the run used."""
    from core.hparams import DataArguments, ModelArguments
    from core.hparams.parser import normalize_args
    from core.runfolder import read_args

    output_dir = Path(training_args.output_dir)
    groups, _, _ = normalize_args(read_args(output_dir))
    model_args, data_args = ModelArguments(**groups["model"]), DataArguments(**groups["data"])
    path = output_dir / CARD_FILE
    text = render_model_card(model_args, data_args, training_args, finetuning_args, output_dir)
    temporary = path.with_name(f".{CARD_FILE}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    logger.info("Model card written to %s", path)
    return path


def push_output_dir(training_args) -> bool:
    """Upload the output folder (no checkpoints, no board job files) to `hub_model_id`; False, logged, on failure."""
    repo_id = training_args.hub_model_id
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=os.environ.get("HF_TOKEN"))
        api.create_repo(repo_id, private=bool(training_args.hub_private_repo), exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=training_args.output_dir,
            commit_message="Upload from LlamaBoard",
            ignore_patterns=["checkpoint-*", "checkpoint-*/**", "job.*", "runs/**", "*.tmp"],
        )
    except Exception as err:  # noqa: BLE001 — any failure here must not turn a finished run into a failed one
        logger.error(
            "push_to_hub: the upload to %s failed (%s: %s) — the trained model is saved in %s; push it later with "
            "`huggingface-cli upload %s %s`.",
            repo_id,
            type(err).__name__,
            err,
            training_args.output_dir,
            repo_id,
            training_args.output_dir,
        )
        return False
    logger.info("Pushed %s to the hub as %s", training_args.output_dir, repo_id)
    return True

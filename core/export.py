"""Export: merge the LoRA adapters into the base model and save it as safetensors shards with its tokenizer.

    llamafactory-cli export examples/infer/export_lora.yaml

Keys: model_name_or_path, adapter_name_or_path (applied in order), template, infer_dtype (auto = the dtype in the
model's config), export_dir, export_size (largest shard, GB), export_device, export_overwrite, export_hub_model_id
(push after saving; the token comes from the HF_TOKEN environment variable and is never written anywhere).
Progress goes to stdout as `[export] step k/n: ...` lines (the board tails them from its job's job.log, kept in a
job folder of its own); the last line is `[export] done: <dir> (<files> files, <size>)`, counting every file in
export_dir. export_dir gets the model, its config and the tokenizer, nothing else.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.runfolder import BOARD_FILES  # the board's job files: they do not make export_dir "non-empty"

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "export_model"]

_STEPS = 5


class ExportError(UserError, ValueError):
    """An export that cannot run, with a message naming the key and the fix."""


def _step(number: int, message: str, steps: int = _STEPS) -> None:
    print(f"[export] step {number}/{steps}: {message}", flush=True)


def _check_export_dir(model_args: Any) -> Path:
    if not model_args.export_dir:
        raise ExportError("export_dir: missing — set the folder to write the merged model to")
    export_dir = Path(model_args.export_dir).expanduser()
    if export_dir.exists() and not export_dir.is_dir():
        raise ExportError(f"export_dir: {export_dir} is a file — give a folder")
    leftovers = (
        sorted(p.name for p in export_dir.iterdir() if p.name not in BOARD_FILES) if export_dir.is_dir() else []
    )
    if leftovers and not model_args.export_overwrite:
        shown = ", ".join(leftovers[:5]) + (", ..." if len(leftovers) > 5 else "")
        raise ExportError(
            f"export_dir: {export_dir} is not empty ({shown}) — choose an empty or new folder, or set "
            "export_overwrite: true to write over it"
        )
    return export_dir


def _hub_token(model_args: Any) -> str | None:
    if not model_args.export_hub_model_id:
        return None
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ExportError(
            f"export_hub_model_id: {model_args.export_hub_model_id} needs a Hugging Face token with write access in "
            "the HF_TOKEN environment variable (it is read from there only, never from the YAML) — set it, or "
            "remove export_hub_model_id to export locally"
        )
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        raise ExportError(
            f"export_hub_model_id: {model_args.export_hub_model_id} cannot be pushed with HF_HUB_OFFLINE=1 — unset "
            "it, or remove export_hub_model_id and upload export_dir later"
        )
    return token


def _size(total: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1000 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1000
    return ""


def export_model(args: dict | str | list[str] | None = None) -> Path:
    """Merge, save and optionally push; returns export_dir. Raises ArgumentError / ExportError before any weights
    are read when the arguments cannot work (missing export_dir, a non-empty one, a quantized model, no HF_TOKEN)."""
    from core.chat import check_adapter_paths, resolve_infer_dtype
    from core.hparams import get_infer_args

    model_args, data_args, finetuning_args, _ = get_infer_args(args if args is not None else sys.argv[1:])
    export_dir = _check_export_dir(model_args)
    check_adapter_paths(model_args.adapters)
    if model_args.quantization_bit:
        raise ExportError(
            f"quantization_bit: received {model_args.quantization_bit} — a quantized model cannot be merged and "
            "saved in full precision — remove quantization_bit (export the merged model, quantize it afterwards)"
        )
    if float(model_args.export_size) <= 0:
        raise ExportError(f"export_size: received {model_args.export_size} — give the largest shard in GB, above 0")
    token = _hub_token(model_args)
    steps = _STEPS + (1 if token else 0)

    import torch

    from core.model import load_model, load_tokenizer
    from core.model.loader import resolve_model_path

    _step(1, f"loading the tokenizer of {model_args.model_name_or_path}", steps)
    tokenizer = load_tokenizer(model_args)
    path = resolve_model_path(model_args.model_name_or_path)
    dtype = resolve_infer_dtype(model_args, path)
    model_args.compute_dtype = dtype

    adapters = model_args.adapters
    merging = f", merging {len(adapters)} adapter(s): {', '.join(adapters)}" if adapters else ""
    _step(2, f"loading the model in {str(dtype).removeprefix('torch.')}{merging}", steps)
    if model_args.export_device == "auto" and torch.cuda.is_available():
        # Merge on the GPU: load the base without adapters, move it, then fold each adapter in, in order.
        from peft import PeftModel

        base_args = copy.copy(model_args)
        base_args.adapter_name_or_path = None
        model = load_model(tokenizer, base_args, finetuning_args, is_trainable=False).to("cuda")
        for adapter in adapters:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    else:
        model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False)
    model = model.to(dtype)

    _step(3, f"saving safetensors shards of at most {model_args.export_size} GB to {export_dir}", steps)
    export_dir.mkdir(parents=True, exist_ok=True)
    for old in export_dir.glob("model*.safetensors*"):
        old.unlink()  # shards of an earlier export with another shard size would otherwise mix with the new ones
    model.config.use_cache = True
    model.config.dtype = dtype
    max_shard_size = int(float(model_args.export_size) * 1e9)
    model.save_pretrained(export_dir, max_shard_size=max_shard_size)

    _step(4, "saving the tokenizer" + (" and its chat template" if tokenizer.chat_template else ""), steps)
    tokenizer.padding_side = "left"  # what generation with the exported model needs
    tokenizer.save_pretrained(export_dir)
    if not tokenizer.chat_template and data_args.template:
        logger.warning(
            "The tokenizer has no chat template; apps that read chat_template.jinja will not know the %s format.",
            data_args.template,
        )

    if token:
        _step(5, f"pushing {export_dir} to the hub as {model_args.export_hub_model_id}", steps)
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(model_args.export_hub_model_id, exist_ok=True, private=True)
        api.upload_folder(
            repo_id=model_args.export_hub_model_id,
            folder_path=str(export_dir),
            ignore_patterns=sorted(BOARD_FILES),
            commit_message="Export from LlamaBoard",
        )

    files = [p for p in export_dir.rglob("*") if p.is_file()]  # what the folder holds, as a file browser counts it
    shards = [p for p in files if p.suffix == ".safetensors"]
    _step(steps, f"checked: {len(shards)} weight shard(s)", steps)
    total = sum(p.stat().st_size for p in files)
    print(f"[export] done: {export_dir} ({len(files)} files, {_size(total)})", flush=True)
    return export_dir

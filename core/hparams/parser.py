"""From a YAML file, a dict or a command line to the argument dataclasses, with every problem reported at once.

`read_args` and `check_dict` are pure (the board calls them); `get_train_args` / `get_infer_args` import torch and
transformers when called.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import math
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.hparams.data_args import DataArguments
from core.hparams.finetuning_args import FinetuningArguments
from core.hparams.generating_args import PPO_MAX_NEW_TOKENS, GeneratingArguments
from core.hparams.hub import push_problems
from core.hparams.keys import (
    IGNORED_KEYS,
    REWARD_FUNCS,
    TRAINING_SPECS,
    UNSUPPORTED_KEYS,
    UNSUPPORTED_VALUES,
    Spec,
    coerce,
    field_specs,
    split_arg,
)
from core.hparams.model_args import ModelArguments
from core.hparams.trackers import report_to_list, swanlab_environment, tracker_problems
from core.safeload import FileFormatError, load_file, load_yaml_text
from core.secrets import is_secret_key, looks_like_token, redact, secret_problems

if TYPE_CHECKING:
    from core.hparams.training_args import TrainingArguments

logger = logging.getLogger(__name__)

__all__ = [
    "GROUPS",
    "ArgumentError",
    "check_args",
    "check_dict",
    "check_infer_dict",
    "path_problems",
    "get_infer_args",
    "get_train_args",
    "known_keys",
    "normalize_args",
    "read_args",
    "review_args",
]

GROUPS: dict[str, type] = {
    "model": ModelArguments,
    "data": DataArguments,
    "finetuning": FinetuningArguments,
    "generating": GeneratingArguments,
}
_GROUP_SPECS: dict[str, dict[str, Spec]] = {name: field_specs(cls) for name, cls in GROUPS.items()}
_DEFAULTS: dict[str, Any] = {
    f.name: f.default for cls in GROUPS.values() for f in fields(cls) if f.init and f.default is not MISSING
}
# The training keys the rules below read, at transformers' defaults.
_DEFAULTS.update(
    do_train=False,
    do_eval=False,
    do_predict=False,
    predict_with_generate=False,
    bf16=False,
    fp16=False,
    use_cpu=False,
    eval_strategy="no",
    max_steps=-1,
    output_dir=None,
    load_best_model_at_end=False,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
)
_SFT_LIKE = ("sft", "rm", "ppo", "dpo", "kto", "grpo")
_LORA_KEYS = (
    "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "loraplus_lr_ratio", "use_rslora", "use_dora",
    "pissa_init", "pissa_convert", "create_new_adapter", "additional_target",
)  # fmt: skip
_FREEZE_KEYS = ("freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules")
_STAGE_KEYS = {
    ("ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target", "ppo_whiten_rewards"): ("ppo",),
    ("reward_model_type",): ("ppo", "grpo"),
    ("kto_chosen_weight", "kto_rejected_weight"): ("kto",),
    ("dpo_label_smoothing",): ("dpo",),
    ("ref_model", "ref_model_adapters"): ("dpo", "kto", "ppo", "grpo"),
    (
        "num_generations", "grpo_beta", "grpo_epsilon", "grpo_epochs", "grpo_scale_rewards", "reward_funcs",
        "reward_weights", "reward_file", "trust_reward_file", "reward_format_tag", "reward_format_regex",
    ): ("grpo",),
}  # fmt: skip
_MISSING = object()

# Numbers that pass the type check but cannot work: key -> (lowest value, whether the lowest is allowed, why).
# Every float must also be finite (NaN and infinity are refused for all of them, in normalize_args).
_LOWER_BOUNDS: dict[str, tuple[float, bool, str]] = {
    "learning_rate": (0, True, "a learning rate below 0 climbs the loss instead of descending it"),
    "num_train_epochs": (0, True, "an epoch count cannot be negative"),
    "per_device_train_batch_size": (1, True, "a batch holds at least one sample"),
    "per_device_eval_batch_size": (1, True, "a batch holds at least one sample"),
    "gradient_accumulation_steps": (1, True, "a step accumulates at least one batch"),
    "eval_accumulation_steps": (1, True, "at least one batch is gathered at a time"),
    "save_steps": (0, False, "a step interval is above 0 (below 1: a fraction of the total steps)"),
    "eval_steps": (0, False, "a step interval is above 0 (below 1: a fraction of the total steps)"),
    "logging_steps": (0, False, "a step interval is above 0 (below 1: a fraction of the total steps)"),
    "warmup_steps": (0, True, "a warmup length cannot be negative"),
    "max_grad_norm": (0, True, "a gradient norm limit cannot be negative (0 turns clipping off)"),
    "weight_decay": (0, True, "a negative weight decay pushes weights away from 0"),
    "adam_epsilon": (0, False, "Adam divides by it"),
    "dataloader_num_workers": (0, True, "a worker count cannot be negative"),
    "save_total_limit": (1, True, "at least one checkpoint is kept (remove the key to keep them all)"),
    "seed": (0, True, "random generators take seeds from 0 to 2**32 - 1"),
    "data_seed": (0, True, "random generators take seeds from 0 to 2**32 - 1"),
    "lora_alpha": (0, False, "a LoRA scale of 0 or less trains nothing or the wrong way"),
    "loraplus_lr_ratio": (0, False, "a ratio of learning rates is above 0"),
    "neftune_noise_alpha": (0, True, "a noise scale cannot be negative"),
    "pref_beta": (0, False, "beta scales the preference reward and must be above 0"),
    "pref_ftx": (0, True, "a loss weight cannot be negative"),
    "kto_chosen_weight": (0, True, "a loss weight cannot be negative"),
    "kto_rejected_weight": (0, True, "a loss weight cannot be negative"),
    "ppo_epochs": (1, True, "PPO optimizes each batch at least once"),
    "ppo_buffer_size": (1, True, "a buffer holds at least one batch"),
    "preprocessing_batch_size": (1, True, "a batch holds at least one row"),
    "preprocessing_num_workers": (1, True, "at least one process reads the data"),
    "max_new_tokens": (1, True, "an answer has at least one token"),
    "num_beams": (1, True, "beam search keeps at least one beam"),
    "temperature": (0, True, "a sampling temperature cannot be negative (0 = greedy)"),
    "top_k": (0, True, "top_k cannot be negative (0 = off)"),
    "repetition_penalty": (0, False, "the penalty divides scores and must be above 0"),
    "export_size": (0, False, "a shard holds more than 0 GB"),
    "top_p": (0, False, "top_p is a probability mass, above 0 and at most 1"),
    "adam_beta1": (0, True, "Adam's betas lie from 0 to below 1"),
    "adam_beta2": (0, True, "Adam's betas lie from 0 to below 1"),
}
_UPPER_BOUNDS: dict[str, tuple[float, bool, str]] = {
    "seed": (2**32 - 1, True, "random generators take seeds from 0 to 2**32 - 1"),
    "data_seed": (2**32 - 1, True, "random generators take seeds from 0 to 2**32 - 1"),
    "top_p": (1, True, "top_p is a probability mass, above 0 and at most 1"),
    "adam_beta1": (1, False, "Adam's betas lie from 0 to below 1"),
    "adam_beta2": (1, False, "Adam's betas lie from 0 to below 1"),
}


class ArgumentError(UserError, ValueError):
    """Every problem found in an argument dict; `.problems` lists them, `str()` is the readable list."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} with the arguments:"
        return "\n".join([head, *(f"  - {problem}" for problem in self.problems)])


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    # A message goes to the terminal, the job log and the board: it never carries a token back.
    return redact(text) if looks_like_token(value) else text


def _problem(key: str, value: Any, why: str, fix: str) -> str:
    received = "missing" if value is _MISSING else f"received {_show(value)}"
    return f"{key}: {received} — {why} — {fix}"


# Reading


def read_args(source: dict | str | os.PathLike | list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """The argument dict from a dict (copied), a YAML / JSON file, or argv `[file, key=value, --key value, ...]`.

    None reads `sys.argv[1:]`. Values on the command line are parsed as YAML (`lora_rank=16` is the int 16).
    Raises ArgumentError for a missing or malformed file and for command-line items that are not overrides.
    """
    if source is None:
        source = sys.argv[1:]
    if isinstance(source, dict):
        return dict(source)
    if isinstance(source, str | os.PathLike):
        return _load_file(Path(source))
    if isinstance(source, list | tuple):
        return _parse_argv([str(item) for item in source])
    raise TypeError(f"read_args takes a dict, a file path or an argv list, not {type(source).__name__}")


def _load_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArgumentError([f"{path}: file not found — check the path (relative to {Path.cwd()})"])
    try:
        data, warnings = load_file(path)  # the board's loader: binary files and alias bombs are refused at once
    except FileFormatError as err:
        raise ArgumentError([str(err)]) from None
    for warning in warnings:
        logger.warning(warning)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ArgumentError(
            [f"{path}: holds a {type(data).__name__}, not `key: value` lines — write one `key: value` per line"]
        )
    return data


def _parse_value(text: str) -> Any:
    """A command-line value read as YAML (`16` is a number); what does not read as plain YAML data stays text."""
    try:
        return load_yaml_text(text, "value")[0]
    except FileFormatError:
        return text


def _parse_argv(argv: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    index = 0
    if argv and not argv[0].startswith("-") and "=" not in argv[0]:
        args.update(_load_file(Path(argv[0])))
        index = 1
    problems = []
    while index < len(argv):
        item = argv[index]
        index += 1
        if item.startswith("--"):
            key, equals, text = item[2:].partition("=")
            if not equals:
                if index < len(argv) and not argv[index].startswith("--"):
                    text = argv[index]
                    index += 1
                else:
                    text = "true"  # a bare flag, as in `--do_train`
        elif "=" in item:
            key, _, text = item.partition("=")
        else:
            problems.append(
                f"{item}: not an override — after the config file, give key=value or --key value — "
                "for example learning_rate=1e-4"
            )
            continue
        args[key.strip().replace("-", "_")] = _parse_value(text)
    if problems:
        raise ArgumentError(problems)
    return args


# Checking


def known_keys(training_specs: dict[str, Spec] | None = None) -> dict[str, Spec]:
    """Every key an argument dict may hold (fields of the five groups), with its Spec."""
    specs = dict(TRAINING_SPECS if training_specs is None else training_specs)
    for group_specs in _GROUP_SPECS.values():
        specs.update(group_specs)
    return specs


_LEGACY_SIMPLE = {
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "max_seq_length": "cutoff_len",
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
    "add_special_tokens": "new_special_tokens",
    "early_stopping_steps": "early_stopping_patience",
}


def _translate_legacy(args: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Keys transformers 5 or LLaMA-Factory renamed, in today's names. Returns (args, problems, notes)."""
    args = dict(args)
    problems: list[str] = []
    notes: list[str] = []
    for old, new in _LEGACY_SIMPLE.items():
        if old not in args:
            continue
        value = args.pop(old)
        if new in args and args[new] != value:
            problems.append(
                _problem(
                    old,
                    value,
                    f"it is the old name of {new}, which is also set to {_show(args[new])}",
                    f"keep only {new}",
                )
            )
        else:
            args[new] = value
    if "warmup_ratio" in args:
        _translate_warmup_ratio(args, problems, notes)
    # LLaMA-Factory before 0.9 wrote flash_attn as a switch (true = FlashAttention-2) or "off".
    if args.get("flash_attn") is True:
        args["flash_attn"] = "fa2"
    elif args.get("flash_attn") is False or args.get("flash_attn") == "off":
        args["flash_attn"] = "disabled"
    if "group_by_length" in args:
        value = args.pop("group_by_length")
        try:
            on = coerce(value, Spec("bool", optional=True))
        except ValueError as err:
            problems.append(_problem("group_by_length", value, str(err), "write true or false"))
            on = False
        if on:
            current = args.get("train_sampling_strategy")
            if current not in (None, "group_by_length"):
                problems.append(
                    _problem(
                        "group_by_length",
                        value,
                        f"it conflicts with train_sampling_strategy: {current}",
                        "keep only train_sampling_strategy",
                    )
                )
            else:
                args["train_sampling_strategy"] = "group_by_length"
    if "logging_dir" in args:
        args.pop("logging_dir")
        notes.append(
            "logging_dir: dropped — transformers 5 writes tensorboard logs to <output_dir>/runs; set the "
            "TENSORBOARD_LOGGING_DIR environment variable to choose another folder"
        )
    if "save_safetensors" in args:
        value = args.pop("save_safetensors")
        if value not in (True, "true", None):
            notes.append("save_safetensors: dropped — weights are always saved as safetensors")
    return args, problems, notes


def _translate_warmup_ratio(args: dict[str, Any], problems: list[str], notes: list[str]) -> None:
    value = args.pop("warmup_ratio")
    try:
        ratio = coerce(value, Spec("float", optional=True))
    except ValueError as err:
        problems.append(_problem("warmup_ratio", value, str(err), "write a fraction such as 0.1"))
        return
    if not ratio:
        return
    steps = args.get("warmup_steps")
    try:
        steps = coerce(steps, Spec("float", optional=True))
    except ValueError:
        return  # reported when warmup_steps itself is checked
    if steps:
        notes.append(f"warmup_ratio: ignored — warmup_steps: {_show(steps)} is set and wins, as in transformers 4")
    elif not 0 < ratio < 1:
        problems.append(
            _problem(
                "warmup_ratio",
                value,
                "a warmup ratio is a share of the training steps, between 0 and 1",
                "write a fraction such as 0.1, or give warmup_steps as a step count",
            )
        )
    else:
        # transformers 5 reads a warmup_steps below 1 as a ratio of the total steps.
        args["warmup_steps"] = ratio


def _is_off(value: Any, offs: tuple[Any, ...]) -> bool:
    """Whether `value` is one of the values meaning "feature off", read as loosely as coercion reads them."""
    for off in offs:
        if off is None:
            kind = Spec("any", optional=True)
        elif isinstance(off, bool):
            kind = Spec("bool")
        elif isinstance(off, int | float):
            kind = Spec("float")
        else:
            kind = Spec("str")
        try:
            read = coerce(value, kind)
        except ValueError:
            continue
        if kind.kind == "str":
            read, off = read.strip().lower(), off.lower()
        elif kind.kind == "float":
            off = float(off)
        if read == off:
            return True
    return False


_EXAMPLES = {
    "bool": "write true or false",
    "int": "write a whole number such as 8",
    "float": "write a number such as 0.1 or 1e-4",
    "str": 'write text (quote it if YAML reads it as something else: "...")',
}


def _coerce_problem(key: str, value: Any, spec: Spec, why: str) -> str:
    default = _DEFAULTS.get(key)
    if spec.kind == "choice":
        fix = f"write one of: {', '.join(spec.choices)}"
    elif default is not None and not isinstance(default, str):
        fix = f"for example {key}: {_show(default)}"
    else:
        fix = _EXAMPLES.get(spec.kind, "check the value")
    if isinstance(value, bool) and spec.kind in ("str", "choice"):
        fix += ' (YAML reads a bare no / off / yes / on as true or false: quote it, "no")'
    return _problem(key, value, why, fix)


def normalize_args(
    args: dict[str, Any], training_specs: dict[str, Spec] | None = None
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Translate legacy keys, coerce every value to its field's type and sort keys into the five groups.

    Returns ({"model": {...}, "data": ..., "finetuning": ..., "generating": ..., "training": ...}, problems, notes).
    Never raises. Unknown keys, wrong types and turned-on unsupported features are problems; keys that
    have no effect here (see keys.IGNORED_KEYS) are notes.
    """
    training_specs = TRAINING_SPECS if training_specs is None else training_specs
    owners: dict[str, tuple[str, Spec]] = {key: ("training", spec) for key, spec in training_specs.items()}
    for group, specs in _GROUP_SPECS.items():
        owners.update({key: (group, spec) for key, spec in specs.items()})

    problems = secret_problems(args)
    # A refused secret is not looked at again: other rules would echo its value.
    args = {key: value for key, value in args.items() if not (is_secret_key(str(key)) or looks_like_token(value))}
    args, legacy_problems, notes = _translate_legacy(args)
    problems += legacy_problems
    groups: dict[str, dict[str, Any]] = {name: {} for name in (*GROUPS, "training")}
    for key, value in args.items():
        if not isinstance(key, str):
            problems.append(_problem(str(key), value, "keys are names", "write the key as a name, e.g. lora_rank"))
            continue
        unsupported = UNSUPPORTED_VALUES.get(key, {})
        if isinstance(value, str) and value in unsupported:
            problems.append(
                _problem(
                    key,
                    value,
                    f"not supported yet ({unsupported[value]})",
                    f"use one of: {', '.join(owners[key][1].choices)}",
                )
            )
            continue
        if key in owners:
            group, spec = owners[key]
            if isinstance(value, bool) and spec.kind == "str" and key.endswith("_strategy") and not value:
                value = "no"  # `save_strategy: no` unquoted is YAML's false
            try:
                value = coerce(value, spec)
            except ValueError as err:
                problems.append(_coerce_problem(key, value, spec, str(err)))
                continue
            problem = _range_problem(key, value)
            if problem:
                problems.append(problem)
            else:
                groups[group][key] = value
        elif key in UNSUPPORTED_KEYS:
            offs, what = UNSUPPORTED_KEYS[key]
            if not _is_off(value, offs):
                problems.append(
                    _problem(
                        key, value, f"not supported yet ({what})", f"remove {key} (or set it to {_show(offs[0])})"
                    )
                )
        elif key in IGNORED_KEYS:
            notes.append(f"{key}: ignored — {IGNORED_KEYS[key]}")
        else:
            close = difflib.get_close_matches(key, list(owners) + list(UNSUPPORTED_KEYS), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else "check the spelling"
            problems.append(_problem(key, value, "unknown key", f"{hint} (or remove it)"))
    return groups, problems, notes


def _range_problem(key: str, value: Any) -> str | None:
    """Why a coerced number cannot work (not finite, or outside its key's bounds), or None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        default = _DEFAULTS.get(key)
        fix = f"for example {key}: {_show(default)}" if isinstance(default, int | float) else "write a finite number"
        return _problem(key, value, "NaN and infinity cannot be computed with", fix)
    if key in _LOWER_BOUNDS:
        low, inclusive, why = _LOWER_BOUNDS[key]
        if value < low or (value == low and not inclusive):
            return _problem(key, value, why, f"write a number {'at least' if inclusive else 'above'} {_show(low)}")
    if key in _UPPER_BOUNDS:
        high, inclusive, why = _UPPER_BOUNDS[key]
        if value > high or (value == high and not inclusive):
            return _problem(key, value, why, f"write a number {'at most' if inclusive else 'below'} {_show(high)}")
    return None


def _flat(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for values in groups.values():
        given.update(values)
    return given


def _train_rules(given: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Cross-field rules of a training run, on coerced values. Returns (problems, notes)."""
    eff = {**_DEFAULTS, **given}
    problems: list[str] = []
    notes: list[str] = []
    stage, method = eff["stage"], eff["finetuning_type"]

    def add(key: str, why: str, fix: str) -> None:
        problems.append(_problem(key, given.get(key, _MISSING), why, fix))

    problems += _model_rules(eff, given)
    if not (eff["do_train"] or eff["do_eval"] or eff["do_predict"]):
        add("do_train", "nothing to run", "set do_train: true (or do_eval / do_predict: true)")
    if eff["do_train"] and not eff["output_dir"]:
        add(
            "output_dir",
            "a training run needs a folder for its checkpoints and logs",
            f"set output_dir, e.g. output_dir: saves/my-model/{method}/{stage}",
        )
    if eff["do_train"] and not eff["dataset"]:
        add("dataset", "training needs a dataset", "set dataset: a name from dataset_info.json (e.g. demo_sft)")
    if not eff["do_train"] and (eff["do_eval"] or eff["do_predict"]) and not (eff["eval_dataset"] or eff["dataset"]):
        add("eval_dataset", "evaluation needs a dataset", "set eval_dataset: a name from dataset_info.json")
    if stage in _SFT_LIKE and not eff["template"]:
        add(
            "template",
            f"stage {stage} turns conversations into text with a chat template",
            "set template: chatml for the demo model, or the template the model was trained with (llama3, qwen, ...)",
        )

    # Stage-specific keys
    if stage not in ("dpo", "kto"):
        for key in ("pref_beta", "pref_ftx"):
            if key in given and given[key] != _DEFAULTS[key]:
                add(key, f"it is read by stages dpo and kto, not {stage}", f"remove {key} or set stage: dpo")
    if "pref_loss" in given and given["pref_loss"] != _DEFAULTS["pref_loss"] and stage != "dpo":
        add("pref_loss", f"it is read by stage dpo, not {stage}", "remove pref_loss or set stage: dpo")
    if stage == "ppo":
        if not eff["reward_model"]:
            add(
                "reward_model",
                "ppo scores answers with a reward model",
                "train one with stage: rm and set reward_model: <that run's output_dir>",
            )
        if method in ("freeze", "oft"):
            add("finetuning_type", "ppo trains a lora adapter or the full model", "set finetuning_type: lora")
        if eff["reward_model_type"] == "lora" and method != "lora":
            add(
                "reward_model_type",
                "a lora reward model is an adapter on the policy's own base model, which "
                f"needs finetuning_type lora (got {method})",
                "set reward_model_type: full, or finetuning_type: lora",
            )
        if eff["eval_strategy"] != "no" or eff["do_eval"]:
            add(
                "eval_strategy" if eff["eval_strategy"] != "no" else "do_eval",
                "ppo runs no evaluation",
                "remove it; evaluate the trained model with stage: sft and do_eval: true",
            )
    if stage == "grpo":
        problems += _grpo_rules(eff, given)
    patience = eff["early_stopping_patience"]
    if patience is not None:
        if patience < 1:
            add(
                "early_stopping_patience", "it counts evaluations without improvement", "write 1 or more, or remove it"
            )
        elif stage in ("ppo", "grpo"):
            add("early_stopping_patience", f"{stage} runs no evaluation", "remove it")
        elif eff["eval_strategy"] == "no":
            add(
                "early_stopping_patience",
                "it counts evaluations, and eval_strategy is no",
                "set eval_strategy: steps and eval_steps: N (with val_size or eval_dataset)",
            )
    if eff["load_best_model_at_end"] and stage in ("rm", "ppo", "grpo"):
        add("load_best_model_at_end", f"stage {stage} cannot reload the best checkpoint", "remove it")
    for key in ("train_on_prompt", "mask_history"):
        if eff[key] and stage != "sft":
            add(key, f"it shapes sft labels; stage {stage} does not read it", f"remove {key}")
    if eff["predict_with_generate"] and stage != "sft":
        add("predict_with_generate", f"generation is done by stage sft, not {stage}", "set stage: sft")
    if stage == "sft" and eff["do_predict"] and not eff["predict_with_generate"]:
        add("predict_with_generate", "do_predict writes generated answers", "set predict_with_generate: true")
    if eff["predict_with_generate"] and eff["compute_accuracy"]:
        add(
            "compute_accuracy",
            "token accuracy needs logits, which generation does not keep",
            "remove compute_accuracy or predict_with_generate",
        )

    # Packing
    if eff["packing"] and stage not in ("pt", "sft"):
        add("packing", f"packing joins samples, which stage {stage} keeps apart", "remove packing")
    if eff["neat_packing"]:
        if stage != "sft":
            add("neat_packing", f"neat packing is for stage sft, not {stage}", "remove neat_packing")
        elif eff["packing"] is False:
            add("packing", "neat_packing: true needs packing", "remove packing: false (neat_packing turns it on)")
        elif eff["packing"] is None:
            notes.append("packing: turned on — neat_packing packs samples")

    # Splits and streaming
    val_size = eff["val_size"]
    if val_size < 0 or (val_size >= 1 and not float(val_size).is_integer()):
        add("val_size", "it is a fraction below 1 or a whole row count", "write e.g. 0.1 or 100")
    if val_size and eff["streaming"]:
        add("val_size", "a stream cannot be split", "remove val_size and set eval_dataset instead")
    if val_size and eff["eval_dataset"]:
        add("val_size", "eval_dataset is set too", "keep one of val_size and eval_dataset")
    if eff["eval_strategy"] != "no" and not val_size and not eff["eval_dataset"]:
        add("eval_strategy", "evaluation needs held-out data", "set val_size (e.g. 0.1) or eval_dataset")
    elif eff["do_train"] and eff["do_eval"] and not val_size and not eff["eval_dataset"]:
        add("do_eval", "evaluation after training needs held-out data", "set val_size (e.g. 0.1) or eval_dataset")
    if eff["streaming"] and eff["do_train"] and eff["max_steps"] <= 0:
        add("max_steps", "a stream has no known length, so epochs cannot be counted", "set max_steps, e.g. 1000")
    if eff["streaming"] and stage not in ("pt", "sft"):
        add("streaming", f"stage {stage} prepares its data whole; streaming works for pt and sft", "remove streaming")
    if eff["streaming"] and eff["tokenized_path"]:
        add("tokenized_path", "a stream is tokenized while training and cannot be saved", "remove tokenized_path")
    if eff["interleave_probs"]:
        if eff["mix_strategy"] == "concat":
            add("interleave_probs", "mix_strategy concat does not sample", "set mix_strategy: interleave_under")
        else:
            probs = split_arg(eff["interleave_probs"])
            if len(probs) != len(split_arg(eff["dataset"])):
                add(
                    "interleave_probs",
                    f"{len(probs)} probabilities for {len(split_arg(eff['dataset']))} datasets",
                    "give one probability per dataset, in the same order",
                )

    # Numbers
    for key, low in (("cutoff_len", 1), ("lora_rank", 1), ("max_samples", 1), ("buffer_size", 1)):
        if eff[key] is not None and eff[key] < low:
            add(key, f"it must be at least {low}", f"for example {key}: {_show(_DEFAULTS[key] or 1000)}")
    for key, low in (("health_patience", 1), ("health_overfit_evals", 1), ("metrics_interval", 0)):
        if eff[key] < low:
            add(key, f"it must be at least {low}", f"for example {key}: {_show(_DEFAULTS[key])}")
    if eff["health_divergence_factor"] <= 1:
        add(
            "health_divergence_factor",
            "it must be above 1: it multiplies the lowest smoothed loss",
            "for example health_divergence_factor: 3.0",
        )
    if not 0 <= eff["lora_dropout"] < 1:
        add("lora_dropout", "a dropout probability is from 0 to below 1", "for example lora_dropout: 0.05")
    if eff["freeze_trainable_layers"] == 0:
        add(
            "freeze_trainable_layers",
            "0 layers would train nothing",
            "a positive count trains the last layers, a negative count the first ones",
        )

    problems += _parity_rules(eff, given)
    for why, fix in tracker_problems(eff.get("report_to")):
        add("report_to", why, fix)
    if eff["use_swanlab"]:
        for why, fix in tracker_problems("swanlab"):
            add("use_swanlab", why, fix)

    # Precision
    if eff["bf16"] and eff["fp16"]:
        add("fp16", "bf16 is set too", "keep one of bf16 and fp16")
    if eff["pure_bf16"] and eff["fp16"]:
        add("fp16", "pure_bf16 is set too", "keep one of pure_bf16 and fp16")

    # Keys for another method or stage: LLaMA-Factory YAMLs carry them, so a note, not an error.
    for keys, wanted in ((_LORA_KEYS, "lora"), (_FREEZE_KEYS, "freeze")):
        ignored = [key for key in keys if key in given and given[key] != _DEFAULTS[key] and method != wanted]
        if ignored:
            notes.append(f"{', '.join(ignored)}: ignored — finetuning_type is {method}, not {wanted}")
    for keys, wanted in _STAGE_KEYS.items():
        ignored = [key for key in keys if key in given and given[key] != _DEFAULTS[key] and stage not in wanted]
        if ignored:
            notes.append(f"{', '.join(ignored)}: ignored — stage is {stage}, not {' or '.join(wanted)}")
    if "simpo_gamma" in given and given["simpo_gamma"] != _DEFAULTS["simpo_gamma"] and eff["pref_loss"] != "simpo":
        notes.append(f"simpo_gamma: ignored — pref_loss is {eff['pref_loss']}, not simpo")
    return problems, notes


# Optimizer keys -> (distribution to install, module it provides); None: built into torch / transformers.
OPTIMIZER_PACKAGES = {
    "use_galore": ("galore-torch", "galore_torch"),
    "use_apollo": ("apollo-torch", "apollo_torch"),
    "use_badam": ("badam", "badam"),
    "use_adam_mini": ("adam-mini", "adam_mini"),
    "use_muon": None,
}
_SFT_LOSSES = ("use_dft_loss", "use_eaft_loss", "use_asft_loss")


def _parity_rules(eff: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """LLaMA-Factory features added back: one optimizer at a time, its package installed, its method and stage; one
    sft loss at a time; a hub push that can succeed."""
    import importlib.util

    problems: list[str] = []

    def add(key: str, why: str, fix: str) -> None:
        problems.append(_problem(key, given.get(key, _MISSING), why, fix))

    chosen = [key for key in OPTIMIZER_PACKAGES if eff[key]]
    if len(chosen) > 1:
        add(chosen[1], f"{chosen[0]} is set too: one optimizer at a time", f"keep one of {', '.join(chosen)}")
    for key in chosen[:1]:
        package = OPTIMIZER_PACKAGES[key]
        if package and importlib.util.find_spec(package[1]) is None:
            add(
                key,
                f"it needs the {package[0]} package, which is not installed",
                f"pip install {package[0]} (or pip install 'llamaboard[optim]')",
            )
        if key in ("use_galore", "use_apollo", "use_badam") and eff["finetuning_type"] != "full":
            add(key, f"it trains full weights, not {eff['finetuning_type']}", "set finetuning_type: full")
        if key in ("use_galore", "use_apollo") and eff.get("deepspeed"):
            add(key, "GaLore and APOLLO do not run under DeepSpeed", "remove deepspeed")
        if key == "use_badam" and eff.get("deepspeed"):
            add(key, "BAdam here trains one layer on one process without DeepSpeed", "remove deepspeed")
        if key != "use_muon" and eff["loraplus_lr_ratio"]:
            add("loraplus_lr_ratio", f"{key} builds its own optimizer", "remove loraplus_lr_ratio")
    if eff["use_llama_pro"] and eff["finetuning_type"] != "freeze":
        add("use_llama_pro", "LLaMA Pro trains chosen layers with the rest frozen", "set finetuning_type: freeze")
    losses = [key for key in _SFT_LOSSES if eff[key]]
    if len(losses) > 1:
        add(losses[1], f"{losses[0]} is set too: one sft loss at a time", f"keep one of {', '.join(losses)}")
    for key in losses:
        if eff["stage"] != "sft":
            add(key, f"it is an sft loss; stage {eff['stage']} has its own", f"remove {key} or set stage: sft")
    if eff.get("push_to_hub"):
        for why, fix in push_problems(eff.get("hub_model_id")):
            add("push_to_hub", why, fix)
    if eff["use_asft_loss"]:
        add(
            "use_asft_loss",
            "not supported yet (ASFT's KL anchor needs a reference forward pass the sft trainer does not run)",
            "use use_dft_loss, its loss without the anchor, or remove use_asft_loss",
        )
    return problems


def _grpo_rules(eff: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Rules of stage grpo: the group size against the batch, the reward functions and their weights."""
    import re

    problems: list[str] = []

    def add(key: str, why: str, fix: str) -> None:
        problems.append(_problem(key, given.get(key, _MISSING), why, fix))

    groups = eff["num_generations"]
    completions = eff["per_device_train_batch_size"] * eff["gradient_accumulation_steps"]
    if groups < 2:
        add("num_generations", "grpo compares the rewards within a group of answers to one prompt", "set 2 or more")
    elif completions % groups:
        add(
            "num_generations",
            f"one step samples per_device_train_batch_size * gradient_accumulation_steps = {completions} answers, "
            f"which is not a whole number of groups of {groups}",
            "make that product a multiple of num_generations (e.g. per_device_train_batch_size: "
            f"{groups * max(1, completions // groups)})",
        )
    if eff["grpo_beta"] < 0:
        add("grpo_beta", "a KL weight cannot be negative", "write 0 (no penalty) or e.g. 0.04")
    if eff["grpo_epsilon"] <= 0:
        add("grpo_epsilon", "the clip range must be above 0", "for example grpo_epsilon: 0.2")
    if eff["grpo_epochs"] < 1:
        add("grpo_epochs", "at least one pass over each batch", "for example grpo_epochs: 1")

    funcs = split_arg(eff["reward_funcs"])
    if not funcs:
        add("reward_funcs", "grpo needs at least one reward function", f"use one of {', '.join(REWARD_FUNCS)}")
    own = [name for name in funcs if name not in REWARD_FUNCS]
    if own and not eff["reward_file"]:
        add(
            "reward_funcs",
            f"{', '.join(own)}: not a built-in reward ({', '.join(REWARD_FUNCS)})",
            "fix the name, or set reward_file: a Python file that defines it (with trust_reward_file: true)",
        )
    if eff["reward_file"] and not eff["trust_reward_file"]:
        add(
            "reward_file",
            "it is Python code that the job would run",
            "set trust_reward_file: true if you trust the file, or remove reward_file",
        )
    if eff["reward_file"] and not own:
        add("reward_file", "reward_funcs names none of its functions", "add the function's name to reward_funcs")
    if eff["reward_weights"] is not None:
        weights = split_arg(eff["reward_weights"])
        try:
            [float(w) for w in weights]
        except ValueError:
            add("reward_weights", "weights are numbers", "write e.g. reward_weights: 1.0,0.2")
        else:
            if len(weights) != len(funcs):
                add(
                    "reward_weights",
                    f"{len(weights)} weights for {len(funcs)} reward functions",
                    "give one weight per name in reward_funcs, in the same order",
                )
    if "rm" in funcs:
        if not eff["reward_model"]:
            add("reward_model", "reward_funcs has rm", "set reward_model: the output_dir of an rm run")
        if eff["reward_model_type"] == "rule":
            add(
                "reward_model_type",
                "grpo names rules in reward_funcs; rm is a reward model",
                "set reward_model_type: lora or full",
            )
    if eff["reward_format_regex"]:
        try:
            re.compile(eff["reward_format_regex"])
        except re.error as err:
            add("reward_format_regex", f"not a regular expression ({err})", "fix the pattern, or remove it")
    if not str(eff["reward_format_tag"]).strip() or not re.fullmatch(r"[\w.:-]+", str(eff["reward_format_tag"])):
        add("reward_format_tag", "a tag is a plain name", "for example reward_format_tag: answer")
    if eff["eval_strategy"] != "no" or eff["do_eval"]:
        add(
            "eval_strategy" if eff["eval_strategy"] != "no" else "do_eval",
            "grpo runs no evaluation",
            "remove it; evaluate the trained model with llamafactory-cli eval",
        )
    return problems


_LOW_RANK_KEYS = {
    "galore": ("target", "rank", "update_interval", "scale", "layerwise", "proj_type"),
    "apollo": (
        "target",
        "rank",
        "update_interval",
        "scale",
        "layerwise",
        "proj",
        "proj_type",
        "scale_type",
        "scale_front",
    ),
}


def optimizer_training_args(finetuning_args: Any) -> dict[str, Any]:
    """transformers' own `optim` settings for GaLore / APOLLO (its Trainer builds them); {} for the others."""
    for prefix in ("galore", "apollo"):
        if not getattr(finetuning_args, f"use_{prefix}"):
            continue
        values = {name: getattr(finetuning_args, f"{prefix}_{name}") for name in _LOW_RANK_KEYS[prefix]}
        targets = split_arg(values["target"])
        options = {"rank": values["rank"], "update_proj_gap": values["update_interval"], "scale": values["scale"]}
        options.update({name: values[name] for name in _LOW_RANK_KEYS[prefix][5:]})
        return {
            "optim": f"{prefix}_adamw" + ("_layerwise" if values["layerwise"] else ""),
            "optim_target_modules": "all-linear" if targets in ([], ["all"]) else targets,
            "optim_args": ",".join(f"{key}={value}" for key, value in options.items()),
        }
    return {}


def _model_rules(eff: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Rules on the model keys shared by training, chat and export."""
    problems: list[str] = []

    def add(key: str, why: str, fix: str) -> None:
        problems.append(_problem(key, given.get(key, _MISSING), why, fix))

    method = eff["finetuning_type"]
    if not eff["model_name_or_path"]:
        add(
            "model_name_or_path",
            "every stage starts from a model",
            "set model_name_or_path: a local folder, a hub id, or demo (the offline demo model)",
        )
    if eff["adapter_name_or_path"] and method not in ("lora", "oft"):
        add(
            "adapter_name_or_path",
            f"adapters are lora or oft weights; finetuning_type is {method}",
            "set finetuning_type: lora (or oft for OFT adapters), or remove adapter_name_or_path",
        )
    if method == "oft" and (eff["oft_rank"] > 0) == (eff["oft_block_size"] > 0):
        add(
            "oft_block_size",
            "OFT sizes its blocks by exactly one of oft_rank and oft_block_size",
            "set one of them to 0 (the default is oft_block_size: 32 with oft_rank: 0)",
        )
    if not 0 <= eff["module_dropout"] < 1:
        add("module_dropout", "a dropout probability is from 0 to below 1", "for example module_dropout: 0.05")
    if eff["use_unsloth"]:
        add("use_unsloth", "not supported yet (Unsloth)", "remove use_unsloth")
    if eff["enable_liger_kernel"] and importlib.util.find_spec("liger_kernel") is None:
        add(
            "enable_liger_kernel",
            "the liger-kernel package is not installed",
            "pip install liger-kernel (CUDA only), or remove enable_liger_kernel",
        )
    if eff["flash_attn"] == "fa2" and importlib.util.find_spec("flash_attn") is None:
        add("flash_attn", "FlashAttention-2 needs the flash-attn package", "pip install flash-attn, or use sdpa")
    bits = eff["quantization_bit"]
    if bits is not None:
        if bits not in (4, 8):
            add("quantization_bit", "bitsandbytes loads 4 or 8 bits", "write 4 or 8, or remove quantization_bit")
        if method != "lora":
            add(
                "quantization_bit",
                f"a quantized model can only train lora adapters, not {method}",
                "set finetuning_type: lora, or remove quantization_bit",
            )
        if eff["pissa_init"]:
            add("pissa_init", "PiSSA cannot start from quantized weights", "remove pissa_init or quantization_bit")
        if eff["resize_vocab"]:
            add("resize_vocab", "a quantized model's embeddings cannot be resized", "remove resize_vocab")
        adapters = split_arg(eff["adapter_name_or_path"])
        if len(adapters) > 1:
            add(
                "adapter_name_or_path",
                "a quantized model takes one adapter",
                "merge the adapters first (llamafactory-cli export), then give the merged model",
            )
        if adapters and eff["create_new_adapter"]:
            add(
                "create_new_adapter",
                "a new adapter cannot be stacked on a quantized model with an adapter",
                "remove it",
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            add(
                "quantization_bit",
                "4/8-bit loading needs the bitsandbytes package",
                "pip install '.[gpu]' on a CUDA machine, or remove quantization_bit",
            )
    return problems


def path_problems(args: dict[str, Any]) -> list[str]:
    """What the disk says about the paths of an argument dict, before anything loads (pure; the CLI runs it after
    `check_dict` / `check_infer_dict`, the board at Start): an `adapter_name_or_path` entry that is no adapter
    folder, a `resume_from_checkpoint` that is no complete checkpoint, an `output_dir` that cannot hold a run.
    Kept apart from check_dict, whose verdict on a file does not depend on what exists yet (examples name the
    adapters a previous example trains)."""
    problems: list[str] = []
    for adapter in split_arg(args.get("adapter_name_or_path")):
        problem = adapter_problem(str(adapter))
        if problem:
            problems.append(
                _problem(
                    "adapter_name_or_path",
                    adapter,
                    problem,
                    "point it at a LoRA or OFT run's output folder or one of its checkpoint-N",
                )
            )
    output_dir = args.get("output_dir")
    if args.get("do_train") and isinstance(output_dir, str) and output_dir:
        problem = output_dir_problem(output_dir)
        if problem:
            problems.append(
                _problem("output_dir", output_dir, problem, "choose another output_dir (a new folder is made for you)")
            )
    resume = args.get("resume_from_checkpoint")
    if isinstance(resume, str) and resume.strip().lower() not in ("", "true", "false"):
        from core.checkpoints import resume_problem  # pure, like this module

        problem = resume_problem(resume)
        if problem:
            problems.append(problem)
    return problems


def adapter_problem(adapter: str) -> str | None:
    """Why a local `adapter_name_or_path` entry is no LoRA or OFT adapter (missing, a file, no adapter_config.json), or
    None (also for a hub id, which only the download can check)."""
    path = Path(adapter).expanduser()
    if path.is_dir():
        return None if (path / "adapter_config.json").is_file() else "the folder has no adapter_config.json"
    if path.exists():
        return "it is a file, not an adapter folder"
    if adapter.startswith((".", "/", "~")) or adapter.count("/") > 1 or "\\" in adapter:
        return f"no such folder (relative to {Path.cwd()})"
    return None


def output_dir_problem(output_dir: str) -> str | None:
    """Why training cannot write into `output_dir` (a file, inside a file, a folder this user cannot write), or
    None. A folder holding another run's files is judged when the job starts (trainer_utils.prepare_output_dir)."""
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        return "it is a file, not a folder"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"it would lie inside {existing}, which is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user"
    return None


def review_args(args: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, notes) of a training argument dict, without importing torch.

    Problems stop a run; notes are what the run will log (a key dropped or ignored, a setting turned on for you).
    """
    groups, problems, notes = normalize_args(args)
    rule_problems, rule_notes = _train_rules(_flat(groups))
    return problems + rule_problems, notes + rule_notes


def check_dict(args: dict[str, Any]) -> list[str]:
    """Every problem of a training argument dict, without importing torch (the board calls this before Start).

    Each problem reads `key: received <value> — why — what to do`. Device checks (CUDA, bf16 support) are
    left to `check_args`, which get_train_args runs in the job.
    """
    return review_args(args)[0]


def check_args(given: dict[str, Any]) -> list[str]:
    """Problems that depend on this machine's devices (imports torch): quantization without CUDA, bf16 / fp16."""
    import torch

    eff = {**_DEFAULTS, **given}
    problems: list[str] = []
    cuda = torch.cuda.is_available()
    if eff["quantization_bit"] is not None and not cuda:
        problems.append(
            _problem(
                "quantization_bit",
                eff["quantization_bit"],
                "4/8-bit loading (bitsandbytes) needs a CUDA GPU, and none is visible",
                "remove quantization_bit (lora trains the full-precision model) or run on a GPU machine",
            )
        )
    bf16_key = "bf16" if eff["bf16"] else "pure_bf16" if eff["pure_bf16"] else None
    if bf16_key and cuda and not torch.cuda.is_bf16_supported():
        problems.append(
            _problem(
                bf16_key,
                True,
                f"this GPU ({torch.cuda.get_device_name()}) has no bf16",
                f"use fp16: true instead of {bf16_key}",
            )
        )
    elif bf16_key and not cuda and not eff["use_cpu"]:
        problems.append(
            _problem(
                bf16_key,
                True,
                "no CUDA GPU is visible, and bf16 on a CPU runs only with use_cpu: true (and slowly on most CPUs)",
                f"remove {bf16_key} to train in float32, or add use_cpu: true",
            )
        )
    if eff["fp16"] and not cuda:
        problems.append(
            _problem(
                "fp16",
                True,
                "fp16 mixed precision needs a CUDA GPU, and none is visible",
                "remove fp16 to train in float32",
            )
        )
    return problems


def get_train_args(
    source: dict | str | os.PathLike | list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments]:
    """The five argument objects of a training run, or ArgumentError listing every problem.

    Besides the keys given, it sets what stage code should not have to work out again: `data_args.packing`
    (None -> on for pt), `model_args.compute_dtype` / `model_max_length` / `block_diag_attn`,
    `training_args.generation_max_length` (cutoff_len), `remove_unused_columns=False`, and for lora
    `label_names=["labels"]` and `ddp_find_unused_parameters=False`. Notes (keys dropped or ignored) are logged.
    """
    import torch

    from core.hparams.training_args import TrainingArguments

    args = read_args(source)
    groups, problems, notes = normalize_args(args, field_specs(TrainingArguments))
    given = _flat(groups)
    rule_problems, rule_notes = _train_rules(given)
    problems += rule_problems
    notes += rule_notes
    if not problems:
        problems += check_args(given)
    if problems:
        raise ArgumentError(problems)

    model_args = ModelArguments(**groups["model"])
    data_args = DataArguments(**groups["data"])
    finetuning_args = FinetuningArguments(**groups["finetuning"])
    generating_args = GeneratingArguments(**groups["generating"])
    evaluates = groups["training"].get("eval_strategy", "no") not in ("no", None)
    if (finetuning_args.early_stopping_patience or evaluates) and not groups["training"].get("metric_for_best_model"):
        # The eval loss (greater_is_better follows): the Trainer then tracks the best checkpoint, which early
        # stopping, save_total_limit and "Stop and keep best" keep.
        groups["training"]["metric_for_best_model"] = "loss"
    try:
        training_args = TrainingArguments(**groups["training"])
    except ValueError as err:  # transformers' own checks, e.g. strategies that do not match
        raise ArgumentError([f"training arguments: {err}"]) from None

    # What LLaMA-Factory derives after parsing, so stage code finds it in one place.
    if data_args.packing is None:
        data_args.packing = data_args.neat_packing or finetuning_args.stage == "pt"
    model_args.model_max_length = data_args.cutoff_len
    model_args.block_diag_attn = data_args.neat_packing
    if training_args.bf16 or finetuning_args.pure_bf16:
        model_args.compute_dtype = torch.bfloat16
    elif training_args.fp16:
        model_args.compute_dtype = torch.float16
    training_args.generation_max_length = training_args.generation_max_length or data_args.cutoff_len
    for key, value in optimizer_training_args(finetuning_args).items():
        setattr(training_args, key, value)
    if training_args.push_to_hub:
        # Pushed once at the end by the workflow (core.train.model_card), not by the Trainer at every save.
        training_args.push_to_hub = False
        finetuning_args.push_at_end = True
    if finetuning_args.use_swanlab:
        trackers = report_to_list(training_args.report_to)
        training_args.report_to = [*trackers, "swanlab"] if "swanlab" not in trackers else trackers
        os.environ.update(swanlab_environment(groups["finetuning"]))
    if finetuning_args.stage == "ppo" and "max_new_tokens" not in given:
        generating_args.max_new_tokens = PPO_MAX_NEW_TOKENS
        logger.info(
            "ppo: max_new_tokens not set — responses are cut at %d tokens (chat and predict use %d); "
            "set max_new_tokens to change it",
            PPO_MAX_NEW_TOKENS,
            GeneratingArguments.max_new_tokens,
        )
    if finetuning_args.stage == "ppo" and "ppo_score_norm" not in given:
        logger.info(
            "ppo: ppo_score_norm not set — scores are normalised (LLaMA-Factory leaves them raw); "
            "set ppo_score_norm: false for its behaviour"
        )
    # Our collators carry columns the model's forward does not name (chosen_*, kl_*): the Trainer must keep them.
    training_args.remove_unused_columns = False
    if "dataloader_pin_memory" not in given and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning without an accelerator only warns, every run
    if finetuning_args.finetuning_type == "lora":
        # A peft model hides `labels` from the Trainer's signature check: without this, eval reports no loss.
        training_args.label_names = training_args.label_names or ["labels"]
        if training_args.ddp_find_unused_parameters is None:
            training_args.ddp_find_unused_parameters = False

    for note in notes:
        logger.warning(note)
    return model_args, data_args, training_args, finetuning_args, generating_args


def _review_infer(args: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    groups, problems, notes = normalize_args(args)
    given = _flat(groups)
    return groups, problems + _model_rules({**_DEFAULTS, **given}, given), notes


def check_infer_dict(args: dict[str, Any]) -> list[str]:
    """Every problem of a chat / export argument dict, without importing torch (training keys are ignored)."""
    return _review_infer(args)[1]


def get_infer_args(
    source: dict | str | os.PathLike | list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, FinetuningArguments, GeneratingArguments]:
    """The argument objects of chat and export (training keys are ignored with a note), or ArgumentError."""
    args = read_args(source)
    groups, problems, notes = _review_infer(args)
    if problems:
        raise ArgumentError(problems)
    if groups["training"]:
        notes.append(f"{', '.join(groups['training'])}: ignored — training keys have no effect on chat and export")

    model_args = ModelArguments(**groups["model"])
    data_args = DataArguments(**groups["data"])
    finetuning_args = FinetuningArguments(**groups["finetuning"])
    generating_args = GeneratingArguments(**groups["generating"])
    model_args.model_max_length = data_args.cutoff_len
    if model_args.infer_dtype != "auto":
        import torch

        model_args.compute_dtype = getattr(torch, model_args.infer_dtype)
    for note in notes:
        logger.warning(note)
    return model_args, data_args, finetuning_args, generating_args

"""The board's form <-> the argument dict (the very YAML the CLI runs). Pure functions, golden-tested.

Controls are named after the argument they set, so `build_args` is the identity for most of them. The
exceptions, all here:
  model_name + model_path -> model_name_or_path      checkpoint_path -> adapter_name_or_path (lora) or
  quantization_bit / rope_scaling "none" -> omitted     model_name_or_path (freeze / full)
  booster -> flash_attn / use_unsloth / enable_liger_kernel     compute_type -> bf16 / fp16 / pure_bf16
  dataset (list) -> "a,b"     report_to (list) -> list or "none"     run_name -> output_dir under saves
  reward_model (saved runs) -> paths + reward_model_type (ppo; grpo when reward_funcs has rm)
  reward_funcs (list) -> "a,b"     val_size > 0 -> eval every save_steps (not ppo / grpo: they run no eval)
  extra_args (JSON object) merged last, so it can set or override anything.
Sections that do not apply are left out: lora_* unless lora, freeze_* unless freeze, preference keys unless
dpo / kto, PPO keys unless ppo, GRPO keys (sampling settings included) unless grpo. Empty values (None, "") and
zeros that mean "off" (neftune, LoRA+, early stopping, keep the best, checkpoint limit) are left out; every other
value is written even when it equals the core's default, so the YAML says exactly what runs.
"""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from core.paths import saves_dir
from webui import models
from webui.controls import FREEZE_KEYS, GRPO_KEYS, LORA_KEYS, OFT_KEYS, PPO_KEYS, PREF_KEYS

logger = logging.getLogger(__name__)


class FormError(ValueError):
    """A form value or a YAML file that cannot become an argument dict; the message names the field."""


FORM_DEFAULTS: dict[str, Any] = {
    "model_name": models.DEMO,
    "model_path": "demo",
    "finetuning_type": "lora",
    "checkpoint_path": [],
    "quantization_bit": "none",
    "quantization_method": "bnb",
    "template": "chatml",
    "rope_scaling": "none",
    "booster": "auto",
    "stage": "sft",
    "dataset_dir": "demo",
    "dataset": [],
    "learning_rate": 5e-5,
    "num_train_epochs": 3.0,
    "max_grad_norm": 1.0,
    "max_samples": 100000,
    "compute_type": "fp32",
    "cutoff_len": 1024,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "val_size": 0,
    "lr_scheduler_type": "cosine",
    "logging_steps": 5,
    "save_steps": 100,
    "warmup_steps": 0,
    "neftune_noise_alpha": 0,
    "extra_args": "{}",
    "early_stopping_patience": 0,
    "load_best_model_at_end": False,
    "save_total_limit": 0,
    "packing": False,
    "neat_packing": False,
    "train_on_prompt": False,
    "mask_history": False,
    "resize_vocab": False,
    "report_to": ["none"],
    "freeze_trainable_layers": 2,
    "freeze_trainable_modules": "all",
    "freeze_extra_modules": "",
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0,
    "loraplus_lr_ratio": 0,
    "create_new_adapter": False,
    "use_rslora": False,
    "use_dora": False,
    "pissa_init": False,
    "lora_target": "all",
    "additional_target": "",
    "oft_rank": 0,
    "oft_block_size": 32,
    "module_dropout": 0,
    "oft_target": "all",
    "pref_beta": 0.1,
    "pref_ftx": 0,
    "pref_loss": "sigmoid",
    "reward_model": None,
    "ppo_score_norm": False,
    "ppo_whiten_rewards": False,
    # grpo (the core's defaults, except sampling: temperature 1 and no top-p cut, as GRPO samples)
    "num_generations": 8,
    "grpo_beta": 0.04,
    "reward_funcs": ["exact_match"],
    "reward_weights": "",
    "max_new_tokens": 256,
    "temperature": 1.0,
    "top_p": 1.0,
    "reward_file": "",
    "run_name": "",
}
"""Every form control (by argument name) and the value it starts with; `args_to_form` fills missing keys from
here. The board's controls start from the same values (fp32: the safe choice where no GPU is known)."""

WHEN_MISSING: dict[str, Any] = {
    "model_name": models.CUSTOM,
    "model_path": "",
    "template": "",
    "dataset_dir": "data",
    "max_samples": None,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "linear",
    "save_steps": 500,
}
"""What the core does when a loaded YAML leaves a key out, where that differs from the fresh form: the form
shows these so that saving a loaded YAML back does not change the run. (lora_alpha and packing depend on other
keys and are filled in `args_to_form`.)"""

PREF_STAGES = ("dpo", "kto")
ADAPTER_METHODS = ("lora", "oft")
"""Methods whose runs are adapters: their checkpoints become adapter_name_or_path, not the model."""

INT_KEYS = (
    "max_samples",
    "cutoff_len",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "logging_steps",
    "save_steps",
    "warmup_steps",
    "freeze_trainable_layers",
    "lora_rank",
    "lora_alpha",
    "oft_rank",
    "oft_block_size",
    "early_stopping_patience",
    "save_total_limit",
)
OFF_WHEN_ZERO = (
    "neftune_noise_alpha",
    "loraplus_lr_ratio",
    "early_stopping_patience",
    "load_best_model_at_end",
    "save_total_limit",
)

# Form controls that are not argument keys, or become other keys; handled one by one below.
_SPECIAL = {
    "model_name",
    "model_path",
    "checkpoint_path",
    "quantization_bit",
    "quantization_method",
    "rope_scaling",
    "booster",
    "compute_type",
    "dataset",
    "report_to",
    "reward_model",
    "reward_funcs",
    "extra_args",
    "run_name",
    "output_dir",
    "val_size",
}
# Controls of the board that set no argument.
_NOT_ARGUMENTS = {"lang", "config_path", "view_run"}

BOOSTERS = {
    "auto": {"flash_attn": "auto"},
    "flashattn2": {"flash_attn": "fa2"},
    "liger_kernel": {"enable_liger_kernel": True},
}
COMPUTE_TYPES = {
    "fp32": {"bf16": False, "fp16": False},
    "fp16": {"bf16": False, "fp16": True},
    "bf16": {"bf16": True, "fp16": False},
    "pure_bf16": {"bf16": False, "fp16": False, "pure_bf16": True},
}
_ORDER = (
    # Model
    "model_name_or_path",
    "adapter_name_or_path",
    "template",
    "quantization_bit",
    "quantization_method",
    "rope_scaling",
    "flash_attn",
    "use_unsloth",
    "enable_liger_kernel",
    "resize_vocab",
    # Method
    "stage",
    "do_train",
    "finetuning_type",
    *FREEZE_KEYS,
    *LORA_KEYS,
    *PREF_KEYS,
    "reward_model",
    "reward_model_type",
    "ppo_score_norm",
    "ppo_whiten_rewards",
    *GRPO_KEYS,
    # Dataset
    "dataset_dir",
    "dataset",
    "cutoff_len",
    "max_samples",
    "val_size",
    "packing",
    "neat_packing",
    "train_on_prompt",
    "mask_history",
    # Output
    "output_dir",
    "logging_steps",
    "save_steps",
    "report_to",
    # Train
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "num_train_epochs",
    "lr_scheduler_type",
    "max_grad_norm",
    "warmup_steps",
    "neftune_noise_alpha",
    "bf16",
    "fp16",
    "pure_bf16",
    # Eval
    "eval_strategy",
    "eval_steps",
    "per_device_eval_batch_size",
)

MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_NODES = 100_000


# --- form -> args ---------------------------------------------------------------------------------------------------


def default_run_name() -> str:
    return datetime.now().strftime("train_%Y-%m-%d-%H-%M-%S")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _as_list(value: Any) -> list[str]:
    if _empty(value):
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]


def _number(key: str, value: Any) -> Any:
    """Sliders and number boxes give floats; integer arguments get ints (a YAML with `lora_rank: 8.0` reads oddly
    and some parsers reject it)."""
    if key in INT_KEYS and isinstance(value, float):
        if not value.is_integer():
            raise FormError(f"{key}: received {value}, a whole number is needed.")
        return int(value)
    if isinstance(value, str) and key in INT_KEYS:
        try:
            return int(value.strip())
        except ValueError:
            raise FormError(f"{key}: received {value!r}, a whole number is needed.") from None
    return value


def saves_folder(form: dict[str, Any], saves_root: Path) -> Path:
    """The folder of a model's runs for a method: saves/<model>/<finetuning_type> (form keys model_name,
    model_path, finetuning_type)."""
    name = form.get("model_name") or models.CUSTOM
    return saves_root / models.save_name(name, str(form.get("model_path") or "")) / str(form["finetuning_type"])


def _saved_path(entry: str, folder: Path) -> str:
    """A checkpoint entry ("run" or "run/checkpoint-N") as a path; an absolute path or hub id stays as it is."""
    return entry if os.path.isabs(entry) else str(folder / entry)


def _run_dir(form: dict[str, Any], folder: Path) -> str:
    name = str(form.get("run_name") or form.get("output_dir") or "").strip()
    if not name:
        name = default_run_name()
    if os.path.isabs(name):
        return name
    parts = Path(name).parts
    if ".." in parts or len(parts) != 1:
        raise FormError(f"run_name: received {name!r}; a run name is one folder name (no '/' or '..').")
    return str(folder / name)


def _extra(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return dict(text)
    if _empty(text):
        return {}
    try:
        extra = json.loads(text)
    except json.JSONDecodeError as err:
        raise FormError(
            f"extra_args: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}). Write an object "
            'such as {"optim": "adamw_torch", "seed": 42}.'
        ) from None
    except RecursionError:
        raise FormError(
            'extra_args: nested too deeply to read; write a flat object such as {"optim": "adamw_torch"}.'
        ) from None
    if not isinstance(extra, dict):
        raise FormError(f'extra_args: received {type(extra).__name__}; write a JSON object such as {{"seed": 42}}.')
    return extra


def build_args(form: dict[str, Any], saves_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The argument dict of the form's values (keyed by argument name; missing keys take FORM_DEFAULTS).

    Raises FormError naming the control when a value cannot be used (bad extra_args JSON, bad run name,
    a fractional value for a whole-number argument).
    """
    form = {**FORM_DEFAULTS, **{key: value for key, value in form.items() if key not in _NOT_ARGUMENTS}}
    saves_root = Path(saves_root) if saves_root is not None else saves_dir()
    method, stage = str(form["finetuning_type"]), str(form["stage"])
    folder = saves_folder(form, saves_root)
    args: dict[str, Any] = {}

    # Model
    model = str(form.get("model_path") or "").strip() or models.model_path(str(form.get("model_name") or ""))
    checkpoints = [_saved_path(entry, folder) for entry in _as_list(form.get("checkpoint_path"))]
    if checkpoints and method in ADAPTER_METHODS:
        args["adapter_name_or_path"] = ",".join(checkpoints)
    elif checkpoints:
        if len(checkpoints) > 1:
            raise FormError(f"checkpoint_path: {method} training continues from one checkpoint; pick only one.")
        model = checkpoints[0]
    args["model_name_or_path"] = model
    if str(form.get("quantization_bit")) not in ("none", "None", ""):
        if str(form["quantization_bit"]) not in ("4", "8"):
            raise FormError(f"quantization_bit: received {form['quantization_bit']!r}; choose none, 8 or 4.")
        args["quantization_bit"] = int(form["quantization_bit"])
        args["quantization_method"] = form.get("quantization_method") or "bnb"
    if str(form.get("rope_scaling")) not in ("none", "None", ""):
        args["rope_scaling"] = form["rope_scaling"]
    booster = str(form.get("booster") or "auto")
    if booster not in BOOSTERS:
        raise FormError(f"booster: received {booster!r}; choose one of {', '.join(BOOSTERS)}.")
    args.update(BOOSTERS[booster])

    # Method sections and the rest of the controls, named after their argument
    args["do_train"] = True
    for key, value in form.items():
        if key in _SPECIAL or _empty(value):
            continue
        if (key in LORA_KEYS and method != "lora") or (key in FREEZE_KEYS and method != "freeze"):
            continue
        if key in OFT_KEYS and method != "oft":
            continue
        if (key in PREF_KEYS and stage not in PREF_STAGES) or (key in PPO_KEYS and stage != "ppo"):
            continue
        if key in GRPO_KEYS and stage != "grpo":
            continue
        if key in OFF_WHEN_ZERO and not value:
            continue
        args[key] = _number(key, value)
    reward_funcs = _as_list(form.get("reward_funcs"))
    if stage == "grpo" and reward_funcs:
        args["reward_funcs"] = ",".join(reward_funcs)
    if (stage == "ppo" or (stage == "grpo" and "rm" in reward_funcs)) and not _empty(form.get("reward_model")):
        args["reward_model"] = ",".join(_saved_path(entry, folder) for entry in _as_list(form["reward_model"]))
        args["reward_model_type"] = "lora" if method == "lora" else "full"

    # Dataset
    datasets = _as_list(form.get("dataset"))
    if datasets:
        args["dataset"] = ",".join(datasets)
    val_size = form.get("val_size") or 0
    if val_size:
        args["val_size"] = int(val_size) if float(val_size) >= 1 else float(val_size)

    # Output and precision
    args["output_dir"] = _run_dir(form, folder)
    report_to = [name for name in _as_list(form.get("report_to")) if name != "none"]
    args["report_to"] = report_to if report_to else "none"
    compute_type = str(form.get("compute_type") or "fp32")
    if compute_type not in COMPUTE_TYPES:
        raise FormError(f"compute_type: received {compute_type!r}; choose one of {', '.join(COMPUTE_TYPES)}.")
    args.update(COMPUTE_TYPES[compute_type])

    # Eval: a validation split is scored at every save, so the loss chart gets its eval curve.
    if val_size and stage not in ("ppo", "grpo"):
        args["eval_strategy"] = "steps"
        args["eval_steps"] = args.get("save_steps", FORM_DEFAULTS["save_steps"])
        args["per_device_eval_batch_size"] = args.get("per_device_train_batch_size", 1)

    args = _ordered(args)
    args.update(_extra(form.get("extra_args")))
    return args


def _ordered(args: dict[str, Any]) -> dict[str, Any]:
    rank = {key: index for index, key in enumerate(_ORDER)}
    return dict(sorted(args.items(), key=lambda item: rank.get(item[0], len(rank))))


# --- args -> form ---------------------------------------------------------------------------------------------------


def _relative_to(path: str, folder: Path) -> str:
    """`path` as an entry of `folder` ("run" or "run/checkpoint-N") when it lies inside it, else unchanged."""
    try:
        relative = Path(path).resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return path
    return relative.as_posix()


def _like(value: Any, default: Any) -> Any:
    """A YAML string such as "1e-4" (PyYAML reads it as text) shown in a number control as the number."""
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def args_to_form(args: dict[str, Any], saves_root: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """Form values for an argument dict (ours, hand-written or LLaMA-Factory's), and the keys the form cannot
    show.

    The extra keys are also put in the form's extra_args (JSON), so saving the form writes them back:
    `build_args(form)` reproduces every key of `args` with its value (the form may add explicit defaults).
    """
    saves_root = Path(saves_root) if saves_root is not None else saves_dir()
    form = {**FORM_DEFAULTS, **WHEN_MISSING}
    rank = _like(args.get("lora_rank", FORM_DEFAULTS["lora_rank"]), 0)
    form["lora_alpha"] = 2 * rank if isinstance(rank, int) else FORM_DEFAULTS["lora_alpha"]  # the core's default
    form["packing"] = str(args.get("stage", "sft")) == "pt"
    for key, default in FORM_DEFAULTS.items():
        if key in args and key not in _SPECIAL:
            form[key] = _like(args[key], default)

    method = str(args.get("finetuning_type", FORM_DEFAULTS["finetuning_type"]))
    model = str(args.get("model_name_or_path") or "")
    form["model_name"] = models.model_name_for_path(model) if model else models.CUSTOM
    form["model_path"] = model
    folder = saves_folder(form, saves_root)
    adapters = _as_list(args.get("adapter_name_or_path"))
    form["checkpoint_path"] = [_relative_to(path, folder) for path in adapters] if method in ADAPTER_METHODS else []

    if args.get("quantization_bit") not in (None, ""):
        form["quantization_bit"] = str(args["quantization_bit"])
        form["quantization_method"] = args.get("quantization_method") or "bnb"
    if args.get("rope_scaling"):
        form["rope_scaling"] = args["rope_scaling"]
    if args.get("enable_liger_kernel"):
        form["booster"] = "liger_kernel"
    elif args.get("flash_attn") == "fa2":
        form["booster"] = "flashattn2"
    if args.get("pure_bf16"):
        form["compute_type"] = "pure_bf16"
    elif args.get("bf16"):
        form["compute_type"] = "bf16"
    elif args.get("fp16"):
        form["compute_type"] = "fp16"
    else:
        form["compute_type"] = "fp32"
    form["dataset"] = _as_list(args.get("dataset"))
    report_to = args.get("report_to", "none")
    form["report_to"] = _as_list(report_to) or ["none"]
    if args.get("val_size") is not None:
        form["val_size"] = args["val_size"]
    if "reward_funcs" in args:
        form["reward_funcs"] = _as_list(args["reward_funcs"])
    if args.get("reward_model"):
        form["reward_model"] = [_relative_to(path, folder) for path in _as_list(args["reward_model"])]
    output_dir = str(args.get("output_dir") or "")
    if output_dir:
        relative = _relative_to(output_dir, folder)
        # A run outside this model's saves folder shows its folder name; the real output_dir stays an extra key.
        form["run_name"] = relative if "/" not in relative and not os.path.isabs(relative) else Path(output_dir).name
    else:
        form["run_name"] = default_run_name()

    # Whatever the form does not reproduce exactly is extra: kept, reported, written back on save.
    form["extra_args"] = "{}"
    rebuilt = build_args(form, saves_root)
    extra = {key: value for key, value in args.items() if key not in rebuilt or rebuilt[key] != value}
    form["extra_args"] = json.dumps(extra, ensure_ascii=False, default=str) if extra else "{}"
    return form, extra


# --- YAML -----------------------------------------------------------------------------------------------------------


def dump_yaml(args: dict[str, Any]) -> str:
    """The argument dict as YAML, keys in the order given (the dict from build_args reads top-down)."""
    return yaml.safe_dump(args, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _count_nodes(value: Any, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise FormError(
            f"The YAML expands to more than {MAX_YAML_NODES} values (anchors and aliases nested too deep?); "
            "an argument file is a flat list of key: value."
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _count_nodes(key, budget)
            _count_nodes(item, budget)
    elif isinstance(value, list):
        for item in value:
            _count_nodes(item, budget)


def load_yaml(source: str | os.PathLike) -> dict[str, Any]:
    """An argument dict from a YAML file path or YAML text: safe_load only; python tags, alias bombs, files over
    1 MiB, and anything but a mapping of string keys are refused with a FormError that says why."""
    name = "the YAML text"
    text: str
    if isinstance(source, os.PathLike) or (
        "\n" not in source and (source.endswith((".yaml", ".yml", ".json")) or Path(source).is_file())
    ):
        path = Path(source)
        name = str(path)
        try:
            if path.stat().st_size > MAX_YAML_BYTES:
                raise FormError(f"{name}: larger than {MAX_YAML_BYTES // 1024} KiB; an argument file is a few lines.")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FormError(f"{name}: no such file.") from None
        except UnicodeDecodeError:
            raise FormError(f"{name}: not a UTF-8 text file.") from None
    else:
        text = str(source)
        if len(text) > MAX_YAML_BYTES:
            raise FormError(f"{name}: larger than {MAX_YAML_BYTES // 1024} KiB; an argument file is a few lines.")
    try:
        data = yaml.safe_load(io.StringIO(text))
    except yaml.constructor.ConstructorError as err:
        raise FormError(f"{name}: refused a YAML tag this board never reads ({err.problem}).") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FormError(f"{name}: not valid YAML{where}: {getattr(err, 'problem', err)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FormError(f"{name}: expected a mapping of argument: value, found a {type(data).__name__}.")
    _count_nodes(data, [MAX_YAML_NODES])
    bad = [key for key in data if not isinstance(key, str)]
    if bad:
        raise FormError(f"{name}: keys must be argument names; found {bad[0]!r}.")
    return data


# --- validation -----------------------------------------------------------------------------------------------------


def validate(args: dict[str, Any]) -> list[str]:
    """Problems that would stop the job, each naming the key and the fix: the core's own `check_dict` (pure,
    imported lazily) plus board-side checks (a model, a dataset that the data folder registers)."""
    problems: list[str] = []
    if _empty(args.get("model_name_or_path")):
        problems.append("model_name_or_path: empty — pick a model, or type a hub id or local folder in Model path.")
    else:
        from core.preflight import model_path_problem

        # Refused before Start makes a run folder (a missing model would leave one holding only a failed job).
        problem = model_path_problem(str(args["model_name_or_path"]), args.get("cache_dir"))
        if problem:
            problems.append(problem)
    datasets = _as_list(args.get("dataset"))
    if not datasets and args.get("do_train", True):
        problems.append("dataset: none chosen — pick at least one dataset for training.")
    if datasets and not _empty(args.get("dataset_dir")):
        problems.extend(_dataset_problems(datasets, str(args["dataset_dir"]), str(args.get("stage", "sft"))))
    try:
        from core.hparams import check_dict
    except ImportError:
        logger.warning("core.hparams.check_dict is not available; only the board's own checks ran.")
    else:
        problems.extend(problem for problem in check_dict(dict(args)) if problem not in problems)
    return problems


def _dataset_problems(datasets: list[str], dataset_dir: str, stage: str) -> list[str]:
    try:
        from core.data.registry import list_datasets

        known = list_datasets(dataset_dir, stage)
    except ImportError:
        return []
    except (OSError, ValueError) as err:
        return [f"dataset_dir: {dataset_dir} — {err}"]
    missing = [name for name in datasets if name not in known]
    if not missing:
        return []
    listed = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
    return [
        f"dataset: {', '.join(missing)} not registered for stage {stage} in {dataset_dir}/dataset_info.json "
        f"— choose from: {listed}."
    ]

"""The controls that become arguments, declared once: name, kind, and the gradio options of each (pure data).

A control is named after the argument it sets; webui/tabs/train.py lays the Train tab's out row by row from
`TRAIN_SECTIONS` through one factory (webui.tabs.factory.make), which fills in the value (webui.args.FORM_DEFAULTS),
the element id and the labels (locales) from the name. Everything that needs to know which controls exist derives
it from here: the form argument lists (TOP_ARGUMENTS, TRAIN_ARGUMENTS), the section key sets webui.args leaves out
when they do not apply (FREEZE_KEYS, LORA_KEYS, OFT_KEYS, PREF_KEYS, PPO_KEYS, GRPO_KEYS), and the handlers' input
lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.hparams.keys import REWARD_FUNCS
from core.hparams.trackers import installed_trackers


@dataclass(frozen=True)
class Control:
    """One argument control: `kind` is the gradio component (number, slider, dropdown, checkbox, textbox),
    `options` its keyword arguments; `labelled` choices are shown by their locale names (choice_pairs)."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    labelled: bool = False


def number(name: str, **options: Any) -> Control:
    return Control(name, "number", options)


def slider(name: str, minimum: float, maximum: float, step: float, **options: Any) -> Control:
    return Control(name, "slider", {"minimum": minimum, "maximum": maximum, "step": step, **options})


def dropdown(name: str, choices: Any = (), labelled: bool = False, **options: Any) -> Control:
    return Control(name, "dropdown", {"choices": choices, **options}, labelled)


def checkbox(name: str, **options: Any) -> Control:
    return Control(name, "checkbox", options)


def textbox(name: str, **options: Any) -> Control:
    return Control(name, "textbox", options)


Row = tuple[Control, ...]


def names(rows: tuple[Row, ...]) -> tuple[str, ...]:
    return tuple(control.name for row in rows for control in row)


# Choices (tests keep these equal to the core's Literal types)
STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto", "grpo")
COMPUTE_TYPES = ("fp32", "fp16", "bf16", "pure_bf16")
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
)
REPORT_TO = ("none", "all", *installed_trackers())
"""Only the trackers whose package is installed here (a loaded YAML may still name another: custom values)."""
PREF_LOSSES = ("sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo")

TOP_ARGUMENTS = (
    "model_name",
    "model_path",
    "finetuning_type",
    "checkpoint_path",
    "quantization_bit",
    "quantization_method",
    "template",
    "rope_scaling",
    "booster",
)
"""The top bar's controls that become arguments (`lang` is board state only); laid out in webui/tabs/top.py."""

# The Train tab, section by section and row by row, in the order the tab shows them.
DATA: tuple[Row, ...] = (
    (
        dropdown("stage", STAGES, labelled=True, scale=2),
        textbox("dataset_dir", scale=1),
        dropdown("dataset", multiselect=True, allow_custom_value=True, scale=4),
    ),
)
HYPER: tuple[Row, ...] = (
    (
        number("learning_rate", minimum=0),
        number("num_train_epochs", minimum=0),
        number("max_grad_norm", minimum=0),
        number("max_samples", minimum=1, precision=0),
        dropdown("compute_type", COMPUTE_TYPES, labelled=True),
    ),
    (
        slider("cutoff_len", 4, 131072, 1),
        slider("per_device_train_batch_size", 1, 1024, 1),
        slider("gradient_accumulation_steps", 1, 1024, 1),
        slider("val_size", 0, 1, 0.001),
        dropdown("lr_scheduler_type", LR_SCHEDULERS),
    ),
)
EXTRA: tuple[Row, ...] = (
    (
        slider("logging_steps", 1, 1000, 1),
        slider("save_steps", 10, 5000, 10),
        slider("warmup_steps", 0, 5000, 1),
        slider("neftune_noise_alpha", 0, 10, 0.1),
        textbox("extra_args", lines=2),
    ),
    (
        number("early_stopping_patience", minimum=0, precision=0),
        checkbox("load_best_model_at_end"),
        number("save_total_limit", minimum=0, precision=0),
    ),
    (
        checkbox("packing"),
        checkbox("neat_packing"),
        checkbox("train_on_prompt"),
        checkbox("mask_history"),
        checkbox("resize_vocab"),
        dropdown("report_to", REPORT_TO, multiselect=True, allow_custom_value=True, scale=2),
    ),
)
FREEZE: tuple[Row, ...] = (
    (
        slider("freeze_trainable_layers", -128, 128, 1),
        textbox("freeze_trainable_modules"),
        textbox("freeze_extra_modules"),
    ),
)
OFT: tuple[Row, ...] = (
    (
        slider("oft_rank", 0, 1024, 1),
        slider("oft_block_size", 0, 1024, 1),
        slider("module_dropout", 0, 1, 0.01),
        textbox("oft_target", scale=2),
    ),
)
LORA: tuple[Row, ...] = (
    (
        slider("lora_rank", 1, 1024, 1),
        slider("lora_alpha", 1, 2048, 1),
        slider("lora_dropout", 0, 1, 0.01),
        slider("loraplus_lr_ratio", 0, 64, 0.01),
    ),
    (
        checkbox("create_new_adapter"),
        checkbox("use_rslora"),
        checkbox("use_dora"),
        checkbox("pissa_init"),
        textbox("lora_target", scale=2),
        textbox("additional_target", scale=2),
    ),
)
PREF: Row = (
    slider("pref_beta", 0, 1, 0.01),
    slider("pref_ftx", 0, 10, 0.01),
    dropdown("pref_loss", PREF_LOSSES, labelled=True),
)
PPO: Row = (
    dropdown("reward_model", allow_custom_value=True),
    checkbox("ppo_score_norm"),
    checkbox("ppo_whiten_rewards"),
)
GRPO: tuple[Row, ...] = (
    (
        slider("num_generations", 2, 64, 1),
        slider("grpo_beta", 0, 1, 0.01),
        # Built-in names offered; a function of the reward file is typed in (allow_custom_value).
        dropdown("reward_funcs", REWARD_FUNCS, multiselect=True, allow_custom_value=True, scale=2),
        textbox("reward_weights"),
    ),
    (
        slider("max_new_tokens", 1, 8192, 1),
        slider("temperature", 0.01, 2, 0.01),
        slider("top_p", 0.01, 1, 0.01),
        textbox("reward_file", scale=2),
    ),
)
RLHF: tuple[Row, ...] = (PREF + PPO, *GRPO)
OUTPUT: tuple[Row, ...] = ((textbox("output_dir", scale=2),),)

TRAIN_SECTIONS: dict[str, tuple[Row, ...]] = {
    "data": DATA,
    "hyper": HYPER,
    "extra_tab": EXTRA,
    "freeze_tab": FREEZE,
    "lora_tab": LORA,
    "oft_tab": OFT,
    "rlhf_tab": RLHF,
    "output": OUTPUT,
}
"""Every argument control of the Train tab; the keys ending in `_tab` are accordions."""

TRAIN_ARGUMENTS = tuple(name for rows in TRAIN_SECTIONS.values() for name in names(rows))
"""The Train tab's controls that become arguments (the form keys `build_args` reads), in the order they appear."""
TRAIN_CONTROLS = {control.name: control for rows in TRAIN_SECTIONS.values() for row in rows for control in row}

FREEZE_KEYS = names(FREEZE)
LORA_KEYS = names(LORA)
OFT_KEYS = names(OFT)
PREF_KEYS = names((PREF,))
PPO_KEYS = names((PPO,))
GRPO_KEYS = names(GRPO)
"""Keys left out of the arguments when the method (freeze, lora, oft) or the stage (dpo / kto, ppo, grpo) does
not use them."""

JOB_PLACEMENT = (
    "train.devices",
    "train.ds_stage",
    "train.trust_remote_code",
    "train.trust_reward_file",
    "train.plan_insist",
)
"""Controls the runner and Board.guard read at start (devices, DeepSpeed config, remote code, the reward file's
code, Start anyway despite the plan), not build_args: a loaded YAML never sets them, so running someone else's code
is a tick for this job."""

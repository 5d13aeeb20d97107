"""The argument layer: reading YAML / argv, legacy keys, coercion, every problem message, and the dataclasses."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import warnings
from pathlib import Path

import pytest
import yaml

from core.hparams import (
    ArgumentError,
    DataArguments,
    FinetuningArguments,
    GeneratingArguments,
    ModelArguments,
    check_dict,
    get_infer_args,
    get_train_args,
    read_args,
    review_args,
)
from core.hparams.keys import IGNORED_KEYS, TRAINING_SPECS, UNSUPPORTED_KEYS, UNSUPPORTED_VALUES, field_specs
from core.hparams.parser import GROUPS, normalize_args

ROOT = Path(__file__).resolve().parent.parent

# A LLaMA-Factory example as users have them (examples/train_lora/llama3_lora_sft.yaml, plus old keys).
LF_YAML = """\
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
ddp_timeout: 180000000
resume_from_checkpoint: null
"""

LF_DICT = {
    "model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
    "trust_remote_code": True,
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_rank": 8,
    "lora_target": "all",
    "dataset": "identity,alpaca_en_demo",
    "template": "llama3",
    "cutoff_len": 2048,
    "max_samples": 1000,
    "overwrite_cache": True,
    "preprocessing_num_workers": 16,
    "dataloader_num_workers": 4,
    "output_dir": "saves/llama3-8b/lora/sft",
    "logging_steps": 10,
    "save_steps": 500,
    "plot_loss": True,
    "overwrite_output_dir": True,
    "save_only_model": False,
    "report_to": "none",
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "learning_rate": "1e-4",  # YAML 1.1 reads a float without a dot as text: we coerce it
    "num_train_epochs": 3.0,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "ddp_timeout": 180000000,
    "resume_from_checkpoint": None,
}

# The smallest complete sft run on the demo model and data.
DEMO = {
    "model_name_or_path": "demo",
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "dataset": "demo_sft",
    "dataset_dir": "demo",
    "template": "chatml",
    "output_dir": "saves/demo/lora/sft",
}


@pytest.fixture
def lf_yaml(tmp_path):
    path = tmp_path / "llama3_lora_sft.yaml"
    path.write_text(LF_YAML, encoding="utf-8")
    return path


# Reading


def test_read_yaml_gives_the_golden_dict(lf_yaml):
    assert read_args(lf_yaml) == LF_DICT
    assert read_args(str(lf_yaml)) == LF_DICT


def test_read_json_and_dict(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(DEMO), encoding="utf-8")
    assert read_args(path) == DEMO
    copy = read_args(DEMO)
    assert copy == DEMO and copy is not DEMO


def test_argv_overrides_in_every_form(lf_yaml):
    argv = [
        str(lf_yaml),
        "lora_rank=16",
        "--learning_rate",
        "5e-5",
        "--num_train_epochs=1",
        "--do_eval",
        "--max_steps",
        "-1",
        "dataset=a,b",
        "template=",
        "--per-device-train-batch-size",
        "2",
    ]
    expected = {
        **LF_DICT,
        "lora_rank": 16,
        "learning_rate": "5e-5",
        "num_train_epochs": 1,
        "do_eval": True,
        "max_steps": -1,
        "dataset": "a,b",
        "template": None,
        "per_device_train_batch_size": 2,
    }
    assert read_args(argv) == expected


def test_argv_without_a_file():
    assert read_args(["model_name_or_path=demo", "--stage", "dpo"]) == {"model_name_or_path": "demo", "stage": "dpo"}
    assert read_args([]) == {}


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        ("a: 1\n  b: 2\n", ".yaml", r"line 2, column 4: .* fix the YAML"),
        ('{"a": 1,}', ".json", r"line 1, column 9: .* fix the JSON"),
        ("- a\n- b\n", ".yaml", r"holds a list, not `key: value` lines"),
    ],
)
def test_malformed_files_name_the_place(tmp_path, text, suffix, expected):
    path = tmp_path / f"bad{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ArgumentError) as err:
        read_args(path)
    assert str(path) in err.value.problems[0]
    assert re.search(expected, err.value.problems[0])


def test_empty_file_is_an_empty_dict(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert read_args(path) == {}


def test_missing_file_and_stray_argv_items(tmp_path):
    with pytest.raises(ArgumentError, match="file not found"):
        read_args(tmp_path / "nope.yaml")
    with pytest.raises(ArgumentError) as err:
        read_args(["model_name_or_path=demo", "oops", "also_bad"])
    assert [problem.split(":")[0] for problem in err.value.problems] == ["oops", "also_bad"]
    assert "key=value" in err.value.problems[0]


# Legacy keys


def test_lf_yaml_runs_and_translates_legacy_keys(lf_yaml):
    model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(lf_yaml)
    assert model_args.model_name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert model_args.trust_remote_code is True
    assert data_args.cutoff_len == 2048 and data_args.dataset == "identity,alpaca_en_demo"
    assert data_args.datasets == ["identity", "alpaca_en_demo"]
    assert training_args.learning_rate == pytest.approx(1e-4)
    assert training_args.warmup_steps == pytest.approx(0.1)  # transformers 5: a float below 1 is a ratio
    assert training_args.overwrite_output_dir is True
    assert training_args.num_train_epochs == 3.0 and training_args.logging_steps == 10
    assert finetuning_args.lora_rank == 8 and finetuning_args.lora_alpha == 16
    assert finetuning_args.plot_loss is True
    assert isinstance(generating_args, GeneratingArguments)


@pytest.mark.parametrize(
    ("legacy", "translated"),
    [
        ({"warmup_ratio": 0.05}, {"warmup_steps": 0.05}),
        ({"evaluation_strategy": "steps", "val_size": 0.1}, {"eval_strategy": "steps", "val_size": 0.1}),
        ({"group_by_length": True}, {"train_sampling_strategy": "group_by_length"}),
        ({"group_by_length": False}, {}),
        ({"no_cuda": True}, {"use_cpu": True}),
        ({"max_seq_length": 256}, {"cutoff_len": 256}),
        ({"gradient_checkpointing": True}, {"activation_checkpointing": True}),
        ({"logging_dir": "logs"}, {}),
        ({"save_safetensors": False}, {}),
        ({"overwrite_output_dir": True}, {"overwrite_output_dir": True}),
        ({"add_special_tokens": "<a>,<b>"}, {"new_special_tokens": "<a>,<b>"}),
        ({"flash_attn": "off"}, {"flash_attn": "disabled"}),
        ({"flash_attn": False}, {"flash_attn": "disabled"}),
    ],
)
def test_legacy_keys_are_translated(legacy, translated):
    groups, problems, _ = normalize_args({**DEMO, **legacy})
    assert problems == []
    flat = {key: value for group in groups.values() for key, value in group.items()}
    assert {key: flat[key] for key in translated} == translated
    assert not set(legacy) - set(translated) & set(flat), "the legacy name itself must be gone"


def test_dropped_legacy_keys_say_why(caplog):
    with caplog.at_level(logging.WARNING, logger="core.hparams.parser"):
        get_train_args({**DEMO, "logging_dir": "logs", "save_safetensors": False, "warmup_ratio": 0.1})
    assert "logging_dir: dropped" in caplog.text and "TENSORBOARD_LOGGING_DIR" in caplog.text
    assert "save_safetensors: dropped" in caplog.text


def test_warmup_steps_wins_over_warmup_ratio():
    groups, problems, notes = normalize_args({**DEMO, "warmup_ratio": 0.1, "warmup_steps": 20})
    assert problems == [] and groups["training"]["warmup_steps"] == 20
    assert any(note.startswith("warmup_ratio: ignored") for note in notes)


@pytest.mark.parametrize(
    ("args", "key", "fragment"),
    [
        ({"warmup_ratio": 1.5}, "warmup_ratio", "between 0 and 1"),
        (
            {"evaluation_strategy": "steps", "eval_strategy": "epoch", "val_size": 0.1},
            "evaluation_strategy",
            "keep only",
        ),
        ({"max_seq_length": 256, "cutoff_len": 512}, "max_seq_length", "keep only cutoff_len"),
        ({"group_by_length": True, "train_sampling_strategy": "sequential"}, "group_by_length", "conflicts"),
    ],
)
def test_legacy_conflicts_are_problems(args, key, fragment):
    problems = check_dict({**DEMO, **args})
    assert len(problems) == 1 and problems[0].startswith(f"{key}: ") and fragment in problems[0]


# Types


def test_values_are_coerced_to_field_types():
    args = {
        **DEMO,
        "learning_rate": "2e-5",
        "lora_rank": "16",
        "lora_dropout": 0,
        "cutoff_len": 512.0,
        "packing": "false",
        "val_size": 100,
        "dataset": ["demo_sft", "demo_sharegpt"],
        "save_strategy": False,  # a bare `save_strategy: no` in YAML
        "eval_strategy": "no",
    }
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
    assert training_args.learning_rate == pytest.approx(2e-5)
    assert finetuning_args.lora_rank == 16 and finetuning_args.lora_dropout == 0.0
    assert isinstance(finetuning_args.lora_dropout, float)
    assert data_args.cutoff_len == 512 and isinstance(data_args.cutoff_len, int)
    assert data_args.packing is False and data_args.val_size == 100.0
    assert data_args.dataset == "demo_sft,demo_sharegpt"
    assert training_args.save_strategy == "no"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("lora_rank", "abc", "expected a whole number — for example lora_rank: 8"),
        ("lora_rank", 2.5, "expected a whole number"),
        ("learning_rate", "fast", "expected a number — write a number such as 0.1 or 1e-4"),
        ("per_device_train_batch_size", "x", "expected a whole number"),
        ("do_train", "maybe", "expected true or false"),
        (
            "stage",
            "orpo",
            "expected one of pt, sft, rm, ppo, dpo, kto, grpo — write one of: pt, sft, rm, ppo, dpo, kto, grpo",
        ),
        ("template", {"a": 1}, "expected text"),
        ("model_revision", None, "expected text, not null — write text"),
        ("rope_scaling", False, 'quote it, "no"'),
    ],
)
def test_bad_types_name_the_key_and_value(key, value, fragment):
    problems = check_dict({**DEMO, key: value})
    ours = [problem for problem in problems if problem.startswith(f"{key}: received ")]
    assert len(ours) == 1, problems
    assert fragment in ours[0]


def test_unknown_key_names_the_closest_known_ones():
    problems = check_dict({**DEMO, "lora_rnak": 16, "learnig_rate": 1e-4, "zzzz": 1})
    assert (
        problems[0]
        == "lora_rnak: received 16 — unknown key — did you mean lora_rank or local_rank or galore_rank? (or remove it)"
    )
    assert problems[1].startswith("learnig_rate: received 0.0001 — unknown key — did you mean learning_rate")
    assert problems[2] == "zzzz: received 1 — unknown key — check the spelling (or remove it)"


# Rules: every problem message


PREDICT_ONLY = {"do_train": False, "do_predict": True, "predict_with_generate": True}
PPO = {"stage": "ppo", "reward_model": "r"}
INTERLEAVE = {"mix_strategy": "interleave_under", "dataset": "a,b"}
Q4 = {"quantization_bit": 4}
RULES = [
    # (extra args, key of the problem, fragment of the problem)
    ({"model_name_or_path": None}, "model_name_or_path", "missing — every stage starts from a model"),
    ({"do_train": False}, "do_train", "nothing to run"),
    ({"output_dir": None}, "output_dir", "output_dir: saves/my-model/lora/sft"),
    ({"dataset": None}, "dataset", "training needs a dataset"),
    ({**PREDICT_ONLY, "dataset": None}, "eval_dataset", "set eval_dataset"),
    ({"template": None}, "template", "set template: chatml for the demo model"),
    ({"pref_beta": 0.2}, "pref_beta", "read by stages dpo and kto, not sft"),
    ({"pref_ftx": 1.0}, "pref_ftx", "read by stages dpo and kto"),
    ({"stage": "kto", "pref_loss": "ipo"}, "pref_loss", "read by stage dpo, not kto"),
    ({"stage": "ppo"}, "reward_model", "train one with stage: rm"),
    ({**PPO, "finetuning_type": "freeze"}, "finetuning_type", "ppo trains a lora adapter or the full model"),
    ({**PPO, "finetuning_type": "full"}, "reward_model_type", "set reward_model_type: full"),
    ({**PPO, "do_eval": True}, "do_eval", "ppo runs no evaluation"),
    ({"stage": "rm", "load_best_model_at_end": True}, "load_best_model_at_end", "cannot reload the best checkpoint"),
    ({"stage": "dpo", "train_on_prompt": True}, "train_on_prompt", "stage dpo does not read it"),
    ({"stage": "rm", "mask_history": True}, "mask_history", "stage rm does not read it"),
    ({"stage": "pt", "predict_with_generate": True}, "predict_with_generate", "generation is done by stage sft"),
    ({"do_predict": True}, "predict_with_generate", "set predict_with_generate: true"),
    ({"predict_with_generate": True, "compute_accuracy": True}, "compute_accuracy", "needs logits"),
    ({"stage": "dpo", "packing": True}, "packing", "stage dpo keeps apart"),
    ({"stage": "pt", "neat_packing": True}, "neat_packing", "neat packing is for stage sft"),
    ({"neat_packing": True, "packing": False}, "packing", "neat_packing: true needs packing"),
    ({"val_size": 1.5}, "val_size", "a fraction below 1 or a whole row count"),
    ({"val_size": 0.1, "streaming": True, "max_steps": 10}, "val_size", "a stream cannot be split"),
    ({"val_size": 0.1, "eval_dataset": "demo_sft_eval"}, "val_size", "keep one of val_size and eval_dataset"),
    ({"eval_strategy": "steps"}, "eval_strategy", "set val_size (e.g. 0.1) or eval_dataset"),
    ({"do_eval": True}, "do_eval", "evaluation after training needs held-out data"),
    ({"streaming": True}, "max_steps", "set max_steps"),
    ({"stage": "rm", "streaming": True, "max_steps": 10}, "streaming", "streaming works for pt and sft"),
    ({"streaming": True, "max_steps": 10, "tokenized_path": "t"}, "tokenized_path", "cannot be saved"),
    ({"tool_format": "hermes"}, "tool_format", "one of default, glm4, json, llama3, mistral, qwen"),
    ({"tool_format": "minimax1"}, "tool_format", "MiniMax-M1 tool-call format; that family has no template"),
    ({"interleave_probs": "0.5,0.5"}, "interleave_probs", "mix_strategy concat does not sample"),
    ({**INTERLEAVE, "interleave_probs": "1"}, "interleave_probs", "1 probabilities for 2 datasets"),
    ({"cutoff_len": 0}, "cutoff_len", "at least 1"),
    ({"lora_rank": 0}, "lora_rank", "at least 1"),
    ({"lora_dropout": 1.0}, "lora_dropout", "from 0 to below 1"),
    ({"finetuning_type": "freeze", "freeze_trainable_layers": 0}, "freeze_trainable_layers", "train nothing"),
    ({"bf16": True, "fp16": True}, "fp16", "keep one of bf16 and fp16"),
    ({"pure_bf16": True, "fp16": True}, "fp16", "keep one of pure_bf16 and fp16"),
    ({"finetuning_type": "full", "adapter_name_or_path": "a"}, "adapter_name_or_path", "set finetuning_type: lora"),
    ({"use_unsloth": True}, "use_unsloth", "not supported yet"),
    ({"quantization_bit": 3}, "quantization_bit", "bitsandbytes loads 4 or 8 bits"),
    ({"quantization_bit": 4, "finetuning_type": "full"}, "quantization_bit", "can only train lora adapters"),
    ({"quantization_bit": 4, "pissa_init": True}, "pissa_init", "PiSSA cannot start from quantized weights"),
    ({"quantization_bit": 4, "resize_vocab": True}, "resize_vocab", "cannot be resized"),
    ({"quantization_bit": 4, "adapter_name_or_path": "a,b"}, "adapter_name_or_path", "merge the adapters first"),
    ({**Q4, "adapter_name_or_path": "a", "create_new_adapter": True}, "create_new_adapter", "remove it"),
    ({"use_galore": True}, "use_galore", "it trains full weights, not lora — set finetuning_type: full"),
    ({"use_badam": "true"}, "use_badam", "it trains full weights, not lora — set finetuning_type: full"),
    ({"image_max_pixels": 262144}, "image_max_pixels", "not supported yet (multimodal"),
    ({"finetuning_type": "oft", "stage": "ppo"}, "finetuning_type", "ppo trains a lora adapter or the full model"),
    ({"quantization_method": "gptq"}, "quantization_method", "not supported yet"),
    ({"use_asft_loss": True}, "use_asft_loss", "not supported yet (ASFT's KL anchor"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "key", "fragment"), RULES, ids=[f"{rule[1]}-{i}" for i, rule in enumerate(RULES)])
def test_every_rule_names_key_value_why_and_fix(extra, key, fragment):
    # None in the table means "key left out".
    problems = check_dict({name: value for name, value in {**DEMO, **extra}.items() if value is not None})
    ours = [problem for problem in problems if problem.startswith(f"{key}: ")]
    assert ours, f"no problem for {key}: {problems}"
    assert any(fragment in problem for problem in ours), ours
    for problem in problems:
        assert re.fullmatch(r"[a-z_0-9]+: (received .+|missing) — .+ — .+", problem), problem


def test_the_demo_run_has_no_problem():
    assert check_dict(DEMO) == []
    assert check_dict({**DEMO, "stage": "pt", "template": None, "dataset": "demo_pt"}) == []
    assert check_dict({**DEMO, "stage": "ppo", "reward_model": "saves/demo/lora/rm", "dataset": "demo_ppo"}) == []


def test_defaults_and_off_switches_are_not_problems():
    """LLaMA-Factory's board writes every key at its default; none of that may be an error."""
    lf_board = {
        **DEMO,
        "pref_beta": 0.1,
        "pref_ftx": 0,
        "pref_loss": "sigmoid",
        "use_galore": False,
        "use_apollo": False,
        "use_badam": 0,
        "use_muon": "false",
        "video_fps": "2",
        "use_llama_pro": False,
        "use_swanlab": False,
        "image_max_pixels": 589824,
        "infer_backend": "HuggingFace",
        "packing": False,
        "neat_packing": False,
        "include_num_input_tokens_seen": True,
        "ddp_timeout": 180000000,
        "disable_gradient_checkpointing": True,
        "hf_hub_token": None,
    }
    assert check_dict(lf_board) == []


# What LLaMA-Factory's own board writes to training_args.yaml for a LoRA sft run (0.9.x).
LLAMABOARD_YAML = """\
stage: sft
do_train: true
model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct
cache_dir: null
preprocessing_num_workers: 16
finetuning_type: lora
template: qwen
rope_scaling: null
flash_attn: auto
use_unsloth: false
enable_liger_kernel: false
dataset_dir: data
dataset: alpaca_en_demo,identity
cutoff_len: 2048
learning_rate: 5.0e-05
num_train_epochs: 3.0
max_samples: 100000
seed: 42
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
lr_scheduler_type: cosine
max_grad_norm: 1.0
logging_steps: 5
save_steps: 100
warmup_steps: 0
neftune_noise_alpha: null
packing: false
neat_packing: false
train_on_prompt: false
mask_history: false
resize_vocab: false
use_llama_pro: false
enable_thinking: true
report_to: none
use_galore: false
use_apollo: false
use_badam: false
use_swanlab: false
output_dir: saves/Qwen2.5-0.5B-Instruct/lora/train_2025-06-01-10-00-00
fp16: false
bf16: false
pure_bf16: false
plot_loss: true
trust_remote_code: true
ddp_timeout: 180000000
include_num_input_tokens_seen: true
optim: adamw_torch
lora_rank: 8
lora_alpha: 16
lora_dropout: 0
loraplus_lr_ratio: null
create_new_adapter: false
use_rslora: false
use_dora: false
pissa_init: false
pissa_convert: false
lora_target: all
additional_target: null
val_size: 0.1
eval_strategy: steps
eval_steps: 100
per_device_eval_batch_size: 2
"""


def test_a_llamaboard_yaml_runs_unchanged(tmp_path):
    path = tmp_path / "training_args.yaml"
    path.write_text(LLAMABOARD_YAML, encoding="utf-8")
    assert check_dict(read_args(path)) == []
    _, data_args, training_args, finetuning_args, _ = get_train_args(path)
    assert data_args.datasets == ["alpaca_en_demo", "identity"] and data_args.val_size == 0.1
    assert training_args.eval_strategy == "steps" and training_args.optim == "adamw_torch"
    assert finetuning_args.lora_alpha == 16 and training_args.learning_rate == pytest.approx(5e-5)


def test_keys_of_another_method_are_a_note_not_an_error(caplog):
    args = {**DEMO, "finetuning_type": "full", "lora_rank": 16, "lora_target": "q_proj", "lora_dropout": 0.0}
    assert check_dict(args) == []
    with caplog.at_level(logging.WARNING, logger="core.hparams.parser"):
        get_train_args(args)
    assert "lora_rank, lora_target: ignored — finetuning_type is full, not lora" in caplog.text


def test_keys_of_another_stage_are_a_note():
    args = {**DEMO, "ppo_epochs": 2, "kto_chosen_weight": 1.0, "dpo_label_smoothing": 0.1, "simpo_gamma": 1.0}
    problems, notes = review_args(args)
    assert problems == [] and check_dict(args) == []
    assert notes == [
        "ppo_epochs: ignored — stage is sft, not ppo",
        "dpo_label_smoothing: ignored — stage is sft, not dpo",
        "simpo_gamma: ignored — pref_loss is sigmoid, not simpo",
    ]


def test_neat_packing_turns_packing_on_with_a_note(caplog):
    with caplog.at_level(logging.WARNING, logger="core.hparams.parser"):
        _, data_args, _, _, _ = get_train_args({**DEMO, "neat_packing": True})
    assert data_args.packing is True and "packing: turned on" in caplog.text


def test_ignored_keys_are_noted():
    groups, problems, notes = normalize_args({**DEMO, "use_kv_cache": True, "disable_gradient_checkpointing": True})
    assert problems == []
    assert "use_kv_cache" not in str(groups)
    assert any(note.startswith("use_kv_cache: ignored — generation always uses the KV cache") for note in notes)


def test_all_problems_are_raised_together():
    with pytest.raises(ArgumentError) as err:
        get_train_args({"model_name_or_path": "demo", "lora_rnak": 1, "stage": "ppo", "learning_rate": "x"})
    error = err.value
    assert isinstance(error, ValueError)
    keys = [problem.split(":")[0] for problem in error.problems]
    assert keys == ["lora_rnak", "learning_rate", "do_train", "template", "reward_model"]
    text = str(error)
    assert text.startswith("5 problems with the arguments:\n  - lora_rnak: received 1")
    assert text.count("\n  - ") == 5


# Device rules (check_args imports torch)


def test_device_problems_on_a_machine_without_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ArgumentError) as err:
        get_train_args({**DEMO, "quantization_bit": 4, "bf16": True})
    problems = "\n".join(err.value.problems)
    if "bitsandbytes package" not in problems:  # with bitsandbytes installed, the CUDA rule is the one left
        assert "quantization_bit: received 4 — 4/8-bit loading (bitsandbytes) needs a CUDA GPU" in problems
    with pytest.raises(ArgumentError) as err:
        get_train_args({**DEMO, "bf16": True, "fp16": False})
    assert err.value.problems == [
        "bf16: received true — no CUDA GPU is visible, and bf16 on a CPU runs only with use_cpu: true (and slowly "
        "on most CPUs) — remove bf16 to train in float32, or add use_cpu: true"
    ]
    with pytest.raises(ArgumentError, match="fp16: received true — fp16 mixed precision needs a CUDA GPU"):
        get_train_args({**DEMO, "fp16": True})
    _, _, training_args, _, _ = get_train_args({**DEMO, "bf16": True, "use_cpu": True})
    assert training_args.bf16 is True


def test_bf16_on_a_gpu_without_it_suggests_fp16(monkeypatch):
    import torch

    from core.hparams.parser import check_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    assert check_args({"pure_bf16": True}) == [
        "pure_bf16: received true — this GPU (Tesla T4) has no bf16 — use fp16: true instead of pure_bf16"
    ]


# What get_train_args derives


def test_derived_values():
    model_args, data_args, training_args, finetuning_args, _ = get_train_args({**DEMO, "cutoff_len": 256})
    assert data_args.packing is False  # sft: off unless asked
    assert model_args.model_max_length == 256 and training_args.generation_max_length == 256
    assert model_args.compute_dtype is None  # float32 unless bf16 / fp16
    assert training_args.remove_unused_columns is False  # pairwise / kto columns must reach the collator
    assert training_args.label_names == ["labels"]
    assert finetuning_args.lora_alpha == 16 and finetuning_args.lora_targets == ["all"]
    assert training_args.logging_steps == 5 and training_args.report_to in ([], ["none"], "none")
    import torch

    assert training_args.dataloader_pin_memory is torch.cuda.is_available()  # pinning without CUDA only warns
    _, _, training_args, _, _ = get_train_args({**DEMO, "dataloader_pin_memory": True})
    assert training_args.dataloader_pin_memory is True
    _, data_args, _, finetuning_args, _ = get_train_args({**DEMO, "stage": "pt", "template": None})
    assert data_args.packing is True
    _, _, _, finetuning_args, _ = get_train_args({**DEMO, "stage": "dpo", "pref_loss": "simpo", "dataset": "p"})
    assert finetuning_args.use_ref_model is False


def test_transformers_own_errors_become_problems():
    with pytest.raises(ArgumentError) as err:
        get_train_args({**DEMO, "load_best_model_at_end": True, "val_size": 0.1, "eval_strategy": "steps",
                        "save_strategy": "epoch"})  # fmt: skip
    assert err.value.problems[0].startswith("training arguments: ")


def test_infer_args_ignore_training_keys(caplog):
    with caplog.at_level(logging.WARNING, logger="core.hparams.parser"):
        model_args, data_args, finetuning_args, generating_args = get_infer_args(
            {"model_name_or_path": "demo", "template": "chatml", "learning_rate": 1e-4, "infer_dtype": "float32"}
        )
    assert "learning_rate: ignored" in caplog.text
    assert data_args.template == "chatml" and str(model_args.compute_dtype) == "torch.float32"
    with pytest.raises(ArgumentError, match="model_name_or_path: missing"):
        get_infer_args({"template": "chatml"})


def test_generate_kwargs_leave_out_what_does_not_apply():
    greedy = GeneratingArguments(do_sample=False, max_new_tokens=32).to_generate_kwargs()
    assert greedy == {"do_sample": False, "num_beams": 1, "max_new_tokens": 32, "repetition_penalty": 1.0}
    beams = GeneratingArguments(num_beams=4, max_new_tokens=0, max_length=64).to_generate_kwargs()
    assert beams["max_length"] == 64 and "max_new_tokens" not in beams and beams["length_penalty"] == 1.0


# The dataclasses themselves


def test_every_field_has_help():
    from core.hparams import TrainingArguments

    for cls in (*GROUPS.values(), TrainingArguments):
        own = fields_of(cls) if cls is not TrainingArguments else ["logging_steps", "report_to", "bf16", "fp16",
                                                                   "overwrite_output_dir"]  # fmt: skip
        for f in dataclasses.fields(cls):
            if f.name in own:
                assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help"


def fields_of(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def test_defaults_that_differ_from_transformers_are_documented():
    from transformers import Seq2SeqTrainingArguments

    from core.hparams import TrainingArguments

    theirs = {f.name: f.default for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    differ = [
        f.name for f in dataclasses.fields(TrainingArguments) if f.name in theirs and f.default != theirs[f.name]
    ]
    added = [f.name for f in dataclasses.fields(TrainingArguments) if f.name not in theirs]
    assert differ and added == ["overwrite_output_dir"]
    for name in differ + added:
        assert f"`{name}`" in TrainingArguments.__doc__, f"{name} differs from transformers but is not documented"


def test_defaults_that_differ_from_llamafactory_are_documented():
    # LLaMA-Factory 0.9.x defaults of the fields where ours differ; the rest are equal by design.
    assert DataArguments().cutoff_len == 1024 and "`cutoff_len` 1024 (LLaMA-Factory: 2048)" in DataArguments.__doc__
    assert "`skip_bad_rows`" in DataArguments.__doc__
    assert ModelArguments().trust_remote_code is False
    assert FinetuningArguments().stage == "sft" and FinetuningArguments().finetuning_type == "lora"


def test_groups_do_not_share_keys_and_tables_do_not_shadow_fields():
    seen: dict[str, str] = {}
    for group, cls in {**GROUPS, "training": None}.items():
        names = TRAINING_SPECS if cls is None else field_specs(cls)
        for name in names:
            assert name not in seen, f"{name} is in both {seen[name]} and {group}"
            seen[name] = group
    assert not set(UNSUPPORTED_KEYS) & set(seen)
    assert not set(IGNORED_KEYS) & set(seen)
    assert not set(UNSUPPORTED_KEYS) & set(IGNORED_KEYS)
    assert set(UNSUPPORTED_VALUES) <= set(seen)


def test_training_snapshot_matches_installed_transformers():
    """check_dict knows transformers' keys from a snapshot; a key it lists must still exist with the same type.

    Keys a newer transformers adds only warn: the job itself (get_train_args) reads the real class and accepts them.
    """
    from core.hparams import TrainingArguments

    fresh = {name: spec.encode() for name, spec in field_specs(TrainingArguments).items()}
    snapshot = {name: spec.encode() for name, spec in TRAINING_SPECS.items()}
    regenerate = "replace _TRAINING_SPEC_TEXT in core/hparams/keys.py with\n" + "\n".join(
        f'    "{name}": "{text}",' for name, text in fresh.items()
    )
    stale = {name: text for name, text in snapshot.items() if fresh.get(name) != text}
    assert not stale, f"transformers changed or removed {sorted(stale)}: {regenerate}"
    added = sorted(set(fresh) - set(snapshot))
    if added:
        warnings.warn(f"transformers added {added}; the board rejects them until you {regenerate}", stacklevel=1)


def test_a_dumped_board_dict_reads_back_the_same(tmp_path):
    args = {**DEMO, "learning_rate": 1e-4, "save_strategy": "no", "lora_target": "q_proj,v_proj"}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(args), encoding="utf-8")
    assert read_args(path) == args
    assert check_dict(read_args(path)) == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_passes_the_checks(path):
    assert check_dict(read_args(path)) == []

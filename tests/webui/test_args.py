"""Golden tests for the form <-> argument dict mapping, YAML loading and validation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from webui import args as argmod
from webui.args import FormError, args_to_form, build_args, dump_yaml, load_yaml, validate


@pytest.fixture
def saves(tmp_path) -> Path:
    return tmp_path / "saves"


def demo_form(**changes):
    return {**argmod.FORM_DEFAULTS, "dataset": ["demo_sft"], "run_name": "run1", **changes}


def test_the_demo_form_gives_this_exact_yaml(saves):
    args = build_args(demo_form(), saves)
    assert args == {
        "model_name_or_path": "demo",
        "template": "chatml",
        "flash_attn": "auto",
        "resize_vocab": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0,
        "create_new_adapter": False,
        "use_rslora": False,
        "use_dora": False,
        "pissa_init": False,
        "lora_target": "all",
        "dataset_dir": "demo",
        "dataset": "demo_sft",
        "cutoff_len": 1024,
        "max_samples": 100000,
        "packing": False,
        "neat_packing": False,
        "train_on_prompt": False,
        "mask_history": False,
        "output_dir": str(saves / "demo" / "lora" / "run1"),
        "logging_steps": 5,
        "save_steps": 100,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 4,
        "learning_rate": 5e-5,
        "num_train_epochs": 3.0,
        "lr_scheduler_type": "cosine",
        "max_grad_norm": 1.0,
        "warmup_steps": 0,
        "bf16": False,
        "fp16": False,
    }
    # The YAML reads top-down: model, method, dataset, output, train.
    keys = list(args)
    assert keys.index("model_name_or_path") < keys.index("stage") < keys.index("dataset") < keys.index("output_dir")


def test_model_name_and_path_become_model_name_or_path(saves):
    assert build_args(demo_form(model_name="Qwen3-8B", model_path=""), saves)["model_name_or_path"] == "Qwen/Qwen3-8B"
    edited = build_args(demo_form(model_name="Qwen3-8B", model_path="/models/qwen3"), saves)
    assert edited["model_name_or_path"] == "/models/qwen3"
    assert edited["output_dir"] == str(saves / "Qwen3-8B" / "lora" / "run1")
    custom = build_args(demo_form(model_name="Custom", model_path="/data/my-llm/"), saves)
    assert custom["output_dir"] == str(saves / "my-llm" / "lora" / "run1")


def test_checkpoints_become_adapters_for_lora_and_the_model_for_full(saves):
    lora = build_args(demo_form(checkpoint_path=["a", "b/checkpoint-10"]), saves)
    folder = saves / "demo" / "lora"
    assert lora["adapter_name_or_path"] == f"{folder / 'a'},{folder / 'b' / 'checkpoint-10'}"
    assert lora["model_name_or_path"] == "demo"
    full = build_args(demo_form(finetuning_type="full", checkpoint_path=["a"]), saves)
    assert full["model_name_or_path"] == str(saves / "demo" / "full" / "a") and "adapter_name_or_path" not in full
    with pytest.raises(FormError, match="checkpoint_path"):
        build_args(demo_form(finetuning_type="freeze", checkpoint_path=["a", "b"]), saves)
    assert build_args(demo_form(checkpoint_path=["/abs/adapter"]), saves)["adapter_name_or_path"] == "/abs/adapter"


@pytest.mark.parametrize(
    ("control", "value", "expected", "absent"),
    [
        ("quantization_bit", "none", {}, ["quantization_bit", "quantization_method"]),
        ("quantization_bit", "4", {"quantization_bit": 4, "quantization_method": "bnb"}, []),
        ("rope_scaling", "none", {}, ["rope_scaling"]),
        ("rope_scaling", "yarn", {"rope_scaling": "yarn"}, []),
        ("booster", "auto", {"flash_attn": "auto"}, ["use_unsloth", "enable_liger_kernel"]),
        ("booster", "flashattn2", {"flash_attn": "fa2"}, []),
        ("booster", "liger_kernel", {"enable_liger_kernel": True}, ["flash_attn"]),
        ("compute_type", "fp32", {"bf16": False, "fp16": False}, ["pure_bf16"]),
        ("compute_type", "fp16", {"bf16": False, "fp16": True}, []),
        ("compute_type", "bf16", {"bf16": True, "fp16": False}, []),
        ("compute_type", "pure_bf16", {"pure_bf16": True, "bf16": False}, []),
        ("dataset", ["demo_sft", "demo_sharegpt"], {"dataset": "demo_sft,demo_sharegpt"}, []),
        ("report_to", [], {"report_to": "none"}, []),
        ("report_to", ["none"], {"report_to": "none"}, []),
        ("report_to", ["tensorboard", "wandb"], {"report_to": ["tensorboard", "wandb"]}, []),
        ("neftune_noise_alpha", 0, {}, ["neftune_noise_alpha"]),
        ("neftune_noise_alpha", 5, {"neftune_noise_alpha": 5}, []),
        ("max_samples", None, {}, ["max_samples"]),
        ("lora_rank", 16.0, {"lora_rank": 16}, []),
        ("learning_rate", 2e-4, {"learning_rate": 2e-4}, []),
    ],
)
def test_each_exception_to_the_identity(saves, control, value, expected, absent):
    args = build_args(demo_form(**{control: value}), saves)
    assert {key: args.get(key) for key in expected} == expected
    assert [key for key in absent if key in args] == []
    if control == "lora_rank":
        assert type(args["lora_rank"]) is int


def test_sections_that_do_not_apply_are_left_out(saves):
    sft_lora = build_args(demo_form(), saves)
    assert "lora_rank" in sft_lora and "freeze_trainable_layers" not in sft_lora
    assert not [key for key in sft_lora if key.startswith(("pref_", "ppo_", "reward_model"))]
    freeze = build_args(demo_form(finetuning_type="freeze"), saves)
    assert freeze["freeze_trainable_layers"] == 2 and freeze["freeze_trainable_modules"] == "all"
    assert not [key for key in freeze if key.startswith("lora_")]
    dpo = build_args(demo_form(stage="dpo", dataset=["demo_pref"]), saves)
    assert (dpo["pref_beta"], dpo["pref_ftx"], dpo["pref_loss"]) == (0.1, 0, "sigmoid")
    assert "ppo_score_norm" not in dpo
    ppo = build_args(demo_form(stage="ppo", reward_model="rm_run", ppo_score_norm=True), saves)
    assert ppo["reward_model"] == str(saves / "demo" / "lora" / "rm_run") and ppo["reward_model_type"] == "lora"
    assert ppo["ppo_score_norm"] is True and "pref_beta" not in ppo
    assert "pref_beta" not in build_args(demo_form(stage="rm"), saves)
    assert not [key for key in sft_lora if key.startswith("oft_") or key == "module_dropout"]


def test_oft_sends_its_own_section_and_continues_from_adapters(saves):
    from core.hparams import check_dict

    oft = build_args(demo_form(finetuning_type="oft", oft_rank=4.0, oft_block_size=0, checkpoint_path=["a"]), saves)
    assert (oft["oft_rank"], oft["oft_block_size"], oft["oft_target"]) == (4, 0, "all")
    assert oft["adapter_name_or_path"] == str(saves / "demo" / "oft" / "a") and oft["model_name_or_path"] == "demo"
    assert not [key for key in oft if key.startswith("lora_")]
    assert check_dict({key: value for key, value in oft.items() if key != "adapter_name_or_path"}) == []


def test_grpo_writes_its_section_and_only_for_grpo(saves):
    grpo = build_args(
        demo_form(
            stage="grpo",
            dataset=["demo_grpo"],
            reward_funcs=["exact_match", "format"],
            reward_weights="1.0,0.2",
            num_generations=4.0,
            val_size=0.1,
        ),
        saves,
    )
    assert grpo["stage"] == "grpo" and grpo["reward_funcs"] == "exact_match,format"
    assert (grpo["num_generations"], grpo["grpo_beta"], grpo["reward_weights"]) == (4, 0.04, "1.0,0.2")
    assert (grpo["max_new_tokens"], grpo["temperature"], grpo["top_p"]) == (256, 1.0, 1.0)
    assert "eval_strategy" not in grpo  # grpo runs no evaluation (the core refuses one)
    assert "reward_model" not in build_args(demo_form(stage="grpo", reward_model="rm_run"), saves)
    with_rm = build_args(demo_form(stage="grpo", reward_funcs=["rm"], reward_model="rm_run"), saves)
    assert with_rm["reward_model"] == str(saves / "demo" / "lora" / "rm_run")
    for key in ("num_generations", "grpo_beta", "reward_funcs", "max_new_tokens", "temperature", "top_p"):
        assert key not in build_args(demo_form(), saves)  # sft: none of grpo's keys
    # A loaded grpo YAML shows its functions in the list, and saving it back writes the same keys.
    form, extra = args_to_form(grpo, saves)
    assert form["reward_funcs"] == ["exact_match", "format"] and extra == {}
    assert build_args(form, saves) == grpo


def test_a_validation_split_is_evaluated_at_every_save(saves):
    args = build_args(demo_form(val_size=0.1, save_steps=50), saves)
    assert (args["val_size"], args["eval_strategy"], args["eval_steps"]) == (0.1, "steps", 50)
    assert args["per_device_eval_batch_size"] == 2
    assert build_args(demo_form(val_size=200.0), saves)["val_size"] == 200
    assert "eval_strategy" not in build_args(demo_form(val_size=0), saves)


def test_early_stopping_and_keeping_the_best_from_the_form(saves):
    form = demo_form(val_size=0.1, save_steps=50, early_stopping_patience=3, load_best_model_at_end=True)
    args = build_args({**form, "save_total_limit": 2}, saves)
    assert (args["early_stopping_patience"], args["load_best_model_at_end"], args["save_total_limit"]) == (3, True, 2)
    assert (args["eval_strategy"], args["eval_steps"], args["save_steps"]) == ("steps", 50, 50)
    assert validate(args) == []
    off = build_args(demo_form(), saves)
    assert not {"early_stopping_patience", "load_best_model_at_end", "save_total_limit"} & set(off)
    form, extra = args_to_form(args, saves)
    assert (form["early_stopping_patience"], form["load_best_model_at_end"], form["save_total_limit"]) == (3, True, 2)
    assert extra == {}
    # Without a validation split there is nothing to count: the problem names the key and the fix.
    problems = validate(build_args(demo_form(early_stopping_patience=3), saves))
    assert any(p.startswith("early_stopping_patience: received 3") and "eval_strategy" in p for p in problems)


def test_extra_args_are_merged_last_and_can_override(saves):
    args = build_args(demo_form(extra_args='{"seed": 7, "learning_rate": 1e-3, "optim": "adamw_torch"}'), saves)
    assert (args["seed"], args["learning_rate"], args["optim"]) == (7, 1e-3, "adamw_torch")
    assert list(args)[-2:] == ["seed", "optim"]  # new keys go last; overridden ones keep their place


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra_args": "{'seed': 1}"}, r"extra_args: not valid JSON .*line 1, column 2"),
        ({"extra_args": "[1, 2]"}, r"extra_args: received list"),
        ({"run_name": "../escape"}, r"run_name: .*one folder name"),
        ({"run_name": "a/b"}, r"run_name"),
        ({"lora_rank": 8.5}, r"lora_rank: received 8.5"),
        ({"cutoff_len": "abc"}, r"cutoff_len: received 'abc'"),
        ({"compute_type": "fp8"}, r"compute_type: received 'fp8'"),
        ({"booster": "turbo"}, r"booster: received 'turbo'"),
        ({"quantization_bit": "3"}, r"quantization_bit: received '3'; choose none, 8 or 4"),
    ],
)
def test_bad_form_values_raise_an_error_naming_the_control(saves, changes, message):
    with pytest.raises(FormError, match=message):
        build_args(demo_form(**changes), saves)


def test_an_empty_run_name_gets_a_dated_one(saves):
    output_dir = Path(build_args(demo_form(run_name=""), saves)["output_dir"])
    assert output_dir.parent == saves / "demo" / "lora" and output_dir.name.startswith("train_20")


# --- args_to_form ---

LLAMAFACTORY_YAML = """\
### model
model_name_or_path: meta-llama/Llama-3.1-8B-Instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 16
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def test_a_llamafactory_yaml_fills_the_form_and_keeps_what_it_cannot_show(saves):
    args = load_yaml(LLAMAFACTORY_YAML)
    form, extra = args_to_form(args, saves)
    shown = {key: form[key] for key in (
        "model_name", "model_path", "finetuning_type", "stage", "lora_rank", "lora_alpha", "lora_target", "dataset",
        "template", "cutoff_len", "max_samples", "run_name", "logging_steps", "save_steps", "report_to",
        "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
        "lr_scheduler_type", "compute_type", "dataset_dir",
    )}  # fmt: skip
    assert shown == {
        "model_name": "Llama-3.1-8B-Instruct",
        "model_path": "meta-llama/Llama-3.1-8B-Instruct",
        "finetuning_type": "lora",
        "stage": "sft",
        "lora_rank": 16,
        "lora_alpha": 32,  # the core's default for a YAML without lora_alpha: twice the rank
        "lora_target": "all",
        "dataset": ["identity", "alpaca_en_demo"],
        "template": "llama3",
        "cutoff_len": 2048,
        "max_samples": 1000,
        "run_name": "sft",
        "logging_steps": 10,
        "save_steps": 500,
        "report_to": ["none"],
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 8,
        "learning_rate": 1e-4,
        "num_train_epochs": 3.0,
        "lr_scheduler_type": "cosine",
        "compute_type": "bf16",
        "dataset_dir": "data",  # not in the YAML: the core's default, not the board's demo folder
    }
    assert extra == {
        "trust_remote_code": True,
        "overwrite_cache": True,
        "preprocessing_num_workers": 16,
        "output_dir": "saves/llama3-8b/lora/sft",
        "plot_loss": True,
        "overwrite_output_dir": True,
        "warmup_ratio": 0.1,
        "ddp_timeout": 180000000,
        "resume_from_checkpoint": None,
    }
    # Saving the form writes every key of the loaded YAML back with its value.
    rebuilt = build_args(form, saves)
    assert {key: rebuilt.get(key, "MISSING") for key in args} == args


def test_a_board_yaml_round_trips_with_no_extra_keys(saves):
    form = demo_form(
        model_name="Qwen3-4B",
        model_path="Qwen/Qwen3-4B",
        template="qwen3",
        stage="dpo",
        dataset=["demo_pref"],
        checkpoint_path=["sft_run"],
        compute_type="bf16",
        booster="liger_kernel",
        quantization_bit="4",
        val_size=0.1,
        report_to=["tensorboard"],
        pref_beta=0.2,
        pref_loss="ipo",
    )
    args = build_args(form, saves)
    loaded = load_yaml(dump_yaml(args))
    assert loaded == args
    again, extra = args_to_form(loaded, saves)
    assert extra == {}
    assert build_args(again, saves) == args
    assert (again["checkpoint_path"], again["booster"], again["quantization_bit"]) == (
        ["sft_run"],
        "liger_kernel",
        "4",
    )


def test_args_to_form_reads_numbers_written_as_text(saves):
    form, extra = args_to_form({"learning_rate": "1e-4", "lora_rank": "32", "stage": "sft"}, saves)
    assert form["learning_rate"] == 1e-4 and form["lora_rank"] == 32 and form["lora_alpha"] == 64
    assert extra == {"learning_rate": "1e-4", "lora_rank": "32"}  # kept as written, so saving is faithful


# --- YAML ---


def test_load_yaml_reads_a_file_and_text(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("stage: sft\nlearning_rate: 1.0e-4\n")
    assert load_yaml(path) == load_yaml(str(path)) == {"stage": "sft", "learning_rate": 1e-4}
    assert load_yaml("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!python/object/apply:os.system ['echo hacked']", "refused a YAML tag"),
        ("a: !!python/name:os.system ''", "refused a YAML tag"),
        ("- just\n- a list\n", "expected a mapping"),
        ("stage: sft\n  bad indent: [\n", r"not valid YAML at line \d+"),
        ("1: one\n", "keys must be argument names"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
            "expands to more than",
        ),
    ],
)
def test_hostile_or_broken_yaml_is_refused_clearly(text, message):
    with pytest.raises(FormError, match=message):
        load_yaml(text)


def test_missing_and_huge_files_are_refused_clearly(tmp_path):
    with pytest.raises(FormError, match="no such file"):
        load_yaml(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    huge.write_text("a: " + "x" * (argmod.MAX_YAML_BYTES + 1))
    with pytest.raises(FormError, match="larger than"):
        load_yaml(huge)


# --- validation ---


def test_validate_names_a_missing_model_and_dataset(saves):
    problems = validate(build_args(demo_form(model_name="Custom", model_path="", dataset=[]), saves))
    assert any(problem.startswith("model_name_or_path:") for problem in problems)
    assert any(problem.startswith("dataset: none chosen") for problem in problems)


def test_validate_names_a_dataset_not_registered_for_the_stage(saves):
    problems = validate(build_args(demo_form(stage="dpo", dataset=["demo_sft"]), saves))
    assert any("demo_sft not registered for stage dpo" in problem and "demo_pref" in problem for problem in problems)
    assert not [p for p in validate(build_args(demo_form(), saves)) if p.startswith("dataset")]


@pytest.mark.skipif(
    importlib.util.find_spec("core.hparams") is None or not hasattr(__import__("core.hparams").hparams, "check_dict"),
    reason="core.hparams.check_dict not written yet",
)
def test_validate_includes_the_cores_checks(saves):
    clean = validate(build_args(demo_form(), saves))
    assert clean == [], clean
    problems = validate({**build_args(demo_form(), saves), "lora_rnak": 8})
    assert any("lora_rnak" in problem for problem in problems)


def test_the_paired_kto_loss_is_offered_and_passes_the_cores_checks(saves):
    """pref_loss kto_pair (LLaMA-Factory's paired KTO): chosen on the board, or read from a YAML, it reaches the
    arguments as it is and the core no longer refuses it."""
    args = build_args(demo_form(stage="dpo", dataset=["demo_pref"], pref_loss="kto_pair"), saves)
    assert args["pref_loss"] == "kto_pair"
    assert validate(args) == []
    form, extra = args_to_form({"stage": "dpo", "pref_loss": "kto_pair", "dataset": "demo_pref"}, saves)
    assert form["pref_loss"] == "kto_pair" and "pref_loss" not in extra


def test_a_yaml_asking_for_unsloth_keeps_it_as_an_extra_key():
    """The board offers no Unsloth booster (the core does not support it); loading such a YAML must not drop it."""
    form, extra = args_to_form({"model_name_or_path": "demo", "use_unsloth": True})
    assert extra["use_unsloth"] is True
    assert form["booster"] == "auto"

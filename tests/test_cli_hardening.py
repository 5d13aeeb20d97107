"""Hostile and careless inputs to the CLI end in one message and exit 2, never a traceback or a written secret
(issue 19: items 3, 4 and 5; the training-side checks are in tests/train/test_hardening_train.py)."""

from __future__ import annotations

import math
import os
import time

import pytest

from core.cli import main
from core.hparams import check_dict, known_keys, path_problems
from core.hparams.parser import _LOWER_BOUNDS, _UPPER_BOUNDS
from core.secrets import SECRET_ENV, secret_problems

TOKEN = "hf_" + "aB3" * 12
DEMO = {
    "model_name_or_path": "demo",
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "dataset": "demo_sft",
    "dataset_dir": "demo",
    "template": "chatml",
}


@pytest.fixture
def job(tmp_path):
    """`job(text=None, **keys)` -> a YAML file of the demo sft run (plus keys), output in tmp_path/run."""

    def _make(text: str | None = None, **keys) -> str:
        path = tmp_path / "job.yaml"
        if text is None:
            lines = [f"{key}: {value}" for key, value in {**DEMO, "output_dir": tmp_path / "run", **keys}.items()]
            text = "\n".join(lines) + "\n"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return _make


def _run(argv, capsys) -> tuple[int, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


# -- 3: secrets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "in_file", "said"),
    [
        ([f"hub_token={TOKEN}"], {}, "set HF_TOKEN in the environment"),
        (["--hub_token", TOKEN], {}, "set HF_TOKEN in the environment"),
        ([f"--wandb_api_key={TOKEN}"], {}, "set WANDB_API_KEY in the environment"),
        ([], {"hf_hub_token": TOKEN}, "set HF_TOKEN in the environment"),
        ([f"run_name={TOKEN}"], {}, "run_name: the value looks like an access token"),
        (["report_to=none", f"dataset=demo_sft,{TOKEN}"], {}, "dataset: the value looks like an access token"),
        (["db_password=hunter2-but-long"], {}, "db_password: secrets are never written"),
        ([f"lora_rnak=sk-{'x1' * 12}"], {}, "lora_rnak: the value looks like an access token"),
    ],
)
def test_train_and_eval_refuse_secrets_in_arguments_and_never_echo_them(job, tmp_path, capsys, extra, in_file, said):
    for command, mode in (("train", []), ("eval", ["do_train=false"])):
        status, output = _run([command, job(**in_file), *mode, *extra], capsys)
        assert status == 2 and said in output
        assert TOKEN not in output and "sk-x1" not in output and "hunter2" not in output
        assert "Traceback" not in output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["chat", "export"])
def test_chat_and_export_refuse_a_token_override_too(job, tmp_path, capsys, command):
    status, output = _run([command, job(), f"hub_token={TOKEN}", f"export_dir={tmp_path / 'out'}"], capsys)
    assert status == 2 and "hub_token: secrets are never written" in output and "HF_TOKEN" in output
    assert TOKEN not in output and not (tmp_path / "out").exists()


def test_every_known_secret_key_names_its_environment_variable():
    for key, variable in SECRET_ENV.items():
        (problem,) = secret_problems({key: "anything"})
        assert problem.startswith(f"{key}:") and variable in problem and "anything" not in problem
    assert secret_problems({"hub_token": None, "report_to": "none", "lora_target": "all"}) == []


# -- 4: values that pass the type check but cannot work --------------------------------------------------------------


def _float_keys() -> list[str]:
    return [key for key, spec in known_keys().items() if spec.kind == "float"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
def test_no_number_key_accepts_nan_or_infinity(value):
    for key in _float_keys():
        problems = check_dict({**DEMO, "output_dir": "saves/x", key: value})
        assert any(p.startswith(f"{key}: received") and "NaN and infinity" in p for p in problems), (key, problems)


def test_every_bounded_key_refuses_a_value_past_its_bound_and_accepts_the_bound():
    def range_problems(key, value):
        return [p for p in check_dict({**DEMO, "output_dir": "saves/x", key: value}) if p.startswith(f"{key}: ")]

    keys = known_keys()
    for key, (low, inclusive, why) in _LOWER_BOUNDS.items():
        (problem,) = range_problems(key, low - 1 if inclusive else low)
        assert why in problem and (f"at least {low}" if inclusive else f"above {low}") in problem
        fine = low if inclusive else low + (1 if keys[key].kind == "int" else 0.5)
        assert not [p for p in range_problems(key, fine) if why in p], key
    for key, (high, inclusive, why) in _UPPER_BOUNDS.items():
        (problem,) = range_problems(key, high + 1 if inclusive else high)
        assert why in problem and (f"at most {high}" if inclusive else f"below {high}") in problem
        assert not [p for p in range_problems(key, high if inclusive else high / 2) if why in p], key


def test_the_issues_examples_exit_2_together_before_the_training_stack(job, tmp_path, capsys):
    bad = ["learning_rate=.nan", "num_train_epochs=-3", "per_device_train_batch_size=0",
           "gradient_accumulation_steps=0", "save_steps=-5", "eval_steps=-1", "logging_steps=-1"]  # fmt: skip
    status, output = _run(["train", job(), *bad], capsys)
    assert status == 2 and "Traceback" not in output and output.startswith("7 problems with the arguments:")
    for item in bad:
        assert f"  - {item.split('=')[0]}: received" in output
    assert not (tmp_path / "run").exists()


def test_an_output_dir_that_cannot_hold_a_run_is_refused(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for output_dir, said in ((a_file, "it is a file"), (a_file / "run", f"inside {a_file}, which is a file")):
        (problem,) = path_problems({**DEMO, "output_dir": str(output_dir)})
        assert problem.startswith("output_dir: received") and said in problem
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_an_output_dir_in_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    (problem,) = path_problems({**DEMO, "output_dir": str(locked / "run")})
    assert f"{locked} is not writable" in problem


def test_adapter_paths_that_are_no_adapter_are_refused_by_every_command(job, tmp_path, capsys):
    run = tmp_path / "full-run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(b"")
    a_file = tmp_path / "adapter.safetensors"
    a_file.write_bytes(b"")
    cases = [(run, "has no adapter_config.json"), (a_file, "is a file"), (tmp_path / "gone", "no such folder")]
    for adapter, said in cases:
        problems = path_problems({**DEMO, "output_dir": "saves/x", "adapter_name_or_path": f"{adapter}"})
        assert problems[0].startswith("adapter_name_or_path: received") and said in problems[0]
    for command in ("eval", "chat", "export"):
        status, output = _run([command, job(), f"adapter_name_or_path={run}", f"export_dir={tmp_path / 'x'}"], capsys)
        assert status == 2 and "has no adapter_config.json" in output and "Traceback" not in output


def test_a_resume_path_that_is_no_checkpoint_is_refused(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    for path, said in ((tmp_path / "checkpoint-3", "no trainer_state.json"), (tmp_path / "nope", "no such folder")):
        problems = path_problems({**DEMO, "output_dir": str(tmp_path), "resume_from_checkpoint": str(path)})
        assert problems[0].startswith(f"resume_from_checkpoint: {path} is not a complete checkpoint: {said}")


# -- 5: argument files that cannot be read ---------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file (a NUL byte at line 3"),
        (b"model_name_or_path: demo\ndataset: caf\xe9\n", "not UTF-8 text (byte 0xe9 at line 2, column 13)"),
        (BOMB.encode(), "expands to more than 100000 values"),
        (("a: " + "[" * 3000 + "]" * 3000).encode(), "nested too deeply"),
        (b"a: !!python/object/apply:os.system ['echo hi']\n", "only plain YAML data is read"),
        (b"a: 1\n  b: 2\n", "line 2, column 4"),
        (b"x" * (1024 * 1024 + 1), "larger than 1024 KiB"),
    ],
    ids=["binary", "latin-1", "alias-bomb", "deep", "python-tag", "bad-indent", "huge"],
)
def test_an_unreadable_argument_file_is_one_message_at_once(tmp_path, capsys, data, said):
    path = tmp_path / "job.yaml"
    path.write_bytes(data)
    started = time.monotonic()
    status, output = _run(["train", str(path)], capsys)
    assert time.monotonic() - started < 5  # the alias bomb took 30 s and a MemoryError before
    assert status == 2 and str(path) in output and said in output and "Traceback" not in output


def test_an_alias_bomb_as_a_command_line_value_stays_text():
    from core.hparams import read_args

    flow = "{" + ", ".join(line.replace(": ", ": ", 1) for line in BOMB.strip().splitlines()) + "}"
    started = time.monotonic()
    value = read_args([f"run_name={flow}"])["run_name"]
    assert time.monotonic() - started < 5 and value == flow  # refused as data: text, which the checks then read


def test_a_key_given_twice_warns_naming_both_lines(job, tmp_path, caplog):
    from core.hparams import read_args

    yaml_path = job("model_name_or_path: demo\nlearning_rate: 1.0e-4\nstage: sft\nlearning_rate: 5.0e-3\n")
    json_path = tmp_path / "job.json"
    json_path.write_text('{"lora_rank": 8,\n "stage": "sft",\n "lora_rank": 16}')
    with caplog.at_level("WARNING", logger="core"):
        assert read_args(yaml_path)["learning_rate"] == 5e-3
        assert read_args(str(json_path))["lora_rank"] == 16
    assert "'learning_rate' is given on line 2 and again on line 4" in caplog.text
    assert "'lora_rank' is given on line 1 and again on line 3" in caplog.text

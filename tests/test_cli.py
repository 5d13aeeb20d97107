"""`llamafactory-cli`: the command table, --help everywhere, fast version, env, train wiring and error exits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from pathlib import Path

import pytest

from core.cli import COMMANDS, main
from core.env import PACKAGES
from core.hparams import ArgumentError

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "accelerate"]

DEMO_YAML = """\
model_name_or_path: demo
stage: sft
do_train: true
finetuning_type: lora
dataset: demo_sft
dataset_dir: demo
template: chatml
output_dir: {output_dir}
"""


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def demo_yaml(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(DEMO_YAML.format(output_dir=tmp_path / "run"), encoding="utf-8")
    return path


def test_the_command_table():
    assert set(COMMANDS) == {
        "train",
        "eval",
        "chat",
        "export",
        "webui",
        "version",
        "env",
        "demo",
        "data",
        "plan",
        "expand",
        "runs",
        "sweep",
    }
    script = metadata.distribution("llamaboard").entry_points.select(group="console_scripts", name="llamafactory-cli")
    assert next(iter(script)).load() is main


def test_usage_lists_every_command(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n  {name} " in out


def test_unknown_command_suggests_the_closest(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'. Did you mean train?" in capsys.readouterr().err
    assert main(["api", "serve.yaml"]) == 2
    assert "'api' is a LLaMA-Factory command that LlamaBoard does not have yet" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--help" in out


def test_version_is_fast_and_imports_no_training_stack():
    result = run_python(
        f"""
        import json, sys, time
        start = time.perf_counter()
        from core.cli import main
        status = main(["version"])
        elapsed = time.perf_counter() - start
        print(json.dumps([status, elapsed, [m for m in {HEAVY!r} if m in sys.modules]]))
        """
    )
    first, last = result.stdout.strip().splitlines()
    status, elapsed, heavy = json.loads(last)
    assert status == 0 and heavy == []
    assert first == f"LlamaBoard {metadata.version('llamaboard')}"
    assert elapsed < 0.5, f"version took {elapsed:.2f} s after interpreter start"


def test_python_dash_m_core_cli_and_core_are_the_cli():
    for module in ("core.cli", "core"):
        result = subprocess.run(
            [sys.executable, "-m", module, "version"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and result.stdout.startswith("LlamaBoard "), result.stderr


def test_env_lists_the_stack(capsys):
    assert main(["env"]) == 0
    versions, _, refused = capsys.readouterr().out.partition("\n\n")
    lines = dict(line.split(":", 1) for line in versions.splitlines())
    lines = {label.strip(): value.strip() for label, value in lines.items()}
    for package in PACKAGES:
        try:
            expected = metadata.version(package)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert lines[package] == expected
    import torch

    assert lines["CUDA available"] == str(torch.cuda.is_available())
    # Every optional package is listed with what it turns on; the refused LLaMA-Factory keys follow, and the keys
    # this project now supports (GaLore, DFT, ...) are not among them.
    from core.env import OPTIONAL_PACKAGES

    for package, use in OPTIONAL_PACKAGES.items():
        assert lines[package].endswith(f"({use})")
    refused_keys = {line.strip().split(":")[0] for line in refused.splitlines()[1:]}
    assert {"fp8", "use_mca", "image_max_pixels"} <= refused_keys
    assert not refused_keys & {"use_galore", "use_apollo", "use_badam", "use_adam_mini", "use_muon", "use_dft_loss"}
    assert lines["Python"] == ".".join(map(str, sys.version_info[:3]))


def test_a_bad_config_exits_2_with_the_problems_and_no_traceback(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model_name_or_path: demo\nlora_rnak: 8\nlearning_rate: fast\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "train", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "lora_rnak: received 8 — unknown key — did you mean lora_rank" in result.stderr
    assert "learning_rate: received 'fast' — expected a number" in result.stderr
    assert result.stderr.startswith("4 problems with the arguments:")  # + do_train and template missing


def test_a_bad_config_fails_before_the_training_stack_loads(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model_name_or_path: demo\nlora_rnak: 8\n", encoding="utf-8")
    result = run_python(
        f"""
        import json, sys
        from core.cli import main
        status = main(["train", {str(path)!r}])
        print(json.dumps([status, [m for m in {HEAVY!r} if m in sys.modules]]))
        """
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [2, []]


def test_train_hands_the_file_and_overrides_to_run_exp(demo_yaml, monkeypatch, tmp_path):
    received = []
    # core.train.tuner is another helper's module; a stand-in records what the CLI passes it.
    fake = types.ModuleType("core.train.tuner")
    fake.run_exp = received.append
    monkeypatch.setitem(sys.modules, "core.train.tuner", fake)
    assert main(["train", str(demo_yaml), "lora_rank=16", "--learning_rate", "1e-4"]) == 0
    assert received == [
        {
            "model_name_or_path": "demo",
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "dataset": "demo_sft",
            "dataset_dir": "demo",
            "template": "chatml",
            "output_dir": str(tmp_path / "run"),
            "lora_rank": 16,
            "learning_rate": "1e-4",
        }
    ]


def test_argument_errors_raised_by_the_job_exit_2(demo_yaml, monkeypatch, capsys):
    def run_exp(args):
        raise ArgumentError(["bf16: received true — no CUDA GPU is visible — remove bf16"])

    fake = types.ModuleType("core.train.tuner")
    fake.run_exp = run_exp
    monkeypatch.setitem(sys.modules, "core.train.tuner", fake)
    assert main(["train", str(demo_yaml)]) == 2
    assert "  - bf16: received true — no CUDA GPU is visible — remove bf16" in capsys.readouterr().err


def test_a_bad_dataset_row_is_one_message_without_traceback(tmp_path):
    """A real job (subprocess, demo model) on a csv whose row has no answer: exit 2, the file, the line, the fix."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.csv").write_text('instruction,output\n"a"\n', encoding="utf-8")
    (data / "dataset_info.json").write_text('{"bad": {"file_name": "bad.csv"}}', encoding="utf-8")
    config = tmp_path / "job.yaml"
    config.write_text(
        "model_name_or_path: demo\nstage: sft\ndo_train: true\ntemplate: chatml\ndataset: bad\n"
        f"dataset_dir: {data}\noutput_dir: {tmp_path / 'out'}\nmax_steps: 1\n",
        encoding="utf-8",
    )
    env = {**os.environ, "LLAMABOARD_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "train", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "bad.csv, line 2" in done.stderr and "skip_bad_rows" in done.stderr

    from webui.jobs import error_summary  # the line the board shows for this failed job

    assert error_summary(done.stdout + done.stderr).startswith("error: ")
    assert "bad.csv, line 2" in error_summary(done.stdout + done.stderr)


def test_help_after_the_config_file_is_still_help(demo_yaml, capsys):
    assert main(["train", str(demo_yaml), "lora_rank=4", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: llamafactory-cli train")


def test_train_keys_lists_fields_with_help(capsys):
    assert main(["train", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "  lora_rank (default 8): lora: rank of the adapter matrices." in out
    assert "  trust_remote_code (default false): " in out
    assert "learning_rate" in out and out.startswith("model:\n")
    # grpo's keys, found by someone reading the help for "reward".
    assert "  reward_funcs (default exact_match): grpo: comma list of reward functions" in out
    assert "  trust_reward_file (default false): " in out and "  num_generations (default 8): " in out


def test_train_help_names_every_stage(capsys):
    from core.train.tuner import STAGES

    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"({', '.join(STAGES)})" in out


def test_demo_builds_the_demo_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLAMABOARD_CACHE", str(tmp_path / "cache"))
    target = tmp_path / "demo-model"
    assert main(["demo", "--output-dir", str(target)]) == 0
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert str(target) in capsys.readouterr().out


def test_a_missing_dataset_or_model_fails_before_the_run_folder_exists(demo_yaml, tmp_path, capsys):
    assert main(["train", str(demo_yaml), "dataset=demo_sfx", f"model_name_or_path={tmp_path / 'no-model'}"]) == 2
    err = capsys.readouterr().err
    assert "dataset: " in err and "no dataset named 'demo_sfx'" in err and "Did you mean 'demo_sft'" in err
    assert f"model_name_or_path: {tmp_path / 'no-model'} does not exist" in err
    assert not (tmp_path / "run").exists()


def test_a_cli_run_keeps_its_console_in_job_log_and_ends_with_its_speed(demo_yaml, tmp_path):
    """The board shows the log of a run started by `llamafactory-cli train`, as it does for its own jobs; the
    terminal's last line tells the speed: seconds per step and real (non-padding) tokens per second."""
    env = {**os.environ, "LLAMABOARD_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = ["train", str(demo_yaml), "max_steps=4", "logging_steps=2", "max_samples=32", "cutoff_len=64"]
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", *argv], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.search(r"Trained 4 steps in 0:00:\d\d: [\d.e-]+ s/step, [\d,]+ real tokens/s", last), last

    from webui.jobs import read_job

    job = read_job(tmp_path / "run")
    log = Path(job["log_path"]).read_text(encoding="utf-8")
    assert job["format"] == "cli" and job["state"] == "finished"
    assert "step 2/4" in log and "step 4/4" in log and last in log  # the console, in the run folder


def test_a_board_job_whose_stdout_is_job_log_is_not_copied_twice(tmp_path):
    code = "from core.train.console import console_log\nwith console_log('.'):\n    print('step 1/1', flush=True)"
    with (tmp_path / "job.log").open("w") as log:
        subprocess.run([sys.executable, "-c", code], cwd=tmp_path, stdout=log, check=True, timeout=60, env=os.environ)
    assert (tmp_path / "job.log").read_text().splitlines() == ["step 1/1"]

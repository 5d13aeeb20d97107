"""The launcher's decisions and argv (core/launcher.py) and the DeepSpeed config generator (core/deepspeed.py).

Nothing here trains: torchrun's own argument parser reads our argv, and `os.execve` is replaced by a recorder.
The real multi-process runs are in tests/train/test_distributed.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import launcher
from core.cli import main
from core.deepspeed import STAGES, write_zero_config, zero_config, zero_config_name
from core.deepspeed import main as deepspeed_main
from core.hparams import ArgumentError
from core.launcher import (
    LAUNCHED_MARKER,
    LaunchError,
    LaunchPlan,
    deepspeed_problems,
    launch_plan,
    maybe_launch,
    needs_torchrun,
    torchrun_argv,
)

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_VARS = (
    "NNODES",
    "NODE_RANK",
    "NPROC_PER_NODE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "FORCE_TORCHRUN",
    "LOCAL_RANK",
    LAUNCHED_MARKER,
)
HAS_DEEPSPEED = launcher.importlib.util.find_spec("deepspeed") is not None


@pytest.fixture(autouse=True)
def clean_launch_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)


# --- when torchrun is used ---


@pytest.mark.parametrize(
    ("env", "devices", "expected"),
    [
        ({}, 0, False),
        ({}, 1, False),
        ({}, 2, True),
        ({"FORCE_TORCHRUN": "1"}, 0, True),
        ({"FORCE_TORCHRUN": "true"}, 1, True),
        ({"FORCE_TORCHRUN": "0"}, 1, False),
        ({"NNODES": "2"}, 1, True),
        ({"NPROC_PER_NODE": "2"}, 0, True),
        ({"NPROC_PER_NODE": "1"}, 1, False),
        # Inside a worker (ours or another launcher's) there is no second launch, whatever the device count.
        ({LAUNCHED_MARKER: "1", "FORCE_TORCHRUN": "1"}, 8, False),
        ({"LOCAL_RANK": "0"}, 8, False),
    ],
)
def test_torchrun_only_when_several_devices_nodes_or_forced(env, devices, expected):
    assert needs_torchrun(env, devices) is expected


def test_a_deepspeed_job_always_runs_under_torchrun():
    assert needs_torchrun({}, 1, {"deepspeed": "ds_z2_config.json"})
    assert not needs_torchrun({}, 1, {"deepspeed": None})


# --- the plan from the environment ---


def test_plan_defaults_to_one_process_per_visible_device_and_a_free_port():
    assert launch_plan({}, devices=4) == LaunchPlan(nnodes=1, node_rank=0, nproc_per_node=4, master_port=None)
    assert launch_plan({}, devices=0).nproc_per_node == 1
    assert launch_plan({"NPROC_PER_NODE": "2"}, devices=8).nproc_per_node == 2


def test_multinode_plan_honours_every_variable():
    env = {"NNODES": "3", "NODE_RANK": "2", "NPROC_PER_NODE": "4", "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29411"}
    plan = launch_plan(env, devices=8)
    assert plan == LaunchPlan(3, 2, 4, "10.1.2.3", 29411)
    assert plan.world_size == 12


def test_multinode_without_a_port_uses_torchs_default_so_all_nodes_agree():
    assert launch_plan({"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "n0"}, devices=1).master_port == 29500


def test_other_nodes_must_be_told_where_node_0_is():
    assert launch_plan({"NNODES": "2"}, devices=1).master_addr == "127.0.0.1"
    with pytest.raises(LaunchError, match="MASTER_ADDR: not set on node 1 of 2"):
        launch_plan({"NNODES": "2", "NODE_RANK": "1"}, devices=1)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"NNODES": "two"}, ["NNODES"]),
        ({"NNODES": "0"}, ["NNODES"]),
        ({"NPROC_PER_NODE": "0"}, ["NPROC_PER_NODE"]),
        ({"NNODES": "2", "NODE_RANK": "2"}, ["NODE_RANK"]),
        ({"NODE_RANK": "1"}, ["NODE_RANK"]),
        ({"MASTER_PORT": "70000"}, ["MASTER_PORT"]),
        ({"MASTER_PORT": "http"}, ["MASTER_PORT"]),
        ({"NNODES": "x", "MASTER_PORT": "-3"}, ["NNODES", "MASTER_PORT"]),
    ],
)
def test_wrong_launch_variables_are_all_named(env, names):
    with pytest.raises(LaunchError) as caught:
        launch_plan(env, devices=1)
    assert [problem.split(":")[0] for problem in caught.value.problems] == names
    for problem, name in zip(caught.value.problems, names, strict=True):
        assert repr(env[name]) in problem or env[name] in problem, problem


def test_more_processes_than_devices_is_refused_but_cpu_processes_are_not_bounded():
    with pytest.raises(LaunchError, match="NPROC_PER_NODE: received 4 but 2 device"):
        launch_plan({"NPROC_PER_NODE": "4"}, devices=2)
    assert launch_plan({"NPROC_PER_NODE": "4"}, devices=0).nproc_per_node == 4


def test_launch_problems_are_argument_problems_so_the_cli_exits_2():
    # The CLI turns ArgumentError into the problem list and exit status 2, without a traceback.
    assert issubclass(LaunchError, ArgumentError)


# --- the torchrun command ---


def parse_with_torchrun(argv: list[str]):
    """torchrun's own parser reads what follows `python -m torch.distributed.run`."""
    from torch.distributed.run import get_args_parser

    assert argv[1:3] == ["-m", "torch.distributed.run"]
    return get_args_parser().parse_args(argv[3:])


def test_single_node_argv_is_what_torchrun_understands():
    train_argv = ["run/job.yaml", "learning_rate=1e-4", "--lora_rank", "16", "--plot_loss"]
    argv = torchrun_argv(train_argv, LaunchPlan(nproc_per_node=2), python="/venv/bin/python")
    assert argv[0] == "/venv/bin/python"
    parsed = parse_with_torchrun(argv)
    assert parsed.standalone and parsed.nnodes == "1" and parsed.nproc_per_node == "2"
    assert parsed.module and parsed.training_script == "core.cli"
    # Every override, flags included, reaches the workers unchanged.
    assert parsed.training_script_args == ["train", *train_argv]
    assert parsed.max_restarts == 0


def test_multinode_argv_is_what_torchrun_understands():
    plan = LaunchPlan(nnodes=2, node_rank=1, nproc_per_node=4, master_addr="10.0.0.1", master_port=29411)
    parsed = parse_with_torchrun(torchrun_argv(["job.yaml"], plan))
    assert not parsed.standalone
    assert (parsed.nnodes, parsed.node_rank, parsed.nproc_per_node) == ("2", 1, "4")
    assert (parsed.master_addr, parsed.master_port) == ("10.0.0.1", 29411)
    assert parsed.training_script_args == ["train", "job.yaml"]


def test_single_node_with_a_given_port_uses_it():
    parsed = parse_with_torchrun(torchrun_argv(["job.yaml"], LaunchPlan(nproc_per_node=2, master_port=29777)))
    assert not parsed.standalone and parsed.master_port == 29777


# --- maybe_launch: exec torchrun or train here ---


@pytest.fixture
def recorded_exec(monkeypatch):
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_execve(path, argv, env):
        calls.append((path, list(argv), dict(env)))
        raise SystemExit(0)  # a real exec never returns

    monkeypatch.setattr(launcher.os, "execve", fake_execve)
    monkeypatch.setattr(launcher.os, "name", "posix")
    return calls


def test_one_device_trains_in_this_process(recorded_exec, monkeypatch):
    monkeypatch.setattr(launcher, "device_count", lambda: 1)
    assert maybe_launch(["job.yaml"], {}) is None
    assert recorded_exec == []


def test_two_devices_replace_this_process_with_torchrun(recorded_exec, monkeypatch):
    monkeypatch.setattr(launcher, "device_count", lambda: 2)
    with pytest.raises(SystemExit):
        maybe_launch(["job.yaml", "lora_rank=4"], {}, env={"PATH": "/bin", "MASTER_ADDR": "ignored-on-one-node"})
    [(path, argv, env)] = recorded_exec
    assert path == argv[0] == sys.executable
    assert argv[argv.index("--nproc_per_node") + 1] == "2"
    assert argv[-5:] == ["-m", "core.cli", "train", "job.yaml", "lora_rank=4"]
    # The workers must not launch again, and keep the caller's environment.
    assert env[LAUNCHED_MARKER] == "1" and env["PATH"] == "/bin"
    assert maybe_launch(["job.yaml"], {}, env=env) is None


def test_workers_share_the_cores_unless_told_otherwise(recorded_exec, monkeypatch):
    monkeypatch.setattr(launcher, "device_count", lambda: 2)
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: 16)
    for env in ({}, {"OMP_NUM_THREADS": "3"}):
        with pytest.raises(SystemExit):
            maybe_launch(["job.yaml"], {}, env=env)
    assert [call[2]["OMP_NUM_THREADS"] for call in recorded_exec] == ["8", "3"]


def test_cli_refuses_more_processes_than_devices(job_yaml, monkeypatch, recorded_exec, capsys):
    monkeypatch.setattr(launcher, "device_count", lambda: 2)
    monkeypatch.setenv("NPROC_PER_NODE", "4")
    assert main(["train", str(job_yaml)]) == 2
    assert "NPROC_PER_NODE: received 4 but 2 device(s) are visible" in capsys.readouterr().err
    assert recorded_exec == []


def test_a_cpu_job_on_a_gpu_box_stays_one_process(recorded_exec, monkeypatch):
    monkeypatch.setattr(launcher, "device_count", lambda: 4)
    assert maybe_launch(["job.yaml"], {"use_cpu": True}, env={}) is None
    with pytest.raises(SystemExit):
        maybe_launch(["job.yaml"], {"use_cpu": True}, env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert "--nproc_per_node" in recorded_exec[0][1]


def test_the_launch_line_is_logged(recorded_exec, monkeypatch, caplog):
    # Seen in job.log in the real runs (tests/train/test_distributed.py); here pytest owns the handlers.
    monkeypatch.setattr(launcher, "device_count", lambda: 0)
    with caplog.at_level("INFO", logger="core.launcher"), pytest.raises(SystemExit):
        maybe_launch(["job.yaml"], {}, env={"FORCE_TORCHRUN": "1"})
    assert "torch.distributed.run" in caplog.text and "1 process(es)" in caplog.text


def test_without_exec_torchrun_runs_as_a_child_and_its_status_is_returned(monkeypatch):
    monkeypatch.setattr(launcher, "device_count", lambda: 2)
    monkeypatch.setattr(launcher.os, "name", "nt")
    seen = {}

    def fake_run(argv, env, check):
        seen.update(argv=argv, env=env)
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(launcher.subprocess, "run", fake_run)
    assert maybe_launch(["job.yaml"], {}, env={}) == 3
    assert seen["env"][LAUNCHED_MARKER] == "1"


# --- the CLI checks launch variables and deepspeed before anything starts ---

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


@pytest.fixture
def job_yaml(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(DEMO_YAML.format(output_dir=tmp_path / "out"), encoding="utf-8")
    return path


def test_cli_refuses_a_wrong_launch_variable_with_exit_2(job_yaml, monkeypatch, capsys):
    monkeypatch.setenv("NNODES", "2")
    monkeypatch.setenv("NODE_RANK", "5")
    assert main(["train", str(job_yaml)]) == 2
    err = capsys.readouterr().err
    assert "NODE_RANK: received 5" in err and "0 to 1" in err
    assert not (job_yaml.parent / "out").exists()


def test_deepspeed_config_that_does_not_exist_is_named(tmp_path):
    problems = deepspeed_problems({"deepspeed": str(tmp_path / "nope.json")})
    assert (
        problems[0].startswith("deepspeed: received") and "nope.json" in problems[0] and "no such file" in problems[0]
    )


def test_deepspeed_config_that_is_not_json_is_named(tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text("{stage: 3", encoding="utf-8")
    assert "not a readable JSON file" in deepspeed_problems({"deepspeed": str(bad)})[0]


@pytest.mark.skipif(HAS_DEEPSPEED, reason="deepspeed is installed here")
def test_cli_says_deepspeed_is_missing_instead_of_failing_later(job_yaml, tmp_path, capsys):
    config = write_zero_config(tmp_path / "ds.json", 2)
    assert main(["train", str(job_yaml), f"deepspeed={config}"]) == 2
    err = capsys.readouterr().err
    assert "deepspeed package is not installed" in err and "pip install deepspeed" in err
    # A good config file is not itself reported.
    assert "no such file" not in err


def test_no_deepspeed_key_no_problem():
    assert deepspeed_problems({}) == [] and deepspeed_problems({"deepspeed": ""}) == []


# --- core.deepspeed ---


def test_zero2_shards_without_offload():
    config = zero_config(2)
    zero = config["zero_optimization"]
    assert zero["stage"] == 2
    assert "offload_optimizer" not in zero and "offload_param" not in zero
    assert not any(key.startswith("stage3_") for key in zero)


def test_zero3_gathers_weights_on_save_so_transformers_can_load_them():
    zero = zero_config(3)["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("stage", STAGES)
def test_offload_moves_optimizer_and_zero3_params_to_cpu(stage):
    zero = zero_config(stage, offload=True)["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu"
    assert ("offload_param" in zero) is (stage == 3)


@pytest.mark.parametrize("stage", STAGES)
def test_batch_and_precision_are_left_to_the_trainer(stage):
    # "auto" lets transformers fill these from the job's own arguments, so the two can never disagree.
    config = zero_config(stage)
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert config[key] == "auto"
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"


@pytest.mark.parametrize("stage", [0, 1, 4, "3"])
def test_other_stages_are_refused(stage):
    with pytest.raises(ValueError, match="use 2 .* or 3"):
        zero_config(stage)


def test_write_zero_config_round_trips(tmp_path):
    path = write_zero_config(tmp_path / "new" / zero_config_name(3, True), 3, offload=True)
    assert path.name == "ds_z3_offload_config.json"
    assert json.loads(path.read_text(encoding="utf-8")) == zero_config(3, True)


@pytest.mark.parametrize(("stage", "offload"), [(2, False), (2, True), (3, False), (3, True)])
def test_example_configs_are_what_the_generator_writes(stage, offload):
    example = ROOT / "examples" / "deepspeed" / zero_config_name(stage, offload)
    assert json.loads(example.read_text(encoding="utf-8")) == zero_config(stage, offload), (
        f"{example} is stale: regenerate it with python -m core.deepspeed --stage {stage}"
        + (" --offload" if offload else "")
        + f" {example}"
    )


def test_deepspeed_command_writes_the_usual_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert deepspeed_main(["--stage", "2", "--offload"]) == 0
    assert json.loads((tmp_path / "ds_z2_offload_config.json").read_text()) == zero_config(2, True)


def test_launcher_and_deepspeed_modules_import_no_training_stack():
    code = textwrap.dedent(
        """
        import sys, core.launcher, core.deepspeed
        core.deepspeed.zero_config(3, True)
        core.launcher.launch_problems({"deepspeed": "x.json"}, {})
        print([m for m in ("torch", "transformers", "deepspeed") if m in sys.modules])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"

"""The security battery of a shared board (issue 7, items 4 and 5): paths outside the roots on every path field,
hostile YAML through Load config, secrets kept out of job files, the previewed argv is the argv run, start / abort
cycles leave no orphan, failing / killed / disk-filling jobs end `failed` with their cause, and the login rule.

Jobs are tests/webui/fake_job.py or tiny scripts written here; no training.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from webui import jobs
from webui.handlers.events import ALERTS
from webui.paths import PathRefused, Roots, secret_problems
from webui.runner import Runner, RunnerError

FAKE_JOB = Path(__file__).with_name("fake_job.py")
ARGS = {"model_name_or_path": "demo", "stage": "sft", "dataset": "demo_sft", "dataset_dir": "demo"}
LONG_JOB = ("--steps", "100000", "--interval", "0.05")

# Each resolves outside the scratch folder (the board's working directory and only root besides the defaults).
TRAVERSALS = (
    "../../../../etc",
    "/etc",
    "data/../../../../../etc",
    "..%2F..%2F..%2F..%2Fetc",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc",
    "%252e%252e%252f%252e%252e%252f%252e%252e%252f%252e%252e%252fetc",
    "~/../../etc",
)


def form(ui: Any, **overrides: Any) -> dict[str, Any]:
    manager = ui.board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return values


def warnings(result: dict[str, Any]) -> list[str]:
    return [text for level, text in result.get(ALERTS, []) if level == "warning"]


def infos(result: dict[str, Any]) -> list[str]:
    return [text for level, text in result.get(ALERTS, []) if level == "info"]


def wait_for(predicate: Any, timeout: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


def job_processes(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line names `folder` (the fake job and its children do)."""
    alive = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(folder) in " ".join(proc.info["cmdline"] or []):
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def runs_in(board_home: Path) -> set[str]:
    saves = board_home / "saves"
    return {str(path.parent) for path in saves.rglob("job.json")} if saves.exists() else set()


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that is no root of the board, with a secret-looking file in it."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "dataset_info.json").write_text(json.dumps({"stolen": {"file_name": "secret.json"}}))
    (folder / "secret.json").write_text(json.dumps([{"instruction": "root password", "output": "hunter2"}]))
    (folder / "train.yaml").write_text("model_name_or_path: demo\nstage: sft\n")
    return folder


# --- the roots ------------------------------------------------------------------------------------------------------


def test_roots_resolve_symlinks_dots_and_encoded_forms(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "escape").symlink_to(outside)
    roots = Roots([root], defaults=False)
    assert roots.check(root / "sub" / "new-file", "output_dir", write=True) == (root / "sub" / "new-file").resolve()
    assert roots.check(root / "sub" / ".." / "sub", "dataset_dir") == (root / "sub").resolve()
    payloads = [
        root / "escape" / "secret.json",  # a symlink out of the root
        root / ".." / "outside",
        f"{root}/sub/..%2F..%2F..%2F",
        f"{root}/%2e%2e/%2e%2e",
        f"{root}/sub/%252e%252e/%252e%252e/%252e%252e",
        "/etc/passwd",
        f"{root}/sub\x00/../../etc",
    ]
    for payload in payloads:
        with pytest.raises(PathRefused) as err:
            roots.check(payload, "dataset_dir")
        assert "dataset_dir" in str(err.value) and ("--roots" in str(err.value) or "NUL" in str(err.value))


def test_hub_ids_pass_and_paths_posing_as_hub_ids_do_not(tmp_path: Path) -> None:
    roots = Roots([tmp_path], defaults=False)
    assert roots.check_args({"model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct", "dataset_dir": "demo"}) == []
    assert roots.check_args({"model_name_or_path": "demo", "reward_model": "org/reward"}) == []
    for model in ("../../etc", "/etc", "..%2F..%2Fetc", "~/.ssh"):
        (problem,) = roots.check_args({"model_name_or_path": model})
        assert problem.startswith("model_name_or_path:"), problem
    problems = roots.check_args({"adapter_name_or_path": f"{tmp_path}/a,/etc/b", "deepspeed": "/etc/ds.json"})
    assert [problem.split(":")[0] for problem in problems] == ["adapter_name_or_path", "deepspeed"]


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_dataset_dir_outside_the_roots_is_refused_in_list_and_preview(ui: Any, board_home: Path, payload: str) -> None:
    board = ui.board
    listed = board.change_dataset_dir(form(ui, train__dataset_dir=payload))
    (refusal,) = warnings(listed)
    assert refusal.startswith("Refused") and "dataset_dir" in refusal
    assert listed["train.dataset"]["choices"] == []
    previewed = board.preview_open(form(ui, train__dataset_dir=payload, train__dataset=["stolen"]))
    (refusal,) = warnings(previewed)
    assert "dataset_dir" in refusal and "train.preview_table" not in previewed


def test_a_registry_whose_file_name_leaves_the_roots_is_not_previewed(ui: Any, board_home: Path, outside: Path):
    data = board_home / "data" / "sneaky"
    data.mkdir(parents=True)
    (data / "dataset_info.json").write_text(json.dumps({"stolen": {"file_name": str(outside / "secret.json")}}))
    result = ui.board.preview_open(form(ui, train__dataset_dir=str(data), train__dataset=["stolen"]))
    (refusal,) = warnings(result)
    assert "file_name" in refusal and "hunter2" not in json.dumps(result, default=str)


@pytest.mark.parametrize(
    "field, payload",
    [
        ("top__model_path", "../../../../etc"),
        ("top__model_path", "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc"),
        ("top__checkpoint_path", ["/etc"]),
        ("train__output_dir", "/etc/llamaboard-run"),
        ("train__output_dir", "../../../../tmp/escape"),
        ("train__extra_args", '{"output_dir": "/etc/run"}'),
        ("train__extra_args", '{"deepspeed": "/etc/ds.json"}'),
        ("train__extra_args", '{"adapter_name_or_path": "../../../../etc"}'),
        ("train__extra_args", '{"tokenized_path": "/var/tmp/tok"}'),
        ("train__extra_args", '{"export_dir": "/etc/exported"}'),
    ],
)
def test_every_path_of_the_form_outside_the_roots_is_refused_at_start_preview_save_export(
    ui: Any, board_home: Path, field: str, payload: Any
) -> None:
    board = ui.board
    if field == "top__model_path":
        values = form(ui, top__model_name="Custom", top__model_path=payload, train__output_dir="never")
    elif field == "top__checkpoint_path":
        values = form(ui, top__finetuning_type="full", top__checkpoint_path=payload, train__output_dir="never")
    else:
        values = form(
            ui, **{field: payload, **({} if field == "train__output_dir" else {"train__output_dir": "never"})}
        )
    before = runs_in(board_home)
    for handler in (board.start, board.cmd_preview, board.save_args, board.export_args):
        result = handler(values)
        (refusal,) = warnings(result)
        assert "Refused" in refusal or "run_name" in refusal, (handler.__name__, refusal)
        assert "train.export_file" not in result
    assert runs_in(board_home) == before and not Path("/etc/llamaboard-run").exists()


@pytest.mark.parametrize("payload", TRAVERSALS)
def test_config_path_outside_the_roots_is_neither_read_nor_written(ui: Any, outside: Path, payload: str) -> None:
    board = ui.board
    for path in (payload + "/passwd", str(outside / "train.yaml")):
        loaded = board.load_args(form(ui, train__config_path=path))
        (refusal,) = warnings(loaded)
        assert "config_path" in refusal and "train.extra_args" not in loaded
    target = outside / "written.yaml"
    (refusal,) = warnings(board.save_args(form(ui, train__config_path=str(target))))
    assert "config_path" in refusal and not target.exists()


def test_runner_refuses_a_run_folder_outside_its_roots(tmp_path: Path, outside: Path) -> None:
    saves = tmp_path / "saves"
    runner = Runner(saves_root=saves, roots=Roots([saves], defaults=False), devices=[])
    with pytest.raises(RunnerError, match="output_dir"):
        runner.start(ARGS, outside / "run")
    assert not (outside / "run").exists()


@pytest.mark.parametrize("payload", ["/etc", "../../../../etc", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc"])
def test_a_typed_run_folder_outside_the_roots_is_not_shown(ui: Any, outside: Path, payload: str) -> None:
    (outside / "job.log").write_text("root password: hunter2\n")
    for target in (payload, str(outside)):
        viewed = ui.board.change_view(form(ui, train__view_run=target))
        (refusal,) = warnings(viewed)
        assert "view_run" in refusal and "hunter2" not in json.dumps(viewed, default=str)
        polled = ui.board.poll(form(ui, train__view_run=target, train__poll_state={}))
        assert "hunter2" not in json.dumps(polled, default=str) and "No run yet" in polled["train.progress"]


# --- hostile YAML ---------------------------------------------------------------------------------------------------


def _load(ui: Any, board_home: Path, name: str, text: str) -> dict[str, Any]:
    path = board_home / "configs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return ui.board.load_args(form(ui, train__config_path=str(path)))


def test_yaml_with_python_tags_is_refused_and_runs_nothing(ui: Any, board_home: Path) -> None:
    marker = board_home / "pwned"
    for text in (
        f"stage: !!python/object/apply:os.system ['touch {marker}']\n",
        f"!!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
        "stage: !!python/name:os.system\n",
    ):
        result = _load(ui, board_home, "tagged.yaml", text)
        (refusal,) = warnings(result)
        assert "tag" in refusal and "train.stage" not in result
    assert not marker.exists()


def test_an_alias_bomb_is_refused_quickly(ui: Any, board_home: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        previous = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 10)}]")
    started = time.monotonic()
    result = _load(ui, board_home, "bomb.yaml", "\n".join(lines) + "\n")
    (refusal,) = warnings(result)
    assert "more than" in refusal and time.monotonic() - started < 5


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- a\n- b\n", "expected a mapping"),
        ("1: x\n", "keys must be argument names"),
        ("stage: [sft\n", "not valid YAML"),
        ("x" * (1024 * 1024 + 10) + ": 1\n", "larger than"),
    ],
)
def test_yaml_of_the_wrong_shape_is_refused_with_the_reason(ui: Any, board_home: Path, text: str, expected: str):
    (refusal,) = warnings(_load(ui, board_home, "shape.yaml", text))
    assert expected in refusal


def test_unknown_keys_and_wrong_types_load_but_never_start(ui: Any, board_home: Path) -> None:
    text = "model_name_or_path: demo\nstage: sft\ndataset: demo_sft\nlora_rnak: 3\nlearning_rate: lots\n"
    loaded = _load(ui, board_home, "odd.yaml", text)
    assert any("lora_rnak" in text for text in warnings(loaded))
    values = form(ui, train__extra_args=loaded["train.extra_args"], train__output_dir="odd_types")
    (refusal,) = warnings(ui.board.start(values))
    assert "lora_rnak" in refusal and "lora_rank" in refusal  # the closest known key
    assert not any(path.endswith("odd_types") for path in runs_in(board_home))


def test_yaml_turning_on_remote_code_needs_the_job_checkbox(ui: Any, board_home: Path) -> None:
    loaded = _load(ui, board_home, "remote.yaml", "model_name_or_path: demo\ntrust_remote_code: true\n")
    extra = loaded["train.extra_args"]
    assert json.loads(extra)["trust_remote_code"] is True
    (refusal,) = warnings(ui.board.start(form(ui, train__extra_args=extra, train__output_dir="remote_off")))
    assert "Trust remote code" in refusal
    args, alerts = ui.board.build(form(ui, train__trust_remote_code=True, train__output_dir="remote_on"))
    assert alerts == [] and args["trust_remote_code"] is True
    args, _ = ui.board.build(form(ui, train__output_dir="remote_default"))
    assert "trust_remote_code" not in args  # off: the core's default, False


def test_a_reward_file_runs_only_when_this_jobs_checkbox_is_ticked(ui: Any, board_home: Path, outside: Path) -> None:
    """grpo's reward file is Python the job imports: no Start, preview or save passes it on without the tick, a
    loaded YAML's trust_reward_file does not tick it, and ticked it still has to lie under the roots."""
    marker = board_home / "reward_ran"
    rewards = board_home / "rewards.py"
    rewards.write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef my_fn(prompts, completions, **kw):\n    return [0.0]\n"
    )
    grpo = {"train__stage": "grpo", "train__dataset": ["demo_grpo"], "train__reward_funcs": ["my_fn"]}
    before = runs_in(board_home)
    values = form(ui, **grpo, train__reward_file=str(rewards), train__output_dir="reward_off")
    for handler in (ui.board.start, ui.board.cmd_preview, ui.board.save_args):
        (refusal,) = warnings(handler(values))
        assert "Run the reward file" in refusal and str(rewards) in refusal, refusal

    text = f"model_name_or_path: demo\nstage: grpo\nreward_funcs: my_fn\nreward_file: {rewards}\n"
    loaded = _load(ui, board_home, "reward.yaml", text + "trust_reward_file: true\n")
    assert loaded["train.reward_file"]["value"] == str(rewards) and loaded["train.reward_funcs"]["value"] == ["my_fn"]
    assert "value" not in loaded["train.trust_reward_file"]  # shown (grpo), never ticked by a file
    extra = loaded["train.extra_args"]
    assert json.loads(extra)["trust_reward_file"] is True
    values = form(ui, **grpo, train__reward_file=str(rewards), train__extra_args=extra, train__output_dir="loaded")
    (refusal,) = warnings(ui.board.start(values))
    assert "Run the reward file" in refusal
    assert runs_in(board_home) == before and not marker.exists()

    ticked = form(ui, **grpo, train__reward_file=str(rewards), train__trust_reward_file=True, train__output_dir="on")
    args, alerts = ui.board.build(ticked)
    assert alerts == [] and (args["reward_file"], args["trust_reward_file"]) == (str(rewards), True)
    args, _ = ui.board.build(form(ui, **grpo, train__trust_reward_file=True, train__output_dir="no_file"))
    assert "trust_reward_file" not in args  # nothing to trust: the key stays off
    far = outside / "rewards.py"
    far.write_text("def my_fn(prompts, completions, **kw):\n    return [0.0]\n")
    values = form(ui, **grpo, train__reward_file=str(far), train__trust_reward_file=True, train__output_dir="never")
    (refusal,) = warnings(ui.board.start(values))
    assert "Refused" in refusal and "reward_file" in refusal
    assert runs_in(board_home) == before and not marker.exists()


# --- secrets --------------------------------------------------------------------------------------------------------


def test_secrets_never_reach_job_yaml_or_an_export(ui: Any, board_home: Path) -> None:
    token = "hf_" + "a1B2c3D4" * 5
    for extra in (
        {"hf_hub_token": token},
        {"hub_token": "anything"},
        {"wandb_api_key": "0123456789abcdef"},
        {"run_name": f"leak-{token}"},
    ):
        values = form(ui, train__extra_args=json.dumps(extra), train__output_dir="secret_run")
        for handler in (ui.board.start, ui.board.export_args, ui.board.save_args):
            result = handler(values)
            (refusal,) = warnings(result)
            assert "environment" in refusal and token not in refusal, refusal
    assert token not in "".join(path.read_text() for path in (board_home / "saves").rglob("job.yaml"))
    assert (
        not (board_home / "configs" / "train_config.yaml").exists()
        or token not in (board_home / "configs" / "train_config.yaml").read_text()
    )


def test_a_config_holding_a_token_loads_without_echoing_it_into_the_form(ui: Any, board_home: Path) -> None:
    token = "hf_" + "Q7w" * 12
    text = (
        f"model_name_or_path: demo\nstage: sft\nhf_hub_token: {token}\nwandb_api_key: k3y\n"
        f"output_dir: {board_home}/saves/demo/lora/leak-{token}\nlearning_rate: 1.0e-4\n"
    )
    result = _load(ui, board_home, "with_token.yaml", text)
    shown = json.dumps(result, default=str)
    assert token not in shown and "k3y" not in shown
    dropped = [text for text in warnings(result) if "Not loaded" in text]
    assert len(dropped) == 1 and "HF_TOKEN" in dropped[0] and "WANDB_API_KEY" in dropped[0], warnings(result)
    assert result["train.learning_rate"] == 1.0e-4  # the rest of the file loaded


def test_secret_problems_name_the_variable_to_use() -> None:
    (problem,) = secret_problems({"hf_hub_token": "x", "model_revision": "0123456789abcdef0123456789abcdef01234567"})
    assert problem.startswith("hf_hub_token:") and "HF_TOKEN" in problem
    assert secret_problems({"report_to": "wandb", "output_dir": "saves/x", "pad_to_multiple_of": 8}) == []


def test_secret_in_the_runner_args_is_refused_before_any_file(tmp_path: Path) -> None:
    runner = Runner(saves_root=tmp_path, devices=[], job_command=[sys.executable, str(FAKE_JOB)])
    with pytest.raises(RunnerError, match="WANDB_API_KEY"):
        runner.start({**ARGS, "wandb_api_key": "k" * 40}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_token_in_the_board_environment_reaches_the_job_and_no_file(tmp_path: Path, monkeypatch: Any) -> None:
    token = "hf_" + "Zx9" * 12
    monkeypatch.setenv("HF_TOKEN", token)
    runner = Runner(saves_root=tmp_path, devices=[], job_command=[sys.executable, str(FAKE_JOB), *LONG_JOB])
    run_dir = tmp_path / "demo" / "lora" / "with_token"
    started = runner.start(ARGS, run_dir)
    try:
        environ = Path(f"/proc/{started['pid']}/environ").read_bytes()
        assert f"HF_TOKEN={token}".encode() in environ.split(b"\0")
    finally:
        runner.abort(run_dir)
        runner.wait(run_dir, timeout=15)
    written = "".join(path.read_text(errors="replace") for path in run_dir.rglob("*") if path.is_file())
    assert "job.yaml" in {path.name for path in run_dir.iterdir()} and token not in written


# --- what runs is what was shown ------------------------------------------------------------------------------------


def test_previewed_command_is_the_argv_of_the_running_process(ui: Any, board_home: Path) -> None:
    board = ui.board
    values = form(ui, train__output_dir="argv check")
    preview = board.cmd_preview(values)["train.output_box"]
    started = board.start(values)
    run_dir = Path(started["train.view_run"]["value"])
    job = jobs.read_job(run_dir)
    try:
        cmdline = Path(f"/proc/{job['pid']}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert [part.decode() for part in cmdline] == shlex.split(preview.splitlines()[0]) == job["argv"]
    finally:
        board.runner.abort(run_dir)
        board.runner.wait(run_dir, timeout=15)


def test_twenty_start_abort_cycles_leave_no_process(tmp_path: Path) -> None:
    saves = tmp_path / "saves"
    runner = Runner(
        saves_root=saves,
        grace_s=0.3,
        devices=[],
        job_command=[sys.executable, str(FAKE_JOB), "--mode", "spawn-child", "--steps", "1000", "--interval", "0.02"],
    )
    states = []
    for cycle in range(20):
        run_dir = saves / "demo" / "lora" / f"cycle{cycle}"
        runner.start(ARGS, run_dir)
        if cycle % 4 == 0:  # now and then once the child (which ignores SIGTERM) is up, else at once
            wait_for(lambda run_dir=run_dir: (run_dir / "child.pid").exists(), message="the child")
        runner.abort(run_dir)
        states.append(runner.wait(run_dir, timeout=15)["state"])
    assert states == ["aborted"] * 20
    wait_for(lambda: job_processes(saves) == [], timeout=5, message="no process of any cycle")
    zombies = [child for child in psutil.Process().children() if child.status() == psutil.STATUS_ZOMBIE]
    assert zombies == [] and runner.active() == []


# --- jobs that end badly --------------------------------------------------------------------------------------------

DISK_FILLER = """
import sys, time
from pathlib import Path
run_dir = Path(sys.argv[-1]).parent
print("writing a checkpoint", flush=True)
with open(run_dir / "checkpoint.bin", "wb") as out:
    while True:
        out.write(b"\\0" * 65536)
        out.flush()
"""

ENOSPC_JOB = """
import errno, os, sys
print("writing a checkpoint", flush=True)
raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), sys.argv[-1])
"""


def _board_stays_up(board: Any, run_dir: Path) -> str:
    """The board still answers for the run: its progress bar, from a fresh poll."""
    from webui.board import Board

    result = Board(board.runner).poll({"top.lang": "en", "train.view_run": str(run_dir), "train.notes": []})
    return result["train.progress"]


def test_a_failing_and_a_killed_job_end_failed_with_their_cause(tmp_path: Path) -> None:
    from webui.board import Board

    saves = tmp_path / "saves"
    failing = Runner(saves_root=saves, devices=[], job_command=[sys.executable, str(FAKE_JOB), "--mode", "fail"])
    run_dir = saves / "demo" / "lora" / "fails"
    failing.start(ARGS, run_dir)
    job = failing.wait(run_dir, timeout=30)
    assert job["state"] == "failed" and "ValueError: fake failure at step 2" in job["error"]
    assert 'data-state="failed"' in _board_stays_up(Board(failing), run_dir)

    long = Runner(saves_root=saves, devices=[], job_command=[sys.executable, str(FAKE_JOB), "--steps", "100000"])
    run_dir = saves / "demo" / "lora" / "killed"
    started = long.start(ARGS, run_dir)
    wait_for(lambda: (run_dir / "trainer_log.jsonl").exists(), message="the job to log")
    os.kill(started["pid"], signal.SIGKILL)
    job = long.wait(run_dir, timeout=30)
    assert job["state"] == "failed" and "SIGKILL" in job["error"] and "out of memory" in job["error"]
    assert "SIGKILL" in _board_stays_up(Board(long), run_dir)
    again = long.start(ARGS, saves / "demo" / "lora" / "after")  # the runner takes the next job
    assert again["state"] == "running"
    long.abort(saves / "demo" / "lora" / "after")
    long.wait(saves / "demo" / "lora" / "after", timeout=15)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_job_that_fills_the_output_disk_ends_failed_saying_so(tmp_path: Path) -> None:
    """On a real 1 MiB tmpfs when this machine lets us mount one (root); else the job raises ENOSPC itself."""
    from webui.board import Board

    saves = tmp_path / "saves"
    disk = saves / "demo" / "lora"
    mounted = _mount_tmpfs(disk, "1m")
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(DISK_FILLER if mounted else ENOSPC_JOB))
    runner = Runner(saves_root=saves, devices=[], job_command=[sys.executable, str(script)])
    run_dir = disk / "full"
    try:
        runner.start(ARGS, run_dir)
        job = runner.wait(run_dir, timeout=30)
        assert job["state"] == "failed", job
        assert "No space left on device" in job["error"] or "is full" in job["error"], job["error"]
        if mounted:
            assert f"The disk holding {run_dir.resolve()} is full" in job["error"]
        assert 'data-state="failed"' in _board_stays_up(Board(runner), run_dir)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


# --- logins ---------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_auth_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLAMABOARD_AUTH", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    "argv", [["--host", "0.0.0.0"], ["--host", "192.168.1.10"], ["--share"], ["--host", "gpu-box"]]
)
def test_an_exposed_board_without_a_login_refuses_to_start(no_auth_env: None, argv: list[str]) -> None:
    from webui import app

    with pytest.raises(app.InsecureBind) as err:
        app.main(argv)
    assert "LLAMABOARD_AUTH" in str(err.value) and "--allow-insecure-bind" in str(err.value)


def test_loopback_needs_no_login_and_the_risk_flag_is_logged(no_auth_env: None, caplog: Any) -> None:
    from webui import app

    caplog.set_level(logging.INFO, logger="webui.app")
    for host in ("127.0.0.1", "localhost", "::1", "127.0.1.1"):
        app.check_bind(host, share=False, logins=[], allow_insecure_bind=False)
    app.check_bind("0.0.0.0", share=False, logins=[], allow_insecure_bind=True)
    assert "WITHOUT a login" in caplog.text
    app.check_bind("0.0.0.0", share=False, logins=[("a", "b")], allow_insecure_bind=False)
    assert "login required (1 user(s))" in caplog.text


def test_logins_come_from_flags_a_file_and_the_environment(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    from webui import app

    logins = tmp_path / "logins"
    logins.write_text("# team\nalice:pa:ss\n\nbob:secret\n")
    logins.chmod(0o600)
    assert app.load_auth(["carol:x"], str(logins)) == [("carol", "x"), ("alice", "pa:ss"), ("bob", "secret")]
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(SystemExit, match="user:password"):
            app.load_auth([bad])
    with pytest.raises(SystemExit, match="cannot be read"):
        app.load_auth(None, str(tmp_path / "missing"))
    calls = []
    monkeypatch.setattr(app, "launch", lambda **kwargs: calls.append(kwargs))
    app.main(["--host", "0.0.0.0", "--auth-file", str(logins), "--roots", str(tmp_path)])
    assert calls[0]["auth"] == [("alice", "pa:ss"), ("bob", "secret")] and calls[0]["roots"] == [str(tmp_path)]
    assert "chmod 600" not in caplog.text
    logins.chmod(0o644)
    app.load_auth(None, str(logins))
    assert "other users can read it: chmod 600" in caplog.text


def test_with_a_login_the_client_needs_the_credentials(board_home: Path, no_auth_env: None, monkeypatch: Any):
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    from webui import app

    monkeypatch.setenv("LLAMABOARD_AUTH", "alice:correct-horse")
    port = _free_port()
    demo = app.launch(host="0.0.0.0", port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(url, auth=("alice", "wrong"), verbose=False)
        client = Client(url, auth=("alice", "correct-horse"), verbose=False)
        assert "/cmd_preview" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert demo.max_file_size == 100 * 1024 * 1024  # uploads are bounded
    finally:
        demo.close()

"""The board's job queue (issue 7, item 2): jobs on disjoint devices run at once with their own
CUDA_VISIBLE_DEVICES, a job whose devices are busy waits (position shown, cancellable) and starts by itself, a
waiting job holds its devices back from later ones, the queue survives a board restart, the device list comes
from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`, and a DeepSpeed choice writes its config into the run folder.

Jobs are tests/webui/fake_job.py; "GPUs" are ids the runner is given (no GPU is needed or touched).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from webui import jobs
from webui.args import load_yaml
from webui.runner import QUEUE_FILE, Runner, RunnerError, list_devices

FAKE_JOB = Path(__file__).with_name("fake_job.py")
ARGS = {"model_name_or_path": "demo", "stage": "sft", "dataset": "demo_sft", "dataset_dir": "demo"}
LONG = ["--steps", "100000", "--interval", "0.05"]


def runner_for(saves: Path, devices: list[str], *options: str) -> Runner:
    return Runner(
        saves_root=saves, grace_s=2.0, devices=devices, job_command=[sys.executable, str(FAKE_JOB), *options]
    )


def wait_for(predicate, timeout: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


def visible_devices_of(pid: int) -> str | None:
    """CUDA_VISIBLE_DEVICES in the environment the process was started with."""
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"CUDA_VISIBLE_DEVICES="):
            return item.split(b"=", 1)[1].decode()
    return None


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    return tmp_path / "saves"


def stop_all(runner: Runner, *run_dirs: Path) -> None:
    for run_dir in run_dirs:
        runner.abort(run_dir)
    for run_dir in run_dirs:
        runner.wait(run_dir, timeout=20)


def test_disjoint_devices_run_together_and_busy_ones_wait_in_order(saves: Path) -> None:
    runner = runner_for(saves, ["0", "1"], *LONG)
    a, b, c, d = (saves / "m" / "lora" / name for name in "abcd")
    try:
        assert runner.start(ARGS, a, ["0"])["state"] == "running"
        assert runner.start(ARGS, b, ["1"])["state"] == "running"
        assert visible_devices_of(jobs.read_job(a)["pid"]) == "0"
        assert visible_devices_of(jobs.read_job(b)["pid"]) == "1"

        waiting = runner.start(ARGS, c, [])  # none chosen: every device
        assert waiting["state"] == "queued" and waiting["queue_position"] == 1 and waiting["devices"] == ["0", "1"]
        # d's device 1 frees up first, but c waits for it too and came first: d must not overtake c.
        assert runner.start(ARGS, d, ["1"])["queue_position"] == 2
        on_disk = jobs.read_job(d)
        assert on_disk["state"] == "queued" and on_disk["queue_position"] == 2
        assert json.loads((saves / QUEUE_FILE).read_text())["queue"] == [str(c.resolve()), str(d.resolve())]

        runner.abort(b)
        runner.wait(b, timeout=20)
        time.sleep(0.3)
        assert runner.queued() == [c.resolve(), d.resolve()] and jobs.read_job(d)["state"] == "queued"

        runner.abort(a)
        wait_for(lambda: runner.active() == [c.resolve()], message="c to start on both devices")
        assert visible_devices_of(jobs.read_job(c)["pid"]) == "0,1"
        assert runner.queue_position(d) == 1 and jobs.read_job(d)["queue_position"] == 1

        runner.abort(c)
        wait_for(lambda: runner.active() == [d.resolve()], message="d to start")
        assert runner.queued() == [] and json.loads((saves / QUEUE_FILE).read_text())["queue"] == []
    finally:
        stop_all(runner, a, b, c, d)
    assert [jobs.read_job(path)["state"] for path in (a, b, c, d)] == ["aborted"] * 4


def test_a_queued_job_is_cancelled_and_never_runs(saves: Path) -> None:
    runner = runner_for(saves, [], *LONG)
    first, second, third = (saves / "m" / "lora" / name for name in ("first", "second", "third"))
    try:
        runner.start(ARGS, first)
        runner.start(ARGS, second)
        runner.start(ARGS, third)
        assert runner.queued() == [second.resolve(), third.resolve()]
        runner.abort(second)  # Abort on a waiting job cancels it
        job = jobs.read_job(second)
        assert job["state"] == "aborted" and "Cancelled while waiting" in job["error"] and job["pid"] is None
        assert runner.queue_position(third) == 1 and jobs.read_job(third)["queue_position"] == 1
        assert runner.cancel(second) is False  # already out of the queue
        assert not (second / "job.log").exists()
    finally:
        stop_all(runner, first, third)


def test_unknown_devices_are_refused_with_the_visible_ones(saves: Path) -> None:
    runner = runner_for(saves, ["0", "1"])
    with pytest.raises(RunnerError, match=r"Devices 7 are not visible.*visible: 0, 1"):
        runner.start(ARGS, saves / "m" / "lora" / "x", ["7"])
    assert runner.wanted_devices(["1", "0", "1"]) == ["0", "1"]
    assert runner_for(saves, []).wanted_devices(["0"]) == ["cpu"]


def test_the_queue_survives_a_board_restart(saves: Path) -> None:
    running, waiting = saves / "m" / "lora" / "running", saves / "m" / "lora" / "waiting"
    # A board process starts one job, queues another, and exits; the first job lives on in its own session.
    board = textwrap.dedent(
        f"""
        import sys
        from webui.runner import Runner
        runner = Runner(saves_root={str(saves)!r}, devices=[], job_command=[sys.executable, {str(FAKE_JOB)!r},
                        "--steps", "100000", "--interval", "0.05"])
        runner.start({ARGS!r}, {str(running)!r})
        assert runner.start({ARGS!r}, {str(waiting)!r})["state"] == "queued"
        """
    )
    subprocess.run(
        [sys.executable, "-c", board], check=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()}
    )
    # The board was down for an hour: the waiting job is still queued, not "failed" for want of a process.
    job = json.loads((waiting / "job.json").read_text())
    jobs.write_job_json(waiting, {**job, "created": job["created"] - 3600})
    assert jobs.read_job(waiting)["state"] == "queued"

    runner = runner_for(saves, [], "--steps", "3", "--interval", "0.01")
    try:
        assert runner.reattach() == [running.resolve()]
        assert runner.queued() == [waiting.resolve()] and jobs.read_job(waiting)["queue_position"] == 1
        runner.abort(running)
        # The waiting job starts by itself with the argv recorded when it was queued (the old board's command).
        wait_for(lambda: runner.active() == [waiting.resolve()], message="the queued job to start after restart")
        assert jobs.read_job(waiting)["state"] == "running"
    finally:
        stop_all(runner, running, waiting)
    assert jobs.read_job(running)["state"] == "aborted" and jobs.read_job(waiting)["state"] == "aborted"


def test_devices_come_from_cuda_visible_devices_or_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert [device for device, _ in list_devices()] == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert list_devices() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1111)'\necho 'GPU 1: NVIDIA H100 80GB HBM3 "
        "(UUID: GPU-2222)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    assert list_devices() == [("0", "GPU 0: NVIDIA H100 80GB HBM3"), ("1", "GPU 1: NVIDIA H100 80GB HBM3")]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert list_devices() == []  # a CPU box: no nvidia-smi


def test_preview_shows_the_devices_the_job_gets(saves: Path) -> None:
    runner = runner_for(saves, ["0", "1", "2"])
    preview = runner.command_preview(ARGS, saves / "run", ["2", "0"])
    assert preview.startswith("CUDA_VISIBLE_DEVICES=0,2 ") and "llamafactory-cli train" in preview
    assert not runner_for(saves, []).command_preview(ARGS, saves / "run").startswith("CUDA_VISIBLE_DEVICES")


@pytest.mark.parametrize("stage, offload", [(2, False), (3, True)])
def test_a_deepspeed_choice_writes_its_config_into_the_run_folder(saves: Path, stage: int, offload: bool) -> None:
    runner = runner_for(saves, [], "--steps", "1")
    run_dir = saves / "m" / "lora" / f"ds{stage}"
    runner.start(ARGS, run_dir, zero=(stage, offload))
    runner.wait(run_dir, timeout=20)
    name = f"ds_z{stage}{'_offload' if offload else ''}_config.json"
    args = load_yaml(run_dir / "job.yaml")
    assert args["deepspeed"] == str((run_dir / name).resolve())
    config = json.loads((run_dir / name).read_text())
    assert config["zero_optimization"]["stage"] == stage
    assert ("offload_optimizer" in config["zero_optimization"]) is offload


def test_board_start_passes_devices_and_deepspeed_and_says_queued(ui, board_home: Path) -> None:
    from webui.handlers.events import ALERTS

    board = ui.board
    manager = board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    first = board.start({**values, "train.output_dir": "q_first", "train.ds_stage": "2"})
    run_dir = Path(first["train.view_run"]["value"])
    second = board.start({**values, "train.output_dir": "q_second"})
    waiting = Path(second["train.view_run"]["value"])
    try:
        assert (run_dir / "ds_z2_config.json").is_file()
        assert load_yaml(run_dir / "job.yaml")["deepspeed"].endswith("ds_z2_config.json")
        ((level, text),) = second[ALERTS]
        assert level == "info" and "Queued at position 1" in text and "starts by itself" in text
        progress = board.poll({**values, "train.view_run": str(waiting), "train.poll_state": {}})["train.progress"]
        assert 'data-state="queued"' in progress and "position 1" in progress
    finally:
        stop_all(board.runner, waiting, run_dir)

"""The runner: job files, output to a file, abort with SIGTERM then SIGKILL, no survivors, re-attach.

Jobs here are tests/webui/fake_job.py (no training); one test at the end runs the real demo sft job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from webui import jobs
from webui.args import load_yaml
from webui.runner import Runner, RunnerError

FAKE_JOB = Path(__file__).with_name("fake_job.py")
ARGS = {"model_name_or_path": "demo", "stage": "sft", "dataset": "demo_sft", "learning_rate": 1.0e-4}


def fake_runner(saves: Path, *options: str, grace_s: float = 10.0) -> Runner:
    return Runner(saves_root=saves, grace_s=grace_s, job_command=[sys.executable, str(FAKE_JOB), *options], devices=[])


def run_dir_of(saves: Path, name: str = "run1") -> Path:
    return saves / "demo" / "lora" / name


def wait_for(predicate, timeout: float = 20.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")


def has_records(run_dir: Path, count: int = 1) -> bool:
    path = run_dir / "trainer_log.jsonl"
    return path.exists() and path.read_text().count("\n") >= count


def job_processes(run_dir: Path, extra_pids: tuple[int, ...] = ()) -> list[psutil.Process]:
    """Processes still alive that belong to the job: any whose command line names its folder, plus given pids."""
    alive = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if str(run_dir) in " ".join(proc.info["cmdline"] or []) or proc.pid in extra_pids:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


@pytest.fixture
def saves(tmp_path):
    return tmp_path / "saves"


def test_start_writes_job_files_and_records_a_finished_job(saves):
    runner = fake_runner(saves, "--steps", "3")
    run_dir = run_dir_of(saves)
    started = runner.start(ARGS, run_dir)
    assert started["state"] == "running" and started["pid"] > 0 and started["pgid"] == started["pid"]
    assert runner.active() == [run_dir.resolve()]

    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "finished", job
    assert job["exit_code"] == 0 and job["error"] == ""
    assert job["argv"] == runner.argv_for(run_dir.resolve())
    assert job["started"] >= job["created"] and job["ended"] >= job["started"]
    assert job["devices"] and len(job["id"]) == 12
    assert runner.active() == []
    on_disk = json.loads((run_dir / "job.json").read_text())
    assert on_disk["state"] == "finished" and on_disk["pid"] == started["pid"]
    assert load_yaml(run_dir / "job.yaml") == ARGS
    log = (run_dir / "job.log").read_text()
    assert "step 3/3" in log and "warning at step 3" in log  # stdout and stderr both land in job.log
    assert len(jobs.TrainerLogReader(run_dir / "trainer_log.jsonl").poll()) == 3


def test_a_job_printing_two_mib_to_stderr_does_not_stall(saves):
    runner = fake_runner(saves, "--mode", "flood", "--flood-bytes", str(2 * 1024 * 1024), "--steps", "2")
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "finished", job
    assert (run_dir / "job.log").stat().st_size >= 2 * 1024 * 1024


def test_abort_sends_sigterm_and_the_job_saves_and_ends_aborted(saves):
    runner = fake_runner(saves, "--steps", "10000", "--interval", "0.02")
    run_dir = run_dir_of(saves)
    pid = runner.start(ARGS, run_dir)["pid"]
    wait_for(lambda: has_records(run_dir, 2), message="the first records")
    runner.abort(run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "aborted" and job["exit_code"] == 0, job
    assert "saved" in (run_dir / "job.log").read_text()
    assert list(run_dir.glob("checkpoint-*/adapter_model.safetensors"))
    assert not psutil.pid_exists(pid) and job_processes(run_dir) == []


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(saves):
    runner = fake_runner(saves, "--mode", "ignore-term", "--steps", "10000", "--interval", "0.02", grace_s=1.0)
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    wait_for(lambda: has_records(run_dir), message="the first record")
    began = time.monotonic()
    runner.abort(run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert time.monotonic() - began >= 0.9
    assert job["state"] == "aborted" and job["exit_code"] == -signal.SIGKILL, job
    assert job_processes(run_dir) == []


@pytest.mark.parametrize("mode", ["spawn-child", "setsid-child"])
def test_abort_leaves_no_process_of_the_job_even_a_spawned_child(saves, mode):
    runner = fake_runner(saves, "--mode", mode, "--steps", "10000", "--interval", "0.02", grace_s=1.0)
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    wait_for(lambda: has_records(run_dir) and (run_dir / "child.pid").exists(), message="the child")
    child = int((run_dir / "child.pid").read_text())
    assert psutil.pid_exists(child)
    runner.abort(run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "aborted"
    assert job_processes(run_dir, (child,)) == []


def test_a_child_left_behind_by_a_finished_job_is_reaped(saves):
    runner = fake_runner(saves, "--mode", "spawn-child", "--steps", "2", grace_s=0.5)
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    job = runner.wait(run_dir, timeout=30)
    child = int((run_dir / "child.pid").read_text())
    assert job["state"] == "finished"
    assert job_processes(run_dir, (child,)) == []


def test_a_second_start_on_a_cpu_machine_waits_in_the_queue_and_starts_by_itself(saves):
    runner = fake_runner(saves, "--steps", "10000", "--interval", "0.02", grace_s=1.0)
    first, second = run_dir_of(saves, "first"), run_dir_of(saves, "second")
    runner.start(ARGS, first)
    try:
        queued = runner.start(ARGS, second)
        assert queued["state"] == "queued" and queued["queue_position"] == 1 and queued["pid"] is None
        assert jobs.read_job(second)["state"] == "queued"
        assert runner.active() == [first.resolve()] and runner.queued() == [second.resolve()]
        with pytest.raises(RunnerError, match="already queued"):
            runner.start(ARGS, second)
        runner.abort(first)
        wait_for(lambda: runner.active() == [second.resolve()], message="the queued job to start")
        assert jobs.read_job(second)["state"] == "running" and runner.queued() == []
    finally:
        runner.abort(second)
        runner.wait(second, timeout=30)
        runner.wait(first, timeout=30)
    assert jobs.read_job(first)["state"] == "aborted"


def test_a_used_run_folder_is_refused_unless_resuming(saves):
    runner = fake_runner(saves, "--steps", "1")
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    runner.wait(run_dir, timeout=30)
    with pytest.raises(RunnerError, match="already holds a run"):
        runner.start(ARGS, run_dir)
    runner.start({**ARGS, "overwrite_output_dir": True}, run_dir)
    assert runner.wait(run_dir, timeout=30)["state"] == "finished"


def test_a_failing_job_ends_failed_with_the_exception_line(saves):
    runner = fake_runner(saves, "--mode", "fail", "--steps", "5")
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "failed" and job["exit_code"] == 1
    assert job["error"] == "ValueError: fake failure at step 2: the dataset column 'text' is missing"


def test_argument_problems_and_outside_kills_are_summarized(saves):
    runner = fake_runner(saves, "--mode", "bad-args")
    run_dir = run_dir_of(saves, "bad")
    runner.start(ARGS, run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert (job["state"], job["exit_code"]) == ("failed", 2)
    assert job["error"] == "1 problem with the arguments: lora_rnak: received 3 — unknown key"

    runner = fake_runner(saves, "--steps", "10000", "--interval", "0.02")
    run_dir = run_dir_of(saves, "killed")
    pid = runner.start(ARGS, run_dir)["pid"]
    wait_for(lambda: has_records(run_dir), message="the first record")
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "failed" and job["error"].startswith("The job was killed by SIGKILL (out of memory?")


def test_a_missing_program_fails_with_a_clear_error(saves):
    runner = Runner(saves_root=saves, job_command=[str(saves / "no-such-python")])
    run_dir = run_dir_of(saves)
    with pytest.raises(RunnerError, match="Could not start"):
        runner.start(ARGS, run_dir)
    assert json.loads((run_dir / "job.json").read_text())["state"] == "failed"
    assert runner.active() == []


def test_a_new_runner_reattaches_to_a_job_whose_board_went_away(saves):
    run_dir = run_dir_of(saves)
    # A board process starts the job and exits; the job lives on in its own session.
    board = textwrap.dedent(
        f"""
        import sys
        from webui.runner import Runner
        runner = Runner(saves_root={str(saves)!r}, job_command=[sys.executable, {str(FAKE_JOB)!r},
                        "--steps", "10000", "--interval", "0.02"])
        runner.start({ARGS!r}, {str(run_dir)!r})
        """
    )
    subprocess.run([sys.executable, "-c", board], check=True, timeout=60)
    wait_for(lambda: has_records(run_dir), message="the job to log")

    runner = fake_runner(saves, grace_s=5.0)
    with pytest.raises(RunnerError, match="started elsewhere"):
        runner.start({**ARGS, "overwrite_output_dir": True}, run_dir)  # never two jobs in one folder
    assert runner.reattach() == [run_dir.resolve()]
    assert runner.active() == [run_dir.resolve()]
    assert jobs.read_job(run_dir)["state"] == "running"
    # The re-attached job holds the machine's one device: another start waits for it.
    other = run_dir_of(saves, "other")
    assert runner.start(ARGS, other)["state"] == "queued"
    runner.cancel(other)
    assert jobs.read_job(other)["state"] == "aborted"
    runner.abort(run_dir)
    job = runner.wait(run_dir, timeout=30)
    assert job["state"] == "aborted"
    assert job_processes(run_dir) == []


def test_reattach_settles_jobs_that_ended_while_no_board_watched(saves):
    done, lost = run_dir_of(saves, "done"), run_dir_of(saves, "lost")
    for run_dir in (done, lost):
        run_dir.mkdir(parents=True)
        dead = {"pid": 2**22 + 17, "pgid": 2**22 + 17, "state": "running", "created": time.time(), "argv": ["x"]}
        jobs.write_job_json(run_dir, dead)
    (done / "train_results.json").write_text("{}")
    (lost / "job.log").write_text("Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n")

    assert fake_runner(saves).reattach() == []
    assert json.loads((done / "job.json").read_text())["state"] == "finished"
    lost_job = json.loads((lost / "job.json").read_text())
    assert lost_job["state"] == "failed" and lost_job["error"] == "RuntimeError: CUDA out of memory"


def test_argv_and_command_preview_are_the_same_list(tmp_path):
    runner = Runner(saves_root=tmp_path, devices=[])
    run_dir = tmp_path / "my run"
    argv = runner.argv_for(run_dir)
    assert argv == [sys.executable, "-m", "core.cli", "train", str(run_dir / "job.yaml")]
    preview = runner.command_preview({}, run_dir)
    first, _, rest = preview.partition("\n")
    import shlex

    assert shlex.split(first) == argv
    assert f"llamafactory-cli train '{run_dir / 'job.yaml'}'" in rest


def test_no_job_leaves_zombies_or_stray_threads_in_the_board(saves):
    runner = fake_runner(saves, "--steps", "1")
    run_dir = run_dir_of(saves)
    runner.start(ARGS, run_dir)
    runner.wait(run_dir, timeout=30)
    children = psutil.Process(os.getpid()).children()
    assert [child for child in children if child.status() == psutil.STATUS_ZOMBIE] == []


@pytest.mark.slow
def test_a_real_demo_sft_job_runs_through_the_runner(saves):
    from webui.args import FORM_DEFAULTS, build_args, validate

    form = {
        **FORM_DEFAULTS,
        "dataset": ["demo_sft"],
        "run_name": "real",
        "logging_steps": 1,
        "cutoff_len": 128,
        "gradient_accumulation_steps": 1,
        "extra_args": '{"max_steps": 3}',
    }
    args = build_args(form, saves)
    assert validate(args) == []
    runner = Runner(saves_root=saves)
    run_dir = Path(args["output_dir"])
    runner.start(args, run_dir)
    job = runner.wait(run_dir, timeout=300)
    log = (run_dir / "job.log").read_text()
    assert job["state"] == "finished", log[-3000:]
    records = jobs.TrainerLogReader(run_dir / "trainer_log.jsonl").poll()
    assert [record["current_steps"] for record in records] == [1, 2, 3]
    assert all(record["total_steps"] == 3 and record["loss"] > 0 for record in records)
    assert jobs.progress(records, job)["percentage"] == 100.0
    # The finished adapter and its intermediate checkpoint are offered as checkpoints to continue from.
    assert jobs.list_checkpoints(saves, "demo", "lora") == ["real", "real/checkpoint-3"]


@pytest.mark.slow
def test_a_real_job_whose_loss_overflows_ends_failed_with_the_health_cause(saves):
    """Full fine-tuning at learning rate 1e30: the first update makes every weight huge and step 2's gradients are
    NaN. The job stops itself with the last good step saved, and the board's record names the cause."""
    from webui.args import FORM_DEFAULTS, build_args

    form = {
        **FORM_DEFAULTS,
        "dataset": ["demo_sft"],
        "run_name": "overflow",
        "logging_steps": 1,
        "cutoff_len": 64,
        "extra_args": '{"max_steps": 6, "finetuning_type": "full", "learning_rate": 1e30}',
    }
    args = build_args(form, saves)
    runner = Runner(saves_root=saves)
    run_dir = Path(args["output_dir"])
    runner.start(args, run_dir)
    job = runner.wait(run_dir, timeout=300)
    log = (run_dir / "job.log").read_text()
    assert job["state"] == "failed", log[-3000:]
    assert "training stopped: the gradients of step 2 are NaN or Inf" in job["error"]
    assert "saved checkpoint-1, the last good step" in job["error"]
    assert "alert nan at step 1:" in log
    assert (run_dir / "checkpoint-1" / "trainer_state.json").is_file() and not (run_dir / "checkpoint-2").exists()
    alerts = [r for r in jobs.TrainerLogReader(run_dir / "trainer_log.jsonl").poll() if "alert" in r]
    assert [a["alert"] for a in alerts] == ["nan"]


def test_the_engine_never_imports_the_training_stack(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from webui import args, config, jobs, models, plots
        from webui.runner import Runner
        form = {{**args.FORM_DEFAULTS, "dataset": ["demo_sft"], "run_name": "x"}}
        built = args.build_args(form, {str(tmp_path)!r})
        args.validate(built)
        args.args_to_form(args.load_yaml(args.dump_yaml(built)))
        runner = Runner(saves_root={str(tmp_path)!r}, job_command=[sys.executable, {str(FAKE_JOB)!r}, "--steps", "2"])
        runner.start(built, built["output_dir"])
        job = runner.wait(built["output_dir"], timeout=60)
        assert job["state"] == "finished", job
        reader = jobs.TrainerLogReader(job["path"] + "/trainer_log.jsonl")
        reader.poll()
        for make in (plots.loss_figure, plots.lr_figure, plots.reward_figure):
            make(reader.records).to_json()
        jobs.list_runs({str(tmp_path)!r})
        stack = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
        print(sorted(name for name in sys.modules if name.split(".")[0] in stack))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"

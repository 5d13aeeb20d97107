"""Several processes on CPU with gloo, through the real `llamafactory-cli train` and torchrun (core/launcher.py).

Two ranks with half the per-device batch see the same global batch as one process, so the loss curve must be the
same. Tolerance (relative 1e-4, absolute 1e-5): the only differences are float32 summation order (two half-batch
gradients all-reduced instead of one batch summed, each half padded to its own longest row) and one thread per rank
instead of two. Measured over 3 steps: under 2e-6 relative on loss and grad norm, under 1e-6 absolute on the DPO
rewards, so the tolerance leaves a 50x margin. A real bug -- a different global batch, ranks reading the same rows,
gradients summed instead of averaged, a rank not training -- moves the loss by 1e-3 or more by step 2, and every
test checks that its curve spans more than 100x the tolerance, so the comparison can fail.

A single trainer_log.jsonl record per step shows that only rank 0 writes it.

The sft run under torchrun is also the abort test (a launch costs two imports of the training stack, and CI has two
cores): with a constant learning rate its first steps equal the short reference run's, and once they are logged it
gets what the board's Abort sends first, SIGTERM to the job's process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from core.train.callbacks import read_log_records

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="torchrun with gloo on CPU is exercised on POSIX"),
]

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3
RTOL = 1e-4
ATOL = 1e-5
LAUNCH_VARS = (
    "NNODES",
    "NODE_RANK",
    "NPROC_PER_NODE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "FORCE_TORCHRUN",
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "LLAMABOARD_LAUNCHED",
)
# Few rows so the data pass is short; a learning rate that makes each step count; a constant schedule so that a
# longer run's first steps are the short run's.
SHORT = {
    "max_steps": STEPS,
    "max_samples": 48,
    "logging_steps": 1,
    "per_device_train_batch_size": 8,
    "lr_scheduler_type": "constant",
}
OVERRIDES = {
    "sft": {"learning_rate": 2e-2},
    "dpo": {"learning_rate": 2e-2, "pref_beta": 1.0},
    # 2 prompts x 4 completions a step (1 prompt per rank), two passes so the first step's loss is not 0 by
    # construction (on-policy, the group-normalised advantages sum to 0), a dense rule so every group has signal.
    "grpo": {
        "learning_rate": 2e-2,
        "num_generations": 4,
        "grpo_epochs": 2,
        "reward_funcs": "uppercase",
        "reward_file": str(ROOT / "tests" / "data" / "grpo_rewards.py"),
        "trust_reward_file": True,
        "max_new_tokens": 4,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
    },
}
HALF_BATCH = {"per_device_train_batch_size": SHORT["per_device_train_batch_size"] // 2}


def job_env(**launch: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LAUNCH_VARS}
    env.update(launch)
    return env


def write_job(make_args, run_dir: Path, stage: str, **overrides) -> Path:
    args = make_args(stage, run_dir, **{**SHORT, **OVERRIDES[stage], **overrides})
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(args), encoding="utf-8")
    return path


def start_cli(job: Path, env: dict[str, str], log: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """`python -m core.cli train job.yaml` in a session of its own, as the board's runner starts a job."""
    log = log or job.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "train", str(job)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"timed out; log:\n{tail(log)}")
    assert code == 0, f"exit {code}; log:\n{tail(log)}"
    return log.read_text(errors="replace")


def curve(run_dir: Path, steps: int = STEPS) -> list[dict]:
    """The first `steps` records of the run's trainer_log.jsonl, after checking each step was written once."""
    records = [r for r in read_log_records(run_dir / "trainer_log.jsonl") if "loss" in r]
    seen = [r["current_steps"] for r in records]
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= steps, (
        f"one record per step expected (only rank 0 writes), got steps {seen}"
    )
    return records[:steps]


def assert_same_curve(one: list[dict], many: list[dict], keys: tuple[str, ...]) -> None:
    for key in keys:
        expected = [r[key] for r in one]
        got = [r[key] for r in many]
        # The absolute floor is for values that start at exactly 0 (DPO margins); they move by 1e-2.
        assert got == pytest.approx(expected, rel=RTOL, abs=ATOL), f"{key}: one process {expected}, ranks {got}"
    # Each step consumed the whole global batch (not one rank's half) and the epoch advanced alike.
    assert [r["total_tokens"] for r in many] == [r["total_tokens"] for r in one]
    assert [r["epoch"] for r in many] == [r["epoch"] for r in one]
    losses = [r["loss"] for r in one]
    assert max(losses) - min(losses) > 100 * RTOL * losses[0], f"the curve barely moves: {losses}"


_ONE_PROCESS: dict[str, list[dict]] = {}


def one_process_curve(make_args, tmp_path: Path, stage: str) -> list[dict]:
    """The reference run, in this process: the training stack is loaded here anyway, so it costs only the steps."""
    if stage not in _ONE_PROCESS:
        from core import run_exp

        run_dir = tmp_path / "one"
        run_exp(make_args(stage, run_dir, **{**SHORT, **OVERRIDES[stage]}))
        _ONE_PROCESS[stage] = curve(run_dir)
    return _ONE_PROCESS[stage]


def alive(processes: list[psutil.Process]) -> list[int]:
    return [p.pid for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_two_ranks_sft_follow_the_one_process_curve_and_stop_together_on_sigterm(make_args, tmp_path):
    run_dir = tmp_path / "ranks"
    job = write_job(make_args, run_dir, "sft", max_steps=500, **HALF_BATCH)
    proc, log = start_cli(job, job_env(FORCE_TORCHRUN="1", NPROC_PER_NODE="2"))
    try:
        deadline = time.monotonic() + 240
        while len(read_log_records(run_dir / "trainer_log.jsonl")) < STEPS:
            assert proc.poll() is None and time.monotonic() < deadline, f"exit {proc.poll()}; log:\n{tail(log)}"
            time.sleep(0.2)
        workers = psutil.Process(proc.pid).children(recursive=True)
        commands = [" ".join(w.cmdline()) for w in workers]
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    # The CLI became torchrun (same pid), which ran two workers.
    assert "torch.distributed.run" in text and "--nproc_per_node 2" in text
    assert len(workers) == 2 and all("-m core.cli train" in command for command in commands), commands
    assert_same_curve(one_process_curve(make_args, tmp_path, "sft"), curve(run_dir), ("loss", "grad_norm"))

    # Torchrun starts workers in sessions of their own; it forwards the signal, and nothing may outlive it.
    assert not alive(workers)
    assert text.count("Received SIGTERM: stopping after this step and saving.") == 2, tail(log)
    stopped = {int(step) for step in _stopped_steps(text)}
    assert len(stopped) == 1, f"the ranks stopped at different steps: {stopped}"
    checkpoint = run_dir / f"checkpoint-{stopped.pop()}"
    assert (checkpoint / "adapter_model.safetensors").is_file(), tail(log)
    assert (run_dir / "adapter_model.safetensors").is_file() and (run_dir / "all_results.json").is_file()


def _stopped_steps(text: str) -> list[str]:
    marker = "Stopped at step "
    return [line.split(marker, 1)[1].split()[0] for line in text.splitlines() if marker in line]


def test_two_ranks_dpo_give_the_one_process_curve(make_args, tmp_path):
    run_dir = tmp_path / "ranks"
    job = write_job(make_args, run_dir, "dpo", **HALF_BATCH)
    text = finish(*start_cli(job, job_env(FORCE_TORCHRUN="1", NPROC_PER_NODE="2")))
    assert "--nproc_per_node 2" in text
    # Not rewards/accuracies: a pair whose margin is within float noise of 0 may count either way.
    keys = ("loss", "grad_norm", "rewards/margins", "rewards/chosen")
    assert_same_curve(one_process_curve(make_args, tmp_path, "dpo"), curve(run_dir), keys)
    assert (run_dir / "adapter_model.safetensors").is_file() and (run_dir / "all_results.json").is_file()


def test_two_ranks_grpo_give_the_one_process_curve(make_args, tmp_path):
    """Each group is sampled with a seed of its own (seed, step, prompt row), so the ranks draw the completions the
    one process draws; rewards, loss and gradient norm then follow it within the same tolerance. Measured over 3
    steps: rewards and lengths identical, loss, grad norm and KL within 7.4e-7 relative (loss 0.101 -> -0.020)."""
    run_dir = tmp_path / "ranks"
    job = write_job(make_args, run_dir, "grpo", **HALF_BATCH)
    text = finish(*start_cli(job, job_env(FORCE_TORCHRUN="1", NPROC_PER_NODE="2")))
    assert "--nproc_per_node 2" in text
    keys = ("loss", "grad_norm", "reward", "kl", "completion_length")
    assert_same_curve(one_process_curve(make_args, tmp_path, "grpo"), curve(run_dir), keys)
    assert (run_dir / "adapter_model.safetensors").is_file() and (run_dir / "samples.jsonl").is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_on_localhost_finish_with_the_same_curve(make_args, tmp_path):
    run_dir = tmp_path / "nodes"
    job = write_job(make_args, run_dir, "sft", **HALF_BATCH)
    port = str(free_port())
    nodes = []
    for rank in (0, 1):
        env = job_env(NNODES="2", NODE_RANK=str(rank), NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        nodes.append(start_cli(job, env, tmp_path / f"node{rank}.log"))
    texts = [finish(proc, log) for proc, log in nodes]
    assert f"--nnodes 2 --node_rank 1 --master_addr 127.0.0.1 --master_port {port}" in texts[1]
    assert_same_curve(one_process_curve(make_args, tmp_path, "sft"), curve(run_dir), ("loss", "grad_norm"))
    # Both nodes share the folder here, as they would on shared storage: one log, one set of results.
    assert (run_dir / "adapter_model.safetensors").is_file() and (run_dir / "all_results.json").is_file()


def test_a_failing_worker_fails_the_job_with_its_error_in_the_log(make_args, tmp_path):
    # One worker is enough to see the exit status travel through torchrun. The model and the dataset exist, so the
    # CLI's checks before the launch pass; the worker meets a row without an answer and fails naming it.
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.csv").write_text('instruction,output\n"a"\n', encoding="utf-8")
    (data / "dataset_info.json").write_text('{"bad": {"file_name": "bad.csv"}}', encoding="utf-8")
    job = write_job(make_args, tmp_path / "fails", "sft", dataset="bad", dataset_dir=str(data))
    proc, log = start_cli(job, job_env(FORCE_TORCHRUN="1"))
    code = proc.wait(timeout=240)
    text = log.read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert "--nproc_per_node 1" in text
    # The worker's own error, not only torchrun's summary, and it is what the board shows as the failed job's cause.
    assert any(line.startswith("error: ") and "bad.csv, line 2" in line for line in text.splitlines()), text[-3000:]
    from webui.jobs import error_summary

    assert "bad.csv, line 2" in error_summary(text) and "ChildFailedError" not in error_summary(text)

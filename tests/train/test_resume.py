"""Stop and resume: the output_dir rule, SIGTERM (stop, save, exit 0), SIGKILL then a rerun that continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from core.train.callbacks import read_log_records
from core.train.trainer_utils import last_complete_checkpoint, prepare_output_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def _safetensors(values: int = 4) -> bytes:
    """A whole safetensors file of one float32 tensor: 8-byte header length, JSON header, data."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return len(header).to_bytes(8, "little") + header + b"\0" * (4 * values)


def _checkpoint(path: Path, complete: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(_safetensors())
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": int(path.name.split("-")[1])}))
    return path


def _args(output_dir: Path, **kw) -> SimpleNamespace:
    return SimpleNamespace(
        output_dir=str(output_dir), do_train=True, resume_from_checkpoint=None, overwrite_output_dir=False, **kw
    )


def test_resume_picks_the_newest_complete_checkpoint(tmp_path):
    _checkpoint(tmp_path / "checkpoint-5")
    _checkpoint(tmp_path / "checkpoint-10")
    _checkpoint(tmp_path / "checkpoint-15", complete=False)  # killed while saving
    half = _checkpoint(tmp_path / "checkpoint-20")
    (half / "trainer_state.json").write_text('{"global_st')  # killed while writing the state
    args = _args(tmp_path)
    prepare_output_dir(args)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-10")


def test_non_empty_output_dir_without_checkpoints_needs_overwrite(tmp_path):
    (tmp_path / "adapter_model.safetensors").write_bytes(b"old run")
    with pytest.raises(ValueError, match=r"output_dir: .* overwrite_output_dir: true"):
        prepare_output_dir(_args(tmp_path))
    prepare_output_dir(_args_overwrite(tmp_path))  # allowed


def test_a_repro_record_alone_does_not_make_output_dir_non_empty(tmp_path):
    (tmp_path / "repro.json").write_text("{}")  # a job that failed before training wrote only this
    (tmp_path / "job.yaml").write_text("stage: sft\n")
    prepare_output_dir(_args(tmp_path))  # no error: Start again in the same folder works


def _args_overwrite(output_dir: Path) -> SimpleNamespace:
    args = _args(output_dir)
    args.overwrite_output_dir = True
    return args


def test_run_exp_refuses_a_used_folder_before_writing_anything(make_args, tmp_path):
    from core import run_exp

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="set overwrite_output_dir: true"):
        run_exp(make_args("sft", output_dir=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_board_files_do_not_make_a_folder_non_empty(tmp_path):
    for name in ("job.yaml", "job.json", "job.log"):
        (tmp_path / name).write_text("x")
    args = _args(tmp_path)
    prepare_output_dir(args)
    assert args.resume_from_checkpoint is None


def test_a_cached_reference_pass_does_not_make_a_folder_non_empty(tmp_path):
    """A dpo / kto run with precompute_ref_log_probs that failed before its first checkpoint, started again: the
    cache is not "an old run" to refuse, it is read back (test_kto checks the reading)."""
    (tmp_path / "ref_logps-0123456789abcdef.safetensors").write_bytes(b"cache")
    prepare_output_dir(_args(tmp_path))
    (tmp_path / "ref_logps-notes.txt").write_text("mine")  # only the cache's own pattern is exempt
    with pytest.raises(ValueError, match=r"ref_logps-notes.txt"):
        prepare_output_dir(_args(tmp_path))


def test_overwrite_starts_over(tmp_path):
    _checkpoint(tmp_path / "checkpoint-5")
    (tmp_path / "trainer_log.jsonl").write_text('{"current_steps": 5}\n')
    args = _args_overwrite(tmp_path)
    prepare_output_dir(args)
    assert args.resume_from_checkpoint is None
    assert last_complete_checkpoint(tmp_path) is None and not (tmp_path / "trainer_log.jsonl").exists()


def test_explicit_resume_from_an_incomplete_checkpoint_is_refused(tmp_path):
    args = _args(tmp_path)
    args.resume_from_checkpoint = str(_checkpoint(tmp_path / "checkpoint-3", complete=False))
    with pytest.raises(ValueError, match="resume_from_checkpoint: .* not a complete checkpoint"):
        prepare_output_dir(args)


# -- real runs ---------------------------------------------------------------------------------------------------


def _start(job: dict, tmp_path: Path) -> subprocess.Popen:
    Path(job["output_dir"]).mkdir(parents=True, exist_ok=True)
    job_yaml = Path(job["output_dir"]) / "job.yaml"
    job_yaml.write_text(yaml.safe_dump(job))
    log = open(tmp_path / f"{Path(job['output_dir']).name}.log", "w")  # noqa: SIM115 - closed by the OS at exit
    return subprocess.Popen(
        [sys.executable, "-m", "core.train.tuner", str(job_yaml)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def _wait_for_step(log_path: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        records = read_log_records(log_path)
        if records and records[-1].get("current_steps", 0) >= step:
            return records[-1]["current_steps"]
        if proc.poll() is not None:
            raise AssertionError(f"the job exited with {proc.returncode} before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout}s")


def _steps(output_dir: Path) -> list[int]:
    return [r["current_steps"] for r in read_log_records(output_dir / "trainer_log.jsonl") if "loss" in r]


@pytest.mark.slow
def test_sigterm_stops_saves_and_exits_zero(make_args, tmp_path):
    job = make_args("sft", output_dir=tmp_path / "stopped", max_steps=2000, logging_steps=1)
    proc = _start(job, tmp_path)
    _wait_for_step(Path(job["output_dir"]) / "trainer_log.jsonl", 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (tmp_path / "stopped.log").read_text()[-3000:]

    output_dir = Path(job["output_dir"])
    stopped_at = _steps(output_dir)[-1]
    assert 3 <= stopped_at < 2000
    assert (output_dir / "adapter_model.safetensors").is_file()
    assert last_complete_checkpoint(output_dir) == output_dir / f"checkpoint-{stopped_at}"
    assert json.loads((output_dir / "train_results.json").read_text())["epoch"] > 0
    assert "stopping after this step" in (tmp_path / "stopped.log").read_text()


@pytest.mark.slow
def test_sigkill_then_rerun_continues_to_the_same_end(make_args, tmp_path):
    from core import run_exp

    total = 16
    common = dict(max_steps=total, logging_steps=1, save_strategy="steps", save_steps=4)
    job = make_args("sft", output_dir=tmp_path / "killed", **common)
    proc = _start(job, tmp_path)
    _wait_for_step(Path(job["output_dir"]) / "trainer_log.jsonl", 6, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    output_dir = Path(job["output_dir"])
    resumed_from = last_complete_checkpoint(output_dir)
    assert resumed_from is not None
    resumed_step = int(resumed_from.name.split("-")[1])
    assert resumed_step < total
    # A checkpoint cut off mid-save, newer than the last good one, must be skipped rather than loaded.
    broken = output_dir / f"checkpoint-{resumed_step + 1}"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"half")

    run_exp(job)
    steps = _steps(output_dir)
    assert steps == list(range(1, total + 1)), steps

    # The same run without interruption draws the same loss curve: resume restored weights, optimizer, data order.
    reference = make_args("sft", output_dir=tmp_path / "straight", **common)
    run_exp(reference)
    resumed = [r["loss"] for r in read_log_records(output_dir / "trainer_log.jsonl") if "loss" in r]
    straight = [
        r["loss"] for r in read_log_records(Path(reference["output_dir"]) / "trainer_log.jsonl") if "loss" in r
    ]
    assert resumed == pytest.approx(straight, rel=1e-3, abs=1e-3)

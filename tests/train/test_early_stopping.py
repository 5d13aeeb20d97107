"""Early stopping and keeping the best: a run whose eval loss rises stops within patience evaluations of its best,
says so in the job log, and its final adapter is the best checkpoint's weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from core.hparams import check_dict
from core.runfolder import JOB_LOG, JOB_YAML, KEEP_BEST, TRAINER_LOG, read_log_records

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_patience_needs_evaluation_and_early_stopping_steps_is_its_old_name(make_args):
    base = make_args("sft", output_dir="/tmp/unused")
    problems = check_dict({**base, "early_stopping_patience": 2})
    assert any(p.startswith("early_stopping_patience: received 2") and "eval_strategy: steps" in p for p in problems)
    assert any("write 1 or more" in p for p in check_dict({**base, "early_stopping_patience": 0}))
    evaluated = {**base, "val_size": 0.1, "eval_strategy": "steps", "eval_steps": 2}
    assert check_dict({**evaluated, "early_stopping_patience": 2}) == []
    assert check_dict({**evaluated, "early_stopping_steps": 2}) == []  # LLaMA-Factory's key, translated


def test_a_rising_eval_loss_stops_early_and_keeps_the_best_checkpoint(make_args, tmp_path):
    out = tmp_path / "run"
    patience = 2
    # A learning rate far too high: the eval loss falls for a few evaluations, then climbs.
    args = make_args(
        "sft",
        output_dir=out,
        learning_rate=20.0,
        max_steps=40,
        logging_steps=2,
        val_size=0.1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=1,
        load_best_model_at_end=True,
        early_stopping_patience=patience,
    )
    # Run as the board runs a job: the CLI in its own process, its output in job.log.
    out.mkdir()
    (out / JOB_YAML).write_text(yaml.safe_dump({**args, "output_dir": str(out)}), encoding="utf-8")
    with (out / JOB_LOG).open("w") as log:
        done = subprocess.run(
            [sys.executable, "-m", "core.cli", "train", str(out / JOB_YAML)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    said = (out / JOB_LOG).read_text(encoding="utf-8")
    assert done.returncode == 0, said[-3000:]

    evals = [(r["current_steps"], r["eval_loss"]) for r in read_log_records(out / TRAINER_LOG) if "eval_loss" in r]
    state = json.loads((out / "trainer_state.json").read_text())
    stopped = state["global_step"]
    during, final_eval = evals[:-1], evals[-1]  # the last is the workflow's evaluate after training
    best_step, best_loss = min(during, key=lambda item: item[1])
    after_best = [step for step, _ in during if step > best_step]
    assert stopped < 40, f"no early stop: {evals}"
    assert len(after_best) == patience, f"stopped {len(after_best)} evaluations after the best: {evals}"
    # The log says when and why it stopped, and which checkpoint is the best.
    assert f"Early stopping at step {stopped}: eval_loss has not improved for {patience} evaluations" in said
    assert f"best {best_loss:.4g} at step {best_step}" in said
    assert (
        f"Best checkpoint: checkpoint-{best_step} (eval_loss {best_loss:.4g}); the final model is its weights" in said
    )
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    # The live view's line under the progress bar (webui.handlers.stopline) reads the same from this log.
    from webui.handlers.stopline import parse_stop, stop_html

    line = stop_html("en", parse_stop(said))
    assert f"Stopped early at step {stopped}: eval_loss did not improve for {patience} evaluations" in line
    assert f"Best checkpoint: checkpoint-{best_step} (eval_loss {best_loss:.4g}); the final model is its" in line
    # save_total_limit 1 still keeps the best checkpoint, and the final adapter is its weights.
    best = load_file(out / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert best.keys() == final.keys() and all((best[k] == final[k]).all() for k in best)
    assert final_eval == (stopped, pytest.approx(best_loss))  # the evaluation after training is of the best weights


def test_stop_and_keep_best_ends_a_running_job_with_its_best_checkpoint(make_args, tmp_path):
    """What the board's "Stop and keep best" does: write the request file, then SIGTERM the job."""
    out = tmp_path / "run"
    args = make_args(
        "sft",
        output_dir=out,
        learning_rate=20.0,
        max_steps=400,
        logging_steps=2,
        val_size=0.1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
    )
    out.mkdir()
    (out / JOB_YAML).write_text(yaml.safe_dump({**args, "output_dir": str(out)}), encoding="utf-8")
    with (out / JOB_LOG).open("w") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "train", str(out / JOB_YAML)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 300
            while not any(r.get("current_steps", 0) >= 14 and "eval_loss" in r for r in read_log_records(out)):
                assert job.poll() is None and time.monotonic() < deadline, (out / JOB_LOG).read_text()[-3000:]
                time.sleep(0.5)
            (out / KEEP_BEST).write_text("", encoding="utf-8")
            job.send_signal(signal.SIGTERM)
            assert job.wait(timeout=180) == 0
        finally:
            if job.poll() is None:
                job.kill()
    said = (out / JOB_LOG).read_text(encoding="utf-8")
    state = json.loads((out / "trainer_state.json").read_text())
    stopped = state["global_step"]
    evals = {r["current_steps"]: r["eval_loss"] for r in read_log_records(out) if "eval_loss" in r}
    during = {step: loss for step, loss in evals.items() if step < stopped} | {stopped: evals.get(stopped)}
    best_step = min((step for step in during if during[step] is not None), key=during.get)
    assert stopped < 400 and state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    assert "Stop and keep best: the final model will be the best checkpoint." in said
    assert f"Best checkpoint: checkpoint-{best_step} (eval loss" in said
    from webui.handlers.stopline import parse_stop, stop_html

    line = stop_html("en", parse_stop(said))
    assert f"Stopped at step {stopped} by Stop and keep best." in line
    assert f"Best checkpoint: checkpoint-{best_step} (eval loss" in line and "the final model is its weights" in line
    best = load_file(out / f"checkpoint-{best_step}" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert all((best[k] == final[k]).all() for k in best)
    if best_step != stopped:
        last = load_file(out / f"checkpoint-{stopped}" / "adapter_model.safetensors")
        assert any((last[k] != final[k]).any() for k in final)

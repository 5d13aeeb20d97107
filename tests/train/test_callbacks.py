"""LogCallback (the trainer_log.jsonl contract) and GracefulStopCallback, driven with a TrainerState by hand."""

from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pytest
from transformers import TrainerControl, TrainerState

from core.train.callbacks import GracefulStopCallback, LogCallback, format_hms, read_log_records


def _state(step=0, max_steps=10, tokens=0, main=True) -> TrainerState:
    state = TrainerState(max_steps=max_steps, global_step=step, is_world_process_zero=main)
    state.num_input_tokens_seen = tokens
    state.epoch = step / max_steps
    return state


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_carry_progress_times_and_metrics(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path))
    callback = LogCallback()
    state = _state()
    callback.on_train_begin(args, state, TrainerControl())
    state.global_step, state.epoch, state.num_input_tokens_seen = 2, 0.2, 300
    logs = {
        "loss": 1.5,
        "learning_rate": 1e-3,
        "grad_norm": 0.5,
        "epoch": 0.2,
        "num_input_tokens_seen": 300,
        "accuracy": 0.75,
    }
    callback.on_log(args, state, TrainerControl(), logs=logs)
    callback.on_log(args, state, TrainerControl(), logs={"eval_loss": 1.2, "eval_accuracy": 0.8, "eval_runtime": 1.0})
    callback.on_log(
        args,
        state,
        TrainerControl(),
        logs={"rewards/accuracies": 0.9, "rewards/margins": 0.3, "eval_rewards/accuracies": 0.6, "kl": None},
    )
    callback.on_log(args, state, TrainerControl(), logs={"train_runtime": 3.0, "train_loss": 1.4})

    train, evaluation, preference = _lines(tmp_path / "trainer_log.jsonl")
    assert train["current_steps"] == 2 and train["total_steps"] == 10 and train["percentage"] == 20.0
    assert train["epoch"] == 0.2
    for key in ("elapsed_time", "remaining_time"):
        hours, minutes, seconds = train[key].split(":")
        assert int(hours) >= 0 and len(minutes) == len(seconds) == 2
    assert train["elapsed_s"] >= 0 and train["remaining_s"] >= 0
    assert (train["loss"], train["lr"], train["grad_norm"], train["accuracy"]) == (1.5, 1e-3, 0.5, 0.75)
    assert train["total_tokens"] == 300 and train["throughput"] > 0
    assert "learning_rate" not in train and "num_input_tokens_seen" not in train
    assert evaluation["eval_loss"] == 1.2 and evaluation["eval_accuracy"] == 0.8
    assert "throughput" not in evaluation and "eval_runtime" not in evaluation and "loss" not in evaluation
    assert preference["accuracy"] == 0.9 and preference["eval_accuracy"] == 0.6
    assert "kl" not in preference  # no value, no key


def test_only_the_main_process_writes(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path))
    callback = LogCallback()
    state = _state(main=False)
    callback.on_train_begin(args, state, TrainerControl())
    state.global_step = 2
    callback.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    assert not (tmp_path / "trainer_log.jsonl").exists()


def test_resume_keeps_records_up_to_the_checkpoint_and_continues_the_clock(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    old = [{"current_steps": s, "total_steps": 10, "loss": 3.0 - s / 10, "elapsed_s": 10.0 * s} for s in (2, 4, 6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in old) + '{"current_steps": 8, "lo')  # killed mid-write
    args = SimpleNamespace(output_dir=str(tmp_path))
    callback = LogCallback()
    state = _state(step=4)
    callback.on_train_begin(args, state, TrainerControl())
    assert [r["current_steps"] for r in _lines(path)] == [2, 4]
    state.global_step = 6
    callback.on_log(args, state, TrainerControl(), logs={"loss": 2.5})
    records = _lines(path)
    assert [r["current_steps"] for r in records] == [2, 4, 6]
    assert records[-1]["elapsed_s"] >= 40.0


def test_a_fresh_run_starts_a_fresh_log(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    path.write_text(json.dumps({"current_steps": 5, "loss": 9.9}) + "\n")
    LogCallback().on_train_begin(SimpleNamespace(output_dir=str(tmp_path)), _state(step=0), TrainerControl())
    assert path.read_text() == ""


def test_reader_tolerates_a_half_written_last_line(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    path.write_text('{"current_steps": 1}\n{"current_ste')
    assert read_log_records(path) == [{"current_steps": 1}]


def test_format_hms():
    assert format_hms(0) == "0:00:00"
    assert format_hms(3725.9) == "1:02:05"


def test_sigterm_stops_at_the_next_step_and_saves():
    previous = signal.getsignal(signal.SIGTERM)
    callback = GracefulStopCallback()
    args, state, control = SimpleNamespace(device="cpu"), _state(step=3), TrainerControl()
    callback.on_train_begin(args, state, control)
    try:
        callback.on_step_end(args, state, control)
        assert not control.should_training_stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert callback.stop_requested
        callback.on_step_end(args, state, control)
        assert control.should_training_stop and control.should_save
        assert callback.stopped_at_step == 3
    finally:
        callback.on_train_end(args, state, control)
    assert signal.getsignal(signal.SIGTERM) == previous


def test_a_second_sigint_interrupts_at_once():
    callback = GracefulStopCallback()
    callback.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert callback.stop_requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        callback.restore()


class _Batches:
    """A stand-in for the eval dataloader: only its length matters to the callback."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


def test_a_prediction_only_job_writes_progress_records_per_pass(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path), do_predict=True)
    callback = LogCallback(tmp_path)
    state = TrainerState(is_world_process_zero=True)  # no training: max_steps stays 0
    callback.on_init_end(args, state, TrainerControl())
    for _ in range(120):
        callback.on_prediction_step(args, state, TrainerControl(), eval_dataloader=_Batches(120))
    callback.on_predict(args, state, TrainerControl(), metrics={})

    records = _lines(tmp_path / "trainer_log.jsonl")
    # A bounded number of records however long the pass (about PREDICTION_RECORDS), the last batch always among them.
    assert 30 <= len(records) <= 60
    steps = [record["current_steps"] for record in records]
    assert steps == sorted(steps) and steps[-1] == 120
    last = records[-1]
    assert last["phase"] == "predict" and last["total_steps"] == 120 and last["percentage"] == 100.0
    assert last["remaining_s"] == 0 and last["remaining_time"] == "0:00:00" and last["elapsed_s"] >= 0
    assert all("loss" not in record and "epoch" not in record for record in records)
    middle = records[len(records) // 2]
    assert 0 < middle["percentage"] < 100 and middle["remaining_s"] >= 0

    # A second pass (loss-only evaluation) counts its own batches from 1.
    args.do_predict = False
    for _ in range(2):
        callback.on_prediction_step(args, state, TrainerControl(), eval_dataloader=_Batches(2))
    tail = _lines(tmp_path / "trainer_log.jsonl")[len(records) :]
    assert [(r["phase"], r["current_steps"], r["total_steps"]) for r in tail] == [("eval", 1, 2), ("eval", 2, 2)]


def test_a_training_run_with_evaluation_gets_no_prediction_records(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path), do_predict=False)
    callback = LogCallback()
    state = _state()
    callback.on_init_end(args, state, TrainerControl())
    callback.on_train_begin(args, state, TrainerControl())
    state.global_step = 5
    callback.on_log(args, state, TrainerControl(), logs={"loss": 2.0})
    for _ in range(3):  # the evaluation at step 5, then the workflow's final evaluate after training
        callback.on_prediction_step(args, state, TrainerControl(), eval_dataloader=_Batches(3))
    callback.on_log(args, state, TrainerControl(), logs={"eval_loss": 1.9})
    callback.on_evaluate(args, state, TrainerControl(), metrics={})

    records = _lines(tmp_path / "trainer_log.jsonl")
    assert [(r["current_steps"], r.get("loss"), r.get("eval_loss")) for r in records] == [
        (5, 2.0, None),
        (5, None, 1.9),
    ]
    assert not any("phase" in record for record in records)


def test_prediction_records_come_from_the_main_process_only(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path), do_predict=True)
    callback = LogCallback()
    callback.on_prediction_step(args, _state(main=False), TrainerControl(), eval_dataloader=_Batches(1))
    assert not (tmp_path / "trainer_log.jsonl").exists()


def test_a_real_training_run_with_evaluation_logs_training_steps_only(make_args):
    """The Train tab's charts read this file: evaluation batches during and after training must add no points."""
    from core import run_exp
    from webui import plots

    args = make_args(
        "sft", max_steps=4, logging_steps=1, max_samples=16, eval_dataset="demo_sft_eval", eval_strategy="steps"
    )
    args.update(eval_steps=2, do_eval=True, per_device_eval_batch_size=4)
    run_exp(args)
    records = read_log_records(f"{args['output_dir']}/trainer_log.jsonl")
    assert not any("phase" in record for record in records)
    assert [r["current_steps"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["current_steps"] for r in records if "eval_loss" in r] == [2, 4]
    assert all(r["total_steps"] == 4 for r in records)
    traces = {trace.name: list(trace.x) for trace in plots.loss_figure(records).data}
    assert traces["loss"] == [1, 2, 3, 4] and traces["eval_loss"] == [2, 4]

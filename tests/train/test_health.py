"""Health alerts on the demo model: each check provoked by a run made to fail it, and a healthy run that raises none.

Every alert must reach the two places a user looks: an `alert` record in trainer_log.jsonl and one plain
`alert <kind> at step N: ...` line in the job's log (stdout).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerCallback

from core.runfolder import TRAINER_LOG, read_log_records
from core.train.health import HealthCallback, TrainingHealthError


def _alerts(output_dir) -> list[dict]:
    return [r for r in read_log_records(Path(output_dir) / TRAINER_LOG) if "alert" in r]


def _kinds(output_dir) -> list[str]:
    return [r["alert"] for r in _alerts(output_dir)]


def _poison_rows(monkeypatch) -> None:
    """Mask every label of every processed sft row (the processor itself drops such rows)."""
    from core.data import loader

    original = loader.PROCESSORS["supervised"]

    def poisoned(examples, **kwargs):
        out = original(examples, **kwargs)
        out["labels"] = [[-100] * len(labels) for labels in out["labels"]]
        return out

    monkeypatch.setitem(loader.PROCESSORS, "supervised", poisoned)


class _PoisonStep(TrainerCallback):
    """A callback making the forward pass of training step `step` overflow (its embeddings times inf), as a batch
    that blows up in half precision would: the loss and every gradient of that step are NaN."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.current = 0

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def hook(module, inputs, output):
            return output * float("inf") if module.training and self.current == self.step else output

        model.get_input_embeddings().register_forward_hook(hook)

    def on_step_begin(self, args, state, control, **kwargs):
        self.current = state.global_step + 1


def test_a_healthy_run_raises_no_alert(make_args, capsys, webhook_server, monkeypatch):
    """sft with evaluation, as the demo preset trains: loss falls, no alert of any kind. The same run shows the
    job's own figures: metrics.jsonl samples, `mfu` in the log, peak memory and real tokens/s in the results, and
    the webhook's `finished` notification."""
    from core.notify import WEBHOOK_ENV
    from core.train.tuner import run_exp

    monkeypatch.setenv(WEBHOOK_ENV, webhook_server.url)
    args = make_args(
        "sft",
        val_size=0.1,
        eval_strategy="steps",
        eval_steps=3,
        save_strategy="steps",
        save_steps=6,
        max_steps=12,
        metrics_interval=0.2,
    )
    run_exp(args)
    output_dir = Path(args["output_dir"])
    records = read_log_records(output_dir / TRAINER_LOG)
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert len([r for r in records if "eval_loss" in r]) >= 4
    assert _alerts(output_dir) == []
    assert "alert " not in capsys.readouterr().out

    # Efficiency: MFU against the CPU's measured matmul speed, a few percent for 64-wide matrices, never above 100.
    mfus = [r["mfu"] for r in records if "loss" in r]
    assert len(mfus) == len(losses) and all(0 < m < 100 for m in mfus)
    # System metrics: samples through the run, on the training clock, in order.
    samples = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(samples) >= 2 and all(s["rss_mb"] > 100 for s in samples)
    timed = [s["elapsed_s"] for s in samples if "elapsed_s" in s]
    assert timed == sorted(timed) and samples[-1]["current_steps"] == 12
    results = json.loads((output_dir / "train_results.json").read_text())
    assert results["train_peak_rss_mb"] == max(s["rss_mb"] for s in samples)
    assert results["train_real_tokens_per_second"] > 0 and 0 < results["train_mfu"] < 100
    assert json.loads((output_dir / "all_results.json").read_text())["train_peak_rss_mb"] > 0
    [post] = webhook_server.posts
    assert post["event"] == "finished" and post["run"] == output_dir.name
    assert post["metrics"]["train_loss"] == results["train_loss"]


def test_divergence_is_an_alert(make_args, capsys):
    """Full fine-tuning warmed up to learning rate 3: the loss first falls, then explodes (measured ~7 -> 50+)."""
    from core.train.tuner import run_exp

    args = make_args("sft", finetuning_type="full", learning_rate=3.0, warmup_steps=16, max_steps=24)
    run_exp(args)
    alerts = _alerts(args["output_dir"])
    assert [a["alert"] for a in alerts] == ["divergence"]
    alert = alerts[0]
    assert "diverging" in alert["message"] and alert["level"] == "error"
    # The progress keys travel with it, so a reader taking the last record for the progress bar stays right.
    assert alert["total_steps"] == 24 and 0 < alert["current_steps"] <= 24
    assert f"alert divergence at step {alert['current_steps']}:" in capsys.readouterr().out


def test_a_poisoned_batch_stops_at_once_with_the_last_good_step_saved(make_args, monkeypatch, capsys, webhook_server):
    """Step 3's forward pass overflows. The run stops before that update, saves checkpoint-2 (the last good step)
    and fails with the cause."""
    from safetensors.torch import load_file

    from core.notify import WEBHOOK_ENV
    from core.train.trainer_utils import is_complete_checkpoint
    from core.train.tuner import run_exp

    monkeypatch.setenv(WEBHOOK_ENV, webhook_server.url)
    args = make_args("sft", max_steps=6, logging_steps=1)
    with pytest.raises(TrainingHealthError, match="step 3 are NaN or Inf.*saved checkpoint-2, the last good step"):
        run_exp(args, callbacks=[_PoisonStep(3)])
    output_dir = Path(args["output_dir"])
    assert is_complete_checkpoint(output_dir / "checkpoint-2")
    assert json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    weights = load_file(output_dir / "checkpoint-2" / "adapter_model.safetensors")
    assert all(bool(t.isfinite().all()) for t in weights.values())
    assert not (output_dir / "checkpoint-3").exists() and not (output_dir / "train_results.json").exists()
    assert _kinds(output_dir) == ["nan"]
    assert "alert nan at step 2:" in capsys.readouterr().out
    # The failed job's system metrics end with a last sample, taken as it stopped.
    assert len((output_dir / "metrics.jsonl").read_text().splitlines()) >= 2
    events = [(p["event"], p["kind"]) for p in webhook_server.posts]
    assert events == [("alert", "nan"), ("failed", None)]
    assert webhook_server.posts[1]["cause"].startswith("training stopped: the gradients of step 3 are NaN")
    # The stopped run hands SIGINT / SIGTERM back: a later Ctrl-C in this process interrupts as usual.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nan_opt_out_keeps_training(make_args):
    from core.train.tuner import run_exp

    args = make_args("sft", max_steps=3, logging_steps=1, health_stop_on_nan=False)
    run_exp(args, callbacks=[_PoisonStep(2)])
    assert _kinds(args["output_dir"]) == ["nan"]
    assert (Path(args["output_dir"]) / "train_results.json").is_file()


def test_rows_with_every_label_masked_are_an_alert(make_args, monkeypatch):
    """No row has a token to learn from: the alert comes before the first step (the steps then learn nothing)."""
    from core.train.tuner import run_exp

    _poison_rows(monkeypatch)
    # A cutoff_len no other test uses: the poisoned rows get a processed-data cache file of their own.
    args = make_args("sft", cutoff_len=63, overwrite_cache=True, max_steps=2, logging_steps=1)
    run_exp(args)
    alerts = _alerts(args["output_dir"])
    assert [a["alert"] for a in alerts] == ["masked_labels"]
    assert alerts[0]["current_steps"] == 0 and "every one of the training rows" in alerts[0]["message"]


def test_overfitting_is_an_alert(make_args):
    """16 training rows learned by heart with full fine-tuning, evaluated on prompts none of them holds."""
    from core.train.tuner import run_exp

    args = make_args(
        "sft",
        finetuning_type="full",
        max_samples=16,
        eval_dataset="demo_sft_eval",
        eval_strategy="steps",
        eval_steps=2,
        learning_rate=1e-2,
        max_steps=16,
        logging_steps=2,
    )
    run_exp(args)
    # Measured eval_loss: 4.30 3.96 3.75 3.88 4.03 4.08 ...: the third rise in a row is at step 12.
    assert "overfitting" in _kinds(args["output_dir"])


def test_learning_rate_zero_and_low_disk_are_alerts(make_args, monkeypatch):
    """A learning rate of 0 cannot learn; a disk with 64 KiB free cannot take checkpoint-2 (about 264 KiB: the
    adapter's weights and two Adam states)."""
    from core.train import health
    from core.train.tuner import run_exp

    real = health.shutil.disk_usage
    monkeypatch.setattr(health.shutil, "disk_usage", lambda path: real(path)._replace(free=64 * 1024))
    args = make_args("sft", learning_rate=0.0, max_steps=4, save_strategy="steps", save_steps=2)
    run_exp(args)
    alerts = _alerts(args["output_dir"])
    assert [a["alert"] for a in alerts] == ["lr_zero", "disk"]
    assert alerts[1]["current_steps"] == 2 and "64 KiB free" in alerts[1]["message"]


def test_ppo_reward_hacking_signs_are_alerts(make_args):
    """A KL bound of 0 is crossed at once; with 2 new tokens the random policy never stops: every answer is cut at
    the maximum length, which ppo's own diagnosis names (ppo_truncated, with the share it logs) instead of the
    generic response_length check."""
    from core.train.tuner import run_exp

    args = make_args(
        "ppo",
        reward_model="uppercase",
        reward_model_type="rule",
        max_new_tokens=2,
        max_steps=2,
        logging_steps=1,
        health_max_kl=-1.0,
        health_patience=1,
    )
    run_exp(args)
    kinds = _kinds(args["output_dir"])
    assert "kl" in kinds and "ppo_truncated" in kinds and "response_length" not in kinds


# --- the rules without a run: for signs a CPU run cannot make on demand ----------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.path = None

    def write_alert(self, state, kind, message, level="warning"):
        self.records.append({"alert": kind, "message": message})


def _state(step: int, max_steps: int = 100) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)


def _args(**kw) -> SimpleNamespace:
    base = {"learning_rate": 1e-3, "output_dir": ".", "get_warmup_steps": lambda steps: 10}
    return SimpleNamespace(**{**base, **kw})


def test_learning_rate_falling_to_zero_after_warmup():
    log = _Log()
    callback = HealthCallback(log, SimpleNamespace(stage="sft"))
    callback.on_log(_args(), _state(5), None, {"loss": 1.0, "learning_rate": 0.0})  # still warming up
    callback.on_log(_args(), _state(20), None, {"loss": 1.0, "learning_rate": 1e-4})
    assert log.records == []
    callback.on_log(_args(), _state(30), None, {"loss": 1.0, "learning_rate": 0.0})
    assert [r["alert"] for r in log.records] == ["lr_zero"]
    callback.on_log(_args(), _state(40), None, {"loss": 1.0, "learning_rate": 0.0})  # the same sign: said once
    assert len(log.records) == 1


def test_response_length_collapse_and_kl_need_patience():
    log = _Log()
    callback = HealthCallback(log, SimpleNamespace(stage="ppo", health_patience=3, health_max_kl=5.0))
    for step in (1, 2):
        callback.on_log(_args(), _state(step), None, {"loss": 0.1, "kl": 9.0, "response_length": 0.0})
    assert log.records == []
    callback.on_log(_args(), _state(3), None, {"loss": 0.1, "kl": 9.0, "response_length": 0.0})
    assert sorted(r["alert"] for r in log.records) == ["kl", "response_length"]
    assert "collapsed" in next(r["message"] for r in log.records if r["alert"] == "response_length")


def test_divergence_ignores_small_absolute_moves_and_negative_losses():
    log = _Log()
    callback = HealthCallback(log, SimpleNamespace(stage="sft", health_patience=1))
    for step, loss in enumerate([0.02, 0.01, 0.08, 0.09, 0.09], start=1):  # 9x the lowest, but only 0.08 above
        callback.on_log(_args(), _state(step), None, {"loss": loss})
    ppo = HealthCallback(log, SimpleNamespace(stage="ppo", health_patience=1))
    for step, loss in enumerate([-1.0, -0.5, 5.0, 9.0], start=1):
        ppo.on_log(_args(), _state(step), None, {"loss": loss})
    assert log.records == []

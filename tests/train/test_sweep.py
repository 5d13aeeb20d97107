"""Sweeps: `llamafactory-cli sweep job.yaml k=v1,v2 ...` runs one member per combination on the demo model and
ranks them by the chosen metric."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from core import sweep
from core.cli import main


def test_grid_parsing_names_the_problem():
    assert sweep.parse_grid(["learning_rate=1e-4,5e-4", "lora_rank=8,16"]) == {
        "learning_rate": ["1e-4", "5e-4"],  # YAML reads 1e-4 as text; the argument check makes it a number
        "lora_rank": [8, 16],
    }
    with pytest.raises(ValueError, match="'lora_rank' is not key=v1,v2"):
        sweep.parse_grid(["lora_rank"])
    with pytest.raises(ValueError, match="4 keys .* at most 3"):
        sweep.parse_grid(["a=1", "b=1", "c=1", "d=1"])


def test_a_2x2_sweep_runs_every_member_and_ranks_them_by_the_metric(make_args, tmp_path, capsys):
    saves = tmp_path / "saves"
    args = make_args("sft", output_dir=saves / "demo" / "lora" / "grid", max_steps=4, logging_steps=2)
    args |= {"val_size": 0.1, "eval_strategy": "steps", "eval_steps": 4}
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(args), encoding="utf-8")
    start = time.perf_counter()
    status = main(["sweep", str(job), "learning_rate=1e-2,1e-4", "lora_rank=4,8", "--metric", "eval_loss"])
    seconds = time.perf_counter() - start
    assert status == 0
    record = json.loads((saves / "demo" / "lora" / "grid" / sweep.SWEEP_JSON).read_text())
    names = sorted(member["run"].rsplit("/", 1)[-1] for member in record["members"])
    assert names == [
        "grid-learning_rate-1e-2-lora_rank-4",
        "grid-learning_rate-1e-2-lora_rank-8",
        "grid-learning_rate-1e-4-lora_rank-4",
        "grid-learning_rate-1e-4-lora_rank-8",
    ]
    ranked = sweep.summary(saves / "demo" / "lora" / "grid")
    losses = [row["eval_loss"] for row in ranked]
    assert all(row["state"] == "finished" for row in ranked) and None not in losses
    assert losses == sorted(losses) and len(set(losses)) == 4
    table = capsys.readouterr().out.splitlines()[-5:]
    assert table[0].split() == ["rank", "learning_rate", "lora_rank", "eval_loss", "state", "run"]
    assert [line.split()[-1] for line in table[1:]] == [row["name"] for row in ranked]
    # Each member trained with its own values; the Runs tab lists them as ordinary runs.
    member = yaml.safe_load((saves / "demo" / "lora" / "grid-learning_rate-1e-4-lora_rank-8" / "job.yaml").read_text())
    assert (member["learning_rate"], member["lora_rank"]) == ("1e-4", 8)
    print(f"2x2 sweep on the demo model: {seconds:.1f} s")
    by_reward = sweep.summary(saves / "demo" / "lora" / "grid", "train_loss")
    assert [row["train_loss"] for row in by_reward] == sorted(row["train_loss"] for row in by_reward)


@pytest.mark.parametrize("training", [False, True], ids=["between-members", "while-a-member-trains"])
def test_ctrl_c_stops_the_sweep_after_the_running_member(tmp_path, capsys, training):
    """Ctrl-C in `llamafactory-cli sweep`: while a member trains, its GracefulStopCallback takes SIGINT (the member
    stops at its next step and saves) and the sweep runs no further member; outside training it stops at once."""
    import signal

    from core.train.callbacks import GracefulStopCallback

    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"stage": "sft", "output_dir": str(tmp_path / "saves" / "m" / "lora" / "g")}))
    ran = []

    def run_job(argv, args):
        ran.append(args["output_dir"])
        callback = GracefulStopCallback()
        if training:
            callback.install()
        signal.raise_signal(signal.SIGINT)
        if training:
            assert callback.stop_requested  # the member itself stops gracefully
            callback.restore()
        return 0

    previous = signal.getsignal(signal.SIGINT)
    status = sweep.main([str(job), "learning_rate=1,2", "lora_rank=4,8"], run_job=run_job)
    assert status == 130 and len(ran) == 1
    assert signal.getsignal(signal.SIGINT) is previous
    record = json.loads((tmp_path / "saves" / "m" / "lora" / "g" / sweep.SWEEP_JSON).read_text())
    assert record["aborted"] is True
    out = capsys.readouterr().out
    assert "aborted (Ctrl-C)" in out
    states = [line.split()[-2] for line in out.splitlines()[-3:]]
    assert states == ["aborted"] * 3  # the three members never run

"""Evaluate & Predict tab handlers without a browser: the job.yaml an eval writes, the refusals, and a real eval job
on the demo model, started and found again by the tab's timer, finishing with BLEU / ROUGE shown and the
predictions readable a page at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from webui.board import Board, Infer
from webui.handlers.evaluate import read_metrics, read_predictions
from webui.handlers.events import ALERTS
from webui.manager import Manager


def _values(**changes: Any) -> dict[str, Any]:
    values = {
        "top.lang": "en",
        "top.model_name": "Demo (offline)",
        "top.model_path": "demo",
        "top.finetuning_type": "lora",
        "top.checkpoint_path": [],
        "top.quantization_bit": "none",
        "top.quantization_method": "bnb",
        "top.template": "chatml",
        "top.rope_scaling": "none",
        "top.booster": "auto",
        "train.compute_type": "fp32",
        "eval.dataset_dir": "demo",
        "eval.dataset": ["demo_sft_eval"],
        "eval.cutoff_len": 64,
        "eval.max_samples": 12,
        "eval.per_device_eval_batch_size": 12,
        "eval.predict_with_generate": True,
        "eval.max_new_tokens": 4,
        "eval.top_p": 0.7,
        "eval.temperature": 0.95,
        "eval.output_dir": "eval_test",
    }
    values.update({f"eval.{key}" if "." not in key else key: value for key, value in changes.items()})
    return values


@pytest.fixture(scope="module")
def infer(board_home: Path) -> Any:
    from webui.runner import Runner

    runner = Runner(saves_root=board_home / "saves", grace_s=5.0)
    yield Infer(Board(runner, Manager(), saves_root=board_home / "saves"))
    for run_dir in runner.active():
        runner.abort(run_dir)
        runner.wait(run_dir, timeout=10)


def test_eval_arguments_are_the_cli_eval_keys(infer: Any, board_home: Path) -> None:
    args, alerts = infer.eval_args(_values())
    assert not alerts
    assert args["do_predict"] is True and args["predict_with_generate"] is True and args["do_train"] is False
    assert args["stage"] == "sft" and args["eval_dataset"] == "demo_sft_eval" and "dataset" not in args
    assert args["model_name_or_path"] == "demo" and args["max_new_tokens"] == 4
    assert Path(args["output_dir"]) == board_home / "saves" / "demo" / "lora" / "eval_test"
    loss_only, _ = infer.eval_args(_values(predict_with_generate=False))
    assert loss_only["do_eval"] is True and "do_predict" not in loss_only and "max_new_tokens" not in loss_only


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": []}, "Pick at least one dataset"),
        ({"output_dir": "a/b"}, "is not a run name"),
        ({"dataset": ["demo_pref"]}, "demo_pref is not an sft dataset"),
    ],
)
def test_eval_start_refuses_with_a_reason(infer: Any, changes: dict, message: str) -> None:
    updates = infer.eval_start(_values(**changes))
    assert message in updates[ALERTS][0][1]
    assert "eval.view_run" not in updates


def test_eval_job_on_the_demo_model_shows_metrics_and_pages_of_predictions(infer: Any, board_home: Path) -> None:
    started = infer.eval_start(_values(per_device_eval_batch_size=4))  # 12 samples: 3 batches, 3 progress steps
    assert "Job started" in started[ALERTS][0][1]
    run_dir = Path(started["eval.view_run"])
    assert started["eval.output_dir"] != "eval_test"  # the next Start gets a folder of its own

    # A reloaded page (no run shown yet) finds the running eval job by itself.
    found = infer.eval_poll({"top.lang": "en", "eval.view_run": None, "eval.poll_state": {}})
    assert found["eval.view_run"] == str(run_dir)
    assert 'data-state="running"' in found["eval.progress"]

    job = infer.board.runner.wait(run_dir, timeout=240)
    assert job["state"] == "finished", (run_dir / "job.log").read_text()[-3000:]
    assert yaml.safe_load((run_dir / "job.yaml").read_text())["do_predict"] is True

    done = infer.eval_poll({"top.lang": "en", "eval.view_run": str(run_dir), "eval.poll_state": {}})
    assert 'data-state="finished"' in done["eval.progress"]
    # The job logged its prediction batches, and the bar counts them.
    logged = [json.loads(line) for line in (run_dir / "trainer_log.jsonl").read_text().splitlines()]
    # Data preparation's own progress records (rows, not steps) may come first in a job that never trains.
    assert {r["phase"] for r in logged} <= {"prepare", "predict"}
    logged = [r for r in logged if r["phase"] == "predict"]
    assert [(r["phase"], r["current_steps"], r["total_steps"]) for r in logged] == [
        ("predict", n, 3) for n in (1, 2, 3)
    ]
    assert "step 3 / 3" in done["eval.progress"] and 'data-current="3"' in done["eval.progress"]
    assert "predict step 2/3" in (run_dir / "job.log").read_text()
    metrics = dict(done["eval.metrics"]["value"].itertuples(index=False))
    results = json.loads((run_dir / "predict_results.json").read_text())
    for key in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime"):
        assert metrics[key] == pytest.approx(results[key], abs=1e-4)
    assert list(metrics)[:4] == ["predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l"]

    lines = [json.loads(line) for line in (run_dir / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    first = done["eval.predictions"]
    assert list(first.columns) == ["Prompt", "Label", "Prediction"]
    assert first["Label"].tolist() == [line["label"] for line in lines[:10]]
    assert "1-10 of 12" in done["eval.pred_info"]

    page = {"top.lang": "en", "eval.view_run": str(run_dir), "eval.pred_page": 0}
    second = infer.pred_next(page)
    assert second["eval.predictions"]["Prediction"].tolist() == [line["predict"] for line in lines[10:]]
    assert "11-12 of 12" in second["eval.pred_info"] and second["eval.pred_next"]["interactive"] is False
    back = infer.pred_prev({**page, "eval.pred_page": 1})
    assert back["eval.pred_page"] == 0 and back["eval.pred_prev"]["interactive"] is False

    # Nothing changed since: the next tick sends nothing.
    assert infer.eval_poll({**page, "eval.poll_state": done["eval.poll_state"]}) == {}


def test_predictions_are_read_a_page_at_a_time_and_tolerate_a_half_written_line(tmp_path: Path) -> None:
    rows = [json.dumps({"prompt": f"p{i}", "label": f"l{i}", "predict": f"x{i}"}) for i in range(25)]
    (tmp_path / "generated_predictions.jsonl").write_text("\n".join(rows) + '\n{"prompt": "half')
    page, total = read_predictions(tmp_path, 2)
    assert total == 26
    assert [row["prompt"] for row in page] == ["p20", "p21", "p22", "p23", "p24", '{"prompt": "half']
    assert read_predictions(tmp_path / "missing", 0) == ([], 0)
    (tmp_path / "all_results.json").write_text(json.dumps({"epoch": 1.0, "predict_rouge-l": 12.345678, "note": "x"}))
    assert read_metrics(tmp_path) == [("predict_rouge-l", 12.3457), ("epoch", 1.0)]


def test_a_reloaded_board_shows_the_last_finished_eval_of_the_model_again(infer: Any, board_home: Path) -> None:
    from webui.runner import Runner

    saves = board_home / "saves"
    evals = [run for run in (saves / "demo" / "lora").iterdir() if (run / "generated_predictions.jsonl").exists()]
    if not evals:  # run alone: the module's real eval job has not run yet
        test_eval_job_on_the_demo_model_shows_metrics_and_pages_of_predictions(infer, board_home)
        evals = [run for run in (saves / "demo" / "lora").iterdir() if (run / "generated_predictions.jsonl").exists()]
    real = evals[0]
    created = json.loads((real / "job.json").read_text())["created"]
    # Beside it: an older finished eval and a newer finished training run of the same model, neither to be shown.
    for name, job_args, age in (("old_eval", {"do_train": False, "do_predict": True}, -60), ("train_1", {}, 60)):
        folder = saves / "demo" / "lora" / name
        folder.mkdir()
        (folder / "job.yaml").write_text(yaml.safe_dump({"stage": "sft", **job_args}))
        (folder / "job.json").write_text(json.dumps({"state": "finished", "created": created + age, "pid": None}))

    fresh = Infer(Board(Runner(saves_root=saves, grace_s=5.0), Manager(), saves_root=saves))
    page = _values(output_dir="")
    first = fresh.eval_poll({**page, "eval.view_run": None, "eval.poll_state": {}})
    assert first["eval.view_run"] == str(real.resolve())
    assert 'data-state="finished"' in first["eval.progress"]
    metrics = dict(first["eval.metrics"]["value"].itertuples(index=False))
    assert metrics["predict_bleu-4"] == pytest.approx(
        json.loads((real / "all_results.json").read_text())["predict_bleu-4"]
    )
    lines = [json.loads(line) for line in (real / "generated_predictions.jsonl").read_text().splitlines()]
    assert first["eval.predictions"]["Prediction"].tolist() == [line["predict"] for line in lines[:10]]

    # Another model has no eval: nothing is shown, and its folder is looked at once, not on every tick.
    other = {**page, "top.finetuning_type": "freeze", "eval.view_run": None, "eval.poll_state": {}}
    none = fresh.eval_poll(other)
    assert "eval.view_run" not in none and none["eval.poll_state"] == {"scanned": "demo/freeze"}
    assert fresh.eval_poll({**other, "eval.poll_state": none["eval.poll_state"]}) == {}

"""Data preparation is never silent, reuses its cache without reading the data, and streams: progress lines and
`phase: prepare` records, the reuse message, the batch-at-a-time bound, and the tokenizer's backend call."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from datahelp import data_args, training_args, write_dataset_dir

import core.data.loader as loader
from core.data.loader import get_dataset
from core.data.progress import PrepareProgress
from core.data.template import get_template_and_fix_tokenizer
from core.data.templates import encode_texts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_progress_lines_and_records_every_interval(tmp_path, caplog):
    clock, log_file = Clock(), tmp_path / "trainer_log.jsonl"
    with caplog.at_level(logging.INFO, logger="core.data.progress"):
        progress = PrepareProgress("train set", 10_000, log_file, interval=3.0, clock=clock)
        clock.now += 1.0
        progress.update(1_000)  # within the interval: nothing new
        clock.now += 2.0
        progress.update(2_000)  # 3,000 rows in 3 s
        progress.finish(2_900)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "Preparing the train set (10,000 rows) ..."
    assert lines[1] == "Preparing the train set: 3,000/10,000 rows (30%), 1,000 rows/s, 0:00:07 left"
    assert lines[2] == "Prepared the train set: 3,000 rows -> 2,900 samples in 0:00:03 (1,000 rows/s)."
    start, middle, end = records(log_file)
    assert all(r["phase"] == "prepare" for r in (start, middle, end))
    assert (start["rows_done"], start["rows_total"]) == (0, 10_000)
    assert (middle["rows_done"], middle["percentage"], middle["remaining_s"]) == (3_000, 30.0, 7.0)
    assert middle["rows_per_s"] == 1000.0 and middle["remaining_time"] == "0:00:07"
    assert (end["rows_done"], end["rows_total"], end["percentage"]) == (3_000, 3_000, 100.0)


def test_training_charts_ignore_prepare_records():
    from webui.plots import loss_figure, lr_figure

    prepare = [{"phase": "prepare", "rows_done": n, "rows_total": 900, "percentage": n / 9} for n in (0, 450)]
    training = [{"current_steps": s, "total_steps": 4, "loss": 2.0 / s, "lr": 1e-3} for s in (1, 2, 3, 4)]
    assert loss_figure(prepare + training, smoothing=0) == loss_figure(training, smoothing=0)
    assert lr_figure(prepare + training) == lr_figure(training)


@pytest.fixture
def ddir(tmp_path):
    rows = [{"instruction": f"question {i}", "output": f"answer {i}"} for i in range(25)]
    return str(write_dataset_dir(tmp_path / "data", {"rows": {"file_name": "rows.jsonl"}}, {"rows.jsonl": rows}))


def prepare(tokenizer, ddir, run_dir, **args):
    args = data_args(dataset="rows", dataset_dir=ddir, **args)
    template = get_template_and_fix_tokenizer(tokenizer, args)
    train = training_args(output_dir=str(run_dir), process_index=0)
    return get_dataset(template, None, args, train, "sft", tokenizer)["train_dataset"]


def test_a_run_reports_progress_and_a_second_run_reuses_without_reading(
    tokenizer, ddir, tmp_path, monkeypatch, caplog
):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="core.data"):
        first = prepare(tokenizer, ddir, run)
    assert "Preparing the train set (25 rows) ..." in caplog.text
    assert "Prepared the train set: 25 rows -> 25 samples" in caplog.text
    written = records(run / "trainer_log.jsonl")
    assert {r["phase"] for r in written} == {"prepare"} and written[-1]["rows_done"] == 25
    assert all("current_steps" not in r for r in written)  # no training step yet for whoever waits for one

    def no_reading(attr):
        raise AssertionError(f"read the rows of {attr.name} again")

    monkeypatch.setattr(loader, "_raw_rows", no_reading)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="core.data"):
        second = prepare(tokenizer, ddir, tmp_path / "run2")
    assert "Reused the prepared train set (25 samples)" in caplog.text
    assert second["input_ids"] == first["input_ids"] and second["labels"] == first["labels"]


def test_a_changed_file_is_prepared_again(tokenizer, ddir, tmp_path):
    first = prepare(tokenizer, ddir, tmp_path / "run")
    path = tmp_path / "data" / "rows.jsonl"
    path.write_text(path.read_text().replace("answer 0", "answer zero"))
    second = prepare(tokenizer, ddir, tmp_path / "run")
    assert second["labels"][0] != first["labels"][0] and second["labels"][1:] == first["labels"][1:]


def test_rows_stream_a_batch_at_a_time(tokenizer, ddir, tmp_path, monkeypatch):
    converted, ahead = [], []
    real_convert, real_process = loader.convert_row, loader.PROCESSORS["supervised"]

    def counting_convert(*args, **kwargs):
        converted.append(1)
        return real_convert(*args, **kwargs)

    def watching_process(examples, **kwargs):
        ahead.append(len(converted) - 4 * len(ahead))  # rows read but not yet handed to the processor before
        return real_process(examples, **kwargs)

    monkeypatch.setattr(loader, "convert_row", counting_convert)
    monkeypatch.setitem(loader.PROCESSORS, "supervised", watching_process)
    out = prepare(tokenizer, ddir, tmp_path / "run", preprocessing_batch_size=4)
    assert len(out) == 25 and len(ahead) == 7
    assert max(ahead) <= 4  # never more than one batch of rows held


def test_backend_call_gives_the_tokenizers_own_ids(tokenizer):
    texts = ["<|im_start|>user\nHello there!<|im_end|>\n", " The capital of France is Paris.", "12 and 30\n\n"]
    assert encode_texts(tokenizer, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokenizer.split_special_tokens = True  # the tokenizer's own setting is honoured
    assert encode_texts(tokenizer, texts[:1]) == tokenizer(texts[:1], add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") not in encode_texts(tokenizer, texts[:1])[0]


def test_an_interrupted_preparation_leaves_no_cache_file(tokenizer, ddir, tmp_path, monkeypatch):
    real, calls = loader.PROCESSORS["supervised"], []

    def failing_later(examples, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(examples, **kwargs)

    monkeypatch.setitem(loader.PROCESSORS, "supervised", failing_later)
    with pytest.raises(RuntimeError):
        prepare(tokenizer, ddir, tmp_path / "run", preprocessing_batch_size=4)
    assert list((tmp_path / "cache" / "preprocessed").iterdir()) == []


def test_log_callback_drops_prepare_records_and_a_folder_with_only_them_is_not_in_use(tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainerControl, TrainerState

    from core.train.callbacks import LogCallback, read_log_records
    from core.train.trainer_utils import prepare_output_dir

    path = tmp_path / "trainer_log.jsonl"
    path.write_text(json.dumps({"phase": "prepare", "rows_done": 3, "rows_total": 9}) + "\n")
    prepare_output_dir(SimpleNamespace(do_train=True, output_dir=str(tmp_path), resume_from_checkpoint=None))
    old = [{"current_steps": s, "loss": 1.0} for s in (1, 2)] + [{"phase": "prepare", "rows_done": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    state = TrainerState(max_steps=4, global_step=2, is_world_process_zero=True)
    LogCallback().on_train_begin(SimpleNamespace(output_dir=str(tmp_path)), state, TrainerControl())
    assert read_log_records(path) == old[:2]


def test_held_rows_report_their_reading_too(tokenizer, ddir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="core.data"):
        out = prepare(tokenizer, ddir, tmp_path / "run", val_size=5)
    assert len(out) == 20
    assert (
        "Reading the dataset 'rows' (25 rows) ..." in caplog.text and "Read the dataset 'rows': 25 rows" in caplog.text
    )
    assert "Prepared the train set: 20 rows -> 20 samples" in caplog.text
    assert "Prepared the eval set: 5 rows -> 5 samples" in caplog.text

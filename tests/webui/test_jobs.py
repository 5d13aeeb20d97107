"""Reading run folders: incremental readers, job state from files, run and checkpoint lists, progress."""

from __future__ import annotations

import json
import os
import time

import pytest

from webui import jobs


def record(step: int, total: int = 100, **extra) -> dict:
    return {
        "current_steps": step,
        "total_steps": total,
        "percentage": 100.0 * step / total,
        "loss": 1.0 / step,
        **extra,
    }


def line(step: int, **extra) -> str:
    return json.dumps(record(step, **extra)) + "\n"


# --- TrainerLogReader ---


def test_reader_returns_only_new_records_and_waits_for_a_half_written_line(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    reader = jobs.TrainerLogReader(path)
    assert reader.poll() == []  # no file yet
    path.write_text(line(1) + line(2))
    assert [r["current_steps"] for r in reader.poll()] == [1, 2]
    assert reader.poll() == []
    half = line(3)
    with path.open("a") as handle:
        handle.write(half[:10])
    assert reader.poll() == []  # a writer mid-line: nothing yet, no crash
    with path.open("a") as handle:
        handle.write(half[10:] + line(4))
    assert [r["current_steps"] for r in reader.poll()] == [3, 4]
    assert [r["current_steps"] for r in reader.records] == [1, 2, 3, 4]


def test_reader_skips_a_corrupt_line_and_keeps_going(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    path.write_text(line(1) + "{not json\n" + "[1, 2]\n" + line(2))
    assert [r["current_steps"] for r in jobs.TrainerLogReader(path).poll()] == [1, 2]


def test_reader_starts_over_when_the_file_is_replaced_by_a_shorter_one(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    path.write_text(line(1) + line(2) + line(3))
    reader = jobs.TrainerLogReader(path)
    reader.poll()
    path.write_text(line(1))
    assert [r["current_steps"] for r in reader.poll()] == [1]
    assert len(reader.records) == 1


@pytest.mark.parametrize("already", [10, 100_000])
def test_a_poll_reads_only_the_appended_bytes_whatever_the_file_size(tmp_path, already):
    path = tmp_path / "trainer_log.jsonl"
    total = already + 1
    rows = (f'{{"current_steps": {step}, "total_steps": {total}, "loss": 0.5}}\n' for step in range(1, total))
    path.write_text("".join(rows))
    log_path = tmp_path / "job.log"
    log_path.write_text(("x" * 79 + "\n") * already)
    reader, tail = jobs.TrainerLogReader(path), jobs.LogTail(log_path, max_chars=2000)
    assert len(reader.poll()) == already
    tail.poll()
    assert tail.bytes_read <= 4 * 2000  # even the first poll of a big log reads only its end
    before_reader, before_tail = reader.bytes_read, tail.bytes_read
    new_line, new_log = line(already + 1, total=already + 1), "step done\n"
    with path.open("a") as handle:
        handle.write(new_line)
    with log_path.open("a") as handle:
        handle.write(new_log)
    assert [r["current_steps"] for r in reader.poll()] == [already + 1]
    assert tail.poll().endswith("step done\n")
    assert reader.bytes_read - before_reader == len(new_line)
    assert tail.bytes_read - before_tail == len(new_log)


# --- LogTail ---


def test_log_tail_keeps_the_last_characters_and_joins_split_utf8(tmp_path):
    path = tmp_path / "job.log"
    tail = jobs.LogTail(path, max_chars=10)
    assert tail.poll() == ""
    text = "损失下降\n"
    data = text.encode()
    path.write_bytes(data[:4])  # cut inside the second character
    first = tail.poll()
    path.write_bytes(data)
    assert first + tail.poll()[len(first) :] == tail.text
    assert tail.text == text
    with path.open("a") as handle:
        handle.write("0123456789abc")
    assert tail.poll() == "3456789abc"


def test_log_tail_shows_the_latest_state_of_a_carriage_return_progress_bar(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("loading\n 10%|#\r 50%|#####\r100%|##########\ntraining\n")
    assert jobs.LogTail(path).poll() == "loading\n100%|##########\ntraining\n"


# --- error summary ---


def test_error_summary_is_the_last_exception_line_of_the_last_traceback():
    log = (
        "step 1\nTraceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "b.py", line 2, in <module>\n    run()\n    ^^^^^\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    )
    assert jobs.error_summary(log) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_error_summary_without_traceback_names_the_problem():
    problems = "[INFO] start\n2 problems with the arguments:\n  - lora_rnak: unknown key\n  - dataset: missing\n\n"
    assert jobs.error_summary(problems) == "2 problems with the arguments: lora_rnak: unknown key"
    assert jobs.error_summary("step 1\nRuntimeError in worker 3\nexiting\n") == "RuntimeError in worker 3"
    assert jobs.error_summary("all good\n") == ""


# --- read_job ---


def write_job(run_dir, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {"id": "abc", "state": "running", "pid": 2**22 + 11, "pgid": 2**22 + 11, "argv": ["x"], **fields}
    jobs.write_job_json(run_dir, job)
    return job


def test_read_job_reports_a_running_job_whose_process_is_gone_from_its_files(tmp_path):
    run = tmp_path / "run"
    write_job(run, stage="dpo", created=time.time())
    (run / "job.log").write_text("Traceback (most recent call last):\n  x\nValueError: bad template\n")
    (run / "trainer_log.jsonl").write_text(line(4, total=10) + '{"current_st')
    job = jobs.read_job(run)
    assert job["state"] == "failed" and job["error"] == "ValueError: bad template" and job["stale"]
    assert (job["name"], job["stage"], job["steps"], job["total_steps"]) == ("run", "dpo", 4, 10)

    (run / "train_results.json").write_text("{}")
    assert jobs.read_job(run)["state"] == "finished"
    write_job(run, abort_requested=True)
    assert jobs.read_job(run)["state"] == "aborted"


def test_a_job_about_to_start_stays_queued_but_not_forever(tmp_path):
    run = tmp_path / "run"
    write_job(run, state="queued", pid=None, created=time.time())
    assert jobs.read_job(run)["state"] == "queued"
    write_job(run, state="queued", pid=None, created=time.time() - 3600)
    assert jobs.read_job(run)["state"] == "failed"


def test_read_job_of_a_live_process_says_running(tmp_path):
    import psutil

    run = tmp_path / "run"
    me = psutil.Process(os.getpid())
    write_job(run, pid=me.pid, pid_create_time=me.create_time())
    assert jobs.read_job(run)["state"] == "running"
    write_job(run, pid=me.pid, pid_create_time=me.create_time() - 1000)  # the pid was reused by another program
    assert jobs.read_job(run)["state"] == "failed"


def test_read_job_reads_a_llamafactory_run_folder(tmp_path):
    run = tmp_path / "saves" / "Qwen3-8B" / "lora" / "train_2025"
    run.mkdir(parents=True)
    (run / "training_args.yaml").write_text("stage: dpo\nmodel_name_or_path: Qwen/Qwen3-8B\n")
    (run / "running_log.txt").write_text("[INFO] step 5\n")
    (run / "trainer_log.jsonl").write_text(line(5, total=5))
    (run / "all_results.json").write_text("{}")
    job = jobs.read_job(run)
    assert job["format"] == "llamafactory" and job["state"] == "finished"
    assert job["stage"] == "dpo" and job["steps"] == 5
    assert job["log_path"].endswith("running_log.txt")


def test_read_job_of_a_folder_without_a_run_is_none(tmp_path):
    assert jobs.read_job(tmp_path) is None
    assert jobs.read_job(tmp_path / "missing") is None


def test_corrupt_job_json_is_not_fatal(tmp_path):
    (tmp_path / "job.json").write_text('{"state": "runn')
    assert jobs.read_job(tmp_path) is None


# --- lists ---


def test_list_runs_is_newest_first_and_filters_by_model_and_method(tmp_path):
    saves = tmp_path / "saves"
    now = time.time()
    write_job(saves / "demo" / "lora" / "old", state="finished", created=now - 100, stage="sft")
    write_job(saves / "demo" / "lora" / "new", state="failed", created=now, stage="dpo", error="boom")
    write_job(saves / "Qwen3-8B" / "full" / "other", state="finished", created=now - 50)
    (saves / "demo" / "lora" / "not-a-run").mkdir()
    runs = jobs.list_runs(saves)
    assert [run["name"] for run in runs] == ["demo/lora/new", "Qwen3-8B/full/other", "demo/lora/old"]
    assert runs[0]["state"] == "failed" and runs[0]["error"] == "boom" and runs[0]["stage"] == "dpo"
    assert [run["name"] for run in jobs.list_runs(saves, "demo", "lora")] == ["demo/lora/new", "demo/lora/old"]
    assert jobs.list_runs(saves, "demo", "full") == []
    assert jobs.list_runs(tmp_path / "nothing") == []


def test_list_checkpoints_lists_runs_and_intermediate_checkpoints_with_weights(tmp_path):
    lora = tmp_path / "demo" / "lora"
    for folder in ("b_run", "b_run/checkpoint-10", "b_run/checkpoint-2", "a_run/checkpoint-5"):
        (lora / folder).mkdir(parents=True, exist_ok=True)
        (lora / folder / "adapter_model.safetensors").write_bytes(b"x")
    (lora / "a_run" / "checkpoint-7").mkdir()  # cut off before saving: no weights
    (lora / "empty").mkdir()
    for run, created in (("a_run", 1000.0), ("b_run", 2000.0)):  # b_run is the newer run: listed first
        (lora / run / "job.json").write_text(json.dumps({"created": created}))
    full = tmp_path / "demo" / "full" / "f_run"
    full.mkdir(parents=True)
    (full / "model.safetensors").write_bytes(b"x")
    assert jobs.list_checkpoints(tmp_path, "demo", "lora") == [
        "b_run",
        "b_run/checkpoint-10",
        "b_run/checkpoint-2",
        "a_run/checkpoint-5",
    ]
    assert jobs.list_checkpoints(tmp_path, "demo", "full") == ["f_run"]
    assert jobs.list_checkpoints(tmp_path, "demo", "freeze") == []


# --- progress ---


def test_progress_of_records_and_states():
    empty = jobs.progress([], None)
    assert (empty["current"], empty["total"], empty["percentage"], empty["label"]) == (0, 0, 0.0, "")

    records = [record(1), record(30, elapsed_s=62.0, remaining_s=145.0)]
    done = jobs.progress(records, {"state": "finished"})
    assert (done["current"], done["total"], done["percentage"], done["remaining"]) == (100, 100, 100.0, "0:00:00")

    failed = jobs.progress(records, {"state": "failed"})
    assert (failed["current"], failed["percentage"], failed["elapsed"]) == (30, 30.0, "0:01:02")
    assert failed["label"] == "30/100 · 0:01:02"


def test_progress_of_a_running_job_counts_elapsed_from_its_start():
    records = [record(30, elapsed_s=60.0, remaining_s=140.0)]
    running = jobs.progress(records, {"state": "running", "started": time.time() - 70})
    assert running["elapsed"] in ("0:01:10", "0:01:11")
    assert running["remaining"] in ("0:02:10", "0:02:09")
    assert running["label"].startswith("30/100 · 0:01:1") and "< 0:02:" in running["label"]


def test_progress_reads_llamafactory_hms_strings():
    result = jobs.progress([{"current_steps": 5, "total_steps": 10, "elapsed_time": "1:02:03"}], {"state": "aborted"})
    assert result["elapsed"] == "1:02:03" and result["percentage"] == 50.0


def test_progress_of_an_eval_jobs_prediction_records_and_no_chart_points_from_them():
    from webui import plots

    records = [
        {
            "phase": "predict",
            "current_steps": step,
            "total_steps": 4,
            "percentage": 25.0 * step,
            "elapsed_s": 2.0 * step,
            "remaining_s": 2.0 * (4 - step),
        }
        for step in (1, 2)
    ]
    shown = jobs.progress(records, {"state": "failed"})
    assert (shown["phase"], shown["current"], shown["total"], shown["percentage"]) == ("predict", 2, 4, 50.0)
    assert shown["label"] == "2/4 · 0:00:04"
    assert jobs.progress([record(3)], None)["phase"] == "train"
    # Batches of a prediction pass are not training steps: the loss and lr charts draw nothing from them.
    for figure in (plots.loss_figure(records), plots.lr_figure(records)):
        assert all(not trace.x for trace in figure.data)


def test_progress_while_the_data_is_prepared_shows_rows_then_training_steps():
    """core.data.progress's records: the bar says "preparing data" with rows done / total, the charts draw nothing
    from them, and once a training record follows the bar counts steps again."""
    from webui import plots
    from webui.handlers.render import progress_html

    records = [
        {
            "phase": "prepare",
            "rows_done": done,
            "rows_total": 100_000,
            "percentage": done / 1000,
            "elapsed_s": done / 10_000,
            "remaining_s": (100_000 - done) / 10_000,
            "rows_per_s": 10_000.0,
        }
        for done in (0, 35_000)
    ]
    job = {"state": "running", "started": time.time() - 3.5}
    shown = jobs.progress(records, job)
    assert (shown["phase"], shown["current"], shown["total"]) == ("prepare", 35_000, 100_000)
    assert shown["percentage"] == 35.0
    html = progress_html("en", shown, job)
    assert "preparing data: 35,000 / 100,000 rows" in html and 'aria-valuenow="35"' in html
    assert "step" not in html
    assert "подготовка данных: 35,000 / 100,000" in progress_html("ru", shown, job)
    for figure in (plots.loss_figure(records), plots.lr_figure(records)):
        assert all(not trace.x for trace in figure.data)
    training = jobs.progress([*records, record(3)], job)
    assert (training["phase"], training["current"], training["total"]) == ("train", 3, 100)
    assert "step 3 / 100" in progress_html("en", training, job)


def test_error_summary_of_a_torchrun_job_names_the_workers_error():
    log = "\n".join(
        [
            "[rank0]: Traceback (most recent call last):",
            '[rank0]:   File "core/train/sft.py", line 10, in run_sft',
            "[rank0]: ValueError: dataset: received 'nope' — not in dataset_info.json",
            "E1128 worker failed",
            "Traceback (most recent call last):",
            '  File "torch/distributed/run.py", line 1, in <module>',
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
            "core.cli FAILED",
        ]
    )
    assert jobs.error_summary(log) == "ValueError: dataset: received 'nope' — not in dataset_info.json"


def test_error_summary_of_a_torchrun_job_whose_worker_refused_its_arguments():
    log = "\n".join(
        [
            "error: model_name_or_path: /x/no-model does not exist — check the path",
            "Traceback (most recent call last):",
            '  File "torch/distributed/run.py", line 1, in <module>',
            "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
            "core.cli FAILED",
        ]
    )
    assert jobs.error_summary(log) == "error: model_name_or_path: /x/no-model does not exist — check the path"

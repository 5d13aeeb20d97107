"""core.runfolder: the one home of the run folder's file names and readers."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from core import runfolder

ROOT = Path(__file__).resolve().parent.parent


def test_log_records_skip_a_torn_last_line(tmp_path):
    path = tmp_path / runfolder.TRAINER_LOG
    path.write_text('{"current_steps": 1, "loss": 2.0}\n\n[1, 2]\n{"current_steps": 2, "loss": 1.5}\n{"current_st')
    assert runfolder.read_log_records(path) == [{"current_steps": 1, "loss": 2.0}, {"current_steps": 2, "loss": 1.5}]
    assert runfolder.read_log_records(tmp_path) == runfolder.read_log_records(path)  # the run folder itself
    assert runfolder.read_log_records(tmp_path / "missing") == []


def test_reader_reads_only_appended_records_and_waits_for_a_whole_line(tmp_path):
    path = tmp_path / runfolder.TRAINER_LOG
    reader = runfolder.TrainerLogReader(path)
    assert reader.poll() == []  # no file yet
    path.write_text(json.dumps({"current_steps": 1}) + "\n" + '{"current_steps": 2')
    assert reader.poll() == [{"current_steps": 1}]
    read = reader.bytes_read
    with path.open("a") as handle:
        handle.write("}\n")
    assert reader.poll() == [{"current_steps": 2}]
    assert reader.bytes_read - read == len('{"current_steps": 2}\n')
    path.write_text(json.dumps({"current_steps": 1}) + "\n")  # replaced (a new run in the folder): starts over
    assert reader.poll() == [{"current_steps": 1}] and reader.records == [{"current_steps": 1}]


def test_stage_and_kind_of_a_run(tmp_path):
    assert runfolder.read_args(tmp_path) == {} and runfolder.run_stage({}) == ""
    (tmp_path / runfolder.LF_ARGS).write_text("stage: dpo\ndo_train: true\n")  # a LLaMA-Factory run
    assert runfolder.run_stage(runfolder.read_args(tmp_path)) == "dpo"
    (tmp_path / runfolder.JOB_YAML).write_text("model_name_or_path: demo\ndo_train: false\ndo_predict: true\n")
    args = runfolder.read_args(tmp_path)  # job.yaml wins
    assert (runfolder.run_stage(args), runfolder.run_kind(args)) == ("sft", "eval")
    assert runfolder.run_kind({"stage": "sft", "do_train": True}) == "train"
    assert runfolder.run_kind({"do_train": False}) == "train"  # neither eval nor predict: nothing to call eval
    assert runfolder.run_kind({"export_dir": "out", "model_name_or_path": "demo"}) == "export"


def test_log_file_and_board_files(tmp_path):
    assert runfolder.log_file(tmp_path) == tmp_path / "job.log"
    (tmp_path / "running_log.txt").write_text("LLaMA-Factory\n")
    assert runfolder.log_file(tmp_path) == tmp_path / "running_log.txt"
    assert runfolder.BOARD_FILES == {"job.yaml", "job.json", "job.log"}


def test_hours_minutes_seconds_both_ways():
    assert runfolder.format_hms(0) == "0:00:00"
    assert runfolder.format_hms(3725.9) == "1:02:05"
    assert runfolder.format_hms(-3) == "0:00:00" and runfolder.format_hms(None) == ""
    assert runfolder.hms_seconds("1:02:05") == 3725 and runfolder.hms_seconds("later") is None


def test_nothing_else_spells_the_run_folder_file_names():
    """Code in core/ and webui/ names these files through core.runfolder (prose in docstrings may mention them)."""
    names = {
        runfolder.JOB_YAML,
        runfolder.JOB_JSON,
        runfolder.JOB_LOG,
        runfolder.TRAINER_LOG,
        runfolder.PREDICTIONS,
        runfolder.LF_ARGS,
        runfolder.LF_LOG,
    }
    found = []
    for path in sorted([*ROOT.glob("core/**/*.py"), *ROOT.glob("webui/**/*.py")]):
        if path.name == "runfolder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if any(node.value == name or node.value.endswith(f"/{name}") for name in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "Use the names in core.runfolder:\n" + "\n".join(found)

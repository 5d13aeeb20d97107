"""A new user's first hour on the board (issue 10), handlers called as plain functions: default folder names that
are fresh on every page load and Start, runs that say what they are, checkpoints grouped by run, what Start
continues from, HTML that follows the language, the start-up banner."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from test_app import alerts, form, updated

from webui import jobs
from webui.app import banner
from webui.handlers.events import ALERTS


def _run_folder(board_home: Path) -> Path:
    return board_home / "saves" / "demo" / "lora"


def test_default_names_are_fresh_on_every_page_load_and_after_every_start(ui: Any, board_home: Path) -> None:
    board = ui.board
    loaded = board.on_load(form(ui))
    name = updated(loaded, "train.output_dir")
    assert not (_run_folder(board_home) / name).exists()
    assert not Path(updated(loaded, "export.export_dir")).exists()
    assert not (_run_folder(board_home) / updated(loaded, "eval.output_dir")).exists()

    started = board.start(form(ui, train__output_dir=name, train__max_steps=2))
    assert not alerts(started, "warning"), started[ALERTS]
    run_dir = _run_folder(board_home) / name
    board.runner.wait(run_dir.resolve(), timeout=60)
    assert updated(started, "train.output_dir") != name

    # A reload in the same second, after the run: the page offers another folder, and Start with it works.
    again = board.on_load(form(ui))
    fresh = updated(again, "train.output_dir")
    assert fresh != name and not (_run_folder(board_home) / fresh).exists()
    second = board.start(form(ui, train__output_dir=fresh, train__max_steps=2))
    assert not alerts(second, "warning"), second[ALERTS]
    board.runner.wait((_run_folder(board_home) / fresh).resolve(), timeout=60)

    # A name the user typed that holds a run is still refused, with the reason.
    refused = board.start(form(ui, train__output_dir=name))
    assert "already holds a run" in " ".join(alerts(refused, "warning"))


def test_a_saved_or_exported_yaml_keeps_its_folder_to_itself(ui: Any, board_home: Path) -> None:
    name = updated(ui.board.on_load(form(ui)), "train.output_dir")
    exported = ui.board.export_args(form(ui, train__output_dir=name))
    yaml_file = Path(updated(exported, "train.export_file"))
    assert Path(yaml.safe_load(yaml_file.read_text())["output_dir"]).name == name
    assert updated(exported, "train.output_dir") != name  # the YAML's run goes there, the board's next one elsewhere
    saved = ui.board.save_args(form(ui, train__output_dir=name, train__config_path=str(board_home / "x.yaml")))
    assert updated(saved, "train.output_dir") != name


def _fake_eval_run(folder: Path, name: str) -> Path:
    run = folder / name
    run.mkdir(parents=True)
    args = {"stage": "sft", "do_train": False, "do_predict": True, "eval_dataset": "demo_sft_eval"}
    (run / "job.yaml").write_text(yaml.safe_dump(args))
    (run / "job.json").write_text(json.dumps({"state": "finished", "stage": "sft", "created": 1.0}))
    return run


def test_evaluation_runs_are_shown_as_such(ui: Any, board_home: Path) -> None:
    _fake_eval_run(_run_folder(board_home), "eval_2026-01-01-00-00-00")
    table = ui.board.runs_table("en")
    row = table[table.iloc[:, 0].str.endswith("eval_2026-01-01-00-00-00")].iloc[0]
    assert (row.iloc[1], row.iloc[2]) == ("evaluation", "sft")  # the Runs table's kind and stage columns
    labels = [label for label, _ in ui.board.run_choices("zh") if label.startswith("demo/lora/eval_2026")]
    assert labels and "评估" in labels[0]


def test_checkpoints_are_grouped_by_run_newest_first(tmp_path: Path) -> None:
    folder = tmp_path / "demo" / "lora"
    for index, name in enumerate(["zeta", "alpha"]):  # alpha is the newer run, though it sorts first by name
        run = folder / name
        for sub in ("", "checkpoint-5", "checkpoint-10"):
            (run / sub).mkdir(parents=True, exist_ok=True)
            (run / sub / "adapter_model.safetensors").write_bytes(b"")
        (run / "job.json").write_text(json.dumps({"created": 1000.0 + index}))
    assert jobs.list_checkpoints(tmp_path, "demo", "lora") == [
        "alpha",
        "alpha/checkpoint-10",
        "alpha/checkpoint-5",
        "zeta",
        "zeta/checkpoint-10",
        "zeta/checkpoint-5",
    ]


def test_the_train_tab_says_what_start_continues_from(ui: Any) -> None:
    picked = ui.board.show_start_from(form(ui, top__checkpoint_path=["train_x/checkpoint-10"]))["train.start_from"]
    assert "Start continues training from train_x/checkpoint-10" in picked and 'data-from="checkpoint"' in picked
    fresh = ui.board.show_start_from(form(ui, top__checkpoint_path=[]))["train.start_from"]
    assert "new LoRA adapter on the base model" in fresh
    oft = ui.board.show_start_from(form(ui, top__checkpoint_path=[], top__finetuning_type="oft"))["train.start_from"]
    assert "new OFT adapter on the base model" in oft
    full = ui.board.show_start_from(form(ui, top__checkpoint_path=[], top__finetuning_type="full"))["train.start_from"]
    assert "fine-tunes the base model" in full
    # A checkpoint picked in the top bar for Chat is the same control: the line follows it (bound to .change).
    deps = ui.config["dependencies"]
    start_from = ui.board.manager["train.start_from"]._id
    sources = {t[0] for d in deps if start_from in d["outputs"] for t in d["targets"] if t[1] == "change"}
    assert ui.board.manager["top.checkpoint_path"]._id in sources


def test_a_language_switch_translates_the_html_too(ui: Any) -> None:
    changed = ui.board.change_lang(form(ui, top__lang="zh", eval__view_run=None, export__view_run=None))
    try:
        english = ("No GPU", "No run yet", "Start trains")
        for key in ("train.device_count", "eval.progress", "export.progress", "train.start_from"):
            assert not any(text in changed[key] for text in english), (key, changed[key])
    finally:
        ui.board.change_lang(form(ui, top__lang="en"))


def test_the_banner_speaks_of_the_boards_own_flags() -> None:
    text = banner("http://127.0.0.1:7860/", None, share=False)
    assert "--share" in text and "share=True" not in text and "launch()" not in text
    assert "https://x.gradio.live" in banner("http://127.0.0.1:7860/", "https://x.gradio.live", share=True)


def test_export_job_files_stay_out_of_the_export_folder(ui: Any, board_home: Path) -> None:
    from webui.handlers.export import export_job_dir

    export_dir = board_home / "saves" / "exports" / "merged-x"
    job_dir = export_job_dir(ui.infer.export_runner, export_dir)
    assert export_dir not in job_dir.parents and job_dir != export_dir
    assert not job_dir.exists() and os.path.commonpath([job_dir, board_home / "saves"]) == str(board_home / "saves")


def test_a_missing_model_is_refused_before_a_run_folder_exists(ui: Any, board_home: Path) -> None:
    name = updated(ui.board.on_load(form(ui)), "train.output_dir")
    missing = board_home / "no-such-model"
    refused = ui.board.start(form(ui, top__model_name="Custom", top__model_path=str(missing), train__output_dir=name))
    assert f"model_name_or_path: {missing} does not exist" in " ".join(alerts(refused, "warning"))
    assert not (board_home / "saves" / "no-such-model").exists() and not (_run_folder(board_home) / name).exists()

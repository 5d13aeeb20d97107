"""Export tab handlers without a browser: a non-empty folder is refused until the overwrite box is ticked, then a
real `core.cli export` job on the demo model writes safetensors and the tab shows its steps and result; a hub push
without HF_TOKEN is refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webui.board import Board, Infer
from webui.handlers.events import ALERTS
from webui.handlers.export import export_progress
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
        "export.export_dir": "",
        "export.export_size": 0.5,
        "export.infer_dtype": "float32",
        "export.export_device": "cpu",
        "export.export_hub_model_id": "",
        "export.export_overwrite": False,
    }
    values.update({f"export.{key}" if "." not in key else key: value for key, value in changes.items()})
    return values


@pytest.fixture(scope="module")
def infer(board_home: Path) -> Any:
    from webui.paths import board_roots
    from webui.runner import Runner

    runner = Runner(saves_root=board_home / "saves", grace_s=5.0, roots=board_roots())
    infer = Infer(Board(runner, Manager(), saves_root=board_home / "saves"))
    yield infer
    for run_dir in infer.export_runner.active():
        infer.export_runner.abort(run_dir)
        infer.export_runner.wait(run_dir, timeout=10)


def _poll(infer: Any, run_dir: Path, seen: dict) -> dict[str, Any]:
    return infer.export_poll({"top.lang": "en", "export.view_run": str(run_dir), "export.poll_state": seen})


def test_non_empty_dir_is_refused_then_exported_with_the_confirmation(infer: Any, board_home: Path) -> None:
    export_dir = board_home / "saves" / "exports" / "merged"
    export_dir.mkdir(parents=True)
    (export_dir / "notes.txt").write_text("keep me out of the way")

    refused = infer.export_start(_values(export_dir=str(export_dir)))
    assert "already holds files" in refused[ALERTS][0][1] and str(export_dir) in refused[ALERTS][0][1]
    assert "export.view_run" not in refused and not (export_dir / "job.json").exists()

    started = infer.export_start(_values(export_dir=str(export_dir), export_overwrite=True))
    assert "Export started" in started[ALERTS][0][1]
    assert started["export.export_overwrite"] is False  # the confirmation is for this export only
    run_dir = Path(started["export.view_run"])
    running = _poll(infer, run_dir, {})
    assert "export.progress" in running

    job = infer.export_runner.wait(run_dir, timeout=240)
    assert job["state"] == "finished", (run_dir / "job.log").read_text()[-3000:]
    assert job["argv"][-3:-1] == ["core.cli", "export"]
    done = _poll(infer, run_dir, running["export.poll_state"])
    assert 'data-state="finished"' in done["export.progress"] and 'aria-valuenow="100"' in done["export.progress"]
    result = done[ALERTS][0][1]
    assert result.startswith("Export finished:") and str(export_dir) in result and "files" in result
    assert "[export] done:" in done["export.output_box"]
    # The folder holds the model (and what the user had there), not the board's job files; the count says so.
    assert not {"job.yaml", "job.json", "job.log"} & {p.name for p in export_dir.iterdir()}
    assert f"({len(list(export_dir.iterdir()))} files," in result
    assert (export_dir / "model.safetensors").is_file() or (export_dir / "model.safetensors.index.json").is_file()
    assert json.loads((export_dir / "config.json").read_text())["model_type"] == "llama"
    assert (export_dir / "chat_template.jinja").is_file()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"export_dir": ""}, "Set the export dir"),
        ({"export_hub_model_id": "me/merged"}, "HF_TOKEN"),
    ],
)
def test_export_refusals_name_the_fix(infer: Any, board_home: Path, monkeypatch, changes: dict, message: str) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    values = _values(export_dir=str(board_home / "saves" / "exports" / "other"))
    updates = infer.export_start({**values, **{f"export.{key}": value for key, value in changes.items()}})
    assert message in updates[ALERTS][0][1]
    assert not infer.export_runner.active()


def test_export_progress_reads_the_step_lines() -> None:
    log = "noise\n[export] step 2/5: Merging 1 adapter\n[export] step 3/5: Saving\n"
    assert export_progress(log) == (3, 5, "Saving", "")
    assert export_progress(log + "[export] done: /x (3 files, 1.2 MB)\n")[3] == "/x (3 files, 1.2 MB)"


def test_export_dir_outside_the_board_roots_is_refused_and_left_alone(infer: Any, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "job.log").write_text("an old log")
    for export_dir in (str(outside), f"{outside}\x00", "../" * 12 + "etc", "%2e%2e%2f" * 12 + "etc"):
        updates = infer.export_start(_values(export_dir=export_dir))
        ((level, text),) = updates[ALERTS]  # one message, never "embedded null byte" from the console
        assert level == "warning" and text.startswith("Refused") and "export_dir" in text, text
    assert (outside / "job.log").read_text() == "an old log" and not (outside / "job.yaml").exists()

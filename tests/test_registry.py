"""The run registry (core/registry.py): one row per run folder with the numbers the Runs tab and `runs list` show."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from core import registry
from core.runfolder import JOB_JSON, JOB_YAML, LF_ARGS, LF_LOG, TRAINER_LOG


def write_run(run_dir: Path, args: dict, records: list[dict], job: dict | None = None, results: bool = True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / JOB_YAML).write_text(yaml.safe_dump(args), encoding="utf-8")
    if job is not None:
        (run_dir / JOB_JSON).write_text(json.dumps(job), encoding="utf-8")
    (run_dir / TRAINER_LOG).write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    if results:
        (run_dir / "train_results.json").write_text("{}", encoding="utf-8")
    return run_dir


def steps(n: int, **extra) -> list[dict]:
    return [
        {"current_steps": i, "total_steps": n, "loss": 3.0 - i / 10, "elapsed_s": 2.0 * i, **extra}
        for i in range(1, n + 1)
    ]


@pytest.fixture
def saves(tmp_path: Path) -> Path:
    root = tmp_path / "saves"
    now = time.time()
    sft = steps(10)
    sft.insert(5, {"current_steps": 5, "total_steps": 10, "eval_loss": 1.25})
    sft.append({"current_steps": 10, "total_steps": 10, "eval_loss": 1.5})
    write_run(
        root / "demo" / "lora" / "sft-a",
        {"model_name_or_path": "demo", "stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"},
        sft,
        {"state": "finished", "stage": "sft", "created": now - 30},
    )
    dpo = steps(4, accuracy=0.5)
    dpo[-1]["accuracy"] = 0.75
    dpo.append({"current_steps": 2, "total_steps": 4, "eval_loss": 0.7, "eval_accuracy": 0.6})
    dpo.append({"current_steps": 4, "total_steps": 4, "eval_loss": 0.65, "eval_accuracy": 0.8})
    write_run(
        root / "demo" / "lora" / "dpo-b",
        {"model_name_or_path": "demo", "stage": "dpo", "finetuning_type": "lora", "dataset": "demo_dpo"},
        dpo,
        {"state": "failed", "stage": "dpo", "created": now - 20, "error": "CUDA out of memory"},
        results=False,
    )
    write_run(
        root / "Qwen3-0.6B" / "full" / "ppo-c",
        {"model_name_or_path": "Qwen/Qwen3-0.6B", "stage": "ppo", "finetuning_type": "full", "dataset": "demo_sft"},
        [*steps(3, reward=0.2), {"current_steps": 4, "total_steps": 4, "loss": 0.1, "reward": 0.9}],
        {"state": "finished", "stage": "ppo", "created": now - 10},
    )
    # A LLaMA-Factory folder: training_args.yaml, running_log.txt, H:MM:SS times, a dataset list.
    lf = root / "Llama-3-8B" / "lora" / "lf-run"
    lf.mkdir(parents=True)
    (lf / LF_ARGS).write_text(
        "model_name_or_path: meta-llama/Meta-Llama-3-8B\nstage: rm\nfinetuning_type: lora\ndataset:\n- a\n- b\n",
        encoding="utf-8",
    )
    (lf / LF_LOG).write_text("done\n", encoding="utf-8")
    (lf / TRAINER_LOG).write_text(
        json.dumps({"current_steps": 7, "total_steps": 7, "loss": 0.4, "accuracy": 0.9, "elapsed_time": "0:01:05"})
        + "\n",
        encoding="utf-8",
    )
    (lf / "all_results.json").write_text("{}", encoding="utf-8")
    os.utime(lf / LF_ARGS, (now - 40, now - 40))
    (root / "demo" / "lora" / "empty-folder").mkdir()
    return root


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_one_row_per_run_with_the_tables_numbers(saves: Path) -> None:
    rows = registry.list_runs(saves)
    assert [row["name"] for row in rows] == [
        "Qwen3-0.6B/full/ppo-c",
        "demo/lora/dpo-b",
        "demo/lora/sft-a",
        "Llama-3-8B/lora/lf-run",
    ]
    row = by_name(rows)
    sft = row["demo/lora/sft-a"]
    assert (sft["kind"], sft["stage"], sft["method"], sft["model"], sft["datasets"]) == (
        "train",
        "sft",
        "lora",
        "demo",
        "demo_sft",
    )
    assert (sft["state"], sft["steps"], sft["total_steps"], sft["duration_s"]) == ("finished", 10, 10, 20.0)
    assert sft["train_loss"] == pytest.approx(2.0) and sft["eval_loss"] == 1.25  # the last loss, the lowest eval
    assert sft["reward_accuracy"] is None and sft["reward"] is None
    dpo = row["demo/lora/dpo-b"]
    assert dpo["state"] == "failed" and dpo["error"] == "CUDA out of memory"
    assert dpo["reward_accuracy"] == 0.8 and dpo["eval_loss"] == 0.65  # the best eval accuracy over train's 0.75
    assert row["Qwen3-0.6B/full/ppo-c"]["reward"] == 0.9
    assert row["Qwen3-0.6B/full/ppo-c"]["model"] == "Qwen/Qwen3-0.6B"
    lf = row["Llama-3-8B/lora/lf-run"]
    assert (lf["stage"], lf["datasets"], lf["state"], lf["steps"]) == ("rm", "a,b", "finished", 7)
    assert lf["duration_s"] == 65.0 and lf["reward_accuracy"] == 0.9  # no eval: the last train accuracy
    assert set(rows[0]) == {*registry.COLUMNS, "total_steps", "stale"}


def test_kind_of_eval_and_export_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "m" / "lora" / "ev", {"do_train": False, "do_predict": True, "eval_dataset": "x"}, [], {})
    write_run(tmp_path / "m" / "lora" / "ex", {"export_dir": "out"}, [], {"state": "finished"})
    rows = by_name(registry.list_runs(tmp_path))
    assert rows["m/lora/ev"]["kind"] == "eval" and rows["m/lora/ev"]["datasets"] == "x"
    assert rows["m/lora/ex"]["kind"] == "export"


def test_a_quoted_or_block_value_reads_like_yaml(tmp_path: Path) -> None:
    """The fast line reader gives what a YAML parser gives, or hands the file to one."""
    run = tmp_path / "m" / "lora" / "r"
    write_run(run, {}, steps(1), {"state": "finished"})
    cases = {
        "dataset: 'a,b'\nstage: \"dpo\"\n": ("a,b", "dpo"),
        "dataset: [a, b]  \nstage: kto\n": ("a,b", "kto"),
        "dataset: a # the first\nstage: rm\n": ("a", "rm"),
        "dataset: >\n  folded\nstage: pt\n": ("folded\n", "pt"),
        "dataset: 'it''s'\nstage: sft\n": ("it's", "sft"),
    }
    for text, (datasets, stage) in cases.items():
        (run / JOB_YAML).write_text(text, encoding="utf-8")
        row = registry.read_row(run)
        assert (row["datasets"], row["stage"]) == (datasets, stage), text


def test_folders_without_a_run_are_left_out(saves: Path) -> None:
    assert "demo/lora/empty-folder" not in by_name(registry.list_runs(saves))
    assert registry.list_runs(saves / "nothing-here") == []


def test_a_changed_run_is_read_again_and_an_unchanged_one_is_not(saves: Path, monkeypatch) -> None:
    registry.list_runs(saves)
    run = saves / "demo" / "lora" / "sft-a"
    with (run / TRAINER_LOG).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"current_steps": 11, "total_steps": 11, "eval_loss": 0.5}) + "\n")
    reads = []
    real = registry._read_args
    monkeypatch.setattr(registry, "_read_args", lambda *a: reads.append(a[0].name) or real(*a))
    rows = by_name(registry.list_runs(saves))
    assert rows["demo/lora/sft-a"]["eval_loss"] == 0.5 and rows["demo/lora/sft-a"]["steps"] == 11
    assert reads == ["sft-a"]


def test_a_running_job_whose_process_is_gone_is_judged_from_its_files(tmp_path: Path) -> None:
    old = time.time() - 3600
    run = write_run(
        tmp_path / "m" / "lora" / "r", {}, steps(2), {"state": "running", "pid": 2**22 + 7, "created": old}
    )
    row = registry.read_row(run)
    assert (row["state"], row["stale"]) == ("finished", True)  # it wrote results
    (run / "train_results.json").unlink()
    row = registry.read_row(run)
    assert row["state"] == "failed" and "no board was watching" in row["error"]
    alive = {"state": "running", "pid": os.getpid(), "argv": None, "created": old}
    import psutil

    alive["pid_create_time"] = psutil.Process().create_time()
    (run / JOB_JSON).write_text(json.dumps(alive), encoding="utf-8")
    assert registry.read_row(run)["state"] == "running"


def test_filter_by_model_stage_state_and_text(saves: Path) -> None:
    rows = registry.list_runs(saves)
    names = lambda kept: [row["name"] for row in kept]  # noqa: E731
    assert names(registry.filter_runs(rows, model="demo")) == ["demo/lora/dpo-b", "demo/lora/sft-a"]
    assert names(registry.filter_runs(rows, stage="ppo")) == ["Qwen3-0.6B/full/ppo-c"]
    assert names(registry.filter_runs(rows, state="failed")) == ["demo/lora/dpo-b"]
    assert names(registry.filter_runs(rows, text="MEMORY")) == ["demo/lora/dpo-b"]  # the error, any case
    assert names(registry.filter_runs(rows, model="demo", state="finished", text="sft")) == ["demo/lora/sft-a"]
    assert registry.filter_runs(rows, text="no such thing") == []
    assert names(registry.filter_runs(rows, stage=["ppo", "dpo"], state=[])) == [
        "Qwen3-0.6B/full/ppo-c",
        "demo/lora/dpo-b",
    ]


def test_sort_by_a_column_with_empty_values_last(saves: Path) -> None:
    rows = registry.list_runs(saves)
    up = [row["name"] for row in registry.sort_runs(rows, "eval_loss")]
    assert up == ["demo/lora/dpo-b", "demo/lora/sft-a", "Qwen3-0.6B/full/ppo-c", "Llama-3-8B/lora/lf-run"]
    down = [row["name"] for row in registry.sort_runs(rows, "eval_loss", descending=True)]
    assert down[:2] == ["demo/lora/sft-a", "demo/lora/dpo-b"] and down[2:] == up[2:]
    assert [row["steps"] for row in registry.sort_runs(rows, "steps", True)] == [10, 7, 4, 4]
    with pytest.raises(ValueError, match="sort key 'speed' is not a column; use one of: name"):
        registry.sort_runs(rows, "speed")


def test_find_run_by_path_by_relative_name_and_by_unique_name(saves: Path) -> None:
    run = saves / "demo" / "lora" / "sft-a"
    assert registry.find_run(saves, str(run)) == run
    assert registry.find_run(saves, "demo/lora/sft-a") == run
    assert registry.find_run(saves, "sft-a") == run
    write_run(saves / "other" / "lora" / "sft-a", {}, steps(1), {"state": "finished"})
    with pytest.raises(FileNotFoundError, match="ambiguous.*demo/lora/sft-a.*give <model>/<method>/<run>"):
        registry.find_run(saves, "sft-a")
    with pytest.raises(FileNotFoundError, match="'nope': no such folder.*runs list"):
        registry.find_run(saves, "nope")


def test_runs_list_cli_prints_the_table_and_json(saves: Path, capsys, monkeypatch) -> None:
    from core.cli import main

    monkeypatch.setenv("LLAMABOARD_SAVES", str(saves))
    assert main(["runs", "list", "--stage", "sft"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "run",
        "stage",
        "state",
        "steps",
        "time",
        "loss",
        "eval_loss",
        "reward_acc",
        "reward",
        "created",
    ]
    assert line.split()[:7] == ["demo/lora/sft-a", "sft", "finished", "10/10", "0:00:20", "2", "1.25"]
    assert main(["runs", "list", "--json", "--sort", "eval_loss", "--saves", str(saves)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows][:2] == ["demo/lora/dpo-b", "demo/lora/sft-a"]
    assert rows[0]["reward_accuracy"] == 0.8 and rows[0]["error"] == "CUDA out of memory"
    assert main(["runs", "list", "--state", "running"]) == 0
    assert "No runs under" in capsys.readouterr().err
    assert main(["runs", "list", "--sort", "speed"]) == 2
    assert "invalid choice: 'speed'" in capsys.readouterr().err
    assert main(["runs", "rerun-all"]) == 2
    assert "unknown action 'rerun-all'; use one of: list" in capsys.readouterr().err


def test_config_diff_keeps_only_the_keys_that_differ() -> None:
    configs = {
        "a": {"learning_rate": 1e-4, "lora_rank": 8, "dataset": "x", "output_dir": "saves/a", "seed": 42},
        "b": {"learning_rate": 5e-4, "lora_rank": 8, "dataset": "x", "output_dir": "saves/b"},
        "c": {"learning_rate": 1e-4, "lora_rank": 8, "dataset": "x", "output_dir": "saves/c", "seed": 42},
    }
    assert registry.config_diff(configs) == [("learning_rate", [1e-4, 5e-4, 1e-4]), ("seed", [42, None, 42])]
    assert ("output_dir", ["saves/a", "saves/b", "saves/c"]) in registry.config_diff(configs, True)
    assert registry.config_diff({"a": configs["a"], "c": configs["c"]}) == []


def test_runs_diff_cli_prints_the_differing_keys_side_by_side(saves: Path, capsys) -> None:
    from core.cli import main

    status = main(["runs", "diff", "sft-a", "demo/lora/dpo-b", "--saves", str(saves)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].split() == ["key", "sft-a", "demo/lora/dpo-b"]
    assert [line.split() for line in lines[1:]] == [["dataset", "demo_sft", "demo_dpo"], ["stage", "sft", "dpo"]]
    assert main(["runs", "diff", "sft-a", "sft-a", "--saves", str(saves)]) == 0
    assert "The runs' arguments are the same (output_dir aside)." in capsys.readouterr().out
    assert main(["runs", "diff", "sft-a", "--json", "Qwen3-0.6B/full/ppo-c", "--saves", str(saves)]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["finetuning_type"] == ["lora", "full"] and "output_dir" not in diff
    assert main(["runs", "diff", "sft-a", "nope", "--saves", str(saves)]) == 2
    assert "error: run 'nope': no such folder" in capsys.readouterr().err


def test_runs_compare_cli_writes_an_html_chart_with_one_trace_per_run(saves: Path, tmp_path: Path, capsys) -> None:
    from core.cli import main

    out = tmp_path / "compare.html"
    args = ["runs", "compare", "sft-a", "dpo-b", "--html", str(out), "--saves", str(saves)]
    assert main(args) == 0
    html = out.read_text(encoding="utf-8")
    assert '"name":"sft-a"' in html and '"name":"dpo-b"' in html
    printed = capsys.readouterr().out
    assert f"Wrote {out}" in printed and "stage    sft" in printed
    assert main(["runs", "compare", "sft-a", "dpo-b", "--saves", str(saves)]) == 2
    assert "give --html out.html or --png out.png" in capsys.readouterr().err


def _kaleido_and_chrome() -> bool:
    import importlib.util
    import shutil

    return importlib.util.find_spec("kaleido") is not None and any(
        shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
    )


@pytest.mark.skipif(not _kaleido_and_chrome(), reason="needs kaleido (llamaboard[png]) and Chrome / Chromium")
def test_runs_compare_cli_writes_a_png_chart(saves: Path, tmp_path: Path, capsys) -> None:
    import struct

    from core.cli import main

    out = tmp_path / "compare.png"
    status = main(["runs", "compare", "sft-a", "dpo-b", "--png", str(out), "--saves", str(saves)])
    assert status == 0, capsys.readouterr()
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1000, 500)
    assert len(data) > 10_000 and not list(tmp_path.glob("*.partial.png"))
    assert f"Wrote {out}" in capsys.readouterr().out


def test_runs_compare_png_without_kaleido_says_what_to_install(saves: Path, tmp_path: Path, capsys, monkeypatch):
    import importlib.util

    from core.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    out = tmp_path / "compare.png"
    assert main(["runs", "compare", "sft-a", "dpo-b", "--png", str(out), "--saves", str(saves)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --png {out}: kaleido is not installed.") and len(err.splitlines()) == 1
    assert "pip install 'llamaboard[png]'" in err and "BROWSER_PATH=/usr/bin/chromium" in err and not out.exists()

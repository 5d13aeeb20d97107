"""The board's UI without a browser: handlers called as plain functions, then the board served in-process and
driven with gradio_client. Jobs are tests/webui/fake_job.py (no training); a fresh interpreter checks that
building the UI and a whole job cycle never import the training stack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from webui.handlers import preview as handlers
from webui.handlers.events import ALERTS
from webui.manager import alert, entry
from webui.tabs import top, train

FAKE_JOB = Path(__file__).with_name("fake_job.py")
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def make_fake_runner(saves: Path, *options: str, grace_s: float = 5.0) -> Any:
    from webui.runner import Runner

    return Runner(saves_root=saves, grace_s=grace_s, job_command=[sys.executable, str(FAKE_JOB), *options])


def wait_for(predicate: Any, timeout: float = 30.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def form(ui: Any, **overrides: Any) -> dict[str, Any]:
    """Every component's current (initial) value keyed "tab.elem", with `overrides` ("tab__elem": value)."""
    manager = ui.board.manager
    values = {key: getattr(manager[key], "value", None) for key in manager}
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return values


def alerts(result: dict[str, Any], level: str | None = None) -> list[str]:
    return [text for lvl, text in result.get(ALERTS, []) if level is None or lvl == level]


def updated(result: dict[str, Any], key: str) -> Any:
    """The value of an update (a plain value or a gr.update dict)."""
    value = result[key]
    return value.get("value") if isinstance(value, dict) and "__type__" in value else value


def poll_until(ui: Any, run_dir: str, done: Any, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the run like the timer does, carrying the session state, until `done(result, state)`."""
    state: dict[str, Any] = {}
    seen: dict[str, Any] = {}

    def step() -> bool:
        nonlocal state
        result = ui.board.poll(form(ui, train__view_run=run_dir, train__poll_state=state))
        state = result.get("train.poll_state", state)
        seen.update(result)
        return done(seen, state)

    wait_for(step, timeout=timeout, message="the live view to reach the expected state")
    return seen


# Building


def test_controls_are_named_after_their_argument(ui: Any) -> None:
    manager = ui.board.manager
    for tab, names in (("top", top.ARGUMENTS), ("train", train.ARGUMENTS)):
        for name in names:
            assert manager[f"{tab}.{name}"].elem_id == name
    # Sections follow the demo defaults: LoRA shown, freeze and RLHF hidden.
    assert manager["train.lora_tab"].visible and not manager["train.freeze_tab"].visible
    assert not manager["train.rlhf_tab"].visible


def test_choices_are_what_the_core_accepts() -> None:
    """A choice the core rejects would only fail after Start; the lists follow core.hparams' Literal types."""
    import typing

    from core.hparams.finetuning_args import FinetuningArguments
    from core.hparams.model_args import ModelArguments

    def literal(cls: type, name: str) -> set[str]:
        hint = typing.get_type_hints(cls)[name]
        args = typing.get_args(hint)
        if args and typing.get_origin(args[0]) is typing.Literal:  # Optional[Literal[...]]
            args = typing.get_args(args[0])
        return {arg for arg in args if arg is not type(None)}

    assert set(train.STAGES) == literal(FinetuningArguments, "stage")
    assert set(top.FINETUNING_TYPES) == literal(FinetuningArguments, "finetuning_type")
    assert set(train.PREF_LOSSES) == literal(FinetuningArguments, "pref_loss")
    assert set(top.QUANTIZATION_METHODS) == literal(ModelArguments, "quantization_method")
    assert set(top.ROPE_SCALINGS) - {"none"} == literal(ModelArguments, "rope_scaling")


def test_the_board_offers_only_trackers_that_are_installed() -> None:
    import importlib.util

    from webui.controls import REPORT_TO

    assert "tensorboard" in REPORT_TO  # the test extra installs it
    for tracker in ("wandb", "swanlab", "mlflow"):
        assert (tracker in REPORT_TO) == (importlib.util.find_spec(tracker) is not None), tracker


def test_new_user_can_press_start(ui: Any) -> None:
    """With nothing chosen the demo model and demo data are preselected."""
    values = form(ui)
    assert values["top.model_name"] == "Demo (offline)"
    assert values["top.model_path"] == "demo"
    assert values["top.template"] == "chatml"
    assert values["train.dataset_dir"] == "demo"
    assert values["train.dataset"] == ["demo_sft"]


def test_first_paint_is_labelled_in_the_chosen_language(board_home: Path) -> None:
    from webui.app import create_ui

    demo = create_ui("ja", runner=make_fake_runner(board_home / "saves"))
    manager = demo.board.manager
    assert manager["train.start"].value == entry("ja", "train.start")["label"] != entry("en", "train.start")["label"]
    assert manager["top.model_name"].label == entry("ja", "top.model_name")["label"]
    assert (
        dict((v, k) for k, v in manager["train.stage"].choices)["sft"] == entry("ja", "train.stage")["choices"]["sft"]
    )


# Top bar


def test_language_switch_relabels_every_component(ui: Any, board_home: Path) -> None:
    result = ui.board.change_lang(form(ui, top__lang="ru"))
    labelled = ui.board.manager.labelled()
    assert set(labelled) <= set(result)
    assert result["train.start"]["value"] == entry("ru", "train.start")["label"]
    assert result["train.learning_rate"]["label"] == entry("ru", "train.learning_rate")["label"]
    sft_name = dict((v, k) for k, v in result["train.stage"]["choices"])["sft"]
    assert sft_name == entry("ru", "train.stage")["choices"]["sft"] != entry("en", "train.stage")["choices"]["sft"]
    saved = yaml.safe_load((board_home / "cache" / "user_config.yaml").read_text(encoding="utf-8"))
    assert saved["lang"] == "ru"
    ui.board.change_lang(form(ui, top__lang="en"))


def test_picking_a_model_fills_path_and_template_and_is_remembered(ui: Any, board_home: Path) -> None:
    result = ui.board.change_model(form(ui, top__model_name="Qwen3-0.6B"))
    assert result["top.model_path"] == "Qwen/Qwen3-0.6B"
    assert result["top.template"] == "qwen3"
    saved = yaml.safe_load((board_home / "cache" / "user_config.yaml").read_text(encoding="utf-8"))
    assert saved["model_name"] == "Qwen3-0.6B" and saved["template"] == "qwen3"
    # Custom keeps what the user typed.
    custom = ui.board.change_model(form(ui, top__model_name="Custom", top__model_path="/models/mine"))
    assert custom["top.model_path"] == "/models/mine"
    ui.board.change_model(form(ui))


def test_page_reload_restores_the_remembered_choices(ui: Any, board_home: Path) -> None:
    """The page is built once per board process; a reload gets the language and model chosen since then."""
    ui.board.change_lang(form(ui, top__lang="zh"))
    ui.board.change_model(form(ui, top__model_name="Qwen3-0.6B"))
    try:
        loaded = ui.board.on_load(form(ui))
        assert loaded["top.lang"]["value"] == "zh"
        assert loaded["train.start"]["value"] == entry("zh", "train.start")["label"]
        assert loaded["top.model_name"] == "Qwen3-0.6B" and loaded["top.model_path"] == "Qwen/Qwen3-0.6B"
        assert loaded["top.template"] == "qwen3"
        assert "top.checkpoint_path" in loaded
    finally:
        ui.board.change_lang(form(ui, top__lang="en"))
        ui.board.change_model(form(ui))
    again = ui.board.on_load(form(ui))
    assert "top.lang" not in again and "top.model_name" not in again  # nothing to restore: nothing sent


def test_method_switch_shows_its_section_and_lists_its_checkpoints(ui: Any, board_home: Path) -> None:
    full_run = board_home / "saves" / "demo" / "full" / "old_run"
    (full_run / "checkpoint-10").mkdir(parents=True)
    (full_run / "model.safetensors").write_bytes(b"x")
    (full_run / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    result = ui.board.change_method(form(ui, top__finetuning_type="full"))
    assert result["top.checkpoint_path"]["choices"] == ["old_run", "old_run/checkpoint-10"]
    assert result["train.lora_tab"]["visible"] is False and result["train.freeze_tab"]["visible"] is False
    result = ui.board.change_method(form(ui, top__finetuning_type="freeze"))
    assert result["train.freeze_tab"]["visible"] is True and result["train.lora_tab"]["visible"] is False
    assert result["top.checkpoint_path"]["choices"] == []


# Stage and data


def test_stage_filters_datasets_and_shows_rlhf_controls(ui: Any) -> None:
    result = ui.board.change_stage(form(ui, train__stage="dpo"))
    names = result["train.dataset"]["choices"]
    assert "demo_pref" in names and "demo_sft" not in names
    assert result["train.dataset"]["value"] == ["demo_pref"]  # the demo data of the stage, preselected
    assert result["train.rlhf_tab"]["visible"] and result["train.pref_loss"]["visible"]
    offered = {value: name for name, value in ui.board.manager["train.pref_loss"].choices}
    assert offered["kto_pair"] == entry("en", "train.pref_loss")["choices"]["kto_pair"] == "KTO pair"
    assert not result["train.reward_model"]["visible"]
    ppo = ui.board.change_stage(form(ui, train__stage="ppo"))
    assert ppo["train.reward_model"]["visible"] and not ppo["train.pref_loss"]["visible"]
    grpo = ui.board.change_stage(form(ui, train__stage="grpo"))
    assert grpo["train.dataset"]["value"] == ["demo_grpo"] and "demo_pref" not in grpo["train.dataset"]["choices"]
    shown = [key for key in ("num_generations", "grpo_beta", "reward_funcs", "reward_file", "trust_reward_file")]
    assert all(grpo[f"train.{key}"]["visible"] for key in shown) and not grpo["train.pref_loss"]["visible"]
    assert grpo["train.reward_model"]["visible"]  # for the rm reward function
    assert not ppo["train.num_generations"]["visible"] and not ppo["train.trust_reward_file"]["visible"]
    sft = ui.board.change_stage(form(ui, train__stage="sft", train__dataset=["demo_sft", "demo_sharegpt"]))
    assert sft["train.dataset"]["value"] == ["demo_sft", "demo_sharegpt"]  # still valid: kept
    assert not sft["train.rlhf_tab"]["visible"]


def test_a_broken_dataset_registry_is_reported_not_hidden(ui: Any, board_home: Path) -> None:
    data = board_home / "mydata"
    data.mkdir()
    (data / "dataset_info.json").write_text('{"mine": {"file_name": "a.json",}', encoding="utf-8")
    result = ui.board.change_dataset_dir(form(ui, train__dataset_dir=str(data)))
    (message,) = alerts(result, "warning")
    assert "dataset_info.json" in message
    assert result["train.dataset"]["choices"] == []


def test_dataset_preview_pages_through_rows(ui: Any) -> None:
    first = ui.board.preview_open(form(ui))
    assert first["train.preview_box"]["visible"] is True
    table = first["train.preview_table"]
    assert len(table) == handlers.PREVIEW_ROWS and len(table.columns) >= 2
    assert "demo_sft" in first["train.preview_info"]
    second = ui.board.preview_next(form(ui, train__preview_page=first["train.preview_page"]))
    assert second["train.preview_page"] == 1
    assert second["train.preview_table"].values.tolist() != table.values.tolist()
    none = ui.board.preview_open(form(ui, train__dataset=[]))
    assert alerts(none, "warning") and "train.preview_box" not in none


def test_preview_reports_rows_that_cannot_be_read(ui: Any, board_home: Path) -> None:
    data = board_home / "rows"
    data.mkdir()
    (data / "dataset_info.json").write_text('{"mixed": {"file_name": "mixed.jsonl"}}', encoding="utf-8")
    good = '{"instruction": "1+1=", "output": "2"}'
    (data / "mixed.jsonl").write_text(f"{good}\n{{not json\n{good}\n", encoding="utf-8")
    result = ui.board.preview_open(form(ui, train__dataset_dir=str(data), train__dataset=["mixed"]))
    assert len(result["train.preview_table"]) == 2
    (warning,) = alerts(result, "warning")
    assert "mixed" in warning and "line 2" in warning  # names the dataset and the bad line


# Arguments


def test_command_preview_is_what_the_runner_runs(ui: Any) -> None:
    result = ui.board.cmd_preview(form(ui, train__output_dir="preview_run"))
    text = result["train.output_box"]
    assert str(FAKE_JOB) in text  # this board's runner starts the fake job
    assert text.splitlines()[0].endswith(os.path.join("demo", "lora", "preview_run", "job.yaml"))
    assert "llamafactory-cli train" in text


def test_bad_extra_arguments_are_a_warning_not_a_traceback(ui: Any) -> None:
    result = ui.board.start(form(ui, train__extra_args="{seed: 1"))
    (message,) = alerts(result, "warning")
    assert "extra_args" in message and "JSON" in message
    assert not ui.board.runner.active()


def test_invalid_arguments_are_listed_before_anything_starts(ui: Any) -> None:
    result = ui.board.start(form(ui, train__extra_args='{"learning_rat": 1}', train__output_dir="typo"))
    (message,) = alerts(result, "warning")
    assert "learning_rat" in message and "learning_rate" in message
    assert not ui.board.runner.active() and "train.view_run" not in result


def test_save_then_load_restores_the_form(ui: Any, board_home: Path) -> None:
    path = board_home / "configs" / "mine.yaml"
    saved = ui.board.save_args(form(ui, train__config_path=str(path), train__learning_rate=3e-4, train__lora_rank=32))
    assert str(path) in alerts(saved, "info")[0]
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert written["learning_rate"] == 3e-4 and written["lora_rank"] == 32 and written["dataset"] == "demo_sft"
    loaded = ui.board.load_args(form(ui, train__config_path=str(path)))
    assert loaded["train.learning_rate"] == 3e-4 and loaded["train.lora_rank"] == 32


def test_loading_a_llamafactory_yaml_keeps_unknown_keys(ui: Any, board_home: Path) -> None:
    path = board_home / "lf.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            model_name_or_path: Qwen/Qwen3-0.6B
            stage: dpo
            do_train: true
            finetuning_type: lora
            lora_rank: 16
            pref_beta: 0.2
            dataset: demo_pref
            template: qwen3
            cutoff_len: 2048
            learning_rate: 5.0e-6
            ddp_timeout: 180000000
            plot_loss: true
            output_dir: saves/qwen3/lora/dpo
            """
        ),
        encoding="utf-8",
    )
    result = ui.board.load_args(form(ui, train__config_path=str(path)))
    assert result["top.model_name"] == "Qwen3-0.6B" and result["train.stage"] == "dpo"
    assert result["train.lora_rank"] == 16
    assert result["train.pref_beta"] == {"__type__": "update", "value": 0.2, "visible": True}
    assert result["train.rlhf_tab"]["visible"] is True
    extra = json.loads(result["train.extra_args"])
    assert extra["ddp_timeout"] == 180000000 and extra["plot_loss"] is True
    (warning,) = alerts(result, "warning")
    assert "ddp_timeout" in warning and "plot_loss" in warning
    missing = ui.board.load_args(form(ui, train__config_path=str(board_home / "nope.yaml")))
    assert "nope.yaml" in alerts(missing, "warning")[0]


def test_export_gives_the_yaml_to_download(ui: Any) -> None:
    result = ui.board.export_args(form(ui, train__output_dir="exported"))
    path = Path(result["train.export_file"]["value"])
    assert path.name == "exported.yaml" and result["train.export_file"]["visible"] is True
    exported = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert exported["model_name_or_path"] == "demo" and exported["output_dir"].endswith("exported")


# Jobs


def test_job_cycle_start_watch_refuse_second_abort(ui: Any, board_home: Path) -> None:
    board = ui.board
    started = board.start(form(ui, train__output_dir="cycle"))
    assert not alerts(started, "warning"), started
    run_dir = started["train.view_run"]["value"]
    assert run_dir.endswith(os.path.join("demo", "lora", "cycle"))

    seen = poll_until(ui, run_dir, lambda seen, state: state.get("records", 0) >= 3)
    assert 'data-state="running"' in seen["train.progress"]
    assert "step 3/30" in seen["train.output_box"] or "step 4/30" in seen["train.output_box"]
    loss = seen["train.loss_viewer"]
    assert len(loss.data[0].y) >= 3
    assert seen["train.reward_viewer"]["visible"] is False  # sft has no rewards to chart

    # A second Start on this CPU-only board waits in the queue (issue 7); Abort on it cancels it.
    second = board.start(form(ui, train__output_dir="cycle2"))
    (queued,) = alerts(second, "info")
    assert "Queued at position 1" in queued, second
    waiting = second["train.view_run"]["value"]
    assert 'data-state="queued"' in board.poll(form(ui, train__view_run=waiting))["train.progress"]
    assert "position 1" in board.poll(form(ui, train__view_run=waiting))["train.progress"]
    (cancelled,) = alerts(board.abort(form(ui, train__view_run=waiting)), "info")
    assert "Cancelled" in cancelled and board.runner.queued() == []

    aborted = board.abort(form(ui, train__view_run=run_dir))
    assert alerts(aborted, "info")
    seen = poll_until(ui, run_dir, lambda seen, state: state.get("state") == "aborted")
    assert 'data-state="aborted"' in seen["train.progress"]
    assert "SIGTERM received" in seen["train.output_box"]
    board.runner.wait(run_dir, timeout=15)  # job.json says "aborted" a moment before the runner lets go of it


def test_stop_and_keep_best_asks_the_job_for_its_best_then_stops_it(ui: Any) -> None:
    board = ui.board
    assert alerts(board.stop_keep_best(form(ui, train__view_run=None)), "warning") == [alert("en", "nothing_to_abort")]
    started = board.start(form(ui, train__output_dir="keep_best"))
    run_dir = started["train.view_run"]["value"]
    poll_until(ui, run_dir, lambda seen, state: state.get("records", 0) >= 2)
    stopping = board.stop_keep_best(form(ui, train__view_run=run_dir))
    assert alerts(stopping, "info") == [alert("en", "stopping_keep_best", path=run_dir)]
    assert (Path(run_dir) / "keep_best.request").exists()  # the job reads it when SIGTERM arrives
    seen = poll_until(ui, run_dir, lambda seen, state: state.get("state") == "aborted")
    assert "SIGTERM received" in seen["train.output_box"]
    board.runner.wait(run_dir, timeout=15)


def test_preference_runs_get_a_reward_chart(ui: Any) -> None:
    started = ui.board.start(form(ui, train__stage="dpo", train__dataset=["demo_pref"], train__output_dir="dpo_run"))
    assert not alerts(started, "warning"), started
    run_dir = started["train.view_run"]["value"]
    try:
        seen = poll_until(ui, run_dir, lambda seen, state: state.get("records", 0) >= 2)
        reward = seen["train.reward_viewer"]
        assert reward["visible"] is True
        assert sum(len(trace.y) for trace in reward["value"].data) >= 2
    finally:
        ui.board.runner.abort(run_dir)
        ui.board.runner.wait(run_dir, timeout=15)


def test_grpo_runs_chart_rewards_kl_and_length_and_show_the_rewarded_completions(ui: Any) -> None:
    values = form(ui, train__stage="grpo", train__dataset=["demo_grpo"], train__output_dir="grpo_run")
    values["train.reward_funcs"] = ["exact_match", "format"]
    values["train.reward_weights"] = "1,0.2"
    started = ui.board.start(values)
    assert not alerts(started, "warning"), started
    run_dir = started["train.view_run"]["value"]
    job_yaml = yaml.safe_load((Path(run_dir) / "job.yaml").read_text(encoding="utf-8"))
    assert (job_yaml["stage"], job_yaml["reward_funcs"], job_yaml["reward_weights"]) == (
        "grpo",
        "exact_match,format",
        "1,0.2",
    )
    try:
        seen = poll_until(ui, run_dir, lambda seen, state: state.get("records", 0) >= 2 and state.get("samples", 0))
        reward = {trace.name: list(trace.y) for trace in seen["train.reward_viewer"]["value"].data}
        assert seen["train.reward_viewer"]["visible"] is True
        assert {"reward", "exact_match", "format"} <= set(reward) and len(reward["reward"]) >= 2
        rollout = {trace.name for trace in seen["train.rollout_viewer"]["value"].data}
        assert seen["train.rollout_viewer"]["visible"] is True and {"length", "KL", "cut share"} <= rollout
        table = seen["train.samples_view"]["value"]
        assert seen["train.samples_view"]["visible"] is True
        assert list(table.columns)[:3] == ["Step", "Reward", "Per function"]
        rows = table.values.tolist()
        assert len(rows) == 2 and len({row[0] for row in rows}) == 1  # the latest logged step's completions
        assert "exact_match 1" in rows[1][2] and "(cut)" in rows[0][4] and "fox red" in rows[0][5]
    finally:
        ui.board.runner.abort(run_dir)
        ui.board.runner.wait(run_dir, timeout=15)
    sft_view = ui.board.change_view(form(ui, train__view_run=None))
    assert sft_view["train.samples_view"]["visible"] is False and sft_view["train.rollout_viewer"]["visible"] is False


def test_failed_job_shows_its_error(board_home: Path) -> None:
    from webui.app import create_ui

    demo = create_ui("en", runner=make_fake_runner(board_home / "saves", "--mode", "fail", "--interval", "0.01"))
    started = demo.board.start(form(demo, train__output_dir="broken"))
    run_dir = started["train.view_run"]["value"]
    seen = poll_until(demo, run_dir, lambda seen, state: state.get("state") == "failed")
    assert "the dataset column &#x27;text&#x27; is missing" in seen["train.progress"]
    assert "Traceback" in seen["train.output_box"]
    # A page reload (a new session) finds the newest run and shows its final state.
    loaded = demo.board.on_load(form(demo))
    assert loaded["train.view_run"]["value"] == run_dir
    assert 'data-state="failed"' in loaded["train.progress"]


@pytest.fixture(scope="module")
def finished_run(ui: Any) -> str:
    """A fake sft job of 5 steps, run to its end through the board."""
    started = ui.board.start(form(ui, train__output_dir="finished"))
    run_dir = started["train.view_run"]["value"]
    ui.board.runner.wait(run_dir, timeout=30)
    return run_dir


def test_runs_tab_lists_runs_and_opens_one(ui: Any, finished_run: str) -> None:
    table = ui.board.runs_table("en")
    assert list(table.columns) == [
        "Run",
        "Kind",
        "Stage",
        "Method",
        "Model",
        "Datasets",
        "State",
        "Steps",
        "Time",
        "Train loss",
        "Best eval loss",
        "Reward accuracy",
        "Reward",
        "Created",
        "Error",
        "Folder",
    ]
    rows = {row["Run"]: row for _, row in table.iterrows()}
    run = rows["demo/lora/finished"]
    assert run["State"] == "Finished" and run["Stage"] == "sft" and run["Steps"] == "30/30"
    assert (run["Kind"], run["Method"], run["Model"]) == ("training", "lora", "demo")
    assert run["Train loss"] and run["Time"].count(":") == 2
    shown = ui.board.show_run(form(ui, train__view_run=run["Folder"]))
    assert shown["train.view_run"]["value"] == run["Folder"] == finished_run
    assert 'data-state="finished"' in shown["train.progress"]
    assert len(shown["train.loss_viewer"].data[0].y) == 30
    zh = ui.board.runs_table("zh")
    assert list(zh.columns)[0] == entry("zh", "runs.table")["columns"]["name"]


def test_runs_tab_filters_and_sorts(ui: Any, finished_run: str) -> None:
    broken = ui.board.saves_root / "other-model" / "full" / "broken"
    broken.mkdir(parents=True)
    (broken / "job.yaml").write_text("model_name_or_path: other-model\nstage: dpo\n", encoding="utf-8")
    (broken / "job.json").write_text(json.dumps({"state": "failed", "error": "Out of memory", "created": 1.0}))
    (broken / "trainer_log.jsonl").write_text(json.dumps({"current_steps": 2, "total_steps": 9, "loss": 1.0}) + "\n")
    refreshed = ui.board.refresh_runs_table(form(ui, runs__state=["failed"], runs__sort="steps"))
    assert "other-model/full/broken" in list(refreshed["runs.table"]["Run"])
    assert set(refreshed["runs.table"]["State"]) == {"Failed"}
    dpo = ui.board.refresh_runs_table(form(ui, runs__stage=["dpo"]))["runs.table"]
    assert "other-model/full/broken" in dpo["Run"].tolist() and set(dpo["Stage"]) == {"dpo"}
    memory = ui.board.refresh_runs_table(form(ui, runs__text="memory"))["runs.table"]
    assert memory["Run"].tolist() == ["other-model/full/broken"] and memory["Error"][0] == "Out of memory"
    assert refreshed["runs.model"]["choices"] == sorted({"demo", *refreshed["runs.model"]["choices"]})
    kept = ui.board.refresh_runs_table(form(ui, runs__text="FINISHED", runs__model=["demo"]))["runs.table"]
    assert list(kept["Run"]) == ["demo/lora/finished"]
    assert ui.board.refresh_runs_table(form(ui, runs__model=["no-such-model"]))["runs.table"].empty
    steps = lambda table: [int(cell.split("/")[0]) for cell in table["Steps"]]  # noqa: E731
    up = steps(ui.board.refresh_runs_table(form(ui, runs__sort="steps", runs__descending=False))["runs.table"])
    down = steps(ui.board.refresh_runs_table(form(ui, runs__sort="steps", runs__descending=True))["runs.table"])
    assert up == sorted(up) and down == sorted(down, reverse=True) and len(up) >= 2


def test_runs_tab_compares_two_runs_and_diffs_their_arguments(ui: Any, finished_run: str) -> None:
    started = ui.board.start(form(ui, train__output_dir="finished_lr", train__learning_rate=1e-3))
    other = started["train.view_run"]["value"]
    ui.board.runner.wait(other, timeout=30)
    compared = ui.board.compare_runs(form(ui, runs__compare=[finished_run, other]))
    figure = compared["runs.compare_plot"]
    assert compared["runs.compare_box"]["visible"] is True  # hidden until the first comparison
    assert [trace.name for trace in figure.data] == ["demo/lora/finished", "demo/lora/finished_lr"]
    assert len({trace.line.color for trace in figure.data}) == 2 and len(figure.data[0].x) == 30
    assert figure.layout.xaxis.title.text == "step" and figure.layout.title.text == "Train loss (smoothed)"
    diff = compared["runs.diff"]
    assert list(diff.columns) == ["Argument", "demo/lora/finished", "demo/lora/finished_lr"]
    rows = {row["Argument"]: list(row)[1:] for _, row in diff.iterrows()}
    assert rows["learning_rate"] == [str(form(ui)["train.learning_rate"]), "0.001"] and "output_dir" not in rows
    two = ui.board.compare_runs(
        form(ui, runs__compare=[finished_run, other], runs__compare_metric=["loss", "lr"], runs__compare_smooth=0)
    )["runs.compare_plot"]
    assert [trace.yaxis for trace in two.data] == ["y", "y", "y2", "y2"]
    assert two.layout.yaxis2.title.text == "Learning rate" and two.layout.title.text.endswith("Learning rate")
    assert list(two.data[0].y) != list(figure.data[0].y)  # smoothing 0: the raw loss, not the default 0.6
    one = ui.board.compare_runs(form(ui, runs__compare=[finished_run]))
    assert alerts(one, "warning") == [alert("en", "compare_pick_two")] and "runs.compare_box" not in one
    # A shared link: ?compare=<model>/<method>/<run>,... opens the same comparison.
    linked = ui.board.compare_link("demo/lora/finished, demo/lora/finished_lr", form(ui))
    assert linked["runs.compare"]["value"] == [finished_run, other]
    assert [trace.name for trace in linked["runs.compare_plot"].data] == [trace.name for trace in figure.data]
    bad = ui.board.compare_link("demo/lora/finished,demo/lora/nope,../../etc", form(ui))
    assert any("No run demo/lora/nope, ../../etc under" in text for text in alerts(bad, "warning"))
    assert ui.board.compare_link(None, form(ui)) == {}


def test_rerun_runs_the_viewed_run_again_in_a_new_folder(ui: Any, finished_run: str) -> None:
    started = ui.board.rerun(form(ui, train__view_run=finished_run))
    rerun = started["train.view_run"]["value"]
    assert rerun == str(Path(finished_run).with_name("finished-rerun"))
    assert alerts(started, "info")
    ui.board.runner.wait(rerun, timeout=30)
    before = yaml.safe_load((Path(finished_run) / "job.yaml").read_text())
    after = yaml.safe_load((Path(rerun) / "job.yaml").read_text())
    assert after == {**before, "output_dir": rerun}
    assert ui.board.rerun(form(ui, train__view_run=None)) == {ALERTS: [("warning", alert("en", "rerun_nothing"))]}


def test_loss_chart_log_scale_and_language(ui: Any, finished_run: str) -> None:
    cycle = finished_run
    plain = ui.board.change_view(form(ui, train__view_run=cycle))["train.loss_viewer"]
    assert plain.layout.yaxis.type != "log"
    log = ui.board.change_view(form(ui, train__view_run=cycle, train__loss_log_y=True))["train.loss_viewer"]
    assert log.layout.yaxis.type == "log"
    japanese = ui.board.change_view(form(ui, top__lang="ja", train__view_run=cycle))["train.loss_viewer"]
    assert japanese.layout.title.text == entry("ja", "train.loss_viewer")["label"]


def test_restarted_board_shows_the_running_job(board_home: Path) -> None:
    """The job outlives the board: a new board (new runner) re-attaches and its first page load shows the job."""
    from webui.app import create_ui

    first = create_ui("en", runner=make_fake_runner(board_home / "saves", "--steps", "200", "--interval", "0.05"))
    run_dir = first.board.start(form(first, train__output_dir="survivor"))["train.view_run"]["value"]
    try:
        second_runner = make_fake_runner(board_home / "saves")
        assert [str(path) for path in second_runner.reattach()] == [run_dir]
        second = create_ui("en", runner=second_runner)
        loaded = second.board.on_load(form(second))
        assert loaded["train.view_run"]["value"] == run_dir
        assert 'data-state="running"' in loaded["train.progress"]
    finally:
        first.board.runner.abort(run_dir)
        first.board.runner.wait(run_dir, timeout=15)


# Whole board


def test_board_never_imports_the_training_stack(tmp_path: Path) -> None:
    """In a fresh interpreter: build the UI, run a fake job to its end through the handlers, poll it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from webui.app import create_ui
        from webui.runner import Runner
        runner = Runner(grace_s=5, job_command=[sys.executable, {str(FAKE_JOB)!r}, "--steps", "3"])
        demo = create_ui("en", runner=runner)
        board = demo.board
        values = {{key: getattr(board.manager[key], "value", None) for key in board.manager}}
        started = board.start({{**values, "train.output_dir": "isolated"}})
        run_dir = started["train.view_run"]["value"]
        runner.wait(run_dir, timeout=30)
        result = board.poll({{**values, "train.view_run": run_dir}})
        assert 'data-state="finished"' in result["train.progress"], result["train.progress"]
        board.preview_open(values)
        print(sorted(name for name in {HEAVY!r} if name in sys.modules))
        """
    )
    env = {**os.environ, "LLAMABOARD_SAVES": str(tmp_path / "saves"), "LLAMABOARD_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_served_board_runs_a_job_for_gradio_client(ui: Any) -> None:
    """The board served in-process: preview, start, watch, abort through the HTTP API, as a browser would."""
    from gradio_client import Client

    port = _free_port()
    ui.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]

        def call(name: str, **values: Any) -> dict[str, Any]:
            """Call an endpoint with every input at its default except `values` (by label); outputs by label
            (the progress bar by its component name, "html"); updates reduced to their value."""
            params = api[name]["parameters"]
            args = [values.get(p["label"], p.get("parameter_default")) for p in params]
            job = client.submit(*args, api_name=name)
            outputs = job.result(timeout=30)
            assert job.exception() is None
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            named = {}
            for ret, out in zip(api[name]["returns"], outputs, strict=True):
                if isinstance(out, dict) and out.get("__type__") == "update":
                    out = out.get("value")
                named[ret["label"] if ret["component"] != "Html" else "html"] = out
            return named

        assert "llamafactory-cli train" in call("/cmd_preview")["Log"]
        refused = call("/start", **{"Extra arguments": "{seed: 1", "Output dir": "bad_json"})
        assert "extra_args" in refused["Log"] and "[board]" in refused["Log"]  # the toast's text, also in the log
        started = call("/start", **{"Output dir": "over_http"})
        run_dir = started["Run shown"]
        assert run_dir.endswith("over_http"), started

        def progressed() -> bool:
            out = call("/poll", **{"Run shown": run_dir})
            return "step 2/30" in (out.get("Log") or "")

        wait_for(progressed, message="the fake job's second step in the log box")
        call("/abort", **{"Run shown": run_dir})
        wait_for(lambda: ui.board.runner.active() == [], message="the job to end")
        final = call("/change_view", **{"Run shown": run_dir})
        assert "SIGTERM received" in final["Log"]
        assert 'data-state="aborted"' in final["html"]
    finally:
        ui.close()


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        ([], {}, ("127.0.0.1", 7860, False)),
        (["--host", "0.0.0.0", "--port", "9000", "--share"], {}, ("0.0.0.0", 9000, True)),
        ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7999"}, ("0.0.0.0", 7999, False)),
    ],
)
def test_entry_point_options(monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict, expected: tuple) -> None:
    from webui import app

    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(app, "launch", lambda **kwargs: calls.append(kwargs))
    app.main(argv)
    assert (calls[0]["host"], calls[0]["port"], calls[0]["share"]) == expected


def test_a_language_switch_redraws_the_sweep_preview_instead_of_overwriting_it(ui: Any) -> None:
    """Computed text (the sweep preview, a Markdown) is not relabelled: a relabel put its locale label ("Sweep
    runs") in place of the preview. It is redrawn in the new language instead: the language is one of its triggers."""
    board, m = ui.board, ui.board.manager
    assert "train.sweep_preview" not in board.change_lang(form(ui, top__lang="zh"))
    board.change_lang(form(ui, top__lang="en"))
    preview = next(fn for fn in ui.fns.values() if getattr(fn.fn, "handler", None) == board.sweep_preview)
    assert (m["top.lang"]._id, "change") in preview.targets
    sweep = {"train.sweep_key1": "learning_rate", "train.sweep_values1": "1e-4,5e-4", "train.output_dir": "sweep_a"}
    english = board.sweep_preview(form(ui, **{k.replace(".", "__"): v for k, v in sweep.items()}))
    chinese = board.sweep_preview(form(ui, top__lang="zh", **{k.replace(".", "__"): v for k, v in sweep.items()}))
    assert "sweep_a-learning_rate-1e-4" in chinese["train.sweep_preview"]
    assert english["train.sweep_preview"] != chinese["train.sweep_preview"]


def test_a_handler_fed_by_several_fields_runs_once_for_their_latest_values(ui: Any) -> None:
    """Bound once per field, a preview handler can run twice at once: the run that read the older values (a key
    typed, its values not yet) may finish last and leave a stale "give both a key and its values" on screen. Each
    such handler is one event over all its fields, and "always_last" keeps one run in flight with the newest values."""
    fed: dict[tuple[Any, tuple[int, ...]], list[Any]] = {}
    for block_fn in ui.fns.values():
        handler = getattr(block_fn.fn, "handler", None)
        events = {event for _, event in block_fn.targets} - {"load"}
        if handler is None or not events <= {"change", "input", "submit"}:
            continue
        fed.setdefault((handler, tuple(sorted(id(out) for out in block_fn.outputs))), []).append(block_fn)
    assert fed
    for (handler, _), block_fns in fed.items():
        assert len(block_fns) == 1, f"{handler.__name__} is bound {len(block_fns)} times to field changes"
        if len(block_fns[0].targets) > 1:
            assert block_fns[0].trigger_mode == "always_last", handler.__name__
    board = ui.board
    plan = next(fn for fn in ui.fns.values() if getattr(fn.fn, "handler", None) == board.plan)
    sweep = next(fn for fn in ui.fns.values() if getattr(fn.fn, "handler", None) == board.sweep_preview)
    assert len(plan.targets) > 5 and len(sweep.targets) >= 6
    # The page load's plan is in the same event: read before the remembered choices return, it must not land last.
    assert "load" in {event for _, event in plan.targets}

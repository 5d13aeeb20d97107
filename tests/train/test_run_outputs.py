"""What a finished training run leaves besides its weights: the model card, the plot_loss charts (plotly, no
matplotlib needed) and the end-of-training hub push, which can never fail the run."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from core.hparams import ArgumentError, get_train_args


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, demo_model):
    from trainhelp import train_args

    from core import run_exp

    args = train_args(
        tmp_path_factory.mktemp("run") / "sft-card",
        "sft",
        max_steps=4,
        logging_steps=2,
        plot_loss=True,
        learning_rate=3e-3,
        lora_rank=4,
    )
    run_exp(args)
    return Path(args["output_dir"])


@pytest.mark.slow
def test_the_model_card_says_what_was_trained_and_how_to_load_it(finished_run):
    card = (finished_run / "README.md").read_text(encoding="utf-8")
    front = card.split("---")[1]
    assert "library_name: peft" in front and "- demo_sft" in front and "- sft" in front and "- lora" in front
    assert "| learning_rate | 0.003 |" in card and "| lora_rank | 4 |" in card and "| cutoff_len | 64 |" in card
    assert "| train_loss |" in card  # the final metrics
    assert "PeftModel.from_pretrained" in card and "Chat template: `chatml`" in card
    assert "- transformers " in card and "- torch " in card


@pytest.mark.slow
def test_plot_loss_writes_an_offline_chart_page_without_matplotlib(finished_run):
    page = (finished_run / "training_charts.html").read_text(encoding="utf-8")
    # plotly.js is inlined once (the page opens with no network) and the loss and learning-rate charts are there.
    assert page.count("plotly.js v") >= 1 and "cdn.plot.ly" not in page.split("</script>")[-1]
    assert "Loss of sft-card" in page and "Learning rate of sft-card" in page


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_to_hub_is_checked_before_training(make_args, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ArgumentError) as err:
        get_train_args(make_args("sft", push_to_hub=True))
    problems = "\n".join(err.value.problems)
    assert "push_to_hub: received true — HF_HUB_OFFLINE is set" in problems
    assert "set HF_TOKEN in the environment" in problems and "set hub_model_id" in problems


@pytest.mark.slow
def test_a_failed_push_is_one_log_line_and_the_run_still_succeeds(make_args, monkeypatch):
    from core import run_exp

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 30)
    # Nothing listens there: the upload fails at once, as it would on a machine without network.
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    args = make_args("sft", max_steps=2, logging_steps=1, push_to_hub=True, hub_model_id="someone/demo-sft")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("core").addHandler(handler)  # the console handler keeps its first stream
    try:
        run_exp(args)
    finally:
        logging.getLogger("core").removeHandler(handler)
    output_dir = Path(args["output_dir"])
    assert (output_dir / "adapter_model.safetensors").exists() and (output_dir / "README.md").exists()
    log = "\n".join(records)
    failures = [line for line in log.splitlines() if "push_to_hub: the upload to someone/demo-sft failed" in line]
    assert len(failures) == 1 and "push it later" in failures[0]
    assert (
        "hf_xxx" not in (output_dir / "README.md").read_text()
        and "hf_xxx" not in (output_dir / "job.yaml").read_text()
    )

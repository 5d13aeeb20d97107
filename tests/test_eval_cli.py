"""`llamafactory-cli eval`: an sft prediction run that writes what `train` with do_predict writes; the examples in
examples/infer/ are valid for their commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INFER_EXAMPLES = sorted((ROOT / "examples" / "infer").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    """The tiny demo model, built into a temporary LLAMABOARD_CACHE for this module."""
    previous = os.environ.get("LLAMABOARD_CACHE")
    os.environ["LLAMABOARD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from core.demo import ensure_demo_model

    yield ensure_demo_model("tiny")
    if previous is None:
        os.environ.pop("LLAMABOARD_CACHE", None)
    else:
        os.environ["LLAMABOARD_CACHE"] = previous


@pytest.fixture(scope="module")
def adapter(demo_model, tmp_path_factory) -> Path:
    """A LoRA adapter with random weights (no training needed to test the plumbing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("adapter")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(demo_model), config).save_pretrained(out)
    return out


def test_eval_writes_predictions_and_scores(adapter, tmp_path):
    from core.cli import main

    out = tmp_path / "eval"
    status = main(
        [
            "eval",
            str(ROOT / "examples" / "infer" / "eval_lora.yaml"),
            f"adapter_name_or_path={adapter}",
            f"output_dir={out}",
            "max_samples=6",
            "max_new_tokens=6",
            "use_cpu=true",
            "report_to=none",
        ]
    )
    assert status == 0

    rows = [json.loads(line) for line in (out / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(set(row) == {"prompt", "label", "predict"} for row in rows)
    assert all(row["prompt"].startswith("<|im_start|>user\n") and row["label"] for row in rows)

    results = json.loads((out / "predict_results.json").read_text())
    for key in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime"):
        assert isinstance(results[key], float) and results[key] >= 0, key
    job = yaml.safe_load((out / "job.yaml").read_text())
    assert job["do_predict"] is True and job["predict_with_generate"] is True and job["stage"] == "sft"


def test_eval_refuses_training_and_other_stages(capsys):
    from core.cli import main

    assert main(["eval", "model_name_or_path=demo", "stage=dpo", "do_train=true", "output_dir=x"]) == 2
    err = capsys.readouterr().err
    assert "stage: received 'dpo'" in err and "do_train: received true — eval only predicts" in err
    assert main(["eval", str(ROOT / "examples/infer/eval_lora.yaml"), "adapter_name_or_path=./no/adapter"]) == 2
    assert "adapter_name_or_path: received './no/adapter' — no such folder" in capsys.readouterr().err
    assert main(["eval", "model_name_or_path=demo", "eval_dataset=demo_sft_eval"]) == 2
    assert "template: missing" in capsys.readouterr().err  # checked before the training stack loads


@pytest.mark.parametrize("path", INFER_EXAMPLES, ids=lambda p: p.name)
def test_infer_examples_are_valid_for_their_command(path, caplog):
    from core.cli import EVAL_DEFAULTS
    from core.hparams import check_dict, get_infer_args

    args = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert args["model_name_or_path"] == "demo"
    assert f"llamafactory-cli {path.stem.split('_')[0]} examples/infer/{path.name}" in path.read_text()
    if path.name.startswith("eval"):
        assert check_dict({**args, **EVAL_DEFAULTS}) == []
    else:
        model_args, *_ = get_infer_args(args)
        assert not [r for r in caplog.records if r.levelname == "WARNING"], "keys ignored by chat / export"
        if path.name.startswith("export"):
            assert model_args.export_dir and not model_args.export_overwrite

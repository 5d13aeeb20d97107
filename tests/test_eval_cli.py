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


def _readable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n\t" for ch in text) and "\ufffd" not in text


def test_predictions_are_whole_printable_characters(demo_model, tmp_path):
    """Generated ids holding half a character, a control byte, a byte that is no UTF-8 and a special token are
    written as the readable text they hold."""
    from types import SimpleNamespace

    import numpy as np
    from datasets import Dataset
    from transformers import AutoTokenizer

    from core.train.sft import save_predictions

    tok = AutoTokenizer.from_pretrained(demo_model)
    half_char = tok.encode("\u3042")[:2]
    noise = [tok.convert_tokens_to_ids("<|im_start|>"), *tok.encode("\x18"), tok.convert_tokens_to_ids("\u00ff")]
    ok, end, pad = tok.encode("ok"), tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    predicted = [ok + noise + ok + [end, pad], ok + half_char + [end] + [pad] * 4]
    prompt = tok.encode("<|im_start|>user\nCopy: ok<|im_end|>\n<|im_start|>assistant\n")
    dataset = Dataset.from_dict({"input_ids": [prompt, prompt]})  # no prompt column: tokenized by an older version
    output = SimpleNamespace(predictions=np.array(predicted), label_ids=np.array([ok + [end, -100]] * 2))
    rows = [json.loads(line) for line in save_predictions(tmp_path, dataset, output, tok).read_text().splitlines()]
    assert [row["predict"] for row in rows] == ["okok", "ok"]
    assert rows[0]["label"] == "ok" and "<|im_start|>" not in rows[0]["prompt"] and "Copy: ok" in rows[0]["prompt"]


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
    data = json.loads((ROOT / "assets" / "data" / "demo_sft_eval.json").read_text())
    user_prompts = {"\n".join(part for part in (row["instruction"], row["input"]) if part) for row in data}
    assert all(row["prompt"] in user_prompts and row["label"] for row in rows)  # the user's text, no template
    assert all(_readable(row["predict"]) and _readable(row["label"]) for row in rows), rows

    results = json.loads((out / "predict_results.json").read_text())
    for key in ("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime"):
        assert isinstance(results[key], float) and results[key] >= 0, key
    job = yaml.safe_load((out / "job.yaml").read_text())
    assert job["do_predict"] is True and job["predict_with_generate"] is True and job["stage"] == "sft"
    log = (out / "job.log").read_text(encoding="utf-8")  # the CLI's console, in the run folder
    assert "Evaluation, no training (stage sft, lora)" in log and "Stage sft" not in log


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

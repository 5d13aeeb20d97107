"""Stage sft on the demo model: each method trains what it should; loss falls; predictions improve and are scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core.train.callbacks import read_log_records
from core.train.metrics import compute_generation_metrics

LOG_KEYS = {
    "current_steps",
    "total_steps",
    "percentage",
    "epoch",
    "elapsed_time",
    "remaining_time",
    "elapsed_s",
    "remaining_s",
    "loss",
    "lr",
    "grad_norm",
    "throughput",
    "total_tokens",
}


def test_scores_are_100_for_exact_answers_and_0_for_empty_ones():
    perfect = compute_generation_metrics(["sun cat map", "今天天气很好"], ["sun cat map", "今天天气很好"])
    assert perfect == {"bleu-4": 100.0, "rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "exact_match": 100.0}
    empty = compute_generation_metrics(["", ""], ["sun cat map", "今天天气很好"])
    assert all(value == 0.0 for value in empty.values())


def test_chinese_is_segmented_into_words_for_rouge():
    # Without segmentation a Chinese sentence is one "word" and any difference would score ROUGE-1 zero.
    partial = compute_generation_metrics(["今天天气不错"], ["今天天气很好"])
    assert 0 < partial["rouge-1"] < 100 and 0 < partial["bleu-4"] < 100
    swapped = compute_generation_metrics(["cat sun map"], ["sun cat map"])
    assert swapped["rouge-1"] == 100.0 and swapped["rouge-2"] < 100.0


def _train_short(make_args, method: str, **overrides) -> Path:
    from core import run_exp

    settings = {"max_steps": 6, "logging_steps": 2, "learning_rate": 1e-2, "freeze_trainable_layers": 1, **overrides}
    args = make_args("sft", output_dir=None, finetuning_type=method, **settings)
    args["output_dir"] = str(Path(args["output_dir"]).with_name(f"sft-{method}"))
    run_exp(args)
    return Path(args["output_dir"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "freeze", "full"])
def test_each_method_trains_its_parameters_only(make_args, demo_model, method):
    output_dir = _train_short(make_args, method)
    base = load_file(str(demo_model / "model.safetensors"))
    records = [r for r in read_log_records(output_dir / "trainer_log.jsonl") if "loss" in r]
    assert len(records) == 3 and all(LOG_KEYS <= r.keys() for r in records)
    assert records[-1]["total_tokens"] > records[0]["total_tokens"] > 0
    assert json.loads((output_dir / "train_results.json").read_text())["train_loss"] > 0

    if method == "lora":
        adapter = load_file(str(output_dir / "adapter_model.safetensors"))
        b_matrices = [t for name, t in adapter.items() if "lora_B" in name]
        assert b_matrices and all(t.abs().sum() > 0 for t in b_matrices)  # B starts at zero: moved means trained
        assert not (output_dir / "model.safetensors").exists()
        return
    trained = load_file(str(output_dir / "model.safetensors"))
    changed = {name for name in base if not (base[name] == trained[name]).all()}
    if method == "full":
        assert changed == set(base)
    else:
        assert changed == {name for name in base if ".layers.1." in name}


@pytest.mark.slow
def test_pissa_convert_saves_a_plain_lora_adapter(make_args):
    output_dir = _train_short(make_args, "lora", pissa_init=True, pissa_iter=-1, pissa_convert=True, max_steps=2)
    converted = json.loads((output_dir / "pissa_converted" / "adapter_config.json").read_text())
    initial = json.loads((output_dir / "pissa_init" / "adapter_config.json").read_text())
    # The converted adapter applies to the original base, so it carries both halves: twice the rank.
    assert converted["r"] == 2 * initial["r"] == 16
    assert converted["init_lora_weights"] is True


def test_predict_together_with_train_is_refused(make_args):
    from core import run_exp

    with pytest.raises(ValueError, match="do_predict: true together with do_train: true"):
        run_exp(make_args("sft", do_predict=True, predict_with_generate=True, eval_dataset="demo_sft_eval"))


@pytest.mark.slow
def test_sft_lora_loss_falls_on_train_and_held_out_prompts(make_args):
    """LoRA trains neither the embeddings nor the (tied) output layer: it learns only if the demo model's
    initialisation leaves them room (core.demo: init_std). Measured: train loss 5.1 -> 3.1 in 150 steps, held-out
    eval loss 3.2; with the old std 0.02 initialisation 5.9 -> 5.7 and eval loss 5.7 (chance: ln 512 = 6.2)."""
    import math

    from core import run_exp

    args = make_args(
        "sft",
        max_steps=150,
        learning_rate=5e-3,
        logging_steps=10,
        max_samples=1000,
        eval_dataset="demo_sft_eval",
        eval_strategy="steps",
        eval_steps=150,
    )
    run_exp(args)
    records = read_log_records(Path(args["output_dir"]) / "trainer_log.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    eval_loss = [r["eval_loss"] for r in records if "eval_loss" in r][-1]
    assert eval_loss < 0.6 * math.log(512), eval_loss


def _predict(make_args, name: str, model: str) -> dict:
    from core import run_exp

    args = make_args(
        "sft",
        output_dir=None,
        model_name_or_path=model,
        finetuning_type="full",
        do_train=False,
        do_predict=True,
        predict_with_generate=True,
        eval_dataset="demo_sft_eval",
        max_samples=30,
        do_sample=False,
        max_new_tokens=10,
        per_device_eval_batch_size=30,
    )
    args["output_dir"] = str(Path(args["output_dir"]).with_name(name))
    run_exp(args)
    predictions = [json.loads(line) for line in (Path(args["output_dir"]) / "generated_predictions.jsonl").open()]
    assert len(predictions) == 30
    # What a person reads in the board's predictions viewer: the user's text, answers of whole printable characters.
    assert not any("<|im_start|>" in p["prompt"] or "\nassistant" in p["prompt"] for p in predictions)
    unreadable = [p for p in predictions if not _readable(p["prompt"] + p["predict"])]
    assert not unreadable, unreadable
    return json.loads((Path(args["output_dir"]) / "predict_results.json").read_text())


def _readable(text: str) -> bool:
    return all((ch.isprintable() and ch != "\ufffd") or ch in "\n\t" for ch in text)


@pytest.mark.slow
def test_sft_loss_falls_and_held_out_answers_get_closer(make_args):
    from core import run_exp

    # Full fine-tuning: in the same 200 steps it gets much further than LoRA (loss about 1.1 against 3), so the
    # predictions are right often enough to score.
    args = make_args(
        "sft",
        output_dir=None,
        finetuning_type="full",
        max_steps=200,
        learning_rate=3e-3,
        per_device_train_batch_size=16,
        logging_steps=10,
        max_samples=1000,
        plot_loss=True,
    )
    run_exp(args)
    output_dir = Path(args["output_dir"])
    losses = [r["loss"] for r in read_log_records(output_dir / "trainer_log.jsonl") if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses

    before = _predict(make_args, "predict-before", "demo")
    after = _predict(make_args, "predict-after", str(output_dir))
    # Measured (demo recipe 2): BLEU-4 1.2 -> 36.5 and ROUGE-L 0 -> 35.8 (answers of the right shape: word count,
    # case, digits; many exactly right); recipe 1 reached 14.8 and 9.6. A run that does not learn stays near 0 (or
    # collapses to one repeated token, about 1).
    assert after["predict_bleu-4"] >= before["predict_bleu-4"] + 20, (before, after)
    assert after["predict_rouge-l"] >= before["predict_rouge-l"] + 20, (before, after)

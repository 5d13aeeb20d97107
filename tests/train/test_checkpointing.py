"""Gradient checkpointing only where it pays: off while the planned job fits, on when it would not, a choice obeyed."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from core.train import checkpointing

CONFIG_40M = {
    "vocab_size": 502,
    "hidden_size": 512,
    "intermediate_size": 2560,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "tie_word_embeddings": True,
}
GB = 1024**3


def parsed(**training):
    data = SimpleNamespace(cutoff_len=1024, packing=False)
    train = SimpleNamespace(
        do_train=True,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        bf16=False,
        fp16=False,
        activation_checkpointing=None,
        **training,
    )
    return SimpleNamespace(model_name_or_path="m"), data, train, SimpleNamespace(stage="sft", finetuning_type="lora")


def test_off_when_the_job_fits_and_on_when_it_would_not():
    model, data, train, finetuning = parsed()
    args = checkpointing.plan_args({}, data, train, finetuning)
    on, why = checkpointing.choose(args, CONFIG_40M, 64 * GB)
    assert on is False and "would only slow each step" in why
    # 8 x 1024 tokens x 8 layers of activations of a 512-wide model: a few GB, more than a 2 GB device holds
    on, why = checkpointing.choose(args, CONFIG_40M, 2 * GB)
    assert on is True and "without it" in why
    # a longer cutoff needs more activations: the same device that held 1024 no longer holds 16384
    long = checkpointing.plan_args({}, SimpleNamespace(cutoff_len=16384, packing=True), train, finetuning)
    assert checkpointing.choose(args, CONFIG_40M, 8 * GB)[0] is False
    assert checkpointing.choose(long, CONFIG_40M, 8 * GB)[0] is True


def test_decide_obeys_an_explicit_choice_and_lf_disable(monkeypatch, caplog):
    monkeypatch.setattr(checkpointing, "device_memory_bytes", lambda: (1 * GB, "RAM"))
    monkeypatch.setattr("core.plan.read_config", lambda name: CONFIG_40M)
    model, data, train, finetuning = parsed()
    with caplog.at_level(logging.INFO, logger="core.train.checkpointing"):
        checkpointing.decide({}, model, data, train, finetuning)
    assert train.activation_checkpointing is True and "Gradient checkpointing: on" in caplog.text

    for raw in ({"gradient_checkpointing": False}, {"activation_checkpointing": False}):
        model, data, train, finetuning = parsed()
        checkpointing.decide(raw, model, data, train, finetuning)
        assert train.activation_checkpointing is None  # left as the parser set it from the job's own value

    model, data, train, finetuning = parsed()
    checkpointing.decide({"disable_gradient_checkpointing": True}, model, data, train, finetuning)
    assert train.activation_checkpointing is False


def test_a_model_the_planner_cannot_read_stays_off(monkeypatch):
    def unreadable(name):
        from core.plan import PlanError

        raise PlanError("config.json has no hidden_size")

    monkeypatch.setattr("core.plan.read_config", unreadable)
    model, data, train, finetuning = parsed()
    checkpointing.decide({}, model, data, train, finetuning)
    assert train.activation_checkpointing is False

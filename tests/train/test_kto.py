"""kto: the trainer on a tiny random Llama (weights, KL term, batches without desirable examples), then learning on
the demo model through `run_exp`.

The demo model starts from random weights, and KTO's examples are unpaired: an undesirable uppercase answer (one
word left lowercase) is mostly right, so a held-out one gets a positive implicit reward until the model has learnt
the task itself (measured on held-out uppercase examples after 30 steps: 0.37). The learning test therefore
evaluates on the 32 examples it trained on: the implicit reward must take the sign of each example's tag
(desirable > 0 > undesirable) for 80% or more of them, from 0 at the start, with the desirable mean above the
undesirable one.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
from trainhelp import lora, tiny_llama

from core.train.pref_trainer import KTOTrainer, sequence_logps


def feedback_batch(tags):
    """One row per tag: a 3-token prompt (label -100) and a 3-token answer; kl rows pair prompts with other answers."""
    n = len(tags)
    ids = torch.tensor([[5 + i, 6, 7, 10 + i, 11, 12] for i in range(n)])
    kl_ids = torch.tensor([[5 + i, 6, 7, 10 + (i + 1) % n, 11, 12] for i in range(n)])
    labels, kl_labels = ids.clone(), kl_ids.clone()
    labels[:, :3] = kl_labels[:, :3] = -100
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "kl_input_ids": kl_ids,
        "kl_attention_mask": torch.ones_like(kl_ids),
        "kl_labels": kl_labels,
        "kto_tags": torch.tensor(tags),
    }


def make_trainer(tmp_path, model, ref_model=None, **overrides):
    from transformers import TrainingArguments

    values = {"pref_beta": 0.1, "pref_ftx": 0.0, "kto_chosen_weight": 1.0, "kto_rejected_weight": 1.0, **overrides}
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, remove_unused_columns=False)
    return KTOTrainer(model=model, args=args, finetuning_args=types.SimpleNamespace(**values), ref_model=ref_model)


def test_fresh_adapter_gives_the_neutral_loss_and_weights_scale_it(tmp_path):
    model = lora(tiny_llama())
    batch = feedback_batch([True, True, False])
    # policy == reference and KL == 0: every example costs 1 - sigmoid(0) = 0.5 times its weight.
    assert make_trainer(tmp_path, model).batch_loss(model, batch, "train").item() == pytest.approx(0.5)
    weighted = make_trainer(tmp_path, model, kto_chosen_weight=2.0, kto_rejected_weight=0.5)
    assert weighted.batch_loss(model, batch, "train").item() == pytest.approx((2 * 0.5 * 2 + 0.5 * 0.5) / 3)


def test_kl_term_and_metrics_once_the_policy_moves(tmp_path):
    model = lora(tiny_llama())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    trainer = make_trainer(tmp_path, model)
    loss = trainer.batch_loss(model, feedback_batch([True, False, False, True]), "train")
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora" in n)
    seen = []
    trainer.callback_handler.on_log = lambda args, state, control, logs: seen.append(dict(logs)) or control
    trainer.log({"loss": loss.item()})
    logs = seen[0]
    assert logs["kl"] >= 0  # clamped: an estimate below zero would reward moving away
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "accuracy"):
        assert key in logs, key
    assert logs["rewards/margins"] == pytest.approx(logs["rewards/chosen"] - logs["rewards/rejected"])


def test_batch_without_desirable_examples(tmp_path):
    model = lora(tiny_llama())
    trainer = make_trainer(tmp_path, model, pref_ftx=1.0)
    loss = trainer.batch_loss(model, feedback_batch([False, False]), "train")
    assert torch.isfinite(loss)
    seen = []
    trainer.callback_handler.on_log = lambda args, state, control, logs: seen.append(dict(logs)) or control
    trainer.log({"loss": loss.item()})
    assert "rewards/rejected" in seen[0] and "rewards/chosen" not in seen[0]


def test_logps_from_the_label_window_and_switched_layers_equal_the_plain_computation(tmp_path):
    """The trainer's fast path (logits only where labels are, adapters switched layer by layer) against every logit
    and peft's own disable_adapter(), within 1e-5, for the policy and the adapter-off reference."""
    model = lora(tiny_llama())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    trainer = make_trainer(tmp_path, model)
    batch = feedback_batch([True, False, True])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"].clone()
    labels[0, 3] = -100  # answers starting at different positions
    mask[2, 5:] = 0  # and a padded row
    labels[2, 5:] = -100
    with torch.no_grad():
        policy = trainer._forward_logps(model, ids, mask, labels)
        with trainer._reference(model) as ref:
            reference = trainer._forward_logps(ref, ids, mask, labels)
        plain_policy = sequence_logps(model(input_ids=ids, attention_mask=mask).logits, labels)
        with model.disable_adapter():
            plain_reference = sequence_logps(model(input_ids=ids, attention_mask=mask).logits, labels)
    for got, expected in zip(policy + reference, plain_policy + plain_reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(policy[0], reference[0])  # the adapter was off for the reference only


def test_dropout_is_off_in_the_policy_and_the_reference_unless_asked_for(tmp_path):
    from peft import LoraConfig, get_peft_model

    def dropouts(model):
        return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]

    def lora_with_dropout():
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules=["q_proj", "v_proj"])
        return get_peft_model(tiny_llama(), config)

    model = lora_with_dropout()
    make_trainer(tmp_path, model)
    assert dropouts(model) and set(dropouts(model)) == {0}
    # A separate frozen reference (full / freeze runs) has its dropout switched off too.
    policy, reference = lora_with_dropout(), lora_with_dropout()
    make_trainer(tmp_path, policy, ref_model=reference)
    assert dropouts(reference) and set(dropouts(reference)) == {0}
    kept = lora_with_dropout()
    make_trainer(tmp_path, kept, disable_dropout=False)
    assert set(dropouts(kept)) == {0.3}


def test_policy_as_its_own_reference_leaves_the_rewards_out(tmp_path):
    """Evaluating without training: the reference is the policy, every reward would be 0 and is not reported."""
    model = tiny_llama()
    trainer = make_trainer(tmp_path, model, ref_model=model)
    loss = trainer.batch_loss(model, feedback_batch([True, False]), "eval")
    assert loss.item() == pytest.approx(0.5)
    seen = []
    trainer.callback_handler.on_log = lambda args, state, control, logs: seen.append(dict(logs)) or control
    trainer.log({"eval_loss": loss.item()})
    assert not any("rewards" in key or key == "eval_accuracy" for key in seen[0]), seen[0]
    assert "eval_logps/chosen" in seen[0] and "eval_kl" in seen[0]


def test_precomputed_reference_log_probs_equal_the_per_step_ones_and_are_cached(tmp_path, monkeypatch):
    from datasets import Dataset
    from transformers import TrainingArguments

    from core.data.collator import KTODataCollator

    model = lora(tiny_llama())
    batch = feedback_batch([True, False, True, False])
    keys = ("input_ids", "attention_mask", "labels", "kl_input_ids", "kl_attention_mask", "kl_labels", "kto_tags")
    dataset = Dataset.from_list([{key: batch[key][i].tolist() for key in keys} for i in range(4)])
    collator = KTODataCollator(tokenizer=types.SimpleNamespace(pad_token_id=0, padding_side="right"))
    values = {"pref_beta": 0.1, "pref_ftx": 0.0, "kto_chosen_weight": 1.0, "kto_rejected_weight": 1.0}

    def trainer_for(policy):
        args = TrainingArguments(
            output_dir=str(tmp_path), report_to="none", use_cpu=True, remove_unused_columns=False,
            per_device_train_batch_size=4,
        )  # fmt: skip
        finetuning = types.SimpleNamespace(**values, precompute_ref_log_probs=True)
        return KTOTrainer(
            model=policy, args=args, finetuning_args=finetuning, train_dataset=dataset, data_collator=collator
        )

    trainer = trainer_for(model)
    inputs = next(iter(trainer.get_train_dataloader()))
    cached = list(tmp_path.glob("ref_logps-*.safetensors"))
    assert len(cached) == 1
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # the policy moves; the adapter-off reference does not
    per_step = trainer.reference_logps(model, inputs)
    torch.testing.assert_close(inputs["ref_logps"], per_step, rtol=0, atol=1e-5)
    without = {key: value for key, value in inputs.items() if key != "ref_logps"}
    torch.testing.assert_close(
        trainer.batch_loss(model, inputs, "train"), trainer.batch_loss(model, without, "train"), rtol=0, atol=1e-5
    )

    # A second run in the same folder (a resume) reads the file instead of computing again.
    monkeypatch.setattr(KTOTrainer, "reference_logps", lambda *a: pytest.fail("recomputed despite the cache"))
    again = trainer_for(model)
    assert "ref_logps" in next(iter(again.get_train_dataloader()))
    monkeypatch.undo()
    # Another reference (here: changed base weights) gets a file of its own.
    with torch.no_grad():
        model.get_base_model().model.embed_tokens.weight.add_(0.1)
    trainer_for(model).get_train_dataloader()
    assert len(list(tmp_path.glob("ref_logps-*.safetensors"))) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, overrides",
    [("lora", {"learning_rate": 3e-2}), ("full", {"learning_rate": 3e-3})],
    ids=["lora-adapter-off-reference", "full-frozen-copy-reference"],
)
def test_kto_learns_the_tags(make_args, method, overrides):
    from core.train.callbacks import read_log_records
    from core.train.tuner import run_exp

    args = make_args(
        "kto",
        finetuning_type=method,
        pref_beta=0.5,
        max_samples=32,
        eval_dataset="demo_kto",
        do_eval=True,
        max_steps=30,
        logging_steps=5,
        **overrides,
    )
    run_exp(args)

    output_dir = Path(args["output_dir"])
    results = json.loads((output_dir / "eval_results.json").read_text())
    records = read_log_records(output_dir / "trainer_log.jsonl")
    train = [r for r in records if "loss" in r]
    print(method, {k: round(v, 3) for k, v in results.items() if "rewards" in k or "loss" in k or k == "eval_kl"})
    assert results["eval_rewards/accuracies"] >= 0.8
    assert results["eval_rewards/margins"] > 0
    assert train[-1]["loss"] < train[0]["loss"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "kl", "lr"):
        assert key in train[-1], key


def test_one_reference_forward_for_the_batch_and_its_kl_rows_equals_two(tmp_path):
    """reference_logps runs the answers and the (longer or shorter) KL rows through one forward: the same sums as
    one forward per group, within 1e-5."""
    import torch.nn.functional as F

    model = lora(tiny_llama())
    trainer = make_trainer(tmp_path, model)
    batch = feedback_batch([True, False, True])
    # KL rows 3 tokens longer than the answers, with a padded row
    batch["kl_input_ids"] = F.pad(batch["kl_input_ids"], (0, 3), value=5)
    batch["kl_attention_mask"] = F.pad(batch["kl_attention_mask"], (0, 3), value=1)
    batch["kl_labels"] = F.pad(batch["kl_labels"], (0, 3), value=7)
    batch["kl_attention_mask"][1, -2:] = 0
    batch["kl_labels"][1, -2:] = -100
    merged = trainer.reference_logps(model, batch)
    with torch.no_grad(), trainer._reference(model) as ref:
        sums, _ = trainer._forward_logps(ref, batch["input_ids"], batch["attention_mask"], batch["labels"])
        kl_sums, _ = trainer._forward_logps(ref, batch["kl_input_ids"], batch["kl_attention_mask"], batch["kl_labels"])
    torch.testing.assert_close(merged, torch.stack((sums, kl_sums), dim=1), rtol=0, atol=1e-5)

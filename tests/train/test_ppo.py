"""ppo: the algorithm's pieces against hand computations, the reward rules, then runs on the demo model: learning
from a rule, and the LoRA path with a reward model trained by the rm stage (stop on SIGTERM, resume, saved files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from core.train.ppo_rewards import REWARD_RULES, create_reward_fn, reference_f1, uppercase
from core.train.ppo_trainer import RunningMoments, cut_after_stop, gae, masked_whiten, ppo_losses

# --- pieces ---------------------------------------------------------------------------------------------------------


def test_gae_matches_a_hand_computation():
    gamma, lam = 1.0, 0.95
    rewards = torch.tensor([[0.0, -0.1, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0]])  # the last position is masked out: its value must not leak in
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask)
    r, v = [0.0, -0.1, 1.0], [0.5, 0.2, 0.4]
    deltas = [r[t] + gamma * (v[t + 1] if t + 1 < 3 else 0.0) - v[t] for t in range(3)]
    expected = [0.0, 0.0, 0.0]
    running = 0.0
    for t in reversed(range(3)):
        running = deltas[t] + gamma * lam * running
        expected[t] = running
    assert advantages[0, :3].tolist() == pytest.approx(expected)
    assert returns[0, :3].tolist() == pytest.approx([a + b for a, b in zip(expected, v, strict=True)])


def test_policy_loss_is_clipped_and_value_loss_too():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, -1.0]])
    # Ratio e^0.5 = 1.65 for both tokens: with A > 0 the gain is capped at 1.2 * A (no gradient);
    # with A < 0 the unclipped, larger loss 1.65 * |A| counts (gradient pushes the ratio down).
    logprobs = torch.full((1, 2), 0.5, requires_grad=True)
    values = torch.tensor([[1.0, 0.0]], requires_grad=True)
    returns = torch.tensor([[0.0, 0.0]])
    policy_loss, value_loss, clipfrac = ppo_losses(logprobs, values, old, old, advantages, returns, mask)
    assert policy_loss.item() == pytest.approx((-1.2 + math.e**0.5) / 2, rel=1e-5)
    assert clipfrac.item() == 1.0
    (policy_loss + value_loss).backward()
    assert logprobs.grad[0, 0].item() == 0.0 and logprobs.grad[0, 1].item() > 0
    # Value moved 1.0 away from the old 0.0: clipped to 0.2, but the max keeps the larger (unclipped) error 1.0.
    assert value_loss.item() == pytest.approx(0.5 * (1.0 + 0.0) / 2)


def test_masked_whiten_ignores_padding():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    whitened = masked_whiten(values, mask)
    real = whitened[0, :3]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)


def test_running_moments_match_the_whole_sample():
    torch.manual_seed(0)
    a, b = torch.randn(7) * 3 + 1, torch.randn(5) - 2
    moments = RunningMoments()
    moments.update(a)
    moments.update(b)
    both = torch.cat([a, b])
    assert moments.mean == pytest.approx(both.mean().item(), rel=1e-5)
    assert moments.std == pytest.approx(both.std(unbiased=False).item(), rel=1e-4)


def test_response_is_cut_after_the_first_stop_token():
    response = torch.tensor([[4, 5, 2, 7, 8], [4, 5, 6, 7, 8], [2, 9, 9, 9, 9]])
    cut, mask = cut_after_stop(response, stop_ids=[2], pad_id=0)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert cut.tolist() == [[4, 5, 2, 0, 0], [4, 5, 6, 7, 8], [2, 0, 0, 0, 0]]


def test_reward_rules():
    assert reference_f1("Reverse: a b", "b a", "b a") == 1.0
    assert reference_f1("", "b c", "b a") == pytest.approx(0.5)
    assert reference_f1("", "", "b a") == 0.0
    assert uppercase("", "DOG cat", "") == pytest.approx(0.5)
    assert uppercase("", "123", "") == 0.0
    assert set(REWARD_RULES) >= {"reference_f1", "uppercase"}


def test_unknown_rule_and_missing_reward_model_are_clear_errors(tmp_path):
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="reference_f1"):
        create_reward_fn(None, None, None, SimpleNamespace(reward_model_type="rule", reward_model="nope"), "cpu")
    with pytest.raises(FileNotFoundError, match="value_head.safetensors"):
        create_reward_fn(
            None,
            None,
            None,
            SimpleNamespace(reward_model_type="lora", reward_model=str(tmp_path), reward_model_adapters=None),
            "cpu",
        )


# --- runs on the demo model -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _core_logger_kept():
    """For run_exp in a module fixture: it runs before the per-test logger restore, and would leave the `core` logger
    writing to that test's (then closed) capture."""
    core_logger = logging.getLogger("core")
    saved = (list(core_logger.handlers), core_logger.propagate, core_logger.level)
    try:
        yield
    finally:
        core_logger.handlers[:], core_logger.propagate, core_logger.level = saved


@contextlib.contextmanager
def _lines_of(name: str):
    """The messages logger `name` emits inside the block, at INFO and above."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    target = logging.getLogger(name)
    previous_level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(previous_level)


def _log(output_dir, alerts: bool = False) -> list[dict]:
    """The metric records of trainer_log.jsonl (with `alerts=True`, every record)."""
    from core.train.callbacks import read_log_records

    records = read_log_records(Path(output_dir) / "trainer_log.jsonl")
    return records if alerts else [r for r in records if "alert" not in r]


def _uppercase_pairs(folder: Path) -> dict:
    """The uppercase-task pairs of demo_pref (chosen: every word uppercased; rejected: one word left lowercase) as a
    dataset of their own in `folder`; returns the rm arguments that train on them."""
    from core.paths import DEMO_DATA_DIR

    rows = json.loads((DEMO_DATA_DIR / "demo_pref.json").read_text(encoding="utf-8"))
    rows = [row for row in rows if "uppercase" in row["instruction"].lower()]
    (folder / "uppercase_pairs.json").write_text(json.dumps(rows), encoding="utf-8")
    info = json.loads((DEMO_DATA_DIR / "dataset_info.json").read_text(encoding="utf-8"))["demo_pref"]
    (folder / "dataset_info.json").write_text(
        json.dumps({"uppercase_pairs": {**info, "file_name": "uppercase_pairs.json"}}), encoding="utf-8"
    )
    return {"dataset_dir": str(folder), "dataset": "uppercase_pairs", "val_size": 0.2, "do_eval": True}


def _train_rm(tmp_path_factory, name: str, **overrides) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from trainhelp import train_args

    from core.train.tuner import run_exp

    output_dir = tmp_path_factory.mktemp(name)
    pairs = _uppercase_pairs(tmp_path_factory.mktemp(f"{name}-pairs"))
    args = train_args(output_dir, "rm", **pairs)
    args.update(per_device_train_batch_size=16, overwrite_output_dir=True, **overrides)
    with _core_logger_kept():
        run_exp(args)
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_accuracy"] >= 0.85
    return output_dir


@pytest.fixture(scope="module")
def uppercase_reward_model(tmp_path_factory, demo_model) -> Path:
    """A full reward model from the rm stage on the uppercase pairs; it ranks held-out pairs right after 20 steps
    (measured: 1.0)."""
    return _train_rm(tmp_path_factory, "rm-full", finetuning_type="full", learning_rate=3e-3)


@pytest.fixture(scope="module")
def uppercase_lora_reward_model(tmp_path_factory, demo_model) -> Path:
    """A LoRA reward model from the rm stage on the uppercase pairs (measured: eval_accuracy 0.92 after 20 steps)."""
    return _train_rm(tmp_path_factory, "rm-lora", finetuning_type="lora", learning_rate=1e-2)


# Settings a user would bring, sized for a test: the learning rates at the top of the usual ranges (LoRA 1e-4..1e-3,
# full 1e-5..1e-4), everything else at its default (score normalisation, KL controller, 4 PPO epochs) except what
# keeps a CPU run short: 4-token answers, 20 steps of 32 prompts in mini-batches of 8 (ppo_buffer_size 4, so 16
# optimizer steps per PPO step), a constant rate. The margin is on the mean reward of the last 5 steps over the
# first 5 (160 answers each); the measured rises and that of trl's GRPOTrainer are in the tests' docstrings.
ORDINARY = {
    "per_device_train_batch_size": 8,
    "ppo_buffer_size": 4,
    "max_new_tokens": 4,
    "lr_scheduler_type": "constant",
    "max_steps": 20,
    "logging_steps": 1,
}


def _first_and_last(output_dir) -> tuple[float, float]:
    records = _log(output_dir, alerts=True)
    rewards = [r["reward"] for r in records if "reward" in r]
    assert len(rewards) == ORDINARY["max_steps"]
    # A run that learns shows none of the signs of one that cannot (cut answers are expected: 4 tokens).
    assert not {r["alert"] for r in records if "alert" in r} & {"ppo_no_signal", "ppo_kl_over_score"}
    return sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("finetuning_type", "learning_rate", "margin"),
    # measured: lora 0.307 -> 0.424, full 0.370 -> 0.482
    [("lora", 1e-3, 0.05), ("full", 1e-4, 0.05)],
)
def test_ppo_with_ordinary_settings_raises_a_rule_reward(make_args, finetuning_type, learning_rate, margin):
    """The `uppercase` rule (share of capital letters) on the demo prompts."""
    from core.train.tuner import run_exp

    args = make_args(
        "ppo",
        finetuning_type=finetuning_type,
        learning_rate=learning_rate,
        reward_model="uppercase",
        reward_model_type="rule",
        **ORDINARY,
    )
    run_exp(args)
    first, last = _first_and_last(args["output_dir"])
    print(f"ppo {finetuning_type} lr {learning_rate:g}, uppercase rule: first 5 steps {first:.3f}, last 5 {last:.3f}")
    assert last >= first + margin
    output_dir = Path(args["output_dir"])
    assert (output_dir / "value_head.safetensors").is_file()


@pytest.mark.slow
def test_lora_ppo_with_ordinary_settings_raises_the_score_of_a_lora_reward_model(
    make_args, uppercase_lora_reward_model
):
    """LoRA policy at lr 1e-3 scored by a LoRA reward model of the rm stage, on the policy's own base model
    (measured: -0.419 -> 0.450)."""
    from core.train.tuner import run_exp

    args = make_args(
        "ppo",
        learning_rate=1e-3,
        reward_model=str(uppercase_lora_reward_model),
        reward_model_type="lora",
        **ORDINARY,
    )
    run_exp(args)
    first, last = _first_and_last(args["output_dir"])
    print(f"ppo lora lr 1e-3, lora rm: first 5 steps {first:.3f}, last 5 {last:.3f}")
    assert last >= first + 0.4


class _SigtermAtStep:
    """Sends this process SIGTERM during step `step`, as the board's Abort does to a job."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def lora_reward_model(tmp_path_factory, demo_model):
    """A LoRA reward model from the rm stage (a few steps: the wiring is under test here, not its accuracy)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from trainhelp import train_args

    from core.train.tuner import run_exp

    output_dir = tmp_path_factory.mktemp("rm-lora")
    with _core_logger_kept():
        run_exp(train_args(output_dir, "rm", max_steps=3, max_samples=24, overwrite_output_dir=True))
    return output_dir


@pytest.mark.slow
def test_lora_ppo_with_an_rm_reward_model_stops_saves_and_resumes(make_args, lora_reward_model):
    from transformers import TrainerCallback

    from core.train.tuner import run_exp

    class Stop(_SigtermAtStep, TrainerCallback):
        pass

    args = make_args(
        "ppo",
        reward_model=str(lora_reward_model),
        reward_model_type="lora",
        max_new_tokens=6,
        max_steps=4,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10,
    )
    output_dir = Path(args["output_dir"])
    run_exp(args, callbacks=[Stop(step=2)])

    # Stopped after step 2 with a complete checkpoint, the adapter and value head saved.
    records = _log(output_dir)
    assert [r["current_steps"] for r in records] == [1, 2]
    for key in ("loss", "reward", "kl", "value_loss", "policy_loss", "lr"):
        assert key in records[-1], key
    assert (output_dir / "checkpoint-2" / "trainer_state.json").is_file()
    for name in ("adapter_model.safetensors", "adapter_config.json", "value_head.safetensors"):
        assert (output_dir / name).is_file(), name
    assert not (output_dir / "reward").exists()  # the reward adapter is not saved as part of the policy

    # The same command again resumes at step 2 and ends at max_steps; the log continues without duplicates.
    run_exp(args)
    steps = [r["current_steps"] for r in _log(output_dir)]
    assert steps == [1, 2, 3, 4]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 4


@pytest.mark.slow
def test_full_policy_scored_by_a_lora_reward_model_on_a_separate_base(make_args, lora_reward_model, demo_model):
    """A LoRA rm cannot share a full policy's weights: `reward_model` names the base and `reward_model_adapters`
    the rm folder, merged into a separate copy. Also the less common settings: activation checkpointing, gradient
    accumulation with a buffer of several mini-batches (16 prompts a step), whitened rewards."""
    from core.train.tuner import run_exp

    args = make_args(
        "ppo",
        finetuning_type="full",
        reward_model=str(demo_model),
        reward_model_adapters=str(lora_reward_model),
        reward_model_type="full",
        max_new_tokens=4,
        max_steps=2,
        logging_steps=1,
        activation_checkpointing=True,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        ppo_buffer_size=2,
        ppo_whiten_rewards=True,
    )
    run_exp(args)
    records = _log(args["output_dir"])
    assert [r["current_steps"] for r in records] == [1, 2]
    assert all(isinstance(r["reward"], float) and r["grad_norm"] > 0 for r in records)
    assert records[-1]["total_tokens"] > records[0]["total_tokens"]


def test_optimizer_follows_the_loraplus_ratio_and_spares_norms_from_decay(tmp_path):
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    from core.hparams.finetuning_args import FinetuningArguments
    from core.model.valuehead import ValueHeadModel
    from core.train.ppo_trainer import PPOTrainer

    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    model = ValueHeadModel(get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj"])))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, weight_decay=0.1, max_steps=1)
    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=2)
    rows = [{"input_ids": [5, 6, 7], "labels": []}] * 8

    def build(**extra):
        # The real arguments class, so options added later (custom optimizers) keep their defaults here.
        finetuning = FinetuningArguments(stage="ppo", ppo_epochs=1, ppo_buffer_size=1, **extra)
        return PPOTrainer(model, tokenizer, args, finetuning, SimpleNamespace(), rows, None).optimizer

    groups = build().param_groups
    no_decay = next(g for g in groups if g["weight_decay"] == 0.0)
    assert any(p is model.v_head.bias for p in no_decay["params"])
    rates = {g["lr"] for g in build(loraplus_lr_ratio=8.0).param_groups}
    assert rates == {args.learning_rate, 8.0 * args.learning_rate}


# --- the reward does not follow the policy ----------------------------------------------------------------------


def _policy_and_scorer(make_args, finetuning_type: str, **reward):
    """The policy and the reward function exactly as `run_ppo` builds them."""
    from core.hparams import get_train_args
    from core.model import load_model, load_tokenizer
    from core.train.ppo_rewards import create_reward_fn

    model_args, _, training_args, finetuning_args, _ = get_train_args(
        make_args("ppo", finetuning_type=finetuning_type, **reward)
    )
    tokenizer = load_tokenizer(model_args)
    policy = load_model(tokenizer, model_args, finetuning_args, is_trainable=True, add_valuehead=True)
    return policy, tokenizer, create_reward_fn(policy, tokenizer, model_args, finetuning_args, training_args.device)


def _rollout(tokenizer):
    from core.train.ppo_trainer import Rollout

    prompt = "<|im_start|>user\nUppercase: dog cat<|im_end|>\n<|im_start|>assistant\n"
    answers = ["DOG CAT<|im_end|>", "dog cat<|im_end|>", "DOG cat<|im_end|>"]
    query = [tokenizer.encode(prompt, add_special_tokens=False)] * len(answers)
    response = [tokenizer.encode(a, add_special_tokens=False) for a in answers]
    width = max(len(r) for r in response)
    ids = torch.tensor([q + r + [0] * (width - len(r)) for q, r in zip(query, response, strict=True)])
    response_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in response])
    mask = torch.cat([torch.ones(len(answers), len(query[0]), dtype=torch.long), response_mask], dim=1)
    texts = [a.replace("<|im_end|>", "") for a in answers]
    return Rollout(ids, mask, response_mask, ["Uppercase: dog cat"] * len(answers), texts, ["DOG CAT"] * 3)


def _scores_before_and_after_the_policy_moves(policy, tokenizer, reward_fn):
    rollout = _rollout(tokenizer)
    before = reward_fn(rollout)
    logits_before = policy(rollout.input_ids, rollout.attention_mask)[0].detach()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in policy.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    assert not torch.allclose(policy(rollout.input_ids, rollout.attention_mask)[0], logits_before)  # it moved
    return before, reward_fn(rollout)


@pytest.mark.slow
def test_a_lora_reward_model_on_the_policys_base_scores_with_its_own_adapter(make_args, lora_reward_model):
    """The reward adapter sits on the policy's base model: moving the policy's adapter and value head must not
    change a single score, and the scores must be the reward model's (its adapter on, the policy's off)."""
    policy, tokenizer, reward_fn = _policy_and_scorer(
        make_args, "lora", reward_model=str(lora_reward_model), reward_model_type="lora"
    )
    before, after = _scores_before_and_after_the_policy_moves(policy, tokenizer, reward_fn)
    assert torch.equal(before, after)
    assert policy.pretrained_model.active_adapter != "reward"  # training goes on with the policy's adapter

    # The same scores as the rm run's model loaded on its own.
    from core.hparams import get_train_args
    from core.model import load_model

    model_args, _, _, finetuning_args, _ = get_train_args(
        make_args("rm", adapter_name_or_path=str(lora_reward_model), output_dir=str(lora_reward_model.parent / "x"))
    )
    reward_model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False, add_valuehead=True)
    rollout = _rollout(tokenizer)
    with torch.no_grad():
        _, values = reward_model(rollout.input_ids, rollout.attention_mask, return_logits=False)
    last = rollout.attention_mask.sum(-1) - 1
    assert torch.allclose(before, values[torch.arange(3), last], atol=1e-5)


@pytest.mark.slow
def test_a_full_reward_model_does_not_follow_the_policy(make_args, uppercase_reward_model):
    policy, tokenizer, reward_fn = _policy_and_scorer(
        make_args, "full", reward_model=str(uppercase_reward_model), reward_model_type="full"
    )
    before, after = _scores_before_and_after_the_policy_moves(policy, tokenizer, reward_fn)
    assert torch.equal(before, after)
    assert before[0] > before[1]  # it prefers the uppercase answer: the rm run's model scores


def test_a_rule_does_not_follow_the_policy(make_args):
    policy, tokenizer, reward_fn = _policy_and_scorer(
        make_args, "lora", reward_model="uppercase", reward_model_type="rule"
    )
    before, after = _scores_before_and_after_the_policy_moves(policy, tokenizer, reward_fn)
    assert torch.equal(before, after)
    assert before.tolist() == pytest.approx([1.0, 0.0, 0.5])


# --- why a run is not learning ------------------------------------------------------------------------------------


def _signs(**overrides):
    from core.train.ppo_trainer import StepSigns

    values = {"score_spread": 0.5, "score_mean": 0.3, "penalty": 0.1, "signal": 1.0, "truncated": 0.25}
    return StepSigns(**{**values, **overrides})


def test_diagnosis_names_each_reason_once_and_again_after_it_went_away():
    from core.train.ppo_trainer import DIAGNOSIS_STEPS, Diagnosis

    diagnosis = Diagnosis(max_new_tokens=16, score_norm=False)

    def log_after(*signs):  # steps, then a log
        for sign in signs:
            diagnosis.step(sign)
        return dict(diagnosis.check())

    assert log_after(_signs(), _signs()) == {}  # healthy
    # One bad step among healthy ones is not enough: the last DIAGNOSIS_STEPS steps are judged together.
    assert log_after(_signs(score_spread=0.0, truncated=1.0)) == {}
    found = log_after(*[_signs(score_spread=0.0, truncated=1.0)] * (DIAGNOSIS_STEPS - 2))
    assert found == {}  # a healthy step is still among the last five
    found = log_after(_signs(score_spread=0.0, truncated=0.75))  # 95% cut over the five counts as always
    assert set(found) == {"ppo_no_signal", "ppo_truncated"}
    assert "same reward (0.3)" in found["ppo_no_signal"] and "95% of the responses" in found["ppo_truncated"]

    assert log_after(_signs(score_spread=0.0, truncated=1.0)) == {}  # still there: not repeated
    assert log_after(*[_signs(score_spread=0.0, truncated=0.0)] * DIAGNOSIS_STEPS) == {}  # answers stop now
    found = log_after(*[_signs(score_spread=0.0, truncated=1.0)] * DIAGNOSIS_STEPS)
    assert list(found) == ["ppo_truncated"]  # back again: raised again

    # The KL sign is judged on means: 1.05 per response against a spread of 0.3.
    found = log_after(*[_signs(penalty=2.0, signal=0.3), _signs(penalty=0.1, signal=0.3)] * 3)
    assert list(found) == ["ppo_kl_over_score"] and "turn ppo_score_norm on" in found["ppo_kl_over_score"]


@pytest.mark.slow
def test_a_reward_that_never_varies_is_named_in_the_log_and_trainer_log(make_args):
    """A rule that gives every answer 0, and answers cut at 1 token (the random demo model seldom stops at once):
    both signs reach trainer_log.jsonl as alert records and the log as lines."""
    from core.train import ppo_rewards
    from core.train.tuner import run_exp

    ppo_rewards.REWARD_RULES["always_zero"] = lambda prompt, response, reference: 0.0
    try:
        args = make_args(
            "ppo", reward_model="always_zero", reward_model_type="rule", max_new_tokens=1, max_steps=2, logging_steps=2
        )
        with _lines_of("core.train.ppo_trainer") as lines:
            run_exp(args)
    finally:
        del ppo_rewards.REWARD_RULES["always_zero"]
    records = _log(args["output_dir"], alerts=True)
    alerts = {r["alert"]: r for r in records if "alert" in r}
    assert set(alerts) == {"ppo_no_signal", "ppo_truncated"}
    assert alerts["ppo_no_signal"]["current_steps"] == 2 and "nothing to learn" in alerts["ppo_no_signal"]["message"]
    assert records[-1].get("reward") == 0.0  # the metric record comes last: progress readers keep working
    assert any(line.startswith("alert ppo_no_signal at step 2: every response") for line in lines)  # job.log's


def test_ppo_defaults_bound_the_answers_and_normalise_the_scores(make_args):
    from core.hparams import get_train_args
    from core.hparams.generating_args import PPO_MAX_NEW_TOKENS

    with _lines_of("core.hparams.parser") as lines:
        _, _, _, finetuning_args, generating_args = get_train_args(make_args("ppo", reward_model="uppercase"))
    assert generating_args.max_new_tokens == PPO_MAX_NEW_TOKENS == 128 and finetuning_args.ppo_score_norm
    assert any("max_new_tokens not set — responses are cut at 128 tokens" in line for line in lines)  # the log says
    assert any("ppo_score_norm not set — scores are normalised (LLaMA-Factory" in line for line in lines)
    with _lines_of("core.hparams.parser") as lines:
        given = get_train_args(make_args("ppo", reward_model="uppercase", max_new_tokens=300, ppo_score_norm=False))
    assert not [line for line in lines if "not set" in line]  # nothing to say when the user chose
    assert given[4].max_new_tokens == 300 and not given[3].ppo_score_norm
    assert get_train_args(make_args("sft"))[4].max_new_tokens == 1024  # other stages keep the chat default

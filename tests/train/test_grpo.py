"""grpo: the advantage and the loss against hand computations, the reward functions, the argument rules, then runs
on the demo model: learning a rule from a reward file, the LoRA path with a KL penalty and several reward functions
(stop on SIGTERM, resume, samples.jsonl), a reward model from the rm stage, and a failing reward function.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.hparams import check_dict
from core.hparams.keys import REWARD_FUNCS
from core.train.grpo_trainer import group_advantages, grpo_loss
from core.train.rewards import (
    RewardError,
    build_rewards,
    exact_match,
    extract_answer,
    format_check,
    last_number,
    length_penalty,
    math_equal,
    numeric,
)

REWARD_FILE = Path(__file__).resolve().parents[1] / "data" / "grpo_rewards.py"

# --- pieces ---------------------------------------------------------------------------------------------------------


def test_advantages_are_relative_to_the_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    scaled = group_advantages(rewards, group_size=4)
    # Group 1: mean 0.25, sample std 0.5 -> (1 - 0.25) / 0.5 = 1.5 and -0.5; group 2: all equal -> no signal.
    assert scaled[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-3)
    assert scaled[4:].tolist() == [0.0] * 4
    assert group_advantages(rewards, group_size=4, scale=False)[:4].tolist() == [0.75, -0.25, -0.25, -0.25]


def test_loss_clips_the_ratio_and_adds_the_kl_penalty():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    old = torch.zeros(1, 3)
    # Ratio e^0.5 = 1.65 > 1.2 with a positive advantage: the gain is capped at 1.2 * A and gives no gradient.
    logprobs = torch.tensor([[0.5, 0.5, 9.0]], requires_grad=True)
    loss, kl, clipped = grpo_loss(logprobs, old, None, torch.tensor([2.0]), mask, epsilon=0.2, beta=0.0)
    assert loss.item() == pytest.approx(-1.2 * 2.0)
    assert clipped.item() == 1.0 and kl.item() == 0.0
    loss.backward()
    assert logprobs.grad.abs().sum().item() == 0.0

    # On-policy (ratio 1) with a reference: loss = -A + beta * k3, k3 = e^d - d - 1 with d = ref - logp.
    logprobs = torch.zeros(1, 3, requires_grad=True)
    ref = torch.tensor([[-0.5, 0.5, 0.0]])
    loss, kl, clipped = grpo_loss(logprobs, logprobs.detach(), ref, torch.tensor([1.0]), mask, epsilon=0.2, beta=0.1)
    k3 = [math.exp(d) - d - 1 for d in (-0.5, 0.5)]
    assert kl.item() == pytest.approx(sum(k3) / 2, rel=1e-5)
    assert loss.item() == pytest.approx(-1.0 + 0.1 * sum(k3) / 2, rel=1e-5)
    assert clipped.item() == 0.0


def test_built_in_rewards():
    refs = ["CAT DOG", "12", "1/2", "x"]
    assert exact_match([""] * 4, ["  CAT   DOG. ", "12", "1/2", "X"], refs) == [1.0, 1.0, 1.0, 0.0]
    assert exact_match([""], ["cat dog"], ["CAT DOG"]) == [0.0]  # case is part of the answer
    assert exact_match([""], ["thinking... <answer>CAT DOG</answer>"], ["CAT DOG"]) == [1.0]
    assert exact_match([""], [""], [""]) == [0.0]  # no reference, no credit
    assert last_number("so 1,234.5 or maybe 7") == 7.0 and last_number("3 / 4") == 0.75 and last_number("none") is None
    assert numeric([""] * 3, ["The total is 1,000.", "0.5", "<answer>41</answer> 42"], ["1000", "1/2", "42"]) == [
        1.0,
        1.0,
        0.0,
    ]
    assert math_equal([""] * 3, [r"$\frac{1}{2}$", "0.5", r"\boxed{4}"], ["1/2", r"\frac{1}{2}", "3"]) == [
        1.0,
        1.0,
        0.0,
    ]
    assert format_check([""] * 3, ["a <answer>b</answer>", "<answer>b", "b"]) == [1.0, 0.0, 0.0]
    assert format_check([""] * 2, ["<t>x</t>", "<answer>x</answer>"], tag="t") == [1.0, 0.0]
    assert format_check([""] * 2, ["Answer: 4", "4"], regex=r"Answer: \d+") == [1.0, 0.0]
    assert length_penalty([""] * 2, ["", ""], completion_ids=[[3], [5] * 8], max_new_tokens=8) == [-0.125, -1.0]
    assert extract_answer("<answer>a</answer> then <answer>b</answer>") == "b"


def _finetuning(**overrides) -> SimpleNamespace:
    values = dict(
        reward_funcs="exact_match",
        reward_weights=None,
        reward_file=None,
        trust_reward_file=False,
        reward_format_tag="answer",
        reward_format_regex=None,
    )
    return SimpleNamespace(**{**values, **overrides})


def test_rewards_are_weighted_and_every_built_in_is_known():
    rewards = build_rewards(_finetuning(reward_funcs="exact_match,format", reward_weights="1.0,0.25"))
    totals, per_func = rewards.score(
        ["p", "p"], ["<answer>CAT</answer>", "CAT"], reference=["CAT", "DOG"], completion_ids=[[1], [1]]
    )
    assert per_func == {"exact_match": [1.0, 0.0], "format": [1.0, 0.0]}
    assert totals == [1.25, 0.0]
    # The parser's list of names and the implementations agree (rm needs a model, so it is built apart).
    for name in REWARD_FUNCS:
        if name != "rm":
            build_rewards(_finetuning(reward_funcs=name))
    with pytest.raises(RewardError, match="reward_model"):
        build_rewards(_finetuning(reward_funcs="rm"))


def test_a_reward_file_runs_only_when_trusted_and_its_errors_name_the_file_and_line():
    with pytest.raises(RewardError, match="trust_reward_file"):
        build_rewards(_finetuning(reward_funcs="uppercase", reward_file=str(REWARD_FILE)))
    with pytest.raises(RewardError, match="defines: broken, uppercase"):
        build_rewards(_finetuning(reward_funcs="nope", reward_file=str(REWARD_FILE), trust_reward_file=True))

    trusted = _finetuning(reward_funcs="uppercase,broken", reward_file=str(REWARD_FILE), trust_reward_file=True)
    rewards = build_rewards(trusted)
    line = next(i for i, text in enumerate(REWARD_FILE.read_text().splitlines(), 1) if "/ 0" in text)
    with pytest.raises(RewardError) as err:
        rewards.score(["p"], ["Cat"], reference=["CAT"], completion_ids=[[1]])
    assert f"{REWARD_FILE}, line {line}, in broken" in str(err.value)
    assert "ZeroDivisionError" in str(err.value)

    only_upper = build_rewards(
        _finetuning(reward_funcs="uppercase", reward_file=str(REWARD_FILE), trust_reward_file=True)
    )
    assert only_upper.score(["p"], ["CAt!"], reference=[""], completion_ids=[[1]])[0] == [pytest.approx(2 / 3)]


def test_argument_rules():
    base = {
        "model_name_or_path": "demo",
        "stage": "grpo",
        "do_train": True,
        "dataset": "demo_grpo",
        "template": "chatml",
        "output_dir": "saves/x",
    }
    assert check_dict(base) == []

    def problem(**overrides) -> str:
        problems = check_dict({**base, **overrides})
        assert len(problems) == 1, problems
        return problems[0]

    assert problem(num_generations=3).startswith("num_generations: received 3")
    assert problem(num_generations=1).startswith("num_generations")
    assert "one weight per name" in problem(reward_funcs="exact_match,format", reward_weights="1.0")
    assert "not a built-in reward" in problem(reward_funcs="exact_match,mine")
    assert "trust_reward_file: true" in problem(reward_funcs="mine", reward_file="r.py")
    assert problem(reward_funcs="rm").startswith("reward_model: missing")
    assert problem(reward_format_regex="(unclosed").startswith("reward_format_regex")
    assert any("grpo runs no evaluation" in p for p in check_dict({**base, "do_eval": True, "val_size": 0.1}))


# --- runs on the demo model -------------------------------------------------------------------------------------


def _log(output_dir) -> list[dict]:
    from core.train.callbacks import read_log_records

    return read_log_records(Path(output_dir) / "trainer_log.jsonl")


def _samples(output_dir) -> list[dict]:
    path = Path(output_dir) / "samples.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_grpo_raises_the_reward_of_a_rule_from_a_reward_file(make_args):
    """Full fine-tuning of the random demo model, the `uppercase` rule of a reward file (share of capitals, the
    rule the ppo test uses), 8 completions for each of 2 prompts a step: the mean reward of the last 5 steps must
    beat the first 3 steps' by 0.3 or more (measured: 0.39 -> 1.00; ppo on the same rule: 0.34 -> 0.82)."""
    from core.train.tuner import run_exp

    args = make_args(
        "grpo",
        finetuning_type="full",
        reward_funcs="uppercase",
        reward_file=str(REWARD_FILE),
        trust_reward_file=True,
        grpo_beta=0.0,
        num_generations=8,
        per_device_train_batch_size=16,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        max_new_tokens=4,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_steps=20,
        logging_steps=1,
    )
    run_exp(args)

    records = _log(args["output_dir"])
    rewards = [r["reward"] for r in records]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-5:]) / 5
    print(f"grpo uppercase reward: first 3 steps {first:.3f}, last 5 steps {last:.3f}")
    assert len(rewards) == 20
    assert last >= first + 0.3
    for key in ("loss", "reward_std", "reward/uppercase", "clip_fraction", "completion_length", "completion_cut"):
        assert key in records[-1], key
    assert "kl" not in records[-1]  # grpo_beta 0: no reference model, nothing measured
    assert all(r["completion_length_max"] <= 4 for r in records)
    output_dir = Path(args["output_dir"])
    assert (output_dir / "model.safetensors").is_file() and not (output_dir / "value_head.safetensors").exists()


class _SigtermAtStep:
    """Sends this process SIGTERM during step `step`, as the board's Abort does to a job."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_lora_grpo_with_kl_and_weighted_rewards_stops_saves_resumes_and_writes_samples(make_args):
    from transformers import TrainerCallback

    from core.train.tuner import run_exp

    class Stop(_SigtermAtStep, TrainerCallback):
        pass

    args = make_args(
        "grpo",
        # The random model never matches nor formats, and every answer runs to max_new_tokens: `uppercase` from the
        # reward file is what tells completions apart here.
        reward_funcs="exact_match,format,length,uppercase",
        reward_weights="1.0,0.5,0.1,1.0",
        reward_file=str(REWARD_FILE),
        trust_reward_file=True,
        grpo_beta=0.1,
        grpo_epochs=2,
        num_generations=4,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_new_tokens=6,
        max_steps=4,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10,
    )
    output_dir = Path(args["output_dir"])
    run_exp(args, callbacks=[Stop(step=2)])

    records = _log(output_dir)
    assert [r["current_steps"] for r in records] == [1, 2]
    for key in ("loss", "reward", "reward_std", "reward/exact_match", "reward/format", "reward/length", "kl"):
        assert key in records[-1], key
    # The first pass of step 1 runs the reference itself (KL 0); its second pass follows an optimizer step.
    assert all(r["kl"] > 0 for r in records)
    assert -1.0 <= records[-1]["reward/length"] < 0
    assert (output_dir / "checkpoint-2" / "trainer_state.json").is_file()
    assert (output_dir / "adapter_model.safetensors").is_file()
    samples = _samples(output_dir)
    assert {s["step"] for s in samples} == {1, 2}
    first = samples[0]
    assert first["prompt"].startswith("user\n") and first["reference"]
    assert set(first["rewards"]) == {"exact_match", "format", "length", "uppercase"}
    weights = {"exact_match": 1.0, "format": 0.5, "length": 0.1, "uppercase": 1.0}
    assert first["reward"] == pytest.approx(sum(w * first["rewards"][k] for k, w in weights.items()), abs=1e-3)

    # The same command again resumes at step 2 and ends at max_steps; the log and the samples continue.
    run_exp(args)
    assert [r["current_steps"] for r in _log(output_dir)] == [1, 2, 3, 4]
    assert sorted({s["step"] for s in _samples(output_dir)}) == [1, 2, 3, 4]
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 4


@pytest.fixture(scope="module")
def lora_reward_model(tmp_path_factory, demo_model):
    """A LoRA reward model from the rm stage (a few steps: the wiring is under test here, not its accuracy)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from trainhelp import train_args

    from core.train.tuner import run_exp

    output_dir = tmp_path_factory.mktemp("rm-lora")
    run_exp(train_args(output_dir, "rm", max_steps=3, max_samples=24, overwrite_output_dir=True))
    return output_dir


@pytest.mark.slow
def test_full_grpo_scored_by_an_rm_run_and_a_failing_reward_function(make_args, lora_reward_model):
    """A LoRA reward model scores a full policy (merged into its own copy of the base); a reward function that
    raises fails the job with its file and line."""
    from core.train.tuner import run_exp

    args = make_args(
        "grpo",
        finetuning_type="full",
        reward_funcs="rm,exact_match",
        reward_model=str(lora_reward_model),
        reward_model_type="lora",
        num_generations=4,
        per_device_train_batch_size=8,
        max_new_tokens=4,
        max_steps=2,
        logging_steps=1,
    )
    run_exp(args)
    records = _log(args["output_dir"])
    assert [r["current_steps"] for r in records] == [1, 2]
    rm_scores = [s["rewards"]["rm"] for s in _samples(args["output_dir"])]
    assert len(set(rm_scores)) > 1, "the reward model gave every completion the same score"

    failing = make_args(
        "grpo",
        output_dir=Path(args["output_dir"]).parent / "failing",
        reward_funcs="broken",
        reward_file=str(REWARD_FILE),
        trust_reward_file=True,
        num_generations=4,
        per_device_train_batch_size=4,
        max_new_tokens=2,
        max_steps=1,
    )
    with pytest.raises(RewardError, match=r"grpo_rewards.py, line \d+, in broken: ZeroDivisionError"):
        run_exp(failing)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["freeze", "oft"])
def test_freeze_and_oft_grpo_with_kl_train_their_parameters_only(make_args, demo_model, tmp_path, method):
    """freeze: the last layer learns, the rest stays the starting model's; oft: an adapter, the base untouched.
    Both measure the KL to a frozen copy of the starting model."""
    from safetensors.torch import load_file

    from core.train.tuner import run_exp

    args = make_args(
        "grpo",
        output_dir=tmp_path / f"grpo-{method}",
        finetuning_type=method,
        freeze_trainable_layers=1,
        grpo_beta=0.04,
        reward_funcs="uppercase",  # varies within a group from the first step (exact match is 0 for all of them)
        reward_file=str(REWARD_FILE),
        trust_reward_file=True,
        num_generations=4,
        per_device_train_batch_size=8,
        max_new_tokens=4,
        learning_rate=1e-2,
        max_steps=2,
        logging_steps=1,
    )
    run_exp(args)
    records = _log(args["output_dir"])
    assert [r["current_steps"] for r in records] == [1, 2] and all("kl" in r for r in records)
    assert records[-1]["kl"] > 0  # the policy moved away from the frozen copy after its first update
    output_dir = Path(args["output_dir"])
    if method == "oft":
        adapter = load_file(str(output_dir / "adapter_model.safetensors"))
        assert adapter and not (output_dir / "model.safetensors").exists()
        return
    base = load_file(str(demo_model / "model.safetensors"))
    trained = load_file(str(output_dir / "model.safetensors"))
    changed = {name for name, tensor in base.items() if not torch.equal(tensor, trained[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed), changed

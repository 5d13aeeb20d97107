"""Head to head: the same task, model and reward through our ppo, our ppo with LLaMA-Factory's defaults (the
baseline), our grpo (when the stage exists) and trl's GRPOTrainer.

    python benchmarks/rl_head_to_head.py [--steps 20] [--finetuning-type full] [--learning-rate 1e-3]
        [--completions 16] [--generations 8] [--max-new-tokens 4] [--window 5] [--threads 1]
        [--only ppo,ppo_lf,grpo,trl_grpo]

Task: the demo prompts (demo_ppo), the tiny demo model, the `uppercase` rule (share of capital letters in the
answer). Each step scores `--completions` answers: ppo samples one per prompt, grpo `--generations` per prompt.
Prints, for each trainer, the mean reward of each step and the seconds since its first step ended (reward against
step and against wall time), then the means of the first and last `--window` steps, seconds per step, and wall
time with model loading. Settings are each trainer's defaults otherwise (ours: ppo_epochs 4, score normalisation,
KL from 0.05; `ppo_lf`: score normalisation off and the KL coefficient fixed at start to 0.2, as LLaMA-Factory
starts it; trl: one update per batch, no KL term). Runs offline on CPU; the demo model is built on first use.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RULE = "uppercase"
GRPO_REWARD_FILE = f"""from core.train.ppo_rewards import REWARD_RULES


def {RULE}(prompts, completions, **kwargs):
    return [REWARD_RULES["{RULE}"]("", c, "") for c in completions]
"""
LF_INIT_KL_COEF = 0.2  # LLaMA-Factory's (trl 0.x's) starting KL coefficient


def _clock():
    """A callback that notes the time of each logging step: (step, perf_counter) pairs in `.marks`."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        marks: list[tuple[int, float]] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.marks.append((state.global_step, time.perf_counter()))

    Clock.marks = []
    return Clock()


def run_ours(stage: str, options: argparse.Namespace, output_dir: str, lf_defaults: bool = False):
    from core.train.callbacks import read_log_records
    from core.train.tuner import run_exp

    args = {
        "model_name_or_path": "demo",
        "stage": stage,
        "do_train": True,
        "finetuning_type": options.finetuning_type,
        "lora_target": "all",
        "template": "chatml",
        "dataset_dir": "demo",
        "dataset": "demo_ppo",
        "cutoff_len": 64,
        "output_dir": output_dir,
        "max_new_tokens": options.max_new_tokens,
        "per_device_train_batch_size": options.completions,
        "learning_rate": options.learning_rate,
        "lr_scheduler_type": "constant",
        "max_steps": options.steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": options.seed,
        "use_cpu": True,
        "plot_loss": False,
    }
    if stage == "grpo":  # the rule as a reward file (grpo names its reward functions in reward_funcs)
        reward_file = Path(output_dir).parent / "uppercase_reward.py"
        reward_file.write_text(GRPO_REWARD_FILE, encoding="utf-8")
        args.update(
            num_generations=options.generations,
            reward_funcs=RULE,
            reward_file=str(reward_file),
            trust_reward_file=True,
        )
    else:
        args.update(reward_model=RULE, reward_model_type="rule")
    clock = _clock()
    if not lf_defaults:
        run_exp(args, callbacks=[clock])
    else:
        from core.train import ppo_trainer

        args["ppo_score_norm"] = False
        original = ppo_trainer.PPOTrainer.__init__

        def lf_init(self, *a, **k):  # LLaMA-Factory: KL coefficient 0.2 whatever the scores' scale
            original(self, *a, **k)
            self.kl_coef, self.kl_coef_scaled = LF_INIT_KL_COEF, True

        ppo_trainer.PPOTrainer.__init__ = lf_init
        try:
            run_exp(args, callbacks=[clock])
        finally:
            ppo_trainer.PPOTrainer.__init__ = original
    rewards = [r["reward"] for r in read_log_records(Path(output_dir) / "trainer_log.jsonl") if "reward" in r]
    return rewards, clock.marks


def run_trl_grpo(options: argparse.Namespace, output_dir: str):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from core.demo import ensure_demo_model
    from core.paths import DEMO_DATA_DIR
    from core.train.ppo_rewards import REWARD_RULES

    rule = REWARD_RULES[RULE]
    path = str(ensure_demo_model("tiny"))
    rows = json.loads((DEMO_DATA_DIR / "demo_ppo.json").read_text(encoding="utf-8"))
    prompts = [r["instruction"] + (f"\n{r['input']}" if r["input"] else "") for r in rows]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])

    def reward(prompts, completions, **kwargs):
        return [rule("", c[0]["content"] if isinstance(c, list) else c, "") for c in completions]

    peft_config = None
    if options.finetuning_type == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")
    config = GRPOConfig(
        output_dir=output_dir,
        learning_rate=options.learning_rate,
        lr_scheduler_type="constant",
        per_device_train_batch_size=options.completions,
        num_generations=options.generations,
        max_completion_length=options.max_new_tokens,
        max_steps=options.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=options.seed,
    )
    trainer = GRPOTrainer(
        model=path,
        reward_funcs=reward,
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=peft_config,
    )
    clock = _clock()
    trainer.add_callback(clock)
    trainer.train()
    return [h["reward"] for h in trainer.state.log_history if "reward" in h], clock.marks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--finetuning-type", default="full", choices=["full", "lora"])
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--completions", type=int, default=16, help="answers scored per step")
    parser.add_argument("--generations", type=int, default=8, help="grpo: answers per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--window", type=int, default=5, help="steps averaged at the start and at the end")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="ppo,ppo_lf,grpo,trl_grpo", help="comma list of ppo, ppo_lf, grpo, trl_grpo")
    options = parser.parse_args(argv)

    import torch

    from core.train.tuner import STAGES

    torch.set_num_threads(options.threads)
    runners = {
        "ppo": lambda out: run_ours("ppo", options, out),
        "ppo_lf": lambda out: run_ours("ppo", options, out, lf_defaults=True),
        "grpo": lambda out: run_ours("grpo", options, str(Path(out) / "run")),
        "trl_grpo": lambda out: run_trl_grpo(options, out),
    }
    curves: dict[str, list[float]] = {}
    clocks: dict[str, list[float]] = {}  # seconds since the first logged step ended
    times: dict[str, float] = {}
    for name in options.only.split(","):
        if name == "grpo" and "grpo" not in STAGES:
            print("our grpo: skipped (no grpo stage in core.train.tuner.STAGES on this branch)")
            continue
        with tempfile.TemporaryDirectory() as output_dir:
            start = time.perf_counter()
            curves[name], marks = runners[name](output_dir)
            times[name] = time.perf_counter() - start
            clocks[name] = [t - marks[0][1] for _, t in marks] if marks else []

    names = list(curves)
    window = options.window
    print(
        f"\nuppercase rule, demo model, {options.finetuning_type} lr {options.learning_rate:g}, "
        f"{options.completions} answers/step of <= {options.max_new_tokens} tokens, seed {options.seed}"
    )
    print("reward (seconds since step 1 ended)")
    print("step  " + "  ".join(f"{n:>16}" for n in names))
    for step in range(max(len(c) for c in curves.values())):
        cells = []
        for n in names:
            if step >= len(curves[n]):
                cells.append(" " * 16)
                continue
            seconds = f"({clocks[n][step]:6.1f})" if step < len(clocks[n]) else " " * 8
            cells.append(f"{curves[n][step]:7.3f} {seconds}")
        print(f"{step + 1:4d}  " + "  ".join(cells))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    def per_step(n: str) -> float:
        return clocks[n][-1] / (len(clocks[n]) - 1) if len(clocks[n]) > 1 else float("nan")

    print(f"first{window}" + "".join(f"  {mean(curves[n][:window]):16.3f}" for n in names))
    print(f"last{window} " + "".join(f"  {mean(curves[n][-window:]):16.3f}" for n in names))
    print("rise  " + "".join(f"  {mean(curves[n][-window:]) - mean(curves[n][:window]):16.3f}" for n in names))
    print("s/step" + "".join(f"  {per_step(n):16.2f}" for n in names))
    print("wall s" + "".join(f"  {times[n]:16.1f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Our grpo stage against trl's GRPOTrainer on the same task: reward per step and seconds per step.

    python benchmarks/grpo_vs_trl.py [--steps 20] [--threads 1] [--seed 42] [--only ours|trl]

Task: the random demo model, full fine-tuning at lr 1e-2, the demo_grpo prompts, 2 prompts x 8 completions of at
most 4 tokens a step (temperature 1, no top-p / top-k), no KL penalty, one pass per batch, reward = the share of
capital letters in the completion (the `uppercase` rule the ppo tests use). Both runs see the same prompts through
the demo chat template; trl renders them with the tokenizer's chat template, we with ours (the same ChatML).
Timing on a shared 2-core machine is noisy: the two runs go back to back, the ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REWARD_FILE = ROOT / "tests" / "data" / "grpo_rewards.py"
GROUP, PROMPTS, MAX_NEW, LR = 8, 2, 4, 1e-2
SEED = 42


def uppercase(completions: list, **kwargs) -> list[float]:
    scores = []
    for completion in completions:
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        letters = [c for c in text if c.isalpha()]
        scores.append(sum(c.isupper() for c in letters) / len(letters) if letters else 0.0)
    return scores


def run_ours(steps: int, out: Path) -> tuple[list[float], float]:
    from core.train.tuner import run_exp

    args = {
        "model_name_or_path": "demo",
        "stage": "grpo",
        "do_train": True,
        "finetuning_type": "full",
        "template": "chatml",
        "dataset_dir": "demo",
        "dataset": "demo_grpo",
        "cutoff_len": 64,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "reward_funcs": "uppercase",
        "reward_file": str(REWARD_FILE),
        "trust_reward_file": True,
        "grpo_beta": 0.0,
        "num_generations": GROUP,
        "per_device_train_batch_size": GROUP * PROMPTS,
        "learning_rate": LR,
        "lr_scheduler_type": "constant",
        "max_new_tokens": MAX_NEW,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_steps": steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": SEED,
    }
    start = time.perf_counter()
    run_exp(args)
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    return [r["reward"] for r in records if "reward" in r], seconds


def run_trl(steps: int, out: Path) -> tuple[list[float], float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from core.demo import ensure_demo_model
    from core.paths import DEMO_DATA_DIR

    path = ensure_demo_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    rows = json.loads((DEMO_DATA_DIR / "demo_grpo.json").read_text())
    prompts = [
        [{"role": "user", "content": f"{r['instruction']}\n{r['input']}" if r["input"] else r["instruction"]}]
        for r in rows
    ]
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=GROUP * PROMPTS,
        num_generations=GROUP,
        max_completion_length=MAX_NEW,
        learning_rate=LR,
        lr_scheduler_type="constant",
        beta=0.0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        use_cpu=True,
        seed=SEED,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=uppercase,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tokenizer,
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return [h["reward"] for h in trainer.state.log_history if "reward" in h], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", choices=("ours", "trl"), help="run one side only")
    options = parser.parse_args()
    globals()["SEED"] = options.seed
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(options.threads)
    scratch = Path(tempfile.mkdtemp(prefix="grpo-vs-trl-"))
    results = {}
    for name, run in (("ours", run_ours), ("trl", run_trl)):
        if options.only and name != options.only:
            continue
        rewards, seconds = run(options.steps, scratch / name)
        results[name] = (rewards, seconds)
    print(f"\n{options.steps} steps, {PROMPTS} prompts x {GROUP} completions of <= {MAX_NEW} tokens, full, lr {LR}")
    print("step  " + "  ".join(f"{name:>6}" for name in results))
    for step in range(options.steps):
        print(f"{step + 1:4d}  " + "  ".join(f"{results[n][0][step]:6.3f}" for n in results))
    for name, (rewards, seconds) in results.items():
        first, last = sum(rewards[:3]) / 3, sum(rewards[-5:]) / 5
        print(f"{name}: reward first 3 steps {first:.3f}, last 5 {last:.3f}; {seconds / len(rewards):.2f} s/step")


if __name__ == "__main__":
    main()

"""Seconds per step, real tokens per second and peak memory of every training stage, optionally against
LLaMA-Factory on the identical job.

    python benchmarks/stage_speed.py [--models demo-small DIR ...] [--stages pt,sft,rm,dpo,kto,ppo]
        [--steps 12] [--rounds 2] [--batch-size 8] [--cutoff-len 128] [--lora-rank 16]
        [--baseline /work/lf-venv/bin/llamafactory-cli] [--before-tree DIR] [--set packing=true ...]
    python benchmarks/stage_speed.py --make-model DIR --hidden 512 --layers 8 [--intermediate 2560] [--vocab N]

Each run is a fresh process given the same LLaMA-Factory-style job (LoRA on all linear layers, the demo datasets,
`max_steps`, no saving), so its peak resident memory is its own. With `--baseline` the job also runs under
LLaMA-Factory: the interpreter named in that CLI's first line imports `llamafactory.train.tuner.run_exp`, the
function the CLI calls, with the same timing callback as ours. Runs alternate (ours first in even rounds, theirs
first in odd ones) so that a machine shared with other work slows both alike; the figures are medians over rounds.
With `--before-tree DIR` (a checkout of another commit of this project, e.g. `git archive main | tar -x -C DIR`)
that tree's code runs the same job in the same alternation, under this interpreter, and `before ratio` is ours /
its seconds per step: how much a change sped a stage up, on a machine too busy for absolute figures.

Seconds per step: the median time between optimizer steps, the first step (warm-up) left out; also in process CPU
seconds, which other work on a shared machine disturbs less than wall time (ratio `cpu ratio`). Real tokens: the
non-padding tokens of the training rows each step consumed (`attention_mask`; for dpo both answers of each pair, for
kto not the mismatched KL rows), counted the same way in both frameworks. ppo steps generate, so no token figure.
Peak memory: the process's peak RSS on CPU, torch.cuda.max_memory_allocated on GPU.

`--make-model` writes a random Llama of the given size with the demo tokenizer (no download): the issue's "2M"
model is `--hidden 128 --layers 8 --intermediate 512`, its "40M" one `--hidden 512 --layers 8 --intermediate 2560`;
`--vocab 150000` gives a real-size vocabulary for memory figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

STAGES = ("pt", "sft", "rm", "dpo", "kto", "ppo")
STAGE_JOBS = {
    "pt": {"stage": "pt", "dataset": "demo_pt"},
    "sft": {"stage": "sft", "dataset": "demo_sft"},
    "rm": {"stage": "rm", "dataset": "demo_pref"},
    "dpo": {"stage": "dpo", "dataset": "demo_pref", "pref_loss": "sigmoid", "pref_beta": 0.1},
    "kto": {"stage": "kto", "dataset": "demo_kto", "pref_beta": 0.1},
    # The reward model is a LoRA rm adapter on the same base, trained for a few steps first (reward_model_for).
    "ppo": {"stage": "ppo", "dataset": "demo_ppo", "reward_model_type": "lora", "max_new_tokens": 16},
}
# LLaMA-Factory 0.9.5's ppo needs trl<=0.9.6, which cannot be installed beside the transformers it needs.
NOT_COMPARABLE = {"ppo": "LLaMA-Factory 0.9.5's ppo needs trl<=0.9.6 (not installable with its transformers)"}


def build_job(stage: str, model: str, dataset_dir: str, output_dir: str, options: argparse.Namespace) -> dict:
    job = {
        "model_name_or_path": model,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": options.lora_rank,
        "lora_target": "all",
        "template": "chatml",
        "dataset_dir": dataset_dir,
        "cutoff_len": options.cutoff_len,
        "max_samples": 1000,
        "preprocessing_num_workers": 1,
        "output_dir": output_dir,
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-4,
        "max_steps": options.steps,
        "logging_steps": options.steps,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 42,
        **STAGE_JOBS[stage],
    }
    for item in options.set or []:
        key, _, value = item.partition("=")
        try:
            job[key] = json.loads(value)
        except json.JSONDecodeError:  # plain text: sigmoid, chatml
            job[key] = value
    return job


# ---------------------------------------------------------------------------------------------------------------
# Worker: runs one job in this interpreter (ours or LLaMA-Factory's) and writes its timings as JSON.
# Only the standard library is imported at module level, so LLaMA-Factory's interpreter can run this file.
# ---------------------------------------------------------------------------------------------------------------


def run_worker(framework: str, job_path: str, result_path: str) -> None:
    import resource

    import torch
    import transformers

    marks: list[float] = []
    cpu_marks: list[float] = []
    tokens: list[int] = [0]
    step_tokens: list[int] = []

    class StepTimer(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())
            cpu_marks.append(time.process_time())
            step_tokens.append(tokens[0])

    original_step = transformers.Trainer.training_step
    depth = [0]

    def counting_step(self, model, inputs, *args, **kwargs):
        # A subclass calling super() must not count its batch twice.
        depth[0] += 1
        try:
            # Mapping, not dict: LLaMA-Factory's collators return a BatchEncoding.
            if depth[0] == 1 and isinstance(inputs, Mapping) and inputs.get("attention_mask") is not None:
                tokens[0] += int(inputs["attention_mask"].sum())
            return original_step(self, model, inputs, *args, **kwargs)
        finally:
            depth[0] -= 1

    transformers.Trainer.training_step = counting_step
    if framework in ("ours", "before"):
        from core import run_exp
    else:
        from llamafactory.train.tuner import run_exp

    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run_exp(job, callbacks=[StepTimer()])
    if torch.cuda.is_available():
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "marks": marks,
        "cpu_marks": cpu_marks,
        "tokens": step_tokens,
        "peak_mib": peak_mib,
        "threads": torch.get_num_threads(),
    }
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle)


# ---------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------


def interpreter_of(cli: str) -> str:
    """The Python a console script runs under: the path in its `#!` line."""
    first = Path(cli).read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        raise SystemExit(f"error: {cli} is not a console script with a #! line; give the llamafactory-cli path")
    return first[2:].strip().split()[0]


def run_once(
    framework: str, python: str, job: dict, workdir: Path, tag: str, threads: int, before_tree: str | None = None
) -> dict:
    job_path = workdir / f"{tag}.json"
    result_path = workdir / f"{tag}.result.json"
    log_path = workdir / f"{tag}.log"
    job_path.write_text(json.dumps(job), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1", TOKENIZERS_PARALLELISM="false")
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if framework == "before":
        env["PYTHONPATH"] = str(Path(before_tree).resolve())  # the other commit's `core`, not ours
    elif framework != "ours":
        env.pop("PYTHONPATH", None)  # their interpreter must not see our tree
    argv = [python, str(Path(__file__).resolve()), "--worker", framework, str(job_path), str(result_path)]
    with open(log_path, "w", encoding="utf-8") as log:
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code != 0 or not result_path.exists():
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{framework} {tag} failed (exit {code}); last lines of {log_path}:\n{tail}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    marks, tokens = result["marks"], result["tokens"]
    if len(marks) < 3:
        raise RuntimeError(f"{framework} {tag}: only {len(marks)} steps timed; use --steps 4 or more")
    deltas = [b - a for a, b in zip(marks[1:], marks[2:], strict=False)]  # the first step is warm-up
    cpu = result["cpu_marks"]
    cpu_deltas = [b - a for a, b in zip(cpu[1:], cpu[2:], strict=False)]
    spent = marks[-1] - marks[1]
    return {
        "s_per_step": statistics.median(deltas),
        "cpu_s_per_step": statistics.median(cpu_deltas),
        "tokens_per_s": (tokens[-1] - tokens[1]) / spent if tokens[-1] > tokens[1] else None,
        "peak_mib": result["peak_mib"],
        "threads": result["threads"],
    }


def make_model(path: str, hidden: int, layers: int, intermediate: int, vocab: int | None, heads: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from core.demo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model("tiny"))
    config = LlamaConfig(
        vocab_size=max(vocab or 0, len(tokenizer)),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {count / 1e6:.1f}M parameters, vocabulary {config.vocab_size}")


def reward_model_for(model_path: str, workdir: Path, options: argparse.Namespace) -> str:
    """A LoRA rm adapter on `model_path`, trained for 4 steps by our own CLI: what a ppo job needs as its reward model
    (`reward_model_type: lora`). Written once per model into the work folder."""
    from core.paths import DEMO_DATA_DIR

    output_dir = workdir / f"{Path(model_path).name}-reward-model"
    if not (output_dir / "adapter_config.json").is_file():
        steps = argparse.Namespace(**{**vars(options), "steps": 4, "set": None})
        job = build_job("rm", model_path, str(DEMO_DATA_DIR), str(output_dir), steps)
        run_once("ours", sys.executable, job, workdir, f"{Path(model_path).name}-reward-model", options.threads)
    return str(output_dir)


KEYS = ("s_per_step", "cpu_s_per_step", "peak_mib")


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        run_worker(*argv[1:4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["demo-small"], help="demo-small, demo or local folders")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions per stage")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cutoff-len", type=int, default=128)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS), the same for both"
    )
    parser.add_argument("--baseline", help="path to LLaMA-Factory's llamafactory-cli (its own virtual environment)")
    parser.add_argument(
        "--before-tree", metavar="DIR", help="another checkout of this project to compare with (e.g. main's)"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="one more job key for every run, both frameworks (JSON value: packing=true, cutoff_len=512)",
    )
    parser.add_argument("--make-model", metavar="DIR", help="write a random Llama of the size below and exit")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--intermediate", type=int)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int)
    options = parser.parse_args(argv)

    if options.make_model:
        make_model(
            options.make_model,
            options.hidden,
            options.layers,
            options.intermediate or 5 * options.hidden,
            options.vocab,
            options.heads,
        )
        return 0

    from core.demo import resolve_model_path
    from core.paths import DEMO_DATA_DIR

    stages = [s.strip() for s in options.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    frameworks = [("ours", sys.executable)]
    if options.baseline:
        frameworks.append(("llamafactory", interpreter_of(options.baseline)))
    if options.before_tree:
        if not (Path(options.before_tree) / "core" / "__init__.py").is_file():
            parser.error(f"--before-tree: {options.before_tree} has no core/__init__.py; give a LlamaBoard checkout")
        frameworks.append(("before", sys.executable))

    rows = []
    with tempfile.TemporaryDirectory(prefix="stage_speed-") as tmp:
        workdir = Path(tmp)
        for model in options.models:
            model_path = resolve_model_path(model)
            for stage in stages:
                runners = [(n, p) for n, p in frameworks if n != "llamafactory" or stage not in NOT_COMPARABLE]
                if len(runners) < len(frameworks):
                    print(f"  {stage}: ours only: {NOT_COMPARABLE[stage]}", file=sys.stderr)
                reward_model = reward_model_for(model_path, workdir, options) if stage == "ppo" else None
                results: dict[str, list[dict]] = {name: [] for name, _ in runners}
                for round_index in range(options.rounds):
                    order = runners if round_index % 2 == 0 else runners[::-1]
                    for name, python in order:
                        tag = f"{Path(model).name}-{stage}-{name}-{round_index}"
                        output_dir = str(workdir / tag)
                        job = build_job(stage, model_path, str(DEMO_DATA_DIR), output_dir, options)
                        if reward_model:
                            job["reward_model"] = reward_model
                        try:
                            result = run_once(name, python, job, workdir, tag, options.threads, options.before_tree)
                            results[name].append(result)
                        except RuntimeError as error:  # one failed run must not lose the others' figures
                            print(f"  {error}", file=sys.stderr)
                            continue
                        done = results[name][-1]
                        print(f"  {tag}: {done['s_per_step']:.3f} s/step, {done['peak_mib']:.0f} MiB", file=sys.stderr)
                rows.append((model, stage, results))

    print(
        f"LoRA rank {options.lora_rank} on all linear layers, batch {options.batch_size}, cutoff_len "
        f"{options.cutoff_len}, {options.steps} steps, {options.rounds} alternating rounds (medians)"
        + (f", also {' '.join(options.set)}" if options.set else "")
    )
    header = f"{'model':<28} {'stage':<5} {'s/step':>8} {'tokens/s':>9} {'peak MiB':>9}"
    if options.before_tree:
        header += f" {'before':>8} {'before ratio':>12} {'cpu':>6} {'mem':>6}"
    if options.baseline:
        header += f" {'LF s/step':>9} {'LF tok/s':>9} {'LF MiB':>8} {'ratio':>6} {'cpu ratio':>9} {'mem ratio':>9}"
    print(header)
    for model, stage, results in rows:
        if not all(results.values()):
            failed = ", ".join(name for name, runs in results.items() if not runs)
            print(f"{Path(model).name:<28} {stage:<5} failed: {failed} (see the messages above)")
            continue
        ours = {k: statistics.median([r[k] for r in results["ours"]]) for k in KEYS}
        tokens = [r["tokens_per_s"] for r in results["ours"] if r["tokens_per_s"]]
        line = (
            f"{Path(model).name:<28} {stage:<5} {ours['s_per_step']:>8.3f} "
            f"{fmt(statistics.median(tokens) if tokens else None, '.0f'):>9} {ours['peak_mib']:>9.0f}"
        )
        if options.before_tree:
            before = {k: statistics.median([r[k] for r in results["before"]]) for k in KEYS}
            line += (
                f" {before['s_per_step']:>8.3f} {ours['s_per_step'] / before['s_per_step']:>12.2f}"
                f" {ours['cpu_s_per_step'] / before['cpu_s_per_step']:>6.2f}"
                f" {ours['peak_mib'] / before['peak_mib']:>6.2f}"
            )
        if options.baseline and "llamafactory" not in results:
            line += f"  (no LLaMA-Factory figure: {NOT_COMPARABLE[stage]})"
        elif options.baseline:
            theirs = {k: statistics.median([r[k] for r in results["llamafactory"]]) for k in KEYS}
            their_tokens = [r["tokens_per_s"] for r in results["llamafactory"] if r["tokens_per_s"]]
            their_rate = statistics.median(their_tokens) if their_tokens else None
            line += (
                f" {theirs['s_per_step']:>9.3f} {fmt(their_rate, '.0f'):>9}"
                f" {theirs['peak_mib']:>8.0f} {ours['s_per_step'] / theirs['s_per_step']:>6.2f}"
                f" {ours['cpu_s_per_step'] / theirs['cpu_s_per_step']:>9.2f}"
                f" {ours['peak_mib'] / theirs['peak_mib']:>9.2f}"
            )
        print(line)
    threads = {r["threads"] for _, _, results in rows for runs in results.values() for r in runs}
    print(
        f"torch threads per run: {', '.join(map(str, sorted(threads)))}; ratio = ours / LLaMA-Factory in seconds "
        "per step; cpu ratio the same in process CPU seconds per step (steadier on a shared machine); before ratio = "
        "ours / --before-tree's (seconds, cpu seconds, peak memory)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

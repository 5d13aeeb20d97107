"""Data preparation throughput: rows/s of get_dataset for each stage's data kind, launch-to-first-step against
LLaMA-Factory, and peak memory on a big file.

    python benchmarks/preprocess_throughput.py [--rows 100000] [--kinds sft,dpo,kto,pt,ppo] [--workers 2]
        [--against /path/to/other/checkout] [--baseline /path/to/llamafactory-cli] [--repeat 2] [--memory-gb 1]

- Rows/s: get_dataset from a generated jsonl (read, convert, template, tokenize, mask, write the cache) with the
  demo model's tokenizer, chatml, cutoff_len 256, one process and --workers processes, then once more with the
  cache warm. Each measurement runs in a fresh process. `--against DIR` measures another checkout's code (e.g. the
  code before a change) the same way, alternating with this one, and prints the ratio. With `--baseline CLI`,
  LLaMA-Factory's own `get_dataset` (its interpreter, same rows, tokenizer, chatml, cutoff, one process,
  overwrite_cache; pairwise data as its rm stage) is timed the same way and the ratio printed.
- `--baseline CLI`: `<CLI> train job.yaml` for LLaMA-Factory and ours on the same sft job (the rows above, the demo
  model, lora, max_steps 1, overwrite_cache), back to back --repeat times each, alternating: seconds from launch to
  the first training step (the first record in trainer_log.jsonl) and the rows/s of each one's data preparation
  (LLaMA-Factory: its format conversion and tokenizer passes, from their progress bars; ours: its log line).
- `--memory-gb N`: writes an N GB jsonl in /tmp (deleted afterwards), prepares it with a word-level tokenizer (fast,
  so the run measures the pipeline, not the tokenizer), and prints the peak resident memory against the size of
  one batch of rows.
On a shared machine the figures move with the load: compare only figures measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = "ant bee cat dog eel fox gnu hen ibis jay kiwi lark mole newt owl pig ram seal toad vole wasp yak zebu".split()
# data kind -> (stage, dataset name)
KINDS = {
    "sft": ("sft", "sft"),
    "dpo": ("dpo", "pairs"),
    "kto": ("kto", "tagged"),
    "pt": ("pt", "sft"),
    "ppo": ("ppo", "sft"),
}
CUTOFF = 256


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def write_data(folder: Path, n: int) -> None:
    rng = random.Random(0)
    with (folder / "sft.jsonl").open("w") as f:
        for _ in range(n):
            f.write(
                json.dumps({"instruction": sentence(rng, 5, 40), "input": "", "output": sentence(rng, 5, 80)}) + "\n"
            )
    with (folder / "pairs.jsonl").open("w") as f:
        for _ in range(n):
            row = {
                "instruction": sentence(rng, 5, 40),
                "chosen": sentence(rng, 5, 60),
                "rejected": sentence(rng, 5, 60),
            }
            f.write(json.dumps(row) + "\n")
    with (folder / "tagged.jsonl").open("w") as f:
        for i in range(n):
            row = {
                "instruction": sentence(rng, 5, 40),
                "input": "",
                "output": sentence(rng, 5, 80),
                "label": i % 3 != 0,
            }
            f.write(json.dumps(row) + "\n")
    info = {
        "sft": {"file_name": "sft.jsonl"},
        "pairs": {
            "file_name": "pairs.jsonl",
            "ranking": True,
            "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
        },
        # every column named: LLaMA-Factory leaves the ones a `columns` block omits unset
        "tagged": {
            "file_name": "tagged.jsonl",
            "columns": {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"},
        },
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))


# --- One measurement, in a fresh process ----------------------------------------------------------------------------


def child(kind: str, data: str, workers: int, overwrite: bool, word_tokenizer: bool) -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    from types import SimpleNamespace

    from core.data.loader import get_dataset
    from core.data.template import get_template_and_fix_tokenizer
    from core.hparams import DataArguments

    tokenizer = _word_tokenizer() if word_tokenizer else _demo_tokenizer()
    stage, name = KINDS[kind]
    data_args = DataArguments(
        template="chatml",
        dataset=name,
        dataset_dir=data,
        cutoff_len=CUTOFF,
        preprocessing_num_workers=workers if workers > 1 else None,
        overwrite_cache=overwrite,
    )
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    train = SimpleNamespace(
        seed=42,
        data_seed=None,
        do_train=True,
        do_predict=False,
        predict_with_generate=False,
        output_dir=None,
        process_index=0,
    )
    base = _rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    out = get_dataset(template, None, data_args, train, stage, tokenizer)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"seconds": seconds, "cpu": cpu, "samples": len(out["train_dataset"]), "base_mb": base, "peak_mb": peak}
    print(json.dumps(result))


LF_STAGES = {"sft": "sft", "dpo": "rm", "kto": "kto", "pt": "pt", "ppo": "ppo"}  # our kind -> LF's stage


def lf_child(kind: str, data: str, model: str, output: str) -> None:
    """LLaMA-Factory's own get_dataset on the same rows, tokenizer, template and cutoff (run by its interpreter)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    stage, name = LF_STAGES[kind], KINDS[kind][1]
    job = {
        "model_name_or_path": model,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "dataset": name,
        "dataset_dir": data,
        "template": "chatml",
        "cutoff_len": CUTOFF,
        "overwrite_cache": True,
        "output_dir": output,
        "report_to": "none",
    }
    if stage == "ppo":
        job["reward_model"] = model
    model_args, data_args, training_args, _, _ = get_train_args(job)
    module = load_tokenizer(model_args)
    tokenizer = module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    start, cpu = time.perf_counter(), time.process_time()
    out = get_dataset(template, model_args, data_args, training_args, stage, **module)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu": cpu, "samples": len(out["train_dataset"])}))


def measure_lf(python: str, kind: str, data: Path, tmp: Path) -> dict:
    from core.demo import ensure_demo_model

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1", HF_DATASETS_CACHE=str(tmp / "lf-cache"))
    output = tmp / f"lf-{kind}"
    argv = [python, __file__, "--lf-child", kind, "--data", str(data), "--model", str(ensure_demo_model())]
    done = subprocess.run([*argv, "--output", str(output)], env=env, capture_output=True, text=True, check=False)
    shutil.rmtree(tmp / "lf-cache", ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"LLaMA-Factory measurement failed ({kind}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def interpreter_of(cli: str) -> str:
    """The Python a console script runs under: the path in its `#!` line."""
    first = Path(cli).read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if not first.startswith("#!"):
        raise SystemExit(f"error: {cli} is not a console script with a #! line; give the llamafactory-cli path")
    return first[2:].strip().split()[0]


def _demo_tokenizer():
    from transformers import AutoTokenizer

    from core.demo import ensure_demo_model

    return AutoTokenizer.from_pretrained(ensure_demo_model())


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "<|im_start|>", "<|im_end|>", "user", "assistant", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", unk_token="[UNK]")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(tree: Path, kind: str, data: Path, cache: Path, workers: int, overwrite: bool, word=False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "LLAMABOARD_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, __file__, "--child", kind, "--data", str(data), "--workers", str(workers)]
    argv += ["--overwrite"] if overwrite else []
    argv += ["--word-tokenizer"] if word else []
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({tree}, {kind}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Launch to first step against LLaMA-Factory ---------------------------------------------------------------------


def job_yaml(folder: Path, data: Path, output: Path) -> Path:
    import yaml

    from core.demo import ensure_demo_model

    job = {
        "model_name_or_path": str(ensure_demo_model()),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": "sft",
        "dataset_dir": str(data),
        "template": "chatml",
        "cutoff_len": CUTOFF,
        "overwrite_cache": True,
        "output_dir": str(output),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 1,
        "max_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "learning_rate": 1e-4,
    }
    path = folder / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def first_step(cli: list[str], job: Path, output: Path, env: dict) -> tuple[float, str]:
    """Seconds from launch until trainer_log.jsonl holds a training record, and the job's output."""
    shutil.rmtree(output, ignore_errors=True)
    log = output.parent / f"{output.name}.log"
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen([*cli, "train", str(job)], env=env, stdout=handle, stderr=subprocess.STDOUT)
        seconds = None
        while proc.poll() is None or seconds is None:
            records = output / "trainer_log.jsonl"
            if seconds is None and records.is_file():
                lines = [json.loads(x) for x in records.read_text().splitlines() if x.strip().endswith("}")]
                if any("phase" not in r for r in lines):
                    seconds = time.perf_counter() - start
            if proc.poll() is not None and seconds is None:
                break
            time.sleep(0.05)
        proc.wait()
    text = log.read_text(errors="replace")
    if seconds is None:
        raise SystemExit(f"{cli[0]} train did not reach a first step:\n{text[-3000:]}")
    return seconds, text


def lf_prepare_rate(text: str, rows: int) -> tuple[float, float]:
    """(rows/s of LLaMA-Factory's tokenizer pass, rows/s of its conversion + tokenizer passes) from its bars."""
    passes = {}
    for name in ("Converting format of dataset", "Running tokenizer on dataset"):
        bars = re.findall(re.escape(name) + r"[^\n\r]*?\|\s*(\d+)/(\d+) \[(\d+):(\d+)", text)
        done = [b for b in bars if b[0] == b[1]]
        if done:
            minutes, seconds = int(done[-1][2]), int(done[-1][3])
            passes[name] = max(1, minutes * 60 + seconds)
    tok = passes.get("Running tokenizer on dataset")
    both = sum(passes.values()) if passes else None
    return (rows / tok if tok else float("nan")), (rows / both if both else float("nan"))


def our_prepare_rate(text: str) -> float:
    found = re.findall(r"Prepared the train set: .*?\(([\d,]+) rows/s\)", text)
    return float(found[-1].replace(",", "")) if found else float("nan")


def baseline(lf_cli: str, data: Path, rows: int, repeat: int, tmp: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "LLAMABOARD_CACHE": str(tmp / "cache")}
    env.pop("VIRTUAL_ENV", None)
    lf_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    lf_env.update(DISABLE_VERSION_CHECK="1", HF_DATASETS_CACHE=str(tmp / "lf-cache"), LLAMAFACTORY_VERBOSITY="INFO")
    ours_cli = [sys.executable, "-m", "core.cli"]
    print(f"\nlaunch to first step, sft, {rows:,} rows, cutoff_len {CUTOFF}, one process, overwrite_cache:")
    print(f"{'run':<18}{'first step s':>14}{'prepare rows/s':>16}{'LF tokenizer pass rows/s':>26}")
    for round_ in range(repeat):
        for who, cli, run_env in (("ours", ours_cli, env), ("LLaMA-Factory", [lf_cli], lf_env)):
            output = tmp / f"{who.lower()}-{round_}"
            seconds, text = first_step(cli, job_yaml(tmp, data, output), output, run_env)
            if who == "ours":
                print(f"{who:<18}{seconds:>14.1f}{our_prepare_rate(text):>16,.0f}", flush=True)
            else:
                tok, both = lf_prepare_rate(text, rows)
                print(f"{who:<18}{seconds:>14.1f}{both:>16,.0f}{tok:>26,.0f}", flush=True)


# --- Memory on a big file -------------------------------------------------------------------------------------------


def memory(gigabytes: float, tmp: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="prep-memory-", dir="/tmp"))
    try:
        rng = random.Random(1)
        target = int(gigabytes * (1 << 30))
        size = rows = 0
        # About 4 KB a row: 1,000 rows (one preprocessing batch) are about 4 MB of jsonl. Rows are drawn from a
        # pool of texts, or writing the file would take longer than preparing it.
        prompts = [sentence(rng, 50, 250) for _ in range(500)]
        answers = [sentence(rng, 300, 600) for _ in range(500)]
        with (folder / "sft.jsonl").open("w") as f:
            while size < target:
                row = {"instruction": rng.choice(prompts), "input": "", "output": rng.choice(answers), "n": rows}
                line = json.dumps(row) + "\n"
                f.write(line)
                size, rows = size + len(line), rows + 1
        (folder / "dataset_info.json").write_text(json.dumps({"sft": {"file_name": "sft.jsonl"}}))
        batch_mb = size / rows * 1000 / (1 << 20)
        print(f"\nmemory: {size / (1 << 30):.2f} GB jsonl, {rows:,} rows, one batch of 1,000 rows = {batch_mb:.1f} MB")
        result = measure(ROOT, "sft", folder, tmp / "memory-cache", 1, True, word=True)
        grown = result["peak_mb"] - result["base_mb"]
        print(
            f"resident before get_dataset {result['base_mb']:.0f} MB, peak {result['peak_mb']:.0f} MB: "
            f"+{grown:.0f} MB = {grown / batch_mb:.1f} x one batch of rows; {result['seconds']:.0f} s, "
            f"{rows / result['seconds']:,.0f} rows/s"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--kinds", default="sft,dpo,kto", help=f"comma-separated, of {', '.join(KINDS)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--against", type=Path, help="another checkout to measure the same way (e.g. main)")
    parser.add_argument("--baseline", help="LLaMA-Factory's llamafactory-cli, in its own virtual environment")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the launch-to-first-step comparison")
    parser.add_argument("--memory-gb", type=float, help="also measure peak memory on a jsonl this big")
    parser.add_argument("--skip-rows", action="store_true", help="skip the rows/s table")
    parser.add_argument("--child", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--word-tokenizer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lf-child", choices=list(KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.workers, args.overwrite, args.word_tokenizer)
        return
    if args.lf_child:
        lf_child(args.lf_child, args.data, args.model, args.output)
        return

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = tmp / "data"
        data.mkdir()
        write_data(data, args.rows)
        if not args.skip_rows:
            trees = [("this", ROOT)] + ([("against", args.against.resolve())] if args.against else [])
            if args.baseline:
                trees.append(("LF", None))
            print(f"{args.rows:,} rows a kind, cutoff_len {CUTOFF}, demo tokenizer, chatml; rows/s (samples out)")
            print(f"{'kind':<6}{'code':<9}{'1 process':>12}{f'{args.workers} processes':>14}{'cached s':>10}", end="")
            print(f"{'per CPU s':>11}   (rows / process CPU second: steadier on a shared machine)")
            rates_order: list[str] = []  # kinds done: every other kind runs the other code first
            for kind in args.kinds.split(","):
                rates: dict[str, float] = {}
                cpu_rates: dict[str, float] = {}
                for label, tree in trees[:: 1 if len(rates_order) % 2 == 0 else -1]:
                    cache = tmp / f"cache-{label}"
                    if label == "LF":
                        one = measure_lf(interpreter_of(args.baseline), kind, data, tmp)
                    else:
                        one = measure(tree, kind, data, cache, 1, True)
                    rates[label] = args.rows / one["seconds"]
                    cpu_rates[label] = args.rows / max(one["cpu"], 1e-9)
                    if label != "this":  # the other code's single-process figure is the one compared
                        print(
                            f"{kind:<6}{label:<9}{rates[label]:>12,.0f}{'':>24}{cpu_rates[label]:>11,.0f}"
                            f"   ({one['samples']:,} samples)",
                            flush=True,
                        )
                        continue
                    many = measure(tree, kind, data, cache, args.workers, True)
                    warm = measure(tree, kind, data, cache, 1, False)
                    print(
                        f"{kind:<6}{label:<9}{rates[label]:>12,.0f}{args.rows / many['seconds']:>14,.0f}"
                        f"{warm['seconds']:>10.2f}{cpu_rates[label]:>11,.0f}   ({one['samples']:,} samples)",
                        flush=True,
                    )
                rates_order.append(kind)
                for label in ("against", "LF"):
                    if label in rates:
                        ratio, cpu_ratio = rates["this"] / rates[label], cpu_rates["this"] / cpu_rates[label]
                        print(f"{kind:<6}{'/ ' + label:<9}{ratio:>11.2f}x{'':>24}{cpu_ratio:>10.2f}x")
        if args.baseline:
            baseline(args.baseline, data, args.rows, args.repeat, tmp)
        if args.memory_gb:
            memory(args.memory_gb, tmp)


if __name__ == "__main__":
    main()

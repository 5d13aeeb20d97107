"""Preprocessing throughput: samples/s for sft and dpo on a generated 100k-sample dataset.

    python benchmarks/preprocess_throughput.py [--samples 100000] [--workers 2]

Measures, with the demo model's tokenizer and the chatml template:
- reading and checking the rows (json -> canonical form);
- get_dataset end to end (read the file, check rows, tokenize through datasets' map, write the cache) with one
  process and with --workers processes;
- get_dataset again when the cache is warm.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = "ant bee cat dog eel fox gnu hen ibis jay kiwi lark mole newt owl pig ram seal toad vole wasp yak zebu".split()


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def write_data(folder: Path, n: int) -> None:
    rng = random.Random(0)
    with (folder / "sft.jsonl").open("w") as f:
        for _ in range(n):
            f.write(json.dumps({"instruction": sentence(rng, 5, 40), "output": sentence(rng, 5, 80)}) + "\n")
    with (folder / "pairs.jsonl").open("w") as f:
        for _ in range(n):
            row = {
                "instruction": sentence(rng, 5, 40),
                "chosen": sentence(rng, 5, 60),
                "rejected": sentence(rng, 5, 60),
            }
            f.write(json.dumps(row) + "\n")
    info = {
        "sft": {"file_name": "sft.jsonl"},
        "pairs": {
            "file_name": "pairs.jsonl",
            "ranking": True,
            "columns": {"chosen": "chosen", "rejected": "rejected"},
        },
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    from transformers import AutoTokenizer

    from core.data.loader import get_dataset, load_rows
    from core.data.registry import get_dataset_attr
    from core.data.template import get_template_and_fix_tokenizer
    from core.demo import ensure_demo_model
    from core.hparams import DataArguments

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLAMABOARD_CACHE"] = str(Path(tmp) / "cache")
        folder = Path(tmp) / "data"
        folder.mkdir()
        t = time.perf_counter()
        write_data(folder, args.samples)
        print(f"generated 2 x {args.samples} samples in {time.perf_counter() - t:.1f} s")
        print(f"{'stage':<6}{'what':<44}{'seconds':>9}{'samples/s':>12}")
        for stage, name in (("sft", "sft"), ("dpo", "pairs")):
            data_args = DataArguments(template="chatml", dataset=name, dataset_dir=str(folder), cutoff_len=1024)
            template = get_template_and_fix_tokenizer(tokenizer, data_args)
            need = "response" if stage == "sft" else "pair"
            t = time.perf_counter()
            rows = load_rows(get_dataset_attr(name, folder), need, data_args, seed=42)
            report(stage, "read + check rows", time.perf_counter() - t, len(rows))
            train = SimpleNamespace(seed=42, do_train=True)
            for workers in (None, args.workers):
                data_args.preprocessing_num_workers = workers
                data_args.overwrite_cache = True
                t = time.perf_counter()
                get_dataset(template, None, data_args, train, stage, tokenizer)
                report(
                    stage, f"get_dataset, {workers or 1} process(es), cold cache", time.perf_counter() - t, len(rows)
                )
            data_args.overwrite_cache = False
            t = time.perf_counter()
            get_dataset(template, None, data_args, train, stage, tokenizer)
            report(stage, "get_dataset, warm cache", time.perf_counter() - t, len(rows))


def report(stage: str, what: str, seconds: float, n: int) -> None:
    print(f"{stage:<6}{what:<44}{seconds:>9.2f}{n / seconds:>12,.0f}", flush=True)


if __name__ == "__main__":
    main()

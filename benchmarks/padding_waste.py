"""Padding waste of one epoch of sft batches on a dataset with skewed lengths, with and without packing.

    python benchmarks/padding_waste.py [--samples 20000] [--cutoff-len 1024] [--batch-size 8]

Answers have log-normally distributed lengths (most short, a long tail), tokenized with the demo model's
tokenizer and the chatml template through the real supervised processor. Reported: the share of batch tokens
that are padding for random batches (the trainer's default), length-grouped batches (group_by_length), and
packed rows (packing: true), plus how many rows (steps' worth of work) each needs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = "ant bee cat dog eel fox gnu hen ibis jay kiwi lark mole newt owl pig ram seal toad vole wasp yak zebu".split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--cutoff-len", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import transformers

    transformers.utils.logging.set_verbosity_error()
    from transformers import AutoTokenizer

    from core.data.processor.supervised import preprocess_supervised
    from core.data.stats import padding_fraction, summary
    from core.data.template import get_template_and_fix_tokenizer
    from core.demo import ensure_demo_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_demo_model())
    rng = random.Random(0)
    columns = {"_prompt": [], "_response": [], "_system": [], "_tools": [], "_kto_tag": []}
    for _ in range(args.samples):
        words = min(int(rng.lognormvariate(3.5, 1.0)), 2000)  # median ~33 words, long tail
        columns["_prompt"].append([{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(3, 30)))}])
        columns["_response"].append([{"role": "assistant", "content": " ".join(rng.choices(WORDS, k=max(words, 1)))}])
        columns["_system"].append("")
        columns["_tools"].append("")
        columns["_kto_tag"].append(None)

    def run(**flags):
        data_args = SimpleNamespace(template="chatml", cutoff_len=args.cutoff_len, train_on_prompt=False, **flags)
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        return preprocess_supervised(columns, template=template, tokenizer=tokenizer, data_args=data_args)

    plain = [len(ids) for ids in run(packing=False)["input_ids"]]
    packed = [len(ids) for ids in run(packing=True, neat_packing=True)["input_ids"]]
    real = sum(plain)
    s = summary(plain)
    print(
        f"{args.samples} samples, {real:,} real tokens; lengths min {s['min']} p50 {s['p50']} p95 {s['p95']} "
        f"max {s['max']} (cutoff_len {args.cutoff_len}, batch size {args.batch_size})"
    )
    print(f"{'batches':<34}{'rows':>8}{'padding':>10}{'batch tokens':>15}")
    for label, lengths, order in (
        ("random (default sampler)", plain, "random"),
        ("grouped by length", plain, "length"),
        ("packed (packing / neat_packing)", packed, "random"),
    ):
        fraction = padding_fraction(lengths, args.batch_size, seed=42, order=order)
        print(f"{label:<34}{len(lengths):>8}{fraction:>10.1%}{round(real / (1 - fraction)):>15,}")


if __name__ == "__main__":
    main()

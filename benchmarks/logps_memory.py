"""Peak memory of one preference log-probability pass on a real-size vocabulary: every position's logits (what
the dpo / kto trainers did before) against logits only where labels are, in chunks (what they do now).

    python benchmarks/logps_memory.py [--vocab 150000] [--batch 8] [--prompt 96] [--answer 32] [--hidden 256]

A random Llama (2 layers, tied embeddings, float32) with the given vocabulary is built in memory; each variant runs
in a fresh process (one forward with gradients and its backward, as the policy's pass in a training step) and
reports its peak RSS above the model's own footprint, so the difference is the logits and what is computed from them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def measure(variant: str, options: argparse.Namespace) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.train.pref_trainer import IGNORE_INDEX, label_window, sequence_logps, window_logps

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=options.vocab,
        hidden_size=options.hidden,
        intermediate_size=4 * options.hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    length = options.prompt + options.answer
    input_ids = torch.randint(0, options.vocab, (options.batch, length))
    labels = input_ids.clone()
    labels[:, : options.prompt] = IGNORE_INDEX
    attention_mask = torch.ones_like(input_ids)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if variant == "every-position":
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        sums, _ = sequence_logps(logits, labels)
    else:
        start, end = label_window(labels)
        keep = torch.arange(start, end)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep).logits
        sums, _ = window_logps(logits, labels, start, end)
    sums.sum().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "extra_mib": (peak - before) / 1024, "logits_shape": list(logits.shape)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=150_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--answer", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.variant:
        print(json.dumps(measure(options.variant, options)))
        return 0
    passed = [f"--{k}={getattr(options, k)}" for k in ("vocab", "batch", "prompt", "answer", "hidden")]
    print(
        f"vocabulary {options.vocab}, batch {options.batch}, prompt {options.prompt} + answer {options.answer} "
        "tokens, one policy forward + backward"
    )
    for variant in ("every-position", "label-window"):
        out = subprocess.run(
            [sys.executable, __file__, *passed, f"--variant={variant}"], capture_output=True, text=True, check=True
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{variant:<15} logits {result['logits_shape']}  peak RSS above the model: {result['extra_mib']:.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

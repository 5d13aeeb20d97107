"""A LoRA training step under bf16 autocast, with peft's own input cast (every adapted layer's input copied to the
fp32 adapter's dtype, then cast back to bf16 by autocast) against the board's (core.model.adapter: under autocast
the input goes to the adapter as it is).

    python benchmarks/lora_autocast.py [--hidden 512] [--layers 8] [--batch 16] [--seq 64] [--steps 6] [--device cpu]

A random Llama (bf16 weights, LoRA rank 8 on every linear layer, fp32 adapters) is built in memory and copied, so
both variants hold the same weights; their steps alternate. Prints the bytes autograd keeps for backward (each
storage once), the median step time of each and their ratio, and whether the gradients are the same bits.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time


def step(model, ids, device: str):
    import torch

    storages: dict[int, int] = {}

    def keep(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    options = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from core.model.adapter import no_recast_under_autocast

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=options.hidden,
        intermediate_size=5 * options.hidden,
        num_hidden_layers=options.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
    )
    base = LlamaForCausalLM(config).to(torch.bfloat16)
    peft_cast = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear"))
    for param in peft_cast.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    board = copy.deepcopy(peft_cast)
    no_recast_under_autocast(board)
    models = {"peft cast": peft_cast.to(options.device), "board": board.to(options.device)}
    ids = torch.randint(0, 1000, (options.batch, options.seq), device=options.device)

    times: dict[str, list[float]] = {name: [] for name in models}
    kept: dict[str, int] = {}
    for index in range(options.steps + 1):
        for name, model in models.items():
            seconds, kept[name] = step(model, ids, options.device)
            if index:  # the first step warms up
                times[name].append(seconds)
    grads = [{n: p.grad for n, p in model.named_parameters() if p.grad is not None} for model in models.values()]
    same = grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])

    print(
        f"{options.device}, hidden {options.hidden}, {options.layers} layers, {options.batch} x {options.seq} tokens, "
        f"{options.steps} steps each, alternating"
    )
    for name in models:
        median = statistics.median(times[name])
        print(f"{name:10} kept for backward {kept[name] / 2**20:8.1f} MiB   median step {median:.4f} s")
    print(
        f"board / peft cast: memory kept {kept['board'] / kept['peft cast']:.2f}x, "
        f"step time {statistics.median(times['board']) / statistics.median(times['peft cast']):.2f}x; "
        f"gradients {'identical' if same else 'DIFFER'}"
    )


if __name__ == "__main__":
    main()

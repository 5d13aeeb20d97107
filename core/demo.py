"""The offline demo: a tiny Llama model with its own tokenizer, and the demo datasets it can learn.

    llamafactory-cli demo [--output-dir D] [--size tiny|small] [--seed N] [--force]
    python -m core.demo --write-data        # regenerate assets/data (dataset_info.json and the files)

Everything here is made locally and deterministically: no download, the same seed gives the same bytes.
The tasks (reverse / copy / uppercase a short list of words, add two small numbers) are ones a model of a few
hundred thousand parameters learns on a CPU in a minute or two. Words are drawn from a small fixed list so that
each word is one token and reversing is a token-level skill, not a spelling one. Preference data pairs a right
answer (chosen) with a plausibly wrong one (rejected): off by one, two words swapped, one word left lowercase.

Importing this module is cheap: torch, transformers and tokenizers are imported only when a model is built, so
the board may use the data functions and `resolve_model_path` without loading the training stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import DEMO_DATA_DIR, cache_dir

logger = logging.getLogger(__name__)

# Bump when the recipe changes (data, tokenizer, architecture, initialisation) so cached demo models are rebuilt.
# 2: wider initialisation (ModelSize.init_std, EMBEDDING_STD_RATIO) so that LoRA learns.
RECIPE_VERSION = 2
DEFAULT_SEED = 42
DATA_SEED = 1234  # the committed datasets; independent of the model seed

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # also the eos token: generation stops at the end of an assistant turn
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, IM_START, IM_END]

# ChatML. Assistant content sits in a generation block so trl's assistant_only_loss can find it.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "{%- if message['role'] == 'assistant' -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}\n"
    "{{- '\\n' -}}\n"
    "{%- else -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}\n"
)

MODEL_DIR_NAMES = {"tiny": "demo-model", "small": "demo-model-small"}
# Files whose presence makes a built model folder complete; `demo.json` is written last.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "demo.json")


@dataclass(frozen=True)
class ModelSize:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    init_std: float  # about 0.8 / sqrt(hidden_size)


# Initialisation (`init_std` below). The usual std 0.02 is sized for models a thousand wide; at width 64 it leaves
# every layer's output a sixth of its input and the tied embeddings so small that the largest logit the frozen output
# layer can produce is about 1.3, so LoRA (which trains neither) could not push the sft loss of the demo tasks much
# below ln(vocab). Measured on the tiny model, sft LoRA rank 8, lr 5e-3, batch 8, 300 steps, seed 42: loss
# 5.9 -> 5.6 with std 0.02 everywhere, 5.1 -> 2.8 with std 0.1 and embeddings 0.15; full fine-tuning (lr 3e-3,
# batch 16, 300 steps) 5.3 -> 1.65 before, 4.3 -> 0.66 now. Embeddings 2.5x wider helped sft a little more (LoRA 2.45,
# full 0.45) but made the uppercase pairs harder to rank (rm and dpo hinge / ipo under 0.9 in the tests).
EMBEDDING_STD_RATIO = 1.5  # embeddings (tied: the output layer too) are drawn this much wider than the other matrices

# The demo text has few distinct strings, so BPE stops near 500 tokens whatever the cap; both sizes share it.
SIZES = {
    # about 155k parameters: trains in seconds on a CPU
    "tiny": ModelSize(512, 64, 256, 2, 4, 2, init_std=0.1),
    # about 31M parameters: for throughput benchmarks
    "small": ModelSize(512, 512, 1536, 9, 8, 8, init_std=0.035),
}

# ---------------------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------------------

WORDS = ("cat dog sun map cup pen box red hat fox owl bee ant egg ice jam key log net oak pig rug sky toy").split()

SYSTEM_PROMPTS = (
    "You are a careful assistant. Answer with the result only.",
    "You are a precise assistant.",
    "Reply briefly.",
)

TASKS = ("reverse", "copy", "upper", "add")


@dataclass(frozen=True)
class Example:
    """One task instance. `instruction`/`input` is the alpaca split; `prompt` joins them for chat formats."""

    task: str
    instruction: str
    input: str
    answer: str
    wrong: str

    @property
    def prompt(self) -> str:
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction


def _swap_two(items: list[str], rng: random.Random) -> list[str]:
    """Swap two neighbouring words that differ, so the result is wrong but close."""
    out = list(items)
    positions = [i for i in range(len(out) - 1) if out[i] != out[i + 1]]
    i = rng.choice(positions)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _make_example(task: str, rng: random.Random) -> Example:
    if task == "add":
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        total = a + b
        wrong = total + rng.choice((-1, 1)) if total > 0 else 1
        return Example(task, f"{a}+{b}=", "", str(total), str(wrong))

    n = rng.randint(2, 4)
    # Distinct words: a swap then always changes the answer, and reversal is unambiguous.
    words = rng.sample(WORDS, n)
    text = " ".join(words)
    with_input = rng.random() < 0.5  # half the rows use alpaca's `input` column, half put it in the instruction
    if task == "reverse":
        answer = list(reversed(words))
        # Either a near miss or the untouched input: both are plausible mistakes.
        wrong = _swap_two(answer, rng) if rng.random() < 0.7 else list(words)
        instruction = "Reverse the words." if with_input else f"Reverse: {text}"
    elif task == "copy":
        answer = list(words)
        wrong = _swap_two(answer, rng)
        instruction = "Copy the words." if with_input else f"Copy: {text}"
    elif task == "upper":
        answer = [w.upper() for w in words]
        wrong = list(answer)
        i = rng.randrange(n)
        wrong[i] = words[i]
        instruction = "Write the words in uppercase." if with_input else f"Uppercase: {text}"
    else:
        raise ValueError(f"unknown demo task {task!r}; expected one of {TASKS}")
    return Example(task, instruction, text if with_input else "", " ".join(answer), " ".join(wrong))


def _examples(rng: random.Random, count: int, exclude: set[str]) -> list[Example]:
    """`count` examples cycling through the tasks, none whose prompt is in `exclude` (held-out prompts)."""
    out: list[Example] = []
    while len(out) < count:
        example = _make_example(TASKS[len(out) % len(TASKS)], rng)
        if example.prompt in exclude:
            continue
        out.append(example)
    return out


def _held_out(rng: random.Random, count: int) -> list[Example]:
    """Evaluation prompts. Sums keep a < b so that b + a (in training data) teaches them; words are unseen."""
    out: list[Example] = []
    seen: set[str] = set()
    while len(out) < count:
        example = _make_example(TASKS[len(out) % len(TASKS)], rng)
        if example.prompt in seen:
            continue
        if example.task == "add":
            a, b = (int(x) for x in example.instruction.rstrip("=").split("+"))
            if a >= b:
                continue
        seen.add(example.prompt)
        out.append(example)
    return out


def _chat_turns(example: Example) -> list[tuple[str, str]]:
    return [("user", example.prompt), ("assistant", example.answer)]


def _sharegpt(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    tags = {"user": "human", "assistant": "gpt"}
    return [{"from": tags[role], "value": content} for role, content in turns]


def build_demo_datasets(seed: int = DATA_SEED) -> dict[str, list[dict[str, Any]]]:
    """Rows of every demo dataset, keyed by file name. Deterministic for a given seed."""
    rng = random.Random(seed)
    eval_examples = _held_out(rng, 48)
    exclude = {e.prompt for e in eval_examples}

    def alpaca(e: Example) -> dict[str, str]:
        return {"instruction": e.instruction, "input": e.input, "output": e.answer}

    files: dict[str, list[dict[str, Any]]] = {}
    files["demo_sft.json"] = [alpaca(e) for e in _examples(rng, 1000, exclude)]
    files["demo_sft_eval.json"] = [alpaca(e) for e in eval_examples]

    conversations = []
    for _ in range(300):
        turns = [t for e in _examples(rng, rng.randint(1, 3), exclude) for t in _chat_turns(e)]
        system = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.3 else ""
        conversations.append({"conversations": _sharegpt(turns), "system": system})
    files["demo_sharegpt.jsonl"] = conversations

    openai_rows = []
    for _ in range(100):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        for e in _examples(rng, rng.randint(1, 2), exclude):
            messages += [{"role": role, "content": content} for role, content in _chat_turns(e)]
        openai_rows.append({"messages": messages})
    files["demo_openai.jsonl"] = openai_rows

    pt_templates = {
        "reverse": "The words {input} reversed are {answer}.",
        "copy": "A copy of {input} is {answer}.",
        "upper": "In uppercase, {input} is {answer}.",
        "add": "{input}{answer}",
    }
    pt_rows = []
    for e in _examples(rng, 500, exclude):
        source = e.input or e.instruction.split(": ", 1)[-1]
        pt_rows.append({"text": pt_templates[e.task].format(input=source, answer=e.answer)})
    files["demo_pt.jsonl"] = pt_rows

    files["demo_pref.json"] = [
        {"instruction": e.instruction, "input": e.input, "chosen": e.answer, "rejected": e.wrong}
        for e in _examples(rng, 500, exclude)
    ]

    pref_sharegpt = []
    for _ in range(200):
        history = _examples(rng, rng.randint(0, 1), exclude)
        last = _examples(rng, 1, exclude)[0]
        turns = [t for e in history for t in _chat_turns(e)] + [("user", last.prompt)]
        pref_sharegpt.append(
            {
                "conversations": _sharegpt(turns),
                "chosen": {"from": "gpt", "value": last.answer},
                "rejected": {"from": "gpt", "value": last.wrong},
            }
        )
    files["demo_pref_sharegpt.json"] = pref_sharegpt

    kto_rows = []
    for e in _examples(rng, 600, exclude):
        good = rng.random() < 0.5
        turns = [("user", e.prompt), ("assistant", e.answer if good else e.wrong)]
        kto_rows.append({"conversations": _sharegpt(turns), "kto_tag": good})
    files["demo_kto.jsonl"] = kto_rows

    # The reference answer is kept so rule rewards and predictions can be scored against it.
    files["demo_ppo.json"] = [alpaca(e) for e in _examples(rng, 300, exclude)]
    return files


def build_grpo_dataset(seed: int = DATA_SEED) -> list[dict[str, str]]:
    """Prompts with their reference answer for grpo (`reward_funcs: exact_match`): the same four tasks, drawn
    from a generator of their own and kept out of `demo_corpus`, so adding them changed neither the other files nor
    the tokenizer. None of the held-out eval prompts appears."""
    exclude = {e.prompt for e in _held_out(random.Random(seed), 48)}
    rng = random.Random(seed + 1)
    return [{"instruction": e.instruction, "input": e.input, "output": e.answer} for e in _examples(rng, 400, exclude)]


DATASET_INFO: dict[str, dict[str, Any]] = {
    "demo_sft": {"file_name": "demo_sft.json"},
    "demo_sft_eval": {"file_name": "demo_sft_eval.json"},
    "demo_sharegpt": {
        "file_name": "demo_sharegpt.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
    },
    "demo_openai": {
        "file_name": "demo_openai.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    },
    "demo_pt": {"file_name": "demo_pt.jsonl", "columns": {"prompt": "text"}},
    "demo_pref": {
        "file_name": "demo_pref.json",
        "ranking": True,
        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
    },
    "demo_pref_sharegpt": {
        "file_name": "demo_pref_sharegpt.json",
        "formatting": "sharegpt",
        "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "demo_kto": {
        "file_name": "demo_kto.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "kto_tag": "kto_tag"},
    },
    "demo_ppo": {"file_name": "demo_ppo.json"},
    "demo_grpo": {"file_name": "demo_grpo.json"},
}


def _dump(name: str, rows: list[dict[str, Any]]) -> str:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    if name.endswith(".jsonl"):
        return "\n".join(lines) + "\n"
    # A JSON list with one row per line: small, and a diff shows which rows changed.
    return "[\n" + ",\n".join(lines) + "\n]\n"


def demo_data_files(seed: int = DATA_SEED) -> dict[str, str]:
    """The text of every file in assets/data, dataset_info.json included, keyed by file name."""
    files = {name: _dump(name, rows) for name, rows in build_demo_datasets(seed).items()}
    files["demo_grpo.json"] = _dump("demo_grpo.json", build_grpo_dataset(seed))
    files["dataset_info.json"] = json.dumps(DATASET_INFO, indent=2) + "\n"
    return files


def write_demo_data(output_dir: str | os.PathLike = DEMO_DATA_DIR) -> list[Path]:
    """Write the demo datasets and dataset_info.json into `output_dir` (default: the packaged assets/data)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in demo_data_files().items():
        path = output_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def demo_corpus() -> Iterator[str]:
    """Every string in the demo datasets, in a fixed order: what the tokenizer is trained on."""
    for rows in build_demo_datasets().values():
        for row in rows:
            yield from _strings(row)
    yield from SYSTEM_PROMPTS
    yield from ("system", "user", "assistant")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def train_bpe(vocab_size: int):
    """The raw `tokenizers.Tokenizer`: byte-level BPE trained on the demo text, special tokens first (ids 0-3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    # Digits one by one: sums are then learnable digit by digit, and every number has a spelling.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(demo_corpus(), trainer=trainer)
    return backend


def build_tokenizer(vocab_size: int):
    """`train_bpe` wrapped in a PreTrainedTokenizerFast with bos / eos / pad and the ChatML template."""
    from transformers import PreTrainedTokenizerFast

    backend = train_bpe(vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START],
        model_max_length=2048,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_demo_model(output_dir: str | os.PathLike, size: str = "tiny", seed: int = DEFAULT_SEED) -> Path:
    """Build the demo model and tokenizer into `output_dir` (created; existing files are overwritten)."""
    if size not in SIZES:
        raise ValueError(f"unknown demo model size {size!r}; choose one of {sorted(SIZES)}")
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(SIZES[size].vocab_size)
    config = demo_config(size, tokenizer)
    # A private RNG state: building the demo model must not change the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(EMBEDDING_STD_RATIO)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=32,
    )

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    for path in output_dir.iterdir():
        path.chmod(0o644)  # safetensors writes its file private; the model is shared by the board and its jobs
    n_params = sum(p.numel() for p in model.parameters())
    stamp = {"recipe_version": RECIPE_VERSION, "size": size, "seed": seed, "parameters": n_params}
    (output_dir / "demo.json").write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    logger.debug("Built the %s demo model (%d parameters) in %s", size, n_params, output_dir)
    return output_dir


def demo_config(size: str, tokenizer):
    """The LlamaConfig of a demo model size for this tokenizer (tied embeddings, float32, the size's init_std)."""
    from transformers import LlamaConfig

    spec = SIZES[size]
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=spec.init_std,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def _is_complete(path: Path, size: str, seed: int) -> bool:
    if not all((path / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        stamp = json.loads((path / "demo.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stamp.get("recipe_version") == RECIPE_VERSION and stamp.get("size") == size and stamp.get("seed") == seed


def _build_atomically(target: Path, size: str, seed: int, force: bool) -> Path:
    """Build next to `target`, then rename into place, so no reader ever sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is read by whoever runs the board and its jobs
    try:
        build_demo_model(tmp, size=size, seed=seed)
        if target.exists() and (force or not _is_complete(target, size, seed)):
            # Move the stale folder aside first: a rename over a non-empty directory fails.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}-stale-", dir=target.parent))
            try:
                os.replace(target, stale / "old")
            except FileNotFoundError:
                pass  # another process moved it already
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first; its copy is as good as ours (same recipe, same seed).
            if not _is_complete(target, size, seed):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_demo_model(size: str = "tiny", seed: int = DEFAULT_SEED, force: bool = False) -> Path:
    """The demo model's folder in the cache, built on first use (or when incomplete, stale or `force`)."""
    if size not in MODEL_DIR_NAMES:
        raise ValueError(f"unknown demo model size {size!r}; choose one of {sorted(MODEL_DIR_NAMES)}")
    name = MODEL_DIR_NAMES[size] if seed == DEFAULT_SEED else f"{MODEL_DIR_NAMES[size]}-seed{seed}"
    target = cache_dir() / name
    if not force and _is_complete(target, size, seed):
        return target
    logger.info("Building the %s demo model into %s", size, target)
    return _build_atomically(target, size, seed, force)


def resolve_model_path(name_or_path: str) -> str:
    """`demo` -> the tiny demo model, `demo-small` -> the ~30M one; anything else is returned unchanged.

    A real folder named `demo` in the working directory wins, as for `dataset_dir: demo`.
    """
    special = {"demo": "tiny", "demo-small": "small"}
    if name_or_path in special and not Path(name_or_path).exists():
        return str(ensure_demo_model(special[name_or_path]))
    return name_or_path


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="llamafactory-cli demo",
        description="Build the offline demo model (random weights, a tokenizer trained on the demo data).",
    )
    parser.add_argument("--output-dir", help="build here instead of the cache ($LLAMABOARD_CACHE/demo-model)")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="tiny", help="tiny (~155k parameters) or small (~31M)"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="weight seed; the same seed gives the same files"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete model is already there")
    parser.add_argument("--write-data", action="store_true", help="regenerate assets/data instead of building a model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.write_data:
        for path in write_demo_data():
            print(path)
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a progress bar for a file written in milliseconds is noise
    if args.output_dir:
        target = Path(args.output_dir).resolve()
        if target.exists() and any(target.iterdir()):
            if not args.force and _is_complete(target, args.size, args.seed):
                print(target)
                return 0
            # Only a folder we built may be replaced: --force must never wipe someone's own files.
            if not (target / "demo.json").is_file():
                parser.error(f"{target} is not empty and holds no demo model; choose a new or empty folder")
        path = _build_atomically(target, args.size, args.seed, force=True)
    else:
        path = ensure_demo_model(args.size, seed=args.seed, force=args.force)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

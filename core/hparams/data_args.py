"""Which datasets to read and how to turn them into token ids: DataArguments. Pure: no training stack imported."""

from dataclasses import dataclass, field
from typing import Literal

from core.hparams.keys import split_arg


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class DataArguments:
    """Datasets, chat template, sequence length, packing and preprocessing.

    Defaults that differ from LLaMA-Factory's:
    - `cutoff_len` 1024 (LLaMA-Factory: 2048): half the memory and time per step on a CPU or a small GPU.
    - `skip_bad_rows` is ours: a malformed row is an error naming the file and row unless this is on
      (LLaMA-Factory drops such rows with a warning).
    - `neat_packing: true` with `packing` unset turns packing on (with a note); with `packing: false` it is an error.
    """

    template: str | None = field(
        default=None,
        metadata=_help(
            "Chat template that turns conversations into text, e.g. chatml (the demo model), llama3, qwen. "
            "Required by sft, rm, dpo, kto and ppo; pt reads raw text."
        ),
    )
    dataset: str | None = field(
        default=None,
        metadata=_help("Comma list of dataset names from dataset_dir/dataset_info.json to train on. Training."),
    )
    eval_dataset: str | None = field(
        default=None,
        metadata=_help("Comma list of dataset names to evaluate or predict on. None: split val_size off dataset."),
    )
    dataset_dir: str = field(
        default="data",
        metadata=_help(
            "Folder holding dataset_info.json and the dataset files; `demo` = the demo datasets in the package."
        ),
    )
    cutoff_len: int = field(
        default=1024,
        metadata=_help("Longest sequence after tokenization, in tokens; longer samples are cut. All stages."),
    )
    train_on_prompt: bool = field(
        default=False, metadata=_help("sft: also compute the loss on prompt tokens (default: answers only).")
    )
    mask_history: bool = field(
        default=False, metadata=_help("sft: compute the loss on the last answer only, not earlier turns.")
    )
    streaming: bool = field(
        default=False,
        metadata=_help("Read datasets as a stream instead of loading them (needs max_steps; no val_size)."),
    )
    buffer_size: int = field(default=16384, metadata=_help("streaming: samples held in the shuffle buffer."))
    mix_strategy: Literal["concat", "interleave_under", "interleave_over"] = field(
        default="concat",
        metadata=_help(
            "How several datasets are mixed: concat = one after another (then shuffled); interleave_under / "
            "interleave_over = sample from each, stopping at the shortest / longest."
        ),
    )
    interleave_probs: str | None = field(
        default=None,
        metadata=_help("Comma list of sampling probabilities, one per dataset, for interleave_*. None: equal."),
    )
    overwrite_cache: bool = field(
        default=False, metadata=_help("Re-tokenize even when a cached tokenized dataset matches.")
    )
    preprocessing_batch_size: int = field(
        default=1000, metadata=_help("Rows per batch handed to the tokenizing function.")
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata=_help("Processes used to tokenize. None: tokenize in this process.")
    )
    max_samples: int | None = field(
        default=None, metadata=_help("Use at most this many rows of each dataset (for quick runs). None: all.")
    )
    val_size: float = field(
        default=0.0,
        metadata=_help(
            "Held-out evaluation split taken from dataset: a fraction below 1 (0.1 = 10%) or a row count (100). "
            "0: no split."
        ),
    )
    eval_on_each_dataset: bool = field(
        default=False, metadata=_help("Evaluate every eval dataset separately and report each one's metrics.")
    )
    packing: bool | None = field(
        default=None,
        metadata=_help("Concatenate samples into full cutoff_len sequences (pt, sft). None: on for pt, off for sft."),
    )
    neat_packing: bool = field(
        default=False,
        metadata=_help("sft: pack without cross-attention between packed samples (turns packing on)."),
    )
    tool_format: Literal["default", "glm4", "json", "llama3", "mistral", "qwen"] | None = field(
        default=None,
        metadata=_help(
            "How tool definitions, tool calls and tool results are written (core.data.tool_formats). None: the "
            "template's family format (qwen, qwen3 -> qwen; llama3; mistral; glm4), json for the other templates."
        ),
    )
    default_system: str | None = field(
        default=None, metadata=_help("System prompt used when a sample has none. None: the template's default.")
    )
    enable_thinking: bool | None = field(
        default=True,
        metadata=_help("Templates with reasoning: keep the thinking part (true) or train/answer without it (false)."),
    )
    tokenized_path: str | None = field(
        default=None,
        metadata=_help("Save the tokenized dataset here, or load it from here when it exists. None: do not."),
    )
    ignore_pad_token_for_loss: bool = field(
        default=True, metadata=_help("Do not compute the loss on padding (labels -100). Also used for metrics.")
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata=_help(
            "Skip malformed rows and report how many were skipped. False: the first one is an error naming the "
            "file and row."
        ),
    )

    @property
    def datasets(self) -> list[str]:
        """dataset as a list of names."""
        return split_arg(self.dataset)

    @property
    def eval_datasets(self) -> list[str]:
        """eval_dataset as a list of names."""
        return split_arg(self.eval_dataset)

"""TrainingArguments: transformers' Seq2SeqTrainingArguments with our defaults. Imports transformers."""

from dataclasses import dataclass, field

from transformers import Seq2SeqTrainingArguments


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """Every key of transformers' Seq2SeqTrainingArguments, plus `overwrite_output_dir`.

    Defaults that differ from transformers':
    - `logging_steps` 5 (transformers: 500): a short run on a CPU still draws a loss curve.
    - `report_to` "none" (transformers 5 also says none; trl configs and older transformers said "all"): nothing is
      sent to an experiment tracker unless asked.
    - `bf16` / `fp16` False (trl configs default to bf16, which fails on a machine without a GPU): mixed precision
      only when asked.
    - `overwrite_output_dir` (removed in transformers 5) is kept: an output_dir that already holds files but no
      checkpoint is an error unless this is true.
    """

    logging_steps: float = field(
        default=5, metadata={"help": "Log every this many optimizer steps (a float below 1 = that share of the run)."}
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to report to (tensorboard, wandb...); none = none."}
    )
    bf16: bool = field(
        default=False, metadata={"help": "bf16 mixed precision; needs a GPU with bf16 (Ampere or newer) or use_cpu."}
    )
    fp16: bool = field(default=False, metadata={"help": "fp16 mixed precision; needs a CUDA GPU."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that already holds files but no checkpoint, replacing them. "
            "A folder with checkpoints resumes from the last complete one instead."
        },
    )

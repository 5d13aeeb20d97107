"""`streaming: true`: the training set of pt and sft is read and tokenized while training runs, never held or
prepared whole. A `datasets.IterableDataset` over the dataset files (rows read lazily by core.data.readers, checked
by the converter, mixed by `mix_lazily`, at most `max_samples` per dataset), shuffled in a buffer of `buffer_size`
rows (datasets' `IterableDataset.shuffle`, as LLaMA-Factory does) and tokenized `preprocessing_batch_size` rows at
a time by the stage's processor (pt packs each batch into cutoff_len blocks). Memory: the shuffle buffer and one
batch, whatever the files' size. Nothing is cached: every epoch reads the files again.

A stream has no length, so training needs max_steps (checked with the arguments), and there is no val_size split
(eval_dataset is prepared as usual). Only the train set streams.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from core.data.registry import DataError

logger = logging.getLogger(__name__)

STREAMING_STAGES = ("pt", "sft")
CANONICAL_COLUMNS = ["_prompt", "_response", "_system", "_tools", "_kto_tag"]


def _rows(attrs: list, need: str | None, data_args: Any, seed: int, convert: Any, mix: Any):
    sources = [partial(convert, attr, need, data_args, data_args.max_samples) for attr in attrs]
    yield from mix(sources, data_args, seed)


def streamed_dataset(
    part: Any, template: Any, tokenizer: Any, data_args: Any, stage: str, seed: int, *, convert, mix, processor
):
    """The part's rows as a tokenized `datasets.IterableDataset` (see the module docstring). The loader, which
    imports this module, passes in its row converter, lazy mixer and the stage's processor (the ones a prepared
    dataset uses), so this module never imports the loader back."""
    from datasets import IterableDataset

    if stage not in STREAMING_STAGES:
        raise DataError(f"streaming: stage {stage} prepares its data whole; streaming works for pt and sft.")
    hub = [attr.name for attr in part.attrs if attr.load_from != "file"]
    if hub:
        raise DataError(
            f"streaming: dataset {', '.join(hub)} is not a file in the dataset_dir; streaming reads files. Save it "
            "as a jsonl file and use file_name, or remove streaming."
        )
    rows = IterableDataset.from_generator(
        # A tuple, not a list: datasets would read the items of a list in gen_kwargs as shards, in any order.
        _rows,
        gen_kwargs={
            "attrs": tuple(part.attrs),
            "need": part.need,
            "data_args": data_args,
            "seed": seed,
            "convert": convert,
            "mix": mix,
        },
    )
    rows = rows.shuffle(seed=seed, buffer_size=int(data_args.buffer_size))
    function = partial(processor, template=template, tokenizer=tokenizer, data_args=data_args)
    dataset = rows.map(
        function, batched=True, batch_size=data_args.preprocessing_batch_size or 1000, remove_columns=CANONICAL_COLUMNS
    )
    logger.info(
        "%s: streamed from %s (shuffle buffer %d rows, tokenized %d rows at a time while training).",
        part.what,
        ", ".join(attr.name for attr in part.attrs),
        data_args.buffer_size,
        data_args.preprocessing_batch_size or 1000,
    )
    return dataset

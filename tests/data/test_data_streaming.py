"""streaming: true — the train set is an IterableDataset tokenized as it is read: the same samples as the prepared
set (in file order with a one-row shuffle buffer), shuffled within buffer_size otherwise, and refused where a stream
cannot work. The memory test (a dataset larger than the process may use) is tests/train/test_streaming.py."""

from __future__ import annotations

import pytest
from datahelp import data_args, training_args, write_dataset_dir

from core.data.loader import get_dataset
from core.data.registry import DataError
from core.data.template import get_template_and_fix_tokenizer

INFO = {
    "qa": {"file_name": "qa.jsonl"},
    "more": {"file_name": "more.jsonl"},
    "hub": {"hf_hub_url": "someone/data"},
}


@pytest.fixture
def ddir(tmp_path):
    files = {
        "qa.jsonl": [{"instruction": f"Question {i}?", "output": f"Answer number {i}."} for i in range(40)],
        "more.jsonl": [{"instruction": f"More {i}?", "output": f"Reply {i}."} for i in range(25)],
    }
    return str(write_dataset_dir(tmp_path / "data", INFO, files))


def both(tokenizer, stage, **args):
    """(prepared train set, streamed train set) of the same arguments."""
    out = []
    for streaming in (False, True):
        dargs = data_args(streaming=streaming, **args)
        template = get_template_and_fix_tokenizer(tokenizer, dargs)
        out.append(get_dataset(template, None, dargs, training_args(), stage, tokenizer)["train_dataset"])
    return out


@pytest.mark.parametrize("stage", ["sft", "pt"])
@pytest.mark.parametrize("mix", ["concat", "interleave_under"])
def test_a_one_row_buffer_streams_exactly_the_prepared_samples(tokenizer, ddir, stage, mix):
    prepared, streamed = both(
        tokenizer, stage, dataset_dir=ddir, dataset="qa,more", mix_strategy=mix, buffer_size=1,
        cutoff_len=32, preprocessing_batch_size=8,
    )  # fmt: skip
    from datasets import IterableDataset

    assert isinstance(streamed, IterableDataset)
    rows = list(streamed)
    assert len(rows) == len(prepared) > 10
    for key in ("input_ids", "labels", "attention_mask"):
        assert [row[key] for row in rows] == prepared[key], key


def test_the_buffer_shuffles_and_max_samples_bounds_each_dataset(tokenizer, ddir):
    prepared, streamed = both(tokenizer, "sft", dataset_dir=ddir, dataset="qa", buffer_size=16, max_samples=30)
    rows = [row["input_ids"] for row in streamed]
    assert sorted(rows) == sorted(prepared["input_ids"]) and len(rows) == 30
    assert rows != prepared["input_ids"]  # shuffled, within a 16-row window


def test_streams_are_refused_where_they_cannot_work(tokenizer, ddir):
    for stage, args, match in [
        ("sft", {"dataset": "hub"}, "dataset hub is not a file.*Save it as a jsonl file"),
        ("sft", {"dataset": "qa", "tokenized_path": "x"}, "tokenized_path: a stream .* cannot be saved"),
    ]:
        dargs = data_args(dataset_dir=ddir, streaming=True, **args)
        template = get_template_and_fix_tokenizer(tokenizer, dargs)
        with pytest.raises(DataError, match=match):
            get_dataset(template, None, dargs, training_args(), stage, tokenizer)

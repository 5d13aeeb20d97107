"""The token view (issue 16 item 3): the tokens flagged `loss` are exactly those the training processor labels, the
truncated-away ones are put back and marked, pairwise shows both answers, kto its tag; and the length statistics."""

from __future__ import annotations

import json

import pytest
from datahelp import data_args, write_dataset_dir

from core.data.converter import NEEDS
from core.data.loader import PROCESSORS, STAGE_PROCESSOR, load_rows
from core.data.processor.common import IGNORE_INDEX
from core.data.registry import DataError, get_dataset_list
from core.data.template import get_template_and_fix_tokenizer
from core.data.tokenview import length_stats, main, token_view

CONV = [
    {"from": "human", "value": "Hello there! How are you today?"},
    {"from": "gpt", "value": "I am fine, thank you."},
    {"from": "human", "value": "What is the capital of France?"},
    {"from": "gpt", "value": "The capital of France is Paris."},
]
ROWS = range(9)


@pytest.fixture
def ddir(tmp_path):
    info = {
        "sft": {"file_name": "sft.json"},
        "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt"},
        "pairs": {"file_name": "p.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "k.jsonl", "columns": {"kto_tag": "tag"}},
    }
    files = {
        "sft.json": [{"instruction": f"Add the numbers {i} and 30.", "output": f"The sum is {i + 30}."} for i in ROWS],
        "chat.jsonl": [{"conversations": CONV}],
        "p.json": [{"instruction": "What is the capital of France?", "chosen": "Paris.", "rejected": "I am fine."}],
        "k.jsonl": [{"instruction": "Add 12 and 30.", "output": "The sum is 42.", "tag": False}],
    }
    return write_dataset_dir(tmp_path / "data", info, files)


def _setup(tokenizer, ddir, dataset, **overrides):
    args = data_args(dataset=dataset, dataset_dir=str(ddir), **overrides)
    return args, get_template_and_fix_tokenizer(tokenizer, args)


def _processed(tokenizer, template, args, stage, index=0):
    attr = get_dataset_list(args.dataset, args.dataset_dir)[0]
    row = load_rows(attr, NEEDS.get(stage), args, 42)[index]
    columns = {k: [row[k]] for k in ("_prompt", "_response", "_system", "_tools", "_kto_tag")}
    return PROCESSORS[STAGE_PROCESSOR[stage]](columns, template=template, tokenizer=tokenizer, data_args=args)


def _learned(ids, labels):
    return [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]


@pytest.mark.parametrize(
    ("dataset", "cutoff", "options"),
    [
        ("sft", 1024, {}),
        ("chat", 1024, {}),
        ("chat", 1024, {"mask_history": True}),
        ("chat", 25, {}),
        ("chat", 30, {"mask_history": True}),
        ("sft", 1024, {"train_on_prompt": True}),
    ],
)
def test_loss_tokens_are_the_processors_labels(tokenizer, ddir, dataset, cutoff, options):
    args, template = _setup(tokenizer, ddir, dataset, cutoff_len=cutoff, **options)
    view = token_view(tokenizer, template, args, "sft", 0)
    side = view["sides"]["sample"]
    out = _processed(tokenizer, template, args, "sft")
    shown = [t for t in side["tokens"] if t["flag"] != "cut"]
    assert [t["id"] for t in shown] == out["input_ids"][0]
    assert [t["id"] for t in shown if t["flag"] == "loss"] == _learned(out["input_ids"][0], out["labels"][0])
    assert side["length"] == len(out["input_ids"][0]) <= cutoff


def test_truncation_is_marked_where_the_tokens_were_dropped(tokenizer, ddir):
    args, template = _setup(tokenizer, ddir, "chat", cutoff_len=1024)
    full = token_view(tokenizer, template, args, "sft", 0)["sides"]["sample"]
    assert full["cut_at"] is None and not any(t["flag"] == "cut" for t in full["tokens"])
    args, template = _setup(tokenizer, ddir, "chat", cutoff_len=25)
    cut = token_view(tokenizer, template, args, "sft", 0)["sides"]["sample"]
    dropped = [t for t in cut["tokens"] if t["flag"] == "cut"]
    # Every token of the untruncated sample is shown, in order; the dropped ones are those past the budget.
    assert [t["id"] for t in cut["tokens"]] == [t["id"] for t in full["tokens"]]
    assert len(dropped) == full["full_length"] - 25 and cut["tokens"][cut["cut_at"]]["flag"] == "cut"
    assert any(t["special"] and t["text"] == "<|im_start|>" for t in cut["tokens"])


def test_pairwise_shows_chosen_and_rejected_and_kto_its_tag(tokenizer, ddir):
    args, template = _setup(tokenizer, ddir, "pairs", cutoff_len=1024)
    view = token_view(tokenizer, template, args, "dpo", 0)
    out = _processed(tokenizer, template, args, "dpo")
    for key in ("chosen", "rejected"):
        loss = [t["id"] for t in view["sides"][key]["tokens"] if t["flag"] == "loss"]
        assert loss == _learned(out[f"{key}_input_ids"][0], out[f"{key}_labels"][0]) and loss
    assert tokenizer.decode(_learned(out["chosen_input_ids"][0], out["chosen_labels"][0])).startswith("Paris.")
    args, template = _setup(tokenizer, ddir, "kto", cutoff_len=1024)
    view = token_view(tokenizer, template, args, "kto", 0)
    assert view["kto_tag"] is False and any(t["flag"] == "loss" for t in view["sides"]["sample"]["tokens"])


def test_index_out_of_range_names_the_range(tokenizer, ddir):
    args, template = _setup(tokenizer, ddir, "sft")
    with pytest.raises(DataError, match="has 9 rows; pick 0 to 8"):
        token_view(tokenizer, template, args, "sft", 20)


def test_length_stats_hold_per_sample_lengths_and_padding_per_batch_size(tokenizer, ddir):
    args, template = _setup(tokenizer, ddir, "sft", cutoff_len=8)
    stats = length_stats(tokenizer, template, args, "sft")
    assert len(stats["lengths"]["total"]) == stats["rows"] == 9
    lengths = stats["lengths"]
    assert all(t == p + r for t, p, r in zip(lengths["total"], lengths["prompt"], lengths["response"], strict=True))
    assert stats["truncated_samples"] == sum(1 for t in stats["lengths"]["total"] if t > 8)
    assert stats["padding_by_batch_size"]["1"]["unpacked"] == 0.0 and "packed" in stats["padding_by_batch_size"]["8"]


def test_cli_tokens_json_and_text(ddir, tmp_path, capsys, make_tokenizer):
    model_dir = tmp_path / "model"
    make_tokenizer(bos=None, eos="<|im_end|>").save_pretrained(model_dir)
    argv = ["--dataset", "chat", "--dataset-dir", str(ddir), "--model", str(model_dir), "--template", "chatml"]
    assert main([*argv, "--cutoff-len", "25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["view"]["sides"]["sample"]["cut_at"] is not None and result["stats"]["truncated_samples"] == 1
    assert main([*argv, "--no-stats"]) == 0
    assert "[masked]  loss  ~cut~  <special>" in capsys.readouterr().out
    assert main([*argv, "--index", "5"]) == 2
    assert "pick 0 to 0" in capsys.readouterr().err


def test_data_help_names_the_tokens_action(capsys):
    from core.cli import main as cli_main

    assert cli_main(["data", "--help"]) == 0
    assert "tokens" in capsys.readouterr().out

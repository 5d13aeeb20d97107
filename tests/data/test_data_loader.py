"""get_dataset: stage -> processor, mixing, validation splits, eval datasets, the preprocessing cache, workers."""

from __future__ import annotations

import pytest
from datahelp import data_args, training_args, write_dataset_dir

from core.data.loader import get_dataset, mix, split_rows
from core.data.registry import DataError
from core.data.template import get_template_and_fix_tokenizer

INFO = {
    "one": {"file_name": "one.json"},
    "two": {"file_name": "two.jsonl"},
    "pairs": {"file_name": "pairs.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}},
    "tagged": {"file_name": "k.json", "columns": {"kto_tag": "label"}},
}


@pytest.fixture
def ddir(tmp_path):
    files = {
        "one.json": [{"instruction": f"one {i}", "output": f"answer {i}"} for i in range(10)],
        "two.jsonl": [{"instruction": f"two {i}", "output": f"answer {i}"} for i in range(4)],
        "pairs.json": [{"instruction": f"q {i}", "chosen": "good", "rejected": "bad"} for i in range(6)],
        "k.json": [{"instruction": f"q {i}", "output": "a", "label": i % 2 == 0} for i in range(6)],
    }
    return str(write_dataset_dir(tmp_path / "data", INFO, files))


def load(tokenizer, stage, train=None, **args):
    args = data_args(dataset_dir=args.pop("dataset_dir"), **args)
    template = get_template_and_fix_tokenizer(tokenizer, args)
    return get_dataset(template, None, args, train or training_args(), stage, tokenizer)


def prompts(tokenizer, dataset, column="input_ids"):
    return [tokenizer.decode(ids).split("\n")[1].removesuffix("<|im_end|>") for ids in dataset[column]]


@pytest.mark.parametrize(
    ("stage", "dataset", "columns"),
    [
        ("pt", "one", ["input_ids", "attention_mask", "labels"]),
        ("sft", "one", ["input_ids", "attention_mask", "labels"]),
        ("ppo", "one", ["input_ids", "attention_mask", "labels", "prompt"]),  # prompt: the user's text
        (
            "rm",
            "pairs",
            [f"{s}_{k}" for s in ("chosen", "rejected") for k in ("input_ids", "attention_mask", "labels")],
        ),
        (
            "dpo",
            "pairs",
            [f"{s}_{k}" for s in ("chosen", "rejected") for k in ("input_ids", "attention_mask", "labels")],
        ),
        (
            "kto",
            "tagged",
            ["input_ids", "attention_mask", "labels", "kl_input_ids", "kl_attention_mask", "kl_labels", "kto_tags"],
        ),
    ],
)
def test_each_stage_gets_its_columns(tokenizer, ddir, stage, dataset, columns):
    out = load(tokenizer, stage, dataset=dataset, dataset_dir=ddir)
    assert out["train_dataset"].column_names == columns and out["eval_dataset"] is None


def test_several_datasets_concat_in_order(tokenizer, ddir):
    train = load(tokenizer, "sft", dataset="one, two", dataset_dir=ddir, max_samples=3)["train_dataset"]
    assert prompts(tokenizer, train) == ["one 0", "one 1", "one 2", "two 0", "two 1", "two 2"]


def test_interleave_under_stops_when_one_runs_out_and_over_uses_all():
    sources = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(3)]]
    under = mix(sources, data_args(mix_strategy="interleave_under"), seed=1)
    a_part, b_part = [x for x in under if x[0] == "a"], [x for x in under if x[0] == "b"]
    assert a_part == sources[0][: len(a_part)] and b_part == sources[1][: len(b_part)]  # each keeps its order
    assert b_part == sources[1] and len(a_part) < 10  # stopped once the short one ran out
    over = mix(sources, data_args(mix_strategy="interleave_over", interleave_probs="0.5,0.5"), seed=1)
    assert set(sources[0]) <= set(over) and set(sources[1]) <= set(over) and len(over) > 13  # b repeats


def test_bad_interleave_probs(tokenizer):
    with pytest.raises(DataError, match="interleave_probs: received '1'.*need 2"):
        mix([[1], [2]], data_args(mix_strategy="interleave_under", interleave_probs="1"), seed=0)


@pytest.mark.parametrize(("val_size", "n_eval"), [(0.2, 2), (3, 3)])
def test_val_size_fraction_or_count(tokenizer, ddir, val_size, n_eval):
    out = load(tokenizer, "sft", dataset="one", dataset_dir=ddir, val_size=val_size)
    assert len(out["eval_dataset"]) == n_eval and len(out["train_dataset"]) == 10 - n_eval
    held = set(prompts(tokenizer, out["eval_dataset"]))
    assert held.isdisjoint(prompts(tokenizer, out["train_dataset"]))
    again = load(tokenizer, "sft", dataset="one", dataset_dir=ddir, val_size=val_size)
    assert set(prompts(tokenizer, again["eval_dataset"])) == held  # the seed fixes the split


def test_val_size_that_leaves_nothing_to_train_on():
    with pytest.raises(DataError, match="val_size: received 5 — that leaves no training rows out of 5"):
        split_rows(list(range(5)), 5, seed=0)


def test_eval_dataset_and_eval_on_each_dataset(tokenizer, ddir):
    out = load(tokenizer, "sft", dataset="one", eval_dataset="two", dataset_dir=ddir)
    assert len(out["train_dataset"]) == 10 and prompts(tokenizer, out["eval_dataset"])[0] == "two 0"
    out = load(tokenizer, "sft", dataset="one", eval_dataset="one,two", eval_on_each_dataset=True, dataset_dir=ddir)
    assert set(out["eval_dataset"]) == {"one", "two"} and len(out["eval_dataset"]["two"]) == 4


def test_eval_without_training_evaluates_dataset(tokenizer, ddir):
    out = load(tokenizer, "sft", train=training_args(do_train=False), dataset="two", dataset_dir=ddir)
    assert out["train_dataset"] is None and len(out["eval_dataset"]) == 4
    assert tokenizer.decode(out["eval_dataset"][0]["labels"][-3:]).endswith("<|im_end|>\n")  # supervised labels


def test_predict_without_training_gives_prompts_and_references(tokenizer, ddir):
    train = training_args(do_train=False, do_predict=True)
    out = load(tokenizer, "sft", train=train, dataset="two", dataset_dir=ddir)
    assert out["train_dataset"] is None
    first = out["eval_dataset"][0]
    assert tokenizer.decode(first["input_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(first["labels"]) == "answer 0<|im_end|>\n"


@pytest.mark.parametrize(
    ("stage", "dataset", "message"),
    [
        ("dpo", "one", "dataset 'one' has no chosen/rejected pairs"),
        ("kto", "one", "dataset 'one' has no kto_tag column"),
        ("sft", "pairs", "dataset 'pairs' is preference data"),
        ("sft", "nothere", "no dataset named 'nothere'"),
        ("xyz", "one", "stage: received 'xyz'"),
    ],
)
def test_dataset_that_does_not_fit_the_stage(tokenizer, ddir, stage, dataset, message):
    with pytest.raises(DataError, match=message):
        load(tokenizer, stage, dataset=dataset, dataset_dir=ddir)


def test_preprocessing_is_cached_and_overwrite_cache_redoes_it(tokenizer, ddir, tmp_path, monkeypatch):
    import core.data.processor.supervised as supervised

    calls = []
    real = supervised.preprocess_supervised

    def counting(examples, **kwargs):
        calls.append(len(examples["_prompt"]))
        return real(examples, **kwargs)

    monkeypatch.setitem(__import__("core.data.loader").data.loader.PROCESSORS, "supervised", counting)
    first = load(tokenizer, "sft", dataset="one", dataset_dir=ddir)["train_dataset"]
    assert calls and list((tmp_path / "cache" / "preprocessed").glob("supervised-*.arrow"))
    calls.clear()
    second = load(tokenizer, "sft", dataset="one", dataset_dir=ddir)["train_dataset"]
    assert calls == [] and second["input_ids"] == first["input_ids"]
    load(tokenizer, "sft", dataset="one", dataset_dir=ddir, cutoff_len=8)  # other settings: a new fingerprint
    assert calls
    calls.clear()
    load(tokenizer, "sft", dataset="one", dataset_dir=ddir, overwrite_cache=True)
    assert calls


def test_parallel_workers_give_the_same_result(tokenizer, ddir):
    single = load(tokenizer, "sft", dataset="one,two", dataset_dir=ddir)["train_dataset"]
    parallel = load(
        tokenizer, "sft", dataset="one,two", dataset_dir=ddir, preprocessing_num_workers=2, overwrite_cache=True
    )
    assert parallel["train_dataset"]["input_ids"] == single["input_ids"]


def test_tokenized_path_saves_then_loads(tokenizer, ddir, tmp_path):
    path = tmp_path / "tokenized"
    first = load(tokenizer, "sft", dataset="one", dataset_dir=ddir, val_size=2, tokenized_path=str(path))
    assert path.exists()
    again = load(tokenizer, "sft", dataset="two", dataset_dir=ddir, tokenized_path=str(path))  # dataset ignored
    assert again["train_dataset"]["input_ids"] == first["train_dataset"]["input_ids"]
    assert len(again["eval_dataset"]) == 2


def test_demo_datasets_load_for_every_stage(tokenizer):
    for stage, name in [("sft", "demo_sft"), ("dpo", "demo_pref"), ("kto", "demo_kto"), ("pt", "demo_pt")]:
        out = load(tokenizer, stage, dataset=name, dataset_dir="demo", max_samples=20)
        assert len(out["train_dataset"]) > 0, stage

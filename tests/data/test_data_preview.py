"""Preview: canonical rows, paging across files, bad rows listed, big files never read whole; the data CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from datahelp import write_dataset_dir

from core.data.cli import main
from core.data.preview import preview
from core.data.registry import DataError

CONV = [
    {"from": "system", "value": "Be brief."},
    {"from": "human", "value": "q1"},
    {"from": "gpt", "value": "a1"},
    {"from": "human", "value": "q2"},
    {"from": "gpt", "value": "a2"},
]


@pytest.fixture
def ddir(tmp_path):
    info = {
        "sft": {"file_name": "sft.json"},
        "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt"},
        "pairs": {"file_name": "p.json", "ranking": True, "columns": {"chosen": "chosen", "rejected": "rejected"}},
        "kto": {"file_name": "k.jsonl", "columns": {"kto_tag": "tag"}},
        "folder": {"file_name": "parts"},
        "hub": {"hf_hub_url": "someone/data"},
    }
    files = {
        "sft.json": [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(30)],
        "chat.jsonl": [{"conversations": CONV}],
        "p.json": [{"instruction": "q", "chosen": "good", "rejected": "bad"}],
        "k.jsonl": [{"instruction": "q", "output": "a", "tag": False}],
        "parts/1.jsonl": [{"instruction": f"first {i}", "output": "x"} for i in range(3)],
        "parts/2.jsonl": '{"instruction": "second 0", "output": "x"}\nbroken\n'
        '{"instruction": "second 2", "output": "x"}\n',
    }
    return write_dataset_dir(tmp_path / "data", info, files)


def test_sft_rows_page_by_page(ddir):
    page = preview(ddir, "sft", offset=25, limit=3)
    assert page["rows"] == [{"prompt": f"q{i}", "response": f"a{i}"} for i in (25, 26, 27)]
    assert page["columns"] == ["prompt", "response"] and page["total"] == 30 and page["file"].endswith("sft.json")
    assert preview(ddir, "sft")["rows"][19] == {"prompt": "q19", "response": "a19"}  # default limit 20


def test_every_canonical_form(ddir):
    chat = preview(ddir, "chat")
    assert chat["rows"] == [{"system": "Be brief.", "history": [["q1", "a1"]], "prompt": "q2", "response": "a2"}]
    assert chat["columns"] == ["system", "history", "prompt", "response"]
    assert preview(ddir, "pairs")["rows"] == [{"prompt": "q", "chosen": "good", "rejected": "bad"}]
    assert preview(ddir, "kto")["rows"] == [{"prompt": "q", "response": "a", "kto_tag": False}]


def test_paging_across_the_files_of_a_folder_lists_bad_rows(ddir):
    page = preview(ddir, "folder", offset=2, limit=4)
    assert [r["prompt"] for r in page["rows"]] == ["first 2", "second 0", "second 2"]
    assert len(page["errors"]) == 1 and "2.jsonl, line 2: not valid JSON" in page["errors"][0]
    assert page["total"] == 6


def test_hub_and_unknown_datasets_are_errors(ddir):
    with pytest.raises(DataError, match="preview reads local files only"):
        preview(ddir, "hub")
    with pytest.raises(DataError, match="no dataset named 'sfx'"):
        preview(ddir, "sfx")


def test_first_page_of_a_large_jsonl_reads_only_that_page(tmp_path):
    """~200 MB here; the benchmark measures 1 GB (benchmarks/preview_speed in the report)."""
    line = json.dumps({"instruction": "Reverse the words: " + "word " * 40, "output": "done " * 40}) + "\n"
    chunk = line * 20_000
    ddir = write_dataset_dir(tmp_path, {"big": {"file_name": "big.jsonl"}}, {})
    with (ddir / "big.jsonl").open("w") as f:
        while f.tell() < 200 << 20:
            f.write(chunk)
    start = time.perf_counter()
    page = preview(ddir, "big", limit=20)
    elapsed = time.perf_counter() - start
    assert len(page["rows"]) == 20 and page["total"] is None  # too big to count cheaply
    assert elapsed < 0.5, f"first page took {elapsed:.2f} s"


def test_cli_list_and_preview(ddir, capsys):
    assert main(["list", "--dataset-dir", str(ddir), "--stage", "dpo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["pairs"]
    assert main(["preview", "--dataset", "chat", "--dataset-dir", str(ddir)]) == 0
    out = capsys.readouterr().out
    assert "[prompt] q2" in out and "[history] [['q1', 'a1']]" in out and "(1 rows; showing 1 from row 0)" in out
    assert main(["preview", "--dataset", "nope", "--dataset-dir", str(ddir)]) == 2
    assert "no dataset named 'nope'" in capsys.readouterr().err


def test_cli_stats_reports_lengths_truncation_and_padding(ddir, tmp_path, capsys, monkeypatch, make_tokenizer):
    model_dir = tmp_path / "model"
    make_tokenizer(bos=None, eos="<|im_end|>").save_pretrained(model_dir)
    argv = ["stats", "--dataset", "sft,chat", "--dataset-dir", str(ddir), "--model", str(model_dir)]
    assert main([*argv, "--template", "chatml", "--cutoff-len", "12", "--batch-size", "4", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 31
    total = stats["total_tokens"]
    assert total["min"] <= total["p50"] <= total["p95"] <= total["max"] and total["max"] > 12
    assert 0 < stats["truncated_samples"] <= 31 and stats["truncated_tokens"] > 0
    assert 0 <= stats["padding_fraction"] < 1 and "padding_fraction_packed" in stats
    assert main([*argv, "--template", "chatml"]) == 0
    assert "truncates 0 sample(s)" in capsys.readouterr().out
    assert main([*argv, "--template", "chatmll"]) == 2
    assert "unknown template 'chatmll'. Did you mean chatml" in capsys.readouterr().err


PURE = ["core.data.registry", "core.data.readers", "core.data.converter", "core.data.templates", "core.data.preview"]


def test_pure_modules_import_no_training_stack():
    heavy = ["torch", "transformers", "trl", "peft", "datasets", "accelerate"]
    code = (
        f"import sys, importlib\nfor m in {PURE + ['core.data', 'core.data.cli']!r}: importlib.import_module(m)\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_stats_without_template_uses_the_models_own(ddir, tmp_path, capsys, make_tokenizer):
    """A newcomer runs `data stats --model M --dataset X` as training would: the model's chat template applies."""
    from pathlib import Path

    model_dir = tmp_path / "model"
    chatml = (Path(__file__).parent / "jinja" / "chatml.jinja").read_text(encoding="utf-8")
    make_tokenizer(bos=None, eos="<|im_end|>", chat_template=chatml).save_pretrained(model_dir)
    argv = ["stats", "--dataset", "sft", "--dataset-dir", str(ddir), "--model", str(model_dir), "--json"]
    assert main(argv) == 0
    own = json.loads(capsys.readouterr().out)
    assert main([*argv, "--template", "chatml"]) == 0
    assert own["total_tokens"] == json.loads(capsys.readouterr().out)["total_tokens"]


def test_cli_without_a_data_folder_says_where_it_looked_in_its_own_syntax(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "dataset_info.json") in err and "--dataset-dir demo" in err
    assert main(["preview", "--dataset", "demo_sft"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data") in err and "--dataset-dir demo" in err and "dataset_dir: demo" not in err
    assert main(["list", "--dataset-dir", "demo", "--stage", "kto"]) == 0
    assert capsys.readouterr().out.split() == ["demo_kto"]


def test_yaml_jobs_get_hints_in_yaml_syntax(tmp_path):
    from core.preflight import input_problems

    problems = input_problems({"dataset": "demo_sft", "dataset_dir": str(tmp_path / "data")})
    assert len(problems) == 1 and "dataset_dir: demo" in problems[0] and "--dataset-dir" not in problems[0]

"""Dataset studio, the CLI twins: `llamafactory-cli data add | validate | curate` end to end; 0 when done, 1 when
validate finds problems, 2 with one `error: ...` line on bad input (nothing registered then)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datahelp import data_args

from core.data.cli import main
from core.data.loader import load_rows
from core.data.registry import get_dataset_attr, list_datasets

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def renamed(tmp_path):
    rows = [{"context": f"c{i}", "question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    return write_csv(tmp_path / "renamed.csv", rows)


def run(*argv):
    return main([str(a) for a in argv])


def test_add_through_llamafactory_cli_makes_a_trainable_dataset(tmp_path, renamed):
    ddir = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "core", "data", "add", str(renamed), "--name", "qa", "--dataset-dir", str(ddir)]
    done = subprocess.run([*cmd, "--column", "query=none"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Registered 'qa' (sft, alpaca) as qa.csv" in done.stdout and "5 rows" in done.stdout
    info = json.loads((ddir / "dataset_info.json").read_text())
    assert info == {"qa": {"file_name": "qa.csv", "columns": {"prompt": "question", "response": "answer"}}}
    assert list_datasets(ddir, "sft") == ["qa"]
    rows = load_rows(get_dataset_attr("qa", ddir), "response", data_args(dataset_dir=str(ddir)), seed=1)
    assert [(r["_prompt"][-1]["content"], r["_response"][0]["content"]) for r in rows][0] == ("q0", "a0")


def test_add_refuses_bad_input_with_one_error_line(tmp_path, renamed, capsys):
    ddir = tmp_path / "data"
    cases = [
        (tmp_path / "missing.csv", "--name", "x"),
        (renamed, "--name", "x", "--column", "prompt"),  # no '='
        (renamed, "--name", "x", "--column", "messages=question"),  # not an alpaca role
        (renamed, "--name", "x", "--tag", "colour=red"),
        (renamed, "--name", "a,b"),
    ]
    for case in cases:
        assert run("add", *case, "--dataset-dir", ddir) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not ddir.exists() or not (ddir / "dataset_info.json").exists()
    assert run("add", renamed, "--name", "x", "--dataset-dir", ddir) == 0
    assert run("add", renamed, "--name", "x", "--dataset-dir", ddir) == 2
    assert "already exists" in capsys.readouterr().err
    assert run("add", renamed, "--name", "x", "--dataset-dir", ddir, "--replace", "--column", "query=none") == 0


def test_bad_rows_block_add_unless_skipped(tmp_path, capsys):
    path = tmp_path / "chat.jsonl"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    bad = {"conversations": [{"from": "gpt", "value": "a"}]}
    path.write_text("".join(json.dumps(r) + "\n" for r in [good, bad, good, "oops"]))
    ddir = tmp_path / "data"
    assert run("add", path, "--name", "chat", "--dataset-dir", ddir) == 2
    out, err = capsys.readouterr()
    assert "2 of 4 rows have problems" in out and "row 1 (line 2, column 'conversations')" in out
    assert "--skip-bad-rows" in err and not (ddir / "dataset_info.json").exists()
    assert run("validate", path) == 1
    assert "must be a JSON object" in capsys.readouterr().out
    assert run("add", path, "--name", "chat", "--dataset-dir", ddir, "--skip-bad-rows", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["added"]["rows"] == 2 and result["added"]["skipped"] == 2
    assert result["entry"] == {"formatting": "sharegpt", "columns": {"messages": "conversations"}}
    assert run("validate", "--dataset", "chat", "--dataset-dir", ddir) == 0
    assert "2 rows, no problem found (stage sft)" in capsys.readouterr().out


def test_validate_json_and_curate(tmp_path, renamed, capsys):
    assert run("validate", renamed, "--json", "--stage", "dpo") == 2  # csv of plain answers is no preference data
    assert "chosen/rejected" in capsys.readouterr().err
    assert run("validate", renamed, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["rows"], result["bad_rows"], result["entry"]["columns"]["prompt"]) == (5, 0, "question")
    assert run("validate") == 2 and "FILE or --dataset" in capsys.readouterr().err
    ddir = tmp_path / "data"
    assert run("add", renamed, "--name", "qa", "--dataset-dir", ddir) == 0
    capsys.readouterr()
    assert run("curate", "--dataset", "qa", "--out", "qa2", "--sample", "4", "--eval-size", "1", "--dataset-dir",
               ddir, "--json") == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert (result["rows_out"], result["eval_rows"], result["names"]) == (3, 1, ["qa2", "qa2_eval"])
    assert run("curate", "--dataset", "qa", "--out", "qa3", "--match", "[", "--dataset-dir", ddir) == 2
    assert "not a valid regular expression" in capsys.readouterr().err


@pytest.mark.parametrize(
    "rows, stage, column",
    [
        ([{"Frage": "q", "Antwort": "a"}], "sft", "input_ids"),
        ([{"question": "q", "better": "good", "worse": "bad"}], "dpo", "chosen_input_ids"),
        ([{"question": "q", "answer": "a", "label": str(i % 2 == 0).lower()} for i in range(4)], "kto", "kto_tags"),
    ],
)
def test_added_csv_prepares_for_its_stage(tmp_path, tokenizer, rows, stage, column, capsys):
    """The whole training loader (tokenized, cached Arrow set), not only the row conversion."""
    from datahelp import training_args

    from core.data.loader import get_dataset
    from core.data.template import get_template_and_fix_tokenizer

    path = write_csv(tmp_path / "mine.csv", rows * 3)
    ddir = tmp_path / "data"
    extra = ["--column", "prompt=Frage", "--column", "response=Antwort"] if "Frage" in rows[0] else []
    assert run("add", path, "--name", "mine", "--dataset-dir", ddir, *extra) == 0, capsys.readouterr().err
    assert f"(stage {stage})" in capsys.readouterr().out
    args = data_args(dataset="mine", dataset_dir=str(ddir))
    template = get_template_and_fix_tokenizer(tokenizer, args)
    train = get_dataset(template, None, args, training_args(), stage, tokenizer)["train_dataset"]
    assert len(train) == len(rows) * 3 and column in train.column_names

"""Re-run exactly: `llamafactory-cli runs rerun <run>` trains again with the identical arguments in a new folder, and
on CPU with the same seed its loss curve equals the original's."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

import yaml

from core.cli import main
from core.runfolder import JOB_YAML, REPRO_JSON, TRAINER_LOG, read_log_records


def test_rerun_starts_a_new_folder_with_the_same_arguments_and_the_same_loss_curve(make_args, tmp_path, capsys):
    from core import run_exp

    saves = tmp_path / "saves"
    original = saves / "demo" / "lora" / "first"
    run_exp(make_args("sft", output_dir=original, max_steps=6, logging_steps=1))
    assert main(["runs", "rerun", "first", "--saves", str(saves)]) == 0
    rerun = saves / "demo" / "lora" / "first-rerun"
    assert f"in {rerun}" in capsys.readouterr().out
    before = yaml.safe_load((original / JOB_YAML).read_text())
    after = yaml.safe_load((rerun / JOB_YAML).read_text())
    assert after == {**before, "output_dir": str(rerun)}
    losses = [[r["loss"] for r in read_log_records(run / TRAINER_LOG) if "loss" in r] for run in (original, rerun)]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    # Both wrote their reproducibility record: the same arguments (output_dir aside), data and versions.
    records = [json.loads((run / REPRO_JSON).read_text()) for run in (original, rerun)]
    assert records[0]["arguments"] == before and records[1]["arguments"] == after
    data = records[0]["datasets"][0]
    content = Path(data["file"]).read_bytes()
    assert data["name"] == "demo_sft" and data["sha256"] == hashlib.sha256(content).hexdigest()
    assert data["bytes"] == len(content) and data["rows"] == len(json.loads(content))
    assert records[0]["packages"]["torch"] == metadata.version("torch") and records[0]["seed"] == 42
    assert (records[0]["devices"], records[0]["world_size"]) == (["cpu"], 1)
    assert records[0]["datasets"] == records[1]["datasets"] and records[0]["git_commit"] == records[1]["git_commit"]
    assert main(["runs", "diff", str(original), str(rerun)]) == 0
    assert "The runs' arguments are the same (output_dir aside)." in capsys.readouterr().out
    # A second re-run gets the next free name; --dry-run only writes its job.yaml.
    assert main(["runs", "rerun", str(original), "--dry-run"]) == 0
    assert (saves / "demo" / "lora" / "first-rerun2" / JOB_YAML).is_file()
    assert not (saves / "demo" / "lora" / "first-rerun2" / TRAINER_LOG).exists()

"""A corrupt checkpoint on resume, a LoRA target the model lacks, a used output_dir, and tokens in the environment:
one message or one log line each, never a traceback, and no token in any file a run writes (issue 19: 3, 4, 7)."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_resume import _checkpoint, _safetensors

from core.cli import main
from core.train.trainer_utils import checkpoint_problem, last_complete_checkpoint, prepare_output_dir

TOKEN = "hf_" + "Zq7" * 12


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"x" * 200)


def _full_checkpoint(path: Path) -> Path:
    _checkpoint(path)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        _zip(path / name)
    return path


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# Every file a resume reads, cut off or damaged: (file, how to break it, what the log says about it).
BROKEN = [
    ("adapter_model.safetensors", lambda p: _truncate(p, 0.9), "adapter_model.safetensors is cut off"),
    ("adapter_model.safetensors", lambda p: _truncate(p, 0.02), "adapter_model.safetensors"),
    ("adapter_model.safetensors", lambda p: p.write_bytes(b"\xff" * 64), "adapter_model.safetensors"),
    ("optimizer.pt", _truncate, "optimizer.pt is cut off"),
    ("scheduler.pt", lambda p: p.write_bytes(b""), "scheduler.pt is cut off"),
    ("rng_state.pth", _truncate, "rng_state.pth is cut off"),
    ("trainer_state.json", lambda p: p.write_text('{"global_st'), "trainer_state.json is cut off"),
    ("model.safetensors.index.json", lambda p: p.write_text('{"weight_map": {"a": "model-00002.safetensors"}}'),
     "model.safetensors.index.json names model-00002.safetensors, which is missing"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "damage", "said"), BROKEN, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BROKEN)])
def test_a_corrupt_checkpoint_is_named_and_resume_takes_the_one_before(tmp_path, caplog, name, damage, said):
    _full_checkpoint(tmp_path / "checkpoint-4")
    newest = _full_checkpoint(tmp_path / "checkpoint-8")
    damage(newest / name)
    assert said in checkpoint_problem(newest)

    args = SimpleNamespace(output_dir=str(tmp_path), do_train=True, resume_from_checkpoint=None)
    with caplog.at_level(logging.INFO, logger="core"):
        prepare_output_dir(args)
    assert args.resume_from_checkpoint == str(tmp_path / "checkpoint-4")
    assert f"Skipping {newest}: {said}" in caplog.text and f"Resuming from {tmp_path / 'checkpoint-4'}" in caplog.text

    # Named explicitly, it is refused with the file and the checkpoint to use instead.
    args = SimpleNamespace(output_dir=str(tmp_path), do_train=True, resume_from_checkpoint=str(newest))
    with pytest.raises(ValueError) as err:
        prepare_output_dir(args)
    assert said in str(err.value) and f"resume from {tmp_path / 'checkpoint-4'}" in str(err.value)


def test_whole_checkpoints_and_sharded_weights_pass(tmp_path):
    checkpoint = _full_checkpoint(tmp_path / "checkpoint-2")
    (checkpoint / "adapter_model.safetensors").unlink()
    for shard in ("model-00001.safetensors", "model-00002.safetensors"):
        (checkpoint / shard).write_bytes(_safetensors(8))
    index = {"weight_map": {"a": "model-00001.safetensors", "b": "model-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_problem(checkpoint) is None and last_complete_checkpoint(tmp_path) == checkpoint


def _job(tmp_path: Path, make_args, **overrides) -> Path:
    args = make_args("sft", output_dir=tmp_path / "run", max_steps=2, **overrides)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(args))
    return path


def test_a_lora_target_the_model_lacks_is_one_line_and_exit_2(make_args, tmp_path, capsys):
    assert main(["train", str(_job(tmp_path, make_args, lora_target="q_proj,attn_qkv"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lora_target: received attn_qkv") and "Traceback" not in err


def test_an_output_dir_with_foreign_files_is_one_line_and_exit_2(make_args, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert main(["train", str(_job(tmp_path, make_args))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output_dir: ") and "overwrite_output_dir: true" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


def test_no_file_a_run_writes_holds_a_token_from_the_environment(make_args, tmp_path, monkeypatch, caplog):
    """Tokens reach a job through its environment; nothing the run writes (job.yaml, logs, checkpoints with
    training_args.bin, model card, results) may contain one. Then a corrupt newest checkpoint resumes from the one
    before it, for real."""
    from core import run_exp
    from core.train.tuner import write_job_yaml

    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        monkeypatch.setenv(variable, TOKEN)
    job = make_args(
        "sft", output_dir=tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=1, logging_steps=1
    )
    run_exp(job)
    output_dir = Path(job["output_dir"])
    written = [path for path in output_dir.rglob("*") if path.is_file()]
    assert {"job.yaml", "training_args.bin", "README.md", "trainer_log.jsonl"} <= {path.name for path in written}
    assert not [path for path in written if TOKEN.encode() in path.read_bytes()]

    # A direct caller of the writer, past the checks, still gets no token into job.yaml.
    leaked = write_job_yaml(tmp_path / "direct", {**job, "hub_token": TOKEN, "run_name": f"x-{TOKEN}"}).read_text()
    assert TOKEN not in leaked and "hub_token" not in leaked and "<redacted>" in leaked

    _truncate(output_dir / "checkpoint-2" / "optimizer.pt")
    core_logger = logging.getLogger("core")  # run_exp's logger does not propagate: listen to it directly
    core_logger.addHandler(caplog.handler)
    try:
        run_exp({**job, "max_steps": 3})
    finally:
        core_logger.removeHandler(caplog.handler)
    assert f"Skipping {output_dir / 'checkpoint-2'}: optimizer.pt is cut off" in caplog.text
    steps = [r["current_steps"] for r in json_lines(output_dir / "trainer_log.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # step 2 trained again from checkpoint-1, then step 3


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

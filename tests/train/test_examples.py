"""Every examples/*.yaml parses cleanly and runs for two steps on the demo model; STAGES matches the board.

Examples that use another example's output (a predict run on an adapter, ppo on a reward model, grpo on an sft
model) name that example's output_dir; here each output_dir is redirected into tmp_path and such references follow,
so examples run in dependency order: stages in STAGE_ORDER, training before prediction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.hparams import check_dict

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
STAGE_ORDER = ["pt", "sft", "rm", "dpo", "kto", "ppo", "grpo"]
PATH_KEYS = (
    "adapter_name_or_path",
    "reward_model",
    "reward_model_adapters",
    "ref_model",
    "ref_model_adapters",
    "model_name_or_path",
)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _order(path: Path) -> tuple[int, bool, str]:
    args = _load(path)
    stage = args.get("stage", "sft")
    return (
        STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER),
        not args.get("do_train"),
        path.name,
    )


def test_stage_table_matches_the_board_and_the_examples():
    from core.train.tuner import STAGES
    from webui.tabs.train import STAGES as BOARD_STAGES

    assert set(STAGES) == set(BOARD_STAGES) == set(STAGE_ORDER)
    assert {"pt", "sft", "rm"} <= {_load(p).get("stage") for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_has_no_argument_problems(path):
    args = _load(path)
    assert check_dict(args) == []
    # The demo model, or another example's output (grpo_full starts from sft_full's model).
    assert args["model_name_or_path"] in ["demo"] + [str(_load(p)["output_dir"]) for p in EXAMPLES if p != path]
    assert args.get("dataset_dir") == "demo"
    assert str(args["output_dir"]).startswith("saves/")


@pytest.mark.slow
def test_every_example_runs_two_steps(demo_model, tmp_path):
    from core import run_exp

    redirected: dict[str, str] = {}
    failures = []
    for path in sorted(EXAMPLES, key=_order):
        args = _load(path)
        out = tmp_path / path.stem
        redirected[str(args["output_dir"])] = str(out)
        for key in PATH_KEYS:
            if args.get(key) in redirected:
                args[key] = redirected[args[key]]
        overrides = {
            "output_dir": str(out),
            "max_steps": 2,
            "logging_steps": 1,
            "save_strategy": "no",
            "eval_steps": 1,
            "max_samples": 16,
            "plot_loss": False,
            "use_cpu": True,
        }
        if args.get("do_train"):
            args.update(overrides)
        else:
            args.update(output_dir=str(out), max_samples=8, max_new_tokens=4)
        try:
            run_exp(args)
        except Exception as err:  # collect, so one broken example does not hide the others
            failures.append(f"{path.name}: {type(err).__name__}: {err}")
            continue
        if args.get("do_train"):
            records = [r for r in (out / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in r]
            if len(records) != 2:
                failures.append(f"{path.name}: expected 2 logged steps, got {len(records)}")
        elif args.get("do_predict") and not (out / "predict_results.json").is_file():
            failures.append(f"{path.name}: no predict_results.json")
    assert not failures, "\n".join(failures)

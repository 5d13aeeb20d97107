"""The board never imports the training stack: each module it may import is checked in a fresh interpreter.

Add a module to PURE_MODULES when the board (or `llamafactory-cli version` / `--help`) imports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "accelerate"]

PURE_MODULES = [
    "core",
    "core.paths",
    "core.runfolder",
    "core.registry",
    "core.runs_cli",
    "core.sweep",
    "core.errors",
    "core.secrets",
    "core.safeload",
    "core.checkpoints",
    "core.train.trainer_utils",
    "core.efficiency",
    "core.notify",
    "core.sysmetrics",
    "core.stall",
    "core.hparams",
    "core.hparams.keys",
    "core.hparams.model_args",
    "core.hparams.data_args",
    "core.hparams.finetuning_args",
    "core.hparams.generating_args",
    "core.hparams.parser",
    "core.hparams.trackers",
    "core.hparams.hub",
    "core.cli",
    "core.env",
    "core.data.registry",
    "core.data.templates",
    "core.data.tool_formats",
    "core.data.preview",
    "core.data.progress",
    "core.data.readers",
    "core.data.converter",
    "core.data.detect",
    "core.data.register",
    "core.data.validate",
    "core.data.curate",
    "core.data.studio_cli",
    "core.launcher",
    "core.deepspeed",
    "core.demo",
    "core.chat",
    "core.decoding",
    "core.preflight",
    "core.chat_client",
    "core.plan",
    "core.plan_check",
    "core.plan_calibrate",
    "webui.app",
    "webui.board",
    "webui.controls",
    "webui.page_cache",
    "webui.board_blocks",
    "webui.handlers.data",
    "webui.handlers.data_use",
    "webui.handlers.tokenhtml",
    "webui.tabs.data",
]

# Pure calls, not just imports: what the board and the fast CLI commands run.
PURE_CALLS = {
    "check_dict": "from core.hparams import check_dict, read_args; check_dict(read_args({'stage': 'sft'}))",
    "dataclasses": "from core.hparams import ModelArguments, DataArguments, FinetuningArguments, "
    "GeneratingArguments; ModelArguments(); DataArguments(); FinetuningArguments(); GeneratingArguments()",
    "cli version": "from core.cli import main; main(['version'])",
    "cli train --help": "from core.cli import main; main(['train', '--help'])",
    "cli train --keys": "from core.cli import main; main(['train', '--keys'])",
    "env without devices": "from core.env import collect_env; collect_env(devices=False)",
}


def heavy_modules_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_training_stack(module):
    assert heavy_modules_after(f"import {module}") == []


@pytest.mark.parametrize("name", PURE_CALLS)
def test_pure_calls_import_no_training_stack(name):
    assert heavy_modules_after(PURE_CALLS[name]) == []


def test_the_probe_would_notice():
    """The check is not vacuous: a module that lands in sys.modules is reported (a stand-in, as importing the real
    torch in a fresh interpreter costs 10-20 s here)."""
    assert heavy_modules_after("import sys, types; sys.modules['trl'] = types.ModuleType('trl')") == ["trl"]

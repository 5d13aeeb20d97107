"""Checks that keep the repository honest: the README's commands are what CI runs, and a plain
(non-editable) install carries the package data the board and the demo need."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    return [block.strip() for block in blocks[:2]]


def test_readme_starts_with_two_commands_and_ci_runs_the_test_one():
    install_and_start, test = _readme_commands()
    assert install_and_start.endswith("llamafactory-webui")
    assert "pytest" in test
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test in ci_lines, "the README's test command must appear verbatim in .ci/run"


def test_readme_says_which_torch_to_install_before_the_first_command_runs():
    """A CPU-only machine must not download PyPI's multi-GB CUDA torch by surprise: right under the install line
    (before the test command) the README names PyTorch's CPU wheel index, and what to do on a CUDA machine."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install_and_start, test = _readme_commands()
    between = readme[readme.index(install_and_start) + len(install_and_start) : readme.index(test)]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in between
    assert re.search(r"CUDA build", between) and "download.pytorch.org/whl/cu" in between


def test_files_the_board_writes_in_the_checkout_are_ignored():
    """Running the board from the checkout (its working folder) must leave `git status` clean: runs under saves/,
    argument files under configs/, datasets under data/. The project's own data folders stay tracked."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["saves/demo/lora/train_x/job.yaml", "saves/.queue.json", "configs/train_config.yaml", "data/a.json"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *written], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    assert ignored == written
    tracked_but_ignored = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked_but_ignored == []


@pytest.mark.slow
def test_wheel_carries_package_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("llamaboard-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ["core/cli.py", "webui/app.py", "assets/data/dataset_info.json", "locales/en.yaml"]:
        assert required in names, f"{required} missing from the wheel"
    assert any(name.startswith("assets/data/demo_") for name in names), "demo datasets missing from the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "llamafactory-cli = core.cli:main" in text
    assert "llamafactory-webui = webui.app:main" in text

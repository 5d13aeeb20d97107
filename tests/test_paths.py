"""core.paths.fresh_name: the default folder names the board offers never name a folder that exists."""

from __future__ import annotations

from datetime import datetime

from core.paths import fresh_name

NOON = datetime(2026, 1, 2, 12, 0, 0)


def test_a_fresh_name_skips_folders_made_in_the_same_second_and_taken_names(tmp_path):
    assert fresh_name(tmp_path, "train", now=NOON) == "train_2026-01-02-12-00-00"
    (tmp_path / "train_2026-01-02-12-00-00").mkdir()  # a run started this second
    assert fresh_name(tmp_path, "train", now=NOON) == "train_2026-01-02-12-00-00-2"
    # A saved YAML's run will use -2: the board offers the next one.
    taken = ["train_2026-01-02-12-00-00-2"]
    assert fresh_name(tmp_path, "train", now=NOON, taken=taken) == "train_2026-01-02-12-00-00-3"
    assert fresh_name(tmp_path / "missing", "eval", now=NOON) == "eval_2026-01-02-12-00-00"

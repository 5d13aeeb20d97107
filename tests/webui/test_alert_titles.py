"""Every alert a job can raise (core.train.health's checks, ppo's diagnosis) has a title in the board's banner, in
every language: a raw kind name like `ppo_kl_over_score` is what a user would otherwise read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from webui.handlers.render import HEALTH_TITLES, alerts_html

ROOT = Path(__file__).resolve().parents[2]


def raised_kinds() -> set[str]:
    """Alert kinds written by the job: the first argument of health's `_sign` calls and the keys ppo's diagnosis
    puts in `found` (read with ast, nothing imported)."""
    kinds = set()
    health = ast.parse((ROOT / "core/train/health.py").read_text())
    for node in ast.walk(health):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_sign" and len(node.args) >= 2:
            if isinstance(node.args[1], ast.Constant):
                kinds.add(node.args[1].value)
    ppo = ast.parse((ROOT / "core/train/ppo_trainer.py").read_text())
    for node in ast.walk(ppo):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "found":
            if isinstance(node.slice, ast.Constant):
                kinds.add(node.slice.value)
    return kinds


def test_every_alert_kind_has_a_title():
    kinds = raised_kinds()
    assert {"divergence", "nan", "ppo_no_signal", "ppo_kl_over_score", "ppo_truncated"} <= kinds
    assert kinds <= set(HEALTH_TITLES), sorted(kinds - set(HEALTH_TITLES))


@pytest.mark.parametrize("lang", ["en", "zh", "ja", "ko", "ru"])
def test_ppo_alerts_read_as_words_in_the_banner(lang):
    record = {"alert": "ppo_kl_over_score", "level": "warning", "message": "…", "current_steps": 5}
    html = alerts_html(lang, [record], None)
    assert "ppo_kl_over_score" in html  # the data attribute
    assert ">ppo_kl_over_score<" not in html and "<b>" in html
    title = html.split("<b>")[1].split("</b>")[0]
    assert "ppo_kl_over_score" not in title and "5" in title

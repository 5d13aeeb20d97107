"""Locales: every labelled component and every alert has every language, no key is unused, translations are
real (not English left in place), and messages keep their {placeholders} in every language."""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import pytest

from core.paths import LOCALES_DIR
from webui.manager import LANGUAGES, load_locale

WEBUI = Path(__file__).parents[2] / "webui"
OTHERS = [lang for lang in LANGUAGES if lang != "en"]


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _string_constants() -> set[str]:
    found = set()
    for path in WEBUI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def _alert_calls() -> set[str]:
    """Alert names passed as literals to `alert(lang, "<name>", ...)` anywhere in webui/."""
    used = set()
    for path in WEBUI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "alert" and len(node.args) >= 2:
                if isinstance(node.args[1], ast.Constant):
                    used.add(node.args[1].value)
    return used


@pytest.fixture(scope="module")
def labelled(board_home: Path) -> dict[str, Any]:
    from webui.app import create_ui
    from webui.runner import Runner

    demo = create_ui("en", runner=Runner(saves_root=board_home / "saves"))
    return demo.board.manager.labelled()


def test_every_language_file_exists_and_has_the_same_keys() -> None:
    english = load_locale("en")
    for lang in LANGUAGES:
        assert (LOCALES_DIR / f"{lang}.yaml").is_file()
        keys = set(load_locale(lang))
        assert keys == set(english), f"{lang}: missing {set(english) - keys}, unknown {keys - set(english)}"


@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_every_component_is_labelled(labelled: dict[str, Any], lang: str) -> None:
    locale = load_locale(lang)
    for key, component in labelled.items():
        text = locale.get(key)
        assert isinstance(text, dict) and str(text.get("label") or "").strip(), f"{lang}: {key} has no label"
        columns = load_locale("en")[key].get("columns")
        if columns:
            assert set(text.get("columns") or {}) == set(columns), f"{lang}: {key} columns"
        names = text.get("choices")
        if names:
            values = {value for _, value in component.choices}
            assert set(names) == values, f"{lang}: {key} names choices {set(names)}, the control offers {values}"


def test_no_locale_key_is_unused(labelled: dict[str, Any]) -> None:
    constants = _string_constants()
    for key in load_locale("en"):
        if key.startswith("alerts."):
            assert key.removeprefix("alerts.") in constants, f"{key} is never used by webui/"
        else:
            assert key in labelled, f"{key} names no component of the board"


def test_every_alert_the_code_raises_exists() -> None:
    english = load_locale("en")
    for name in _alert_calls():
        assert f"alerts.{name}" in english


@pytest.mark.parametrize("lang", OTHERS)
def test_messages_keep_their_placeholders(lang: str) -> None:
    english, locale = load_locale("en"), load_locale(lang)
    for key, text in english.items():
        if key.startswith("alerts."):
            assert _placeholders(locale[key]) == _placeholders(text), f"{lang}: {key}"


@pytest.mark.parametrize("lang", OTHERS)
def test_translations_are_not_english(lang: str) -> None:
    """Names such as "LoRA" or "DPO" stay as they are; most labels, every help text and message do not."""
    english, locale = load_locale("en"), load_locale(lang)
    labels = [key for key, value in english.items() if isinstance(value, dict)]
    same = [key for key in labels if locale[key]["label"] == english[key]["label"]]
    assert len(same) <= 0.1 * len(labels), f"{lang}: labels left in English: {same}"
    for key, value in english.items():
        if isinstance(value, dict) and "info" in value:
            assert locale[key]["info"] != value["info"], f"{lang}: {key} info left in English"
        elif isinstance(value, str) and _placeholders(value) != {"error"} and len(value) > 12:
            assert locale[key] != value, f"{lang}: {key} left in English"

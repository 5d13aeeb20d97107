"""Every visible string is translated: in a real browser, switch the board to each language, open every tab, and
find no English sentence of locales/en.yaml on the page (a sentence whose translation differs, so a name kept in
English on purpose does not count)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

from core.paths import LOCALES_DIR
from webui.manager import LANGUAGES

pytestmark = BROWSER_MARKS


def _texts(entries: dict) -> dict[str, str]:
    """`key/field` -> text of a locale file (labels, infos, placeholders, alerts), choices left out."""
    found = {}
    for key, value in entries.items():
        if isinstance(value, str):
            found[key] = value
        elif isinstance(value, dict):
            for field in ("label", "info", "placeholder"):
                if isinstance(value.get(field), str):
                    found[f"{key}/{field}"] = value[field]
    return found


def english_sentences(lang: str) -> set[str]:
    """Lines of en.yaml texts, of at least four words and without placeholders, that `lang` translates differently
    (markdown marks removed: the page shows the words)."""
    english = _texts(yaml.safe_load((LOCALES_DIR / "en.yaml").read_text(encoding="utf-8")))
    other = _texts(yaml.safe_load((LOCALES_DIR / f"{lang}.yaml").read_text(encoding="utf-8")))
    sentences = set()
    for key, text in english.items():
        if "{" in text or other.get(key, text) == text:
            continue
        for line in re.sub(r"[*_`#<>\[\]]", "", text).splitlines():
            if len(line.split()) >= 4:
                sentences.add(line.strip())
    return sentences


def test_no_english_sentence_is_left_in_any_language(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with serve_board(tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.goto(url)
            expect(page.locator("#start")).to_have_text("Start", timeout=30_000)
            tab_buttons = page.get_by_role("tab")
            for lang, name in LANGUAGES.items():
                if lang == "en":
                    continue
                page.locator("#lang input").click()
                page.get_by_role("option", name=name, exact=True).click()
                expect(page.locator("#start")).not_to_have_text("Start", timeout=15_000)
                left = {}
                for index in range(tab_buttons.count()):
                    tab = tab_buttons.nth(index)
                    if not tab.is_visible():
                        continue
                    tab.click()
                    # The language switch relabels the controls at once; the live view and the charts follow in
                    # their own event a moment later. Give the page up to 10 s to finish, then judge what is shown.
                    for _ in range(20):
                        page.wait_for_timeout(500)
                        shown = page.locator("body").inner_text()
                        found = {s: tab.inner_text() for s in english_sentences(lang) if s in shown}
                        if not found:
                            break
                    left.update(found)
                assert not left, f"{lang}: English left on the page: {left}"
        finally:
            browser.close()


@pytest.mark.parametrize("lang", [lang for lang in LANGUAGES if lang != "en"])
def test_the_sentences_checked_include_the_ones_a_user_reported(lang: str) -> None:
    sentences = english_sentences(lang)
    assert "No GPU: jobs run one at a time, the others wait in the queue." in sentences
    assert "No run yet: pick a model and a dataset, then press Start." in sentences

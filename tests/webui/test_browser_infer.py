"""The Chat and Export tabs in a real browser, as a user would use them.

Debian's chromium driven by Playwright, with the launch options of tests/webui/test_browser.py: start the board
with its real entry point, open the Chat tab, load the demo model (the status box follows the loading steps), send a
message and watch the answer grow in the chat box token by token (the status box shows its last line); then open
the Export tab and export the demo model into the suggested folder, watching the job finish.
The screenshot goes to test-artifacts/board_infer.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

ROOT = Path(__file__).parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "board_infer.png"

pytestmark = BROWSER_MARKS

# Records every text the last answer of the chat box shows, so the test can see it grow.
WATCH_ANSWER_JS = """() => {
  window.seenAnswers = [];
  const box = document.querySelector('#chatbot');
  new MutationObserver(() => {
    const answers = box.querySelectorAll('[data-testid="bot"]');
    const text = answers.length ? answers[answers.length - 1].innerText : '';
    const seen = window.seenAnswers;
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  }).observe(box, {childList: true, subtree: true, characterData: true});
}"""


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The board on a free port, with saves and cache in `tmp_path`; (url, saves folder)."""
    with serve_board(tmp_path) as url:
        yield url, tmp_path / "saves"


def test_chat_streams_and_export_runs_in_a_real_browser(board: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, saves = board
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.goto(url)
            expect(page.locator("#start")).to_have_text("Start", timeout=30_000)
            expect(page.locator("#model_path input, #model_path textarea").first).to_have_value("demo")

            # Chat: load the demo model; the status box shows the steps, then the model is ready.
            page.get_by_role("tab", name="Chat").click()
            page.locator("#chat_load").click()
            info = page.locator("#chat_info textarea")
            expect(info).to_have_value(re.compile(r"\[A\] Ready: demo"), timeout=90_000)
            assert "[A] Loading demo" in info.input_value()
            # The box holds more lines than it shows: it is scrolled to its last line (the newest message).
            sizes = info.evaluate("box => [box.scrollHeight, box.clientHeight]")
            assert sizes[0] > sizes[1], f"the loading steps fit the box {sizes}: this check needs more lines"
            page.wait_for_function(
                "() => { const box = document.querySelector('#chat_info textarea');"
                " return box.scrollTop + box.clientHeight >= box.scrollHeight - 2; }",
                timeout=5_000,
            )

            # Greedy answers, so the same tokens come on any machine; watch the answer grow as they arrive.
            temperature = page.locator("#chat_temperature input[type=number]")
            temperature.fill("0")
            temperature.press("Enter")
            page.evaluate(WATCH_ANSWER_JS)
            page.locator("#chat_query textarea").fill("Reverse: cat dog")
            page.locator("#chat_submit").click()
            expect(page.locator('#chatbot [data-testid="user"]').last).to_contain_text("Reverse: cat dog")
            page.wait_for_function("() => window.seenAnswers.length >= 2", timeout=60_000)
            # Done when the answer stops changing.
            stable, last = 0, None
            while stable < 6:
                time.sleep(0.25)
                seen = page.evaluate("() => window.seenAnswers")
                stable, last = (stable + 1, last) if seen == last else (0, seen)
            assert len(last) >= 2 and len(last[0]) < len(last[-1]), last
            expect(page.locator("#chat_query textarea")).to_have_value("")

            # Export: the suggested folder under saves/exports; the job runs to the end with its steps shown.
            page.get_by_role("tab", name="Export").click()
            export_dir = Path(page.locator("#export_dir textarea, #export_dir input").first.input_value())
            assert export_dir.parent == saves / "exports"
            page.locator("#export_start").click()
            expect(page.locator('#export_progress [data-state="finished"]')).to_be_visible(timeout=120_000)
            expect(page.locator("#export_output_box textarea")).to_have_value(
                re.compile(r"\[export\] done:"), timeout=10_000
            )
            assert (export_dir / "config.json").is_file() and list(export_dir.glob("model*.safetensors"))
        finally:
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()

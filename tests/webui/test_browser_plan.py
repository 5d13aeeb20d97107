"""The plan bar in a real browser (Debian's chromium, Playwright): at page load it says the demo job fits this
machine and asks for a calibration (the Calibrate button beside it); a batch and length far beyond any machine turn
it to "will NOT fit" with the "Fit it" changes, and Start then refuses the job with the same lines."""

from __future__ import annotations

from pathlib import Path

from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

pytestmark = BROWSER_MARKS


def set_number(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    for _ in range(3):  # a field still mounting can put the old value back (see test_browser.py)
        field.fill(value)
        field.press("Enter")
        page.wait_for_timeout(500)
        if field.input_value() == value:
            return


def test_the_plan_bar_follows_the_form_and_start_refuses(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with serve_board(tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.goto(url)
            plan = page.locator("#plan")
            expect(plan.locator(".lb-plan-fits")).to_contain_text("fits.", timeout=30_000)
            expect(plan).to_contain_text("press Calibrate to measure this machine")
            expect(page.locator("#plan_calibrate")).to_have_text("Calibrate")

            set_number(page, "per_device_train_batch_size", "1024")
            set_number(page, "cutoff_len", "131072")
            expect(plan.locator(".lb-plan-too_big")).to_contain_text("will NOT fit", timeout=30_000)
            expect(plan).to_contain_text("Fit it")
            page.locator("#start").click()
            expect(page.get_by_text("would run out of memory").first).to_be_visible(timeout=30_000)
        finally:
            browser.close()

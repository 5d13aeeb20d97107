"""A sweep in a real browser: the Train tab's Sweep section previews the four runs of a 2x2 grid, Start sweep queues
them, and the Runs tab groups them under the sweep with a ranked summary and one legend entry per member. Jobs are
tests/webui/fake_job.py (the board's LLAMABOARD_FAKE_JOB switch); the screenshot goes to test-artifacts/sweep.png."""

from __future__ import annotations

from pathlib import Path

from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

ROOT = Path(__file__).parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "sweep.png"
FAKE_JOB = Path(__file__).with_name("fake_job.py")
GRID = [f"learning_rate-{lr}-lora_rank-{rank}" for lr in ("1e-2", "1e-4") for rank in (4, 8)]

pytestmark = BROWSER_MARKS


def test_a_sweep_from_the_train_tab_is_grouped_and_ranked_in_the_runs_tab(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    extra_env = {"LLAMABOARD_FAKE_JOB": f"{FAKE_JOB} --steps 4 --interval 0.05"}
    with serve_board(tmp_path, extra_env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            page.goto(url)
            page.locator("#sweep_tab").get_by_text("Sweep (a grid of runs)").click()
            for index, (key, values) in enumerate((("learning_rate", "1e-2,1e-4"), ("lora_rank", "4,8")), 1):
                key_box = page.locator(f"#sweep_key{index} input")
                key_box.fill(key)
                key_box.press("Enter")
                page.locator(f"#sweep_values{index} textarea, #sweep_values{index} input").first.fill(values)
            preview = page.locator("#sweep_preview")
            expect(preview).to_contain_text("4 runs in sweep", timeout=20_000)
            sweep = page.locator("#output_dir textarea, #output_dir input").first.input_value()  # the fresh run name
            names = [f"{sweep}-{values}" for values in GRID]
            expect(preview).to_contain_text(f"4 runs in sweep {sweep}", timeout=20_000)
            for name in names:
                expect(preview).to_contain_text(name)
            # No older preview, computed before the last row was complete, lands after the right one.
            page.wait_for_timeout(2500)
            expect(preview).to_contain_text(f"4 runs in sweep {sweep}")
            page.locator("#sweep_metric input").click()
            page.get_by_role("option", name="Final train loss", exact=True).click()
            page.locator("#sweep_start").click()
            expect(page.locator(".toast-body").filter(has_text=f"Sweep {sweep}: 4 runs").first).to_be_visible(
                timeout=20_000
            )

            page.get_by_role("tab", name="Runs").click()
            page.locator("#runs_refresh").click()
            page.locator("#runs_sweep input").click()
            page.get_by_role("option", name=f"demo/lora/{sweep}", exact=True).click()
            summary = page.locator("#runs_sweep_summary")
            for name in names:
                expect(summary).to_contain_text(name, timeout=30_000)
            # Once all four have finished, Refresh shows them ranked and overlaid.
            page.wait_for_function(
                "() => (document.querySelector('#runs_sweep_summary')?.innerText.match(/Finished/g) || [])"
                ".length === 4 || (document.querySelector('#runs_refresh')?.click(), false)",
                timeout=60_000,
                polling=2000,
            )
            page.wait_for_function(
                "() => document.querySelectorAll('#runs_sweep_plot .legend .traces').length === 4", timeout=30_000
            )
            table = page.locator("#runs_table")
            for name in names:
                expect(table).to_contain_text(name)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()

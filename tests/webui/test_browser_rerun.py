"""Re-run and Stop and keep best in a real browser: a finished run picked in the Runs tab opens in the Train tab,
Re-run starts `<run>-rerun` with the same arguments (the live view follows it), and Stop and keep best on that
running job writes its keep-best request and stops it. Jobs are tests/webui/fake_job.py (the board's
LLAMABOARD_FAKE_JOB switch); that the final adapter then is the best checkpoint is tests/train/test_early_stopping.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from browserhelp import BROWSER_MARKS, launch_chromium, serve_board
from test_browser_runs import write_finished_run

from core.runfolder import JOB_JSON, JOB_YAML, KEEP_BEST

FAKE_JOB = Path(__file__).with_name("fake_job.py")

pytestmark = BROWSER_MARKS


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s")


def test_rerun_then_stop_and_keep_best_in_a_real_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    saves = tmp_path / "saves"
    write_finished_run(saves, "base", 3e-4, 1.7e9)
    base, rerun = saves / "demo" / "lora" / "base", saves / "demo" / "lora" / "base-rerun"
    args = yaml.safe_load((base / JOB_YAML).read_text()) | {"do_train": True, "template": "chatml"}
    (base / JOB_YAML).write_text(yaml.safe_dump(args))  # a run Start would accept: Re-run checks it the same way
    extra_env = {"LLAMABOARD_FAKE_JOB": f"{FAKE_JOB} --steps 400 --interval 0.1"}
    with serve_board(tmp_path, extra_env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.goto(url)
            page.get_by_role("tab", name="Runs").click()
            cell = page.locator("#runs_table").get_by_test_id("cell-0-0").get_by_text("demo/lora/base", exact=True)
            expect(cell).to_be_visible(timeout=30_000)
            cell.click()
            page.wait_for_function(
                "() => !!document.querySelector('#view_run input')?.value.includes('demo/lora/base')", timeout=30_000
            )
            page.locator("#rerun").click()
            job = wait_for(lambda: (rerun / JOB_JSON).exists() and json.loads((rerun / JOB_JSON).read_text()))
            before, after = (
                yaml.safe_load((base / JOB_YAML).read_text()),
                yaml.safe_load((rerun / JOB_YAML).read_text()),
            )
            assert after == {**before, "output_dir": str(rerun.resolve())} and job["state"] in ("queued", "running")
            page.wait_for_function(
                "() => !!document.querySelector('#view_run input')?.value.includes('base-rerun')", timeout=30_000
            )
            expect(page.locator("#progress [data-state='running']")).to_be_visible(timeout=30_000)

            page.locator("#stop_keep_best").click()
            expect(page.locator(".toast-body").filter(has_text="best evaluated checkpoint").first).to_be_visible(
                timeout=10_000
            )
            assert (rerun / KEEP_BEST).exists()
            wait_for(lambda: json.loads((rerun / JOB_JSON).read_text())["state"] == "aborted")
            expect(page.locator("#progress [data-state='aborted']")).to_be_visible(timeout=30_000)
        finally:
            browser.close()

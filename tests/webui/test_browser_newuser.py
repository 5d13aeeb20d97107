"""A new user's path in a real browser (issue 10): Start with the defaults, let the run finish, reload the page,
Start again with the defaults: it starts (the Output dir offered is fresh); Export config shows the YAML's whole
file name and offers the next run another folder; the start-up banner names the board's own --share flag.
Jobs are tests/webui/fake_job.py (the board's LLAMABOARD_FAKE_JOB switch)."""

from __future__ import annotations

from pathlib import Path

from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

FAKE_JOB = Path(__file__).with_name("fake_job.py")

pytestmark = BROWSER_MARKS


def test_finish_a_run_reload_and_start_again_with_the_defaults(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    extra_env = {"LLAMABOARD_FAKE_JOB": f"{FAKE_JOB} --steps 3 --interval 0.1"}
    with serve_board(tmp_path, extra_env) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            names = []
            for attempt in range(2):
                page.goto(url)
                expect(page.locator("#start")).to_have_text("Start", timeout=30_000)
                # The page load replaces the name the board was built with by one no folder has.
                page.wait_for_function(
                    "(taken) => { const box = document.querySelector('#output_dir textarea, #output_dir input');"
                    " return box && box.value && !taken.includes(box.value); }",
                    arg=names,
                    timeout=30_000,
                )
                expect(page.locator("#start_from")).to_contain_text("new LoRA adapter")
                # The run folder Start makes: the name the page load put in the box, which may land just after the
                # box is first read, so the folder is found on disk rather than guessed from the box.
                runs = tmp_path / "saves" / "demo" / "lora"
                before = {path.name for path in runs.iterdir()} if runs.is_dir() else set()
                page.locator("#start").click()
                started = []
                for _ in range(300):  # the run folder appears once Start is accepted
                    started = (
                        [p.parent.name for p in runs.glob("*/job.json") if p.parent.name not in before]
                        if runs.is_dir()
                        else []
                    )
                    if started or page.get_by_text("already holds a run").count():
                        break
                    page.wait_for_timeout(100)
                assert started, f"Start with the defaults was refused on page {attempt + 1}"
                names.append(started[0])
                page.wait_for_function(
                    "(name) => !!document.querySelector('#view_run input')?.value.includes(name)",
                    arg=names[-1],
                    timeout=30_000,
                )
                expect(page.locator('#progress [data-state="finished"]')).to_be_visible(timeout=90_000)
            assert len(set(names)) == 2

            # Export config: the YAML's file name shows whole, and the form offers a folder other than the YAML's.
            page.locator("#arg_export").click()
            stem = page.locator("#export_file .stem").first
            expect(stem).to_contain_text("train_", timeout=30_000)
            assert stem.evaluate("el => el.scrollWidth <= el.clientWidth"), f"file name cut: {stem.inner_text()}"
            page.wait_for_function(
                "(taken) => !taken.includes(document.querySelector('#output_dir textarea, #output_dir input').value)",
                arg=[*names, stem.inner_text()],
                timeout=10_000,
            )
        finally:
            browser.close()
    log = (tmp_path / "board.log").read_text(errors="replace")
    assert "--share" in log and "share=True" not in log

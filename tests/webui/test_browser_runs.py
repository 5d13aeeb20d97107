"""The Runs tab in a real browser: two finished runs are listed, picked and compared; the overlay has one legend
entry per run, and a shared link (?compare=a,b) opens the same comparison. The screenshot goes to
test-artifacts/compare.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from browserhelp import BROWSER_MARKS, launch_chromium, serve_board

from core.runfolder import JOB_JSON, JOB_YAML, TRAINER_LOG

ROOT = Path(__file__).parents[2]
SCREENSHOT = ROOT / "test-artifacts" / "compare.png"

pytestmark = BROWSER_MARKS


def write_finished_run(saves: Path, name: str, learning_rate: float, created: float) -> None:
    run = saves / "demo" / "lora" / name
    run.mkdir(parents=True)
    args = {"model_name_or_path": "demo", "stage": "sft", "finetuning_type": "lora", "dataset": "demo_sft"}
    args |= {"learning_rate": learning_rate, "output_dir": str(run)}
    (run / JOB_YAML).write_text(yaml.safe_dump(args), encoding="utf-8")
    (run / JOB_JSON).write_text(json.dumps({"state": "finished", "stage": "sft", "created": created}))
    records = [
        {"current_steps": step, "total_steps": 20, "loss": 3 * math.exp(-learning_rate * 1e3 * step), "lr": 1e-4}
        for step in range(1, 21)
    ]
    (run / TRAINER_LOG).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (run / "train_results.json").write_text("{}", encoding="utf-8")


def legend_names(page) -> list[str]:
    return page.eval_on_selector_all(
        "#runs_compare_plot .legend .traces .legendtext", "nodes => nodes.map(node => node.textContent)"
    )


def test_compare_two_finished_runs_in_a_real_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    write_finished_run(tmp_path / "saves", "lr-small", 1e-4, 1.7e9)
    write_finished_run(tmp_path / "saves", "lr-large", 5e-4, 1.7e9 + 60)
    with serve_board(tmp_path) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        try:
            page.goto(url)
            page.get_by_role("tab", name="Runs").click()
            table = page.locator("#runs_table")
            expect(table).to_contain_text("demo/lora/lr-small", timeout=30_000)
            expect(table).to_contain_text("demo/lora/lr-large")

            picker = page.locator("#runs_compare input")
            for name in ("demo/lora/lr-small", "demo/lora/lr-large"):
                picker.click()
                page.get_by_role("option", name=name, exact=True).click()
            page.locator("#runs_compare_button").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#runs_compare_plot .legend .traces').length === 2",
                timeout=30_000,
            )
            assert sorted(legend_names(page)) == ["demo/lora/lr-large", "demo/lora/lr-small"]
            expect(page.locator("#runs_diff")).to_contain_text("learning_rate")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # A colleague's link opens the same comparison on the Runs tab.
            page.goto(f"{url}?compare=demo/lora/lr-small,demo/lora/lr-large")
            page.wait_for_function(
                "() => document.querySelectorAll('#runs_compare_plot .legend .traces').length === 2",
                timeout=30_000,
            )
            assert sorted(legend_names(page)) == ["demo/lora/lr-large", "demo/lora/lr-small"]
        finally:
            browser.close()

"""The board's charts drawn by plotly.js in a real browser at the width of the board's chart column: every axis
title and tick label lies inside the chart (nothing clipped at an edge), whatever the numbers look like."""

from __future__ import annotations

from pathlib import Path

from browserhelp import BROWSER_MARKS, launch_chromium

from webui import plots

pytestmark = BROWSER_MARKS

WIDTH = 420  # about the chart column's width on a laptop screen (two charts side by side)

# A cosine schedule's first steps: the rate barely changes, so the ticks need many digits.
FLAT_LR = [{"current_steps": s, "lr": 5e-3 * (1 - 1e-7 * s * s)} for s in range(1, 41)]
# dpo: accuracy on the left axis, margins in the hundreds on the right one.
REWARDS = [
    {"current_steps": s, "rewards/accuracies": min(1.0, 0.4 + s / 50), "rewards/margins": -120.5 + 9.25 * s}
    for s in range(1, 41)
]
LOSS = [{"current_steps": s, "loss": 12000.0 / s} for s in range(1, 41)]

TEXTS = ".g-xtitle text, .g-ytitle text, .g-y2title text, .xtick text, .ytick text, .y2tick text"


FIGURES = {
    "flat learning rate": lambda: plots.lr_figure(FLAT_LR),
    "rewards on two axes": lambda: plots.reward_figure(REWARDS),
    "large loss": lambda: plots.loss_figure(LOSS),
}

MEASURE = """(selector) => {
    const svg = document.querySelector('.main-svg').getBoundingClientRect();
    return [...document.querySelectorAll(selector)].filter((el) => el.textContent.trim()).map((el) => {
        const box = el.getBoundingClientRect();
        const group = el.closest('.ytick, .y2tick');
        const axis = group ? (group.classList.contains('y2tick') ? 'y2' : 'y') : '';
        return {text: el.textContent, axis, left: box.left - svg.left, right: svg.right - box.right,
                top: box.top - svg.top, bottom: svg.bottom - box.bottom};
    });
}"""


def test_axis_titles_and_ticks_are_inside_the_chart(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": WIDTH + 40, "height": 400})
            for name, figure in FIGURES.items():
                fig = figure()
                fig.update_layout(width=WIDTH)
                page_file = tmp_path / f"{name.replace(' ', '-')}.html"
                page_file.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
                page.goto(page_file.as_uri())
                page.wait_for_selector(".main-svg .ytick text")
                found = page.evaluate(MEASURE, TEXTS)
                assert len(found) > 6, name
                clipped = [t for t in found if min(t["left"], t["right"], t["top"], t["bottom"]) < 0]
                assert not clipped, (name, clipped)
                for axis in ("y", "y2"):  # each tick names its own value (a flat rate rounded to one label would not)
                    labels = [t["text"] for t in found if t["axis"] == axis]
                    assert len(labels) == len(set(labels)), (name, labels)
        finally:
            browser.close()

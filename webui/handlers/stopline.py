"""The live view's line under the progress bar that says when and why a run stopped early and which checkpoint is
the best (the early-stopping and "Stop and keep best" lines core.train.callbacks writes to the job log, read back
from the log the live view already tails). Kept per run by the live view's watcher, so the line stays once the log
has scrolled past it."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from webui.manager import alert

_NUMBER = r"(-?[0-9][0-9.eE+-]*|nan|inf)"
EARLY_STOP = re.compile(
    rf"Early stopping at step (\d+): (\S+) has not improved for (\d+) evaluations \(best {_NUMBER} at step (\d+), "
    r"early_stopping_patience (\d+)\)"
)
KEEP_BEST = re.compile(r"Stopped at step (\d+) of \d+; saving checkpoint-\d+\.\s*\n?.*?Stop and keep best:", re.S)
BEST = re.compile(rf"Best checkpoint: (checkpoint-\d+) \((.+?) {_NUMBER}\); the final model is (its weights|the last)")


def parse_stop(text: str, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the log says about the stop and the best checkpoint, added to `known` (found earlier)."""
    info = dict(known or {})
    if match := EARLY_STOP.search(text):
        step, metric, waited, best, best_step, patience = match.groups()
        info["early"] = {"step": step, "metric": metric, "waited": waited, "best": best, "best_step": best_step}
        info["early"]["patience"] = patience
    if match := KEEP_BEST.search(text):
        info["keep_best"] = {"step": match.group(1)}
    if match := BEST.search(text):
        checkpoint, metric, value, final = match.groups()
        info["best"] = {"checkpoint": checkpoint, "metric": metric, "value": value, "final": final == "its weights"}
    return info


def stop_html(lang: str | None, info: dict[str, Any]) -> str:
    """One line per fact found ("" when the log says nothing of the kind)."""
    lines = []
    if early := info.get("early"):
        lines.append(alert(lang, "early_stopped", **early))
    if keep := info.get("keep_best"):
        lines.append(alert(lang, "stopped_keep_best", **keep))
    if best := info.get("best"):
        name = "best_checkpoint_final" if best["final"] else "best_checkpoint_last"
        lines.append(alert(lang, name, checkpoint=best["checkpoint"], metric=best["metric"], value=best["value"]))
    if not lines:
        return ""
    body = "".join(f"<div>{escape(line)}</div>" for line in lines)
    return f'<div class="lb-stopline" data-stop="{"early" if info.get("early") else "best"}">{body}</div>'

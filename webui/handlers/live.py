"""The Train tab's live view of a run: progress bar, log box and charts (and grpo's sampled completions), redrawn by
a 2-second timer (`poll`).

Readers are shared by every browser tab that shows a run (one `Watcher` a run folder), and read only the bytes
appended since the last poll, so a poll costs the same at step 10 and at step 100,000.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from core import notify, registry, runfolder
from core.runfolder import format_hms
from core.stall import last_activity, stall_check
from webui import jobs
from webui.handlers.base import BoardBase, resolved
from webui.handlers.events import ALERTS, MAX_NOTES, Updates, Values, compose_output, note_text
from webui.handlers.render import (
    alerts_html,
    figures,
    health_title,
    progress_html,
    run_what,
    samples_table,
    state_name,
)
from webui.handlers.stopline import parse_stop, stop_html
from webui.manager import alert

logger = logging.getLogger(__name__)

STALL_LINES = 8
"""Last lines of the job's log shown with a stall."""

LIVE_VIEW = (
    "train.poll_state",
    "train.progress",
    "train.alert_banner",
    "train.loss_viewer",
    "train.lr_viewer",
    "train.reward_viewer",
    "train.system_viewer",
    "train.efficiency_viewer",
    "train.rollout_viewer",
    "train.samples_view",
    "train.view_run",
)
"""What a poll of the viewed run may update (the log box is always a possible output)."""


@dataclass
class Watcher:
    """The readers of one run folder, shared by every browser tab that shows the run, so each poll reads only
    the bytes appended since the last one, whoever asked."""

    run_dir: Path
    reader: Any
    tail: Any
    stage: str | None
    metrics: Any = None  # reader of metrics.jsonl
    stalled: bool = False  # a `stalled` webhook was sent for the stall in progress
    samples: Any = None  # grpo: samples.jsonl's reader
    text: str = ""
    end: int = 0  # the log file's size where `text` ends
    text_version: int = 0
    stop: dict[str, Any] = field(default_factory=dict)  # webui.handlers.stopline: the early stop, the best checkpoint
    lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self) -> tuple[list[dict[str, Any]], str, int, int]:
        with self.lock:
            self.reader.poll()
            if self.metrics is not None:
                self.metrics.poll()
            if self.samples is not None:
                self.samples.poll()
            text = self.tail.poll()
            if text != self.text:
                self.text, self.text_version = text, self.text_version + 1
                self.stop = parse_stop(text, self.stop)
            self.end = self.tail.end
            end = self.end
            # The reader's own list (appended in place), not a copy: webui.plots extends its cached series only
            # while it sees the same list, which keeps a poll at step 100,000 as cheap as at step 10.
            return self.reader.records, self.text, self.text_version, end


class LiveView(BoardBase):
    """The live view's handlers (mixed into webui.board.Board)."""

    def run_choices(self, lang: str | None = None) -> list[tuple[str, str]]:
        """Every run under saves, newest first, as (label, path); the label ends with the run's state. Read through
        core.registry (rows cached by file size and mtime: 1,000 runs in 0.08 s warm, benchmarks/run_registry.py)."""
        try:
            runs = registry.list_runs(self.saves_root)
        except OSError as err:
            logger.warning("Could not list runs under %s: %s", self.saves_root, err)
            return []
        choices = []
        for run in runs:
            state = state_name(lang, run.get("state"))
            what = f" · {run_what(lang, run)}" if run.get("kind", "train") != "train" else ""
            choices.append((f"{run['name']}{what} · {state}", resolved(run["path"])))
        return choices

    def refresh_runs(self, values: Values) -> Updates:
        return {"train.view_run": gr.update(choices=self.run_choices(values.get("top.lang")))}

    def change_view(self, values: Values) -> Updates:
        """train.view_run picked -> the live view redrawn for that run (a typed folder outside the roots: refused)."""
        refused = (
            self.check_path(values, values.get("train.view_run"), "view_run") if values.get("train.view_run") else []
        )
        if refused:
            return {**self.poll({**values, "train.view_run": None, "train.poll_state": {}}), ALERTS: refused}
        return self.poll({**values, "train.poll_state": {}})

    def _watcher(self, run_dir: Path) -> Watcher:
        key = str(run_dir)
        with self._lock:
            watcher = self._watchers.get(key)
            if watcher is None:
                stage = runfolder.run_stage(runfolder.read_args(run_dir)) or None
                watcher = Watcher(
                    run_dir=run_dir,
                    reader=runfolder.TrainerLogReader(run_dir / runfolder.TRAINER_LOG),
                    tail=jobs.LogTail(runfolder.log_file(run_dir)),
                    stage=stage,
                    metrics=runfolder.TrainerLogReader(run_dir / runfolder.METRICS_LOG),
                    samples=runfolder.TrainerLogReader(run_dir / runfolder.SAMPLES) if stage == "grpo" else None,
                )
                self._watchers[key] = watcher
            return watcher

    def current_output(self, target: str | None, notes: list[Any]) -> str:
        """The log box as it should read now: the viewed run's log tail (if any) and the session's notes."""
        watcher = self._watchers.get(str(target)) if target else None
        if watcher is None:
            return compose_output("", notes[-MAX_NOTES:])
        return compose_output(watcher.text, notes[-MAX_NOTES:], watcher.end, str(target))

    def log_size(self, target: Any) -> int | None:
        """The size of a run's log now (where a note made now belongs in it); None without a run."""
        if not target:
            return None
        try:
            return runfolder.log_file(Path(str(target))).stat().st_size
        except (OSError, ValueError):  # no log yet; a NUL in a typed folder (refused, but the note is still made)
            return 0

    def poll(self, values: Values) -> Updates:
        """Timer tick -> log box, progress bar and charts of the viewed run, sent only when something changed."""
        lang = values.get("top.lang")
        notes = list(values.get("train.notes") or [])
        seen = dict(values.get("train.poll_state") or {})
        target = values.get("train.view_run")
        if target and self.check_path(values, target, "view_run"):
            target = None  # the run list offers folders under saves; a typed path outside the roots shows nothing
        if not target:
            key = {"run": None, "notes": len(notes), "lang": lang}
            if key == seen:
                return {}
            return {
                "train.poll_state": key,
                "train.progress": progress_html(lang, None, None),
                "train.alert_banner": "",
                "train.output_box": "\n".join(note_text(note) for note in notes),
                **figures(lang, [], None, log_y=False),
                "train.samples_view": samples_table(lang, [], None),
            }

        run_dir = Path(target)
        watcher = self._watcher(run_dir)
        records, text, version, end = watcher.poll()
        job = jobs.read_job(run_dir)
        state = (job or {}).get("state")
        system = watcher.metrics.records if watcher.metrics is not None else []
        samples = watcher.samples.records if watcher.samples is not None else []
        alerts = [record for record in records if runfolder.is_alert(record)]
        stall = stall_check(state, records, last_activity(run_dir)) if state == "running" else None
        self._notify_stall(watcher, stall, state)
        key = {
            "run": str(run_dir),
            "records": len(records),
            "samples": len(samples),
            "system": len(system),
            "alerts": len(alerts),
            "stalled": bool(stall),
            "log": version,
            "state": state,
            "notes": len(notes),
            "lang": lang,
            "log_y": bool(values.get("train.loss_log_y")),
        }
        if key == seen and state != "running":
            return {}
        updates: Updates = {"train.poll_state": key}
        if any(key[name] != seen.get(name) for name in ("alerts", "stalled", "run", "lang")):
            last_lines = "\n".join(text.splitlines()[-STALL_LINES:]) if stall else ""
            updates["train.alert_banner"] = alerts_html(lang, alerts, stall, last_lines)
            if seen.get("run") == key["run"]:
                # Toasts for what is new to this browser tab; a run opened with old alerts shows them in the banner.
                toasts = [
                    ("warning", f"{health_title(lang, a)}: {a.get('message', '')}")
                    for a in alerts[seen.get("alerts", 0) :]
                ]
                if stall and not seen.get("stalled"):
                    toasts.append(
                        (
                            "warning",
                            alert(
                                lang,
                                "stalled",
                                silent=format_hms(stall["silent_s"]),
                                typical=format_hms(max(1.0, stall["typical_s"])),
                            ),
                        )
                    )
                if toasts:
                    updates[ALERTS] = toasts
        shown_job = job
        if job is not None and stall:
            shown_job = {**job, "state": "stalled"}
        elif job is not None and state == "running" and all(runfolder.is_alert(record) for record in records):
            shown_job = {**job, "loading": True}  # no progress record yet: loading the model and data
        if key.get("log") != seen.get("log") or key["notes"] != seen.get("notes") or key["run"] != seen.get("run"):
            updates["train.output_box"] = compose_output(text, notes, end, str(run_dir))
        if key["state"] != seen.get("state") and seen.get("run") == key["run"]:
            # The run list shows each run's state; refresh it when the viewed run's state changes.
            updates["train.view_run"] = gr.update(choices=self.run_choices(lang))
        progress = jobs.progress(records, job) if job is not None else None
        updates["train.progress"] = progress_html(lang, progress, shown_job) + stop_html(lang, watcher.stop)
        stage = watcher.stage or (job or {}).get("stage")
        if any(key[name] != seen.get(name) for name in ("records", "system", "run", "lang", "log_y")):
            updates.update(figures(lang, records, stage, log_y=key["log_y"], samples=system))
        if any(key[name] != seen.get(name) for name in ("samples", "run", "lang")):
            updates["train.samples_view"] = samples_table(lang, samples, stage)
        return updates

    @staticmethod
    def _notify_stall(watcher: Watcher, stall: dict[str, Any] | None, state: Any) -> None:
        """One `stalled` webhook per stall of a run, whichever browser tabs watch it (core.notify; needs
        LLAMABOARD_WEBHOOK_URL)."""
        if not stall:
            watcher.stalled = False
            return
        if watcher.stalled:
            return
        watcher.stalled = True
        cause = f"no new log record for {format_hms(stall['silent_s'])} (typical interval {stall['typical_s']} s)"
        notify.notify(notify.build_payload("stalled", watcher.run_dir, str(state), cause=cause))

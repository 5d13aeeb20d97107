"""What the Export tab does: a `python -m core.cli export <dir>/job.yaml` job that merges the top bar's model and
adapters into export_dir; its `[export] step k/n` lines drive the progress bar. The layout is
webui/tabs/export.py.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from core import runfolder
from core.paths import fresh_name
from webui import jobs
from webui.handlers.choices import default_export_dir
from webui.handlers.events import ALERTS, Alerts, Updates, Values
from webui.handlers.jobview import InferBase, number
from webui.handlers.render import job_progress_html
from webui.manager import alert
from webui.paths import PathRefused
from webui.runner import Runner, RunnerError

EXPORT_STEP = re.compile(r"\[export\] step (\d+)/(\d+): (.*)")
EXPORT_DONE = re.compile(r"\[export\] done: (.*)")


def export_progress(log_text: str) -> tuple[int, int, str, str]:
    """From an export job's log: the last step (k, n, message) and the `done` summary ("" until it is written)."""
    current, total, message, done = 0, 0, "", ""
    for line in log_text.splitlines():
        step = EXPORT_STEP.search(line)
        if step:
            current, total, message = int(step.group(1)), int(step.group(2)), step.group(3).strip()
        finished = EXPORT_DONE.search(line)
        if finished:
            done = finished.group(1).strip()
    return current, total, message, done


def dir_is_empty(path: Path) -> bool:
    """Nothing in `path` but the board's own job files (or no such folder)."""
    try:
        return all(child.name in runfolder.BOARD_FILES for child in path.iterdir())
    except FileNotFoundError:
        return True


class ExportHandlers(InferBase):
    """The Export tab's handlers (mixed into webui.board.Infer)."""

    def export_args(self, values: Values) -> tuple[dict[str, Any] | None, Alerts]:
        """The job.yaml of an export, or None and the alerts saying why not (checked before any weight is read)."""
        lang = values.get("top.lang")
        try:
            args = self.model_args(values)
        except PathRefused as err:
            return None, [("warning", alert(lang, "path_refused", problems=err))]
        except ValueError as err:
            return None, [("warning", alert(lang, "bad_form", error=err))]
        text = str(values.get("export.export_dir") or "").strip()
        if not text:
            return None, [("warning", alert(lang, "export_no_dir"))]
        try:  # the roots check first: it refuses a NUL or an encoded ../ that resolve() would choke on or follow
            export_dir = self.board.roots().check(text, "export_dir", write=True)
        except PathRefused as err:
            return None, [("warning", alert(lang, "path_refused", problems=err))]
        overwrite = bool(values.get("export.export_overwrite"))
        if export_dir.exists() and not export_dir.is_dir():
            return None, [("warning", alert(lang, "export_not_dir", path=export_dir))]
        if not overwrite and not dir_is_empty(export_dir):
            return None, [("warning", alert(lang, "export_not_empty", path=export_dir))]
        hub_id = str(values.get("export.export_hub_model_id") or "").strip()
        if hub_id and not os.environ.get("HF_TOKEN"):
            return None, [("warning", alert(lang, "export_no_token", repo=hub_id))]
        args.update(
            {
                "infer_dtype": values.get("export.infer_dtype") or "auto",
                "export_dir": str(export_dir),
                "export_size": float(number(values.get("export.export_size"), 5)),
                "export_device": values.get("export.export_device") or "cpu",
                "export_overwrite": overwrite,
            }
        )
        if hub_id:
            args["export_hub_model_id"] = hub_id
        return args, []

    def export_start(self, values: Values) -> Updates:
        """Export -> a `core.cli export` job writing the model into export_dir; the job's own files (job.yaml,
        job.json, job.log) go to a job folder under the export runner's saves root, so export_dir holds the model,
        its config and tokenizer only."""

        lang = values.get("top.lang")
        args, alerts = self.export_args(values)
        if args is None:
            return {ALERTS: alerts}
        busy = self._busy()
        if busy is not None:
            return {ALERTS: [("warning", alert(lang, "job_running", path=busy))]}
        export_dir = Path(args["export_dir"])
        job_dir = export_job_dir(self.export_runner, export_dir)
        problems = self.export_runner.check(args, job_dir) if hasattr(self.export_runner, "check") else []
        if problems:  # a path outside the board's roots, a secret in a field: nothing is touched
            return {ALERTS: [("warning", alert(lang, "start_failed", error="\n".join(problems)))]}
        try:
            self.export_runner.start(args, job_dir)
        except (RunnerError, OSError) as err:
            return {ALERTS: [("warning", alert(lang, "start_failed", error=err))]}
        return {
            "export.view_run": str(job_dir.resolve()),
            "export.poll_state": {},
            "export.export_dir": default_export_dir(),  # the next export gets a folder of its own
            "export.export_overwrite": False,
            ALERTS: [("info", alert(lang, "export_started", path=export_dir))],
        }

    def export_abort(self, values: Values) -> Updates:
        lang = values.get("top.lang")
        target = values.get("export.view_run")
        active = {str(path) for path in self.export_runner.active()}
        if not target or str(Path(target).resolve()) not in active:
            return {ALERTS: [("warning", alert(lang, "nothing_to_abort"))]}
        self.export_runner.abort(Path(target))
        return {ALERTS: [("info", alert(lang, "aborting", path=target))]}

    def export_poll(self, values: Values) -> Updates:
        """Timer tick -> the export's progress (its `[export] step k/n` lines), log, and a toast with the result."""
        lang = values.get("top.lang")
        seen = dict(values.get("export.poll_state") or {})
        target = values.get("export.view_run")
        updates: Updates = {}
        if not target:
            active = self.export_runner.active()
            if not active:
                return {}
            target = str(active[0])
            updates["export.view_run"] = target
        run_dir = Path(target)
        job = jobs.read_job(run_dir)
        state = (job or {}).get("state")
        text = self._tail(run_dir / runfolder.JOB_LOG)
        key = {"run": str(run_dir), "state": state, "log": len(text), "lang": lang}
        if key == seen and state != "running":
            return updates
        current, total, message, done = export_progress(text)
        if state == "finished":
            current = total = total or 1
        progress = {"current": current, "total": total}
        updates["export.poll_state"] = key
        updates["export.progress"] = job_progress_html(lang, job, progress)
        if key["log"] != seen.get("log") or key["run"] != seen.get("run"):
            updates["export.output_box"] = text
        if state != seen.get("state") and seen.get("run") == key["run"] and state in ("finished", "failed"):
            if state == "finished":
                updates[ALERTS] = [("info", alert(lang, "export_done", result=done or run_dir))]
            else:
                updates[ALERTS] = [("warning", alert(lang, "export_failed", error=(job or {}).get("error") or ""))]
        return updates


def export_job_dir(export_runner: Any, export_dir: Path) -> Path:
    """A new folder for an export job's own files under the export runner's saves root (saves/.export/jobs; a
    runner without one: `.export-jobs` beside export_dir)."""
    root = getattr(export_runner, "saves_root", None)
    parent = Path(root) / "jobs" if root is not None else export_dir.parent / ".export-jobs"
    return parent / fresh_name(parent, "export")


def export_runner_beside(runner: Any) -> Runner:
    """A runner for export jobs beside the board's: same interpreter, grace, devices and path roots, with
    `core.cli export` as the command. Its saves root (where a runner keeps its queue file) is a folder of its own,
    so it never rewrites the board runner's queue."""
    python = getattr(runner, "python", None) or sys.executable
    saves_root = getattr(runner, "saves_root", None)
    kwargs: dict[str, Any] = {
        "saves_root": Path(saves_root) / ".export" if saves_root is not None else None,
        "python": python,
        "grace_s": getattr(runner, "grace_s", 30.0),
        "job_command": [python, "-m", "core.cli", "export"],
        "env": getattr(runner, "env", None),
    }
    for name in ("devices", "roots"):  # present in runners that place jobs on devices and check paths
        if hasattr(runner, name):
            kwargs[name] = getattr(runner, name)
    return Runner(**kwargs)

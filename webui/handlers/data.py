"""The Data tab (issue 16): bring a file in (upload or a path under the roots -> detect -> correct the mapping ->
validate -> register), see what training sees of a registered dataset (token view and lengths, from a
`llamafactory-cli data tokens` subprocess: the board never loads a tokenizer), and curate one into a new dataset.

Detection, validation, registration and curation are core.data.detect / validate / register / curate; this module
turns the form into their arguments and their results into the tab's tables and messages.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from webui.handlers.data_use import DataUseHandlers, data_dir
from webui.handlers.events import ALERTS, Alerts, Updates, Values
from webui.manager import alert
from webui.paths import PathRefused

ROLES = ("prompt", "query", "response", "history", "messages", "system", "tools", "chosen", "rejected", "kto_tag")
"""Every column role of the mapping editor (core.data.detect.ROLES tells which a formatting uses)."""
FORMAT_ROLES = {
    "alpaca": ["prompt", "query", "response", "history", "system", "tools", "chosen", "rejected", "kto_tag"],
    "sharegpt": ["messages", "system", "tools", "chosen", "rejected", "kto_tag"],
    "openai": ["messages", "system", "tools", "chosen", "rejected", "kto_tag"],
}
MAPPING = [f"data.col_{role}" for role in ROLES]
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""The board's upload limit (webui.app.MAX_UPLOAD, which gradio enforces), checked again for a path typed in."""
PROBLEM_COLUMNS = ["row", "column", "what", "fix"]


def _upload_dirs() -> list[Path]:
    """Where gradio keeps uploads: only the board's own upload cache is read outside the roots."""
    base = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return [Path(base).resolve()]


class DataHandlers(DataUseHandlers):
    """Add, Inspect and Curate (mixed into webui.board.Board); Inspect and Curate are in webui.handlers.data_use."""

    # Add: the file

    def _source(self, values: Values) -> tuple[Path | None, Alerts]:
        """The file to bring in: the upload (from gradio's own upload folder) or a path under the roots."""
        lang = values.get("top.lang")
        upload = values.get("data.upload")
        if isinstance(upload, dict):
            upload = upload.get("path") or upload.get("name")
        typed = (values.get("data.source_path") or "").strip()
        if upload:
            path = Path(str(upload)).resolve()
            if not any(path.is_relative_to(root) for root in _upload_dirs()):
                try:
                    path = self.roots().check(str(upload), "upload")
                except PathRefused as err:
                    return None, [("warning", alert(lang, "path_refused", problems=err))]
        elif typed:
            try:
                path = self.roots().check(typed, "source_path")
            except PathRefused as err:
                return None, [("warning", alert(lang, "path_refused", problems=err))]
        else:
            return None, [("warning", alert(lang, "data_no_file"))]
        if not path.is_file():
            return None, [("warning", alert(lang, "data_not_a_file", path=path))]
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            limit = MAX_UPLOAD_BYTES // 2**20
            return None, [("warning", alert(lang, "data_too_big", path=path.name, size=size // 2**20, limit=limit))]
        return path, []

    def data_detect(self, values: Values) -> Updates:
        """Detect the file's format and layout; show it and fill the mapping editor with the proposal."""
        from core.data.detect import detect
        from core.data.registry import DataError

        lang = values.get("top.lang")
        path, alerts = self._source(values)
        if path is None:
            return {ALERTS: alerts}
        try:
            found = detect(path)
        except (DataError, OSError, ValueError) as err:
            return {ALERTS: [("warning", alert(lang, "data_detect_failed", file=path.name, error=err))]}
        fields = list(found.get("fields") or [])
        columns = found.get("columns") or {}
        updates: Updates = {
            "data.file": str(path),
            "data.formatting": found.get("formatting") or "alpaca",
            "data.ranking": bool(found.get("ranking")),
            "data.tags": json.dumps(found.get("tags") or {}, ensure_ascii=False),
            "data.detect_info": self._detect_html(lang, found, path),
            "data.sample": pd.DataFrame(
                [[_cell(row.get(f)) for f in fields] for row in found.get("sample") or []], columns=fields
            ),
            "data.mapping_box": gr.update(visible=True),
            "data.problems": pd.DataFrame(columns=PROBLEM_COLUMNS),
            "data.validate_info": "",
            "data.skip_bad": gr.update(visible=False, value=False),
        }
        updates.update(self._mapping_updates(found.get("formatting") or "alpaca", fields, columns))
        if not (values.get("data.name") or "").strip():
            updates["data.name"] = _name_of(path)
        return updates

    def _detect_html(self, lang: str | None, found: dict[str, Any], path: Path) -> str:
        head = alert(
            lang,
            "data_detected",
            file=path.name,
            file_type=found.get("file_type", ""),
            kind=found.get("kind", ""),
            formatting=found.get("formatting", ""),
        )
        notes = "".join(f"<li>{escape(str(note))}</li>" for note in found.get("notes") or [])
        return f'<div class="lb-detected"><b>{escape(head)}</b>{f"<ul>{notes}</ul>" if notes else ""}</div>'

    def _mapping_updates(self, formatting: str, fields: list[str], columns: dict[str, Any]) -> Updates:
        usable = FORMAT_ROLES.get(formatting, FORMAT_ROLES["alpaca"])
        choices = ["", *fields]
        return {
            f"data.col_{role}": gr.update(
                choices=choices,
                value=columns.get(role) or "" if columns.get(role) in fields else "",
                visible=role in usable,
            )
            for role in ROLES
        }

    def data_formatting(self, values: Values) -> Updates:
        """Another formatting: the file's mapping proposed for it (core.data.detect with that formatting forced);
        the roles it maps are shown, the others hidden."""
        from core.data.detect import detect
        from core.data.registry import DataError

        formatting = values.get("data.formatting") or "alpaca"
        usable = FORMAT_ROLES.get(formatting, FORMAT_ROLES["alpaca"])
        hidden = {f"data.col_{role}": gr.update(visible=role in usable) for role in ROLES}
        file = values.get("data.file")
        if not file:
            return hidden
        try:
            found = detect(file, formatting=formatting)
        except (DataError, OSError, ValueError) as err:
            lang = values.get("top.lang")
            return {
                **hidden,
                ALERTS: [("warning", alert(lang, "data_detect_failed", file=Path(file).name, error=err))],
            }
        updates = self._mapping_updates(formatting, list(found.get("fields") or []), found.get("columns") or {})
        updates["data.tags"] = json.dumps(found.get("tags") or {}, ensure_ascii=False)
        return updates

    def _entry(self, values: Values) -> tuple[dict[str, Any] | None, Alerts]:
        """The dataset_info.json entry (without file_name) the mapping editor describes."""
        from core.data.detect import make_entry
        from core.data.registry import DataError

        lang = values.get("top.lang")
        formatting = values.get("data.formatting") or "alpaca"
        usable = FORMAT_ROLES.get(formatting, FORMAT_ROLES["alpaca"])
        columns = {role: values.get(f"data.col_{role}") or None for role in usable}
        try:
            tags = json.loads(values.get("data.tags") or "{}")
        except (json.JSONDecodeError, RecursionError) as err:
            return None, [("warning", alert(lang, "data_bad_tags", error=err))]
        if not isinstance(tags, dict):
            return None, [("warning", alert(lang, "data_bad_tags", error="not a JSON object"))]
        try:
            entry = make_entry(formatting, columns, tags, ranking=bool(values.get("data.ranking")))
        except DataError as err:
            return None, [("warning", str(err))]
        return entry, []

    def _detected_file(self, values: Values) -> tuple[Path | None, Alerts]:
        file = values.get("data.file")
        if not file:
            return None, [("warning", alert(values.get("top.lang"), "data_detect_first"))]
        return Path(file), []

    # Add: validate (streamed, with progress)

    def data_validate(self, values: Values) -> Iterator[Updates]:
        """Every row through the loader's checks, with a progress bar; then the located problems and their counts."""
        from core.data.validate import validate

        lang = values.get("top.lang")
        path, alerts = self._detected_file(values)
        entry, more = self._entry(values) if path else (None, [])
        if path is None or entry is None:
            yield {ALERTS: alerts + more}
            return
        events: queue.Queue = queue.Queue()

        def progress(done: int, total: int, rows: int) -> None:
            events.put(("progress", (done, total, rows)))

        def work() -> None:
            try:
                name = (values.get("data.name") or "").strip() or "new_dataset"
                events.put(("done", validate(path, entry, progress=progress, name=name)))
            except Exception as err:  # a bad file: the message names it
                events.put(("error", err))

        threading.Thread(target=work, daemon=True).start()
        while True:
            kind, payload = events.get()
            if kind == "progress":
                done, total, rows = payload
                yield {"data.validate_info": _bar(alert(lang, "data_validating", rows=rows), done, total)}
                continue
            if kind == "error":
                yield {ALERTS: [("warning", alert(lang, "data_validate_failed", file=path.name, error=payload))]}
                return
            break
        yield self._report(lang, payload, path)[0]

    def _report(self, lang: str | None, report: dict[str, Any], path: Path) -> tuple[Updates, str]:
        """The validation's bar, located problems and counts (the skip box shows when rows are bad), and its text."""
        problems = report.get("problems") or []
        frame = pd.DataFrame(
            [[p.get("row"), p.get("column") or "", p.get("what"), p.get("fix")] for p in problems],
            columns=PROBLEM_COLUMNS,
        )
        counts = ", ".join(f"{kind}: {n}" for kind, n in sorted((report.get("counts") or {}).items()))
        key = "data_valid" if not report.get("bad_rows") else "data_invalid"
        text = alert(
            lang,
            key,
            rows=report.get("rows", 0),
            bad=report.get("bad_rows", 0),
            counts=counts or "-",
            seconds=f"{report.get('seconds', 0):.1f}",
        )
        if report.get("fatal"):
            text = alert(lang, "data_validate_failed", file=path.name, error=report["fatal"])
        updates = {
            "data.validate_info": _bar(text, 1, 1, failed=bool(report.get("bad_rows") or report.get("fatal"))),
            "data.problems": frame,
            "data.skip_bad": gr.update(visible=bool(report.get("bad_rows"))),
        }
        return updates, text

    # Add: register

    def data_register(self, values: Values) -> Updates:
        """Validate every row, then copy the file into the data folder and register it (without the bad rows only
        when "Register without the bad rows" is ticked); the Train tab's dataset list follows."""
        from core.data.register import NameTaken, add_dataset
        from core.data.registry import DataError
        from core.data.validate import validate

        lang = values.get("top.lang")
        name = (values.get("data.name") or "").strip()
        path, alerts = self._detected_file(values)
        entry, more = self._entry(values) if path else (None, [])
        if path is None or entry is None:
            return {ALERTS: alerts + more}
        if not name:
            return {ALERTS: [("warning", alert(lang, "data_no_name"))]}
        dataset_dir = data_dir(values)
        refused = self.check_path(values, dataset_dir, "dataset_dir", write=True)
        if refused:
            return {ALERTS: refused}
        try:
            report = validate(path, entry, name=name)
        except (DataError, OSError, ValueError) as err:
            return {ALERTS: [("warning", alert(lang, "data_validate_failed", file=path.name, error=err))]}
        shown, why = self._report(lang, report, path)
        skip = report.get("bad_row_numbers") if values.get("data.skip_bad") else None
        if (
            report.get("fatal")
            or (report.get("bad_rows") and not skip)
            or (skip and report.get("bad_row_numbers_capped"))
        ):
            return {**shown, ALERTS: [("warning", why)]}
        try:
            done = add_dataset(
                dataset_dir,
                name,
                path,
                entry,
                replace=bool(values.get("data.replace")),
                skip_rows=set(skip) if skip else None,
            )
        except NameTaken:
            return {ALERTS: [("warning", alert(lang, "data_name_taken", name=name, dir=dataset_dir))]}
        except (DataError, OSError, ValueError) as err:
            return {ALERTS: [("warning", alert(lang, "data_register_failed", name=name, error=err))]}
        text = alert(
            lang,
            "data_registered",
            name=name,
            rows=done.get("rows", 0),
            skipped=done.get("skipped", 0),
            file=done.get("info_file", ""),
        )
        updates = self._after_register(values, dataset_dir, [name])
        updates["data.add_info"] = f'<div class="lb-preview-info" id="registered">{escape(text)}</div>'
        updates.update(shown)
        updates["data.replace"] = False
        updates[ALERTS] = [("info", text)]
        return updates


def _bar(text: str, done: int, total: int, failed: bool = False) -> str:
    share = 100.0 * done / total if total else 100.0
    state = "failed" if failed else ("finished" if done >= total else "running")
    return (
        f'<div class="lb-progress lb-{state}" id="validate_progress" data-state="{state}">'
        f'<div class="lb-progress-head"><span class="lb-state">{escape(text)}</span><span>{share:.0f}%</span></div>'
        f'<div class="lb-bar"><div class="lb-fill" style="width:{share:.1f}%"></div></div></div>'
    )


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 300 else text[:300] + "…"


def _name_of(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in path.stem).strip("_")
    return stem or "my_data"

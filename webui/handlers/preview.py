"""The Train tab's dataset preview: a page of the first selected dataset in the stage's canonical form, the
rows that cannot be read named in a toast (core.data.preview does the reading)."""

from __future__ import annotations

from html import escape

import gradio as gr
import pandas as pd

from core.data.preview import preview
from webui.handlers.base import BoardBase
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.render import cell
from webui.manager import alert

PREVIEW_ROWS = 10


class PreviewHandlers(BoardBase):
    """Open, page through and close the dataset preview (mixed into webui.board.Board)."""

    def preview_open(self, values: Values) -> Updates:
        return self._preview(values, 0)

    def preview_prev(self, values: Values) -> Updates:
        return self._preview(values, max(0, int(values.get("train.preview_page") or 0) - 1))

    def preview_next(self, values: Values) -> Updates:
        return self._preview(values, int(values.get("train.preview_page") or 0) + 1)

    def preview_close(self, values: Values) -> Updates:
        return {"train.preview_box": gr.update(visible=False)}

    def _preview(self, values: Values, page: int) -> Updates:
        """A page of the first selected dataset in the stage's canonical form (core.data.preview)."""

        lang = values.get("top.lang")
        names = values.get("train.dataset") or []
        if not names:
            return {ALERTS: [("warning", alert(lang, "no_dataset_selected"))]}
        dataset_dir = (values.get("train.dataset_dir") or "").strip() or "demo"
        name = names[0]
        refused = self._dataset_dir_refused(values, dataset_dir) or self._dataset_files_refused(
            values, dataset_dir, name
        )
        if refused:
            return {ALERTS: refused}
        try:
            result = preview(dataset_dir, name, page * PREVIEW_ROWS, PREVIEW_ROWS)
        except Exception as err:  # a bad file: say which and why, keep the board alive
            return {ALERTS: [("warning", alert(lang, "preview_failed", name=name, error=err))]}
        total = result.get("total")
        rows = result.get("rows") or []
        if not rows and page > 0:
            return self._preview(values, page - 1)
        columns = list(result.get("columns") or (rows[0].keys() if rows else []))
        frame = pd.DataFrame([[cell(row.get(col)) for col in columns] for row in rows], columns=columns)
        last = page * PREVIEW_ROWS + len(rows)
        info = alert(
            lang,
            "preview_info",
            name=name,
            first=page * PREVIEW_ROWS + (1 if rows else 0),
            last=last,
            total="?" if total is None else total,
            file=result.get("file") or "",
        )
        updates: Updates = {
            "train.preview_box": gr.update(visible=True),
            "train.preview_table": frame,
            "train.preview_info": f'<div class="lb-preview-info">{escape(info)}</div>',
            "train.preview_page": page,
            "train.preview_next": gr.update(interactive=total is None or last < total),
            "train.preview_prev": gr.update(interactive=page > 0),
        }
        errors = [str(error) for error in result.get("errors") or []]
        if errors:  # rows that cannot be read are shown as they will fail in training, not hidden
            updates[ALERTS] = [
                ("warning", alert(lang, "preview_rows_skipped", name=name, errors="\n".join(errors[:3])))
            ]
        return updates

    # Arguments: preview, save, load, export

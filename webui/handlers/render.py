"""What the board draws from a run: the progress bar, the device count, the live charts, table cells."""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from core.runfolder import format_hms
from webui import plots
from webui.args import ADAPTER_METHODS
from webui.manager import alert, entry

STATE_ALERTS = {
    "queued": "state_queued",
    "running": "state_running",
    "finished": "state_finished",
    "failed": "state_failed",
    "aborted": "state_aborted",
    "stalled": "state_stalled",
    "loading": "state_loading",
}
"""Job state -> the alert key of its name in the progress bar (anything else: "state_unknown")."""

KIND_ALERTS = {"eval": "kind_eval", "export": "kind_export"}
"""Run kinds (core.runfolder.run_kind) other than training -> the alert key of their name."""
HEALTH_TITLES = {
    "nan": "health_nan",
    "divergence": "health_divergence",
    "overfitting": "health_overfitting",
    "kl": "health_kl",
    "response_length": "health_response_length",
    "disk": "health_disk",
    "lr_zero": "health_lr_zero",
    "masked_labels": "health_masked_labels",
    "ppo_no_signal": "health_ppo_no_signal",
    "ppo_kl_over_score": "health_ppo_kl_over_score",
    "ppo_truncated": "health_ppo_truncated",
}
"""Alert kind of core.train.health -> the alert key of its title (an unknown kind shows as it is)."""

BANNER_ALERTS = 3
"""The live view's banner shows the newest this many health alerts."""

REWARD_STAGES = ("rm", "dpo", "kto")
"""Stages that log reward accuracy and margins: the live view shows the reward chart for them."""


def state_name(lang: str | None, state: Any) -> str:
    """A job state in `lang` ("running" -> "Running")."""
    return alert(lang, STATE_ALERTS.get(str(state), "state_unknown"))


def run_what(lang: str | None, run: dict[str, Any]) -> str:
    """What a run is, for the Runs table and the run list: its stage ("sft"), or "evaluation (sft)" for a run that
    only evaluates or predicts."""
    stage, kind = str(run.get("stage") or ""), run.get("kind") or "train"
    if kind not in KIND_ALERTS:
        return stage
    name = alert(lang, KIND_ALERTS[kind])
    return f"{name} ({stage})" if stage else name


ADAPTER_NAMES = {"lora": "LoRA", "oft": "OFT"}
"""How the start-from line names an adapter method (webui.args.ADAPTER_METHODS)."""


def start_from_html(lang: str | None, checkpoints: Any, finetuning_type: str) -> str:
    """What Start trains from, said plainly next to it: the checkpoint picked in the top bar (the same list Chat
    and Evaluate load from), or a new adapter / the base model when none is picked."""
    picked = [str(c) for c in (checkpoints if isinstance(checkpoints, list) else [checkpoints]) if c]
    if picked:
        text = alert(lang, "start_from", checkpoint=", ".join(picked))
    else:
        if finetuning_type in ADAPTER_METHODS:  # LoRA, OFT: a new adapter; freeze / full: the base model's weights
            text = alert(lang, "start_from_base_adapter", method=ADAPTER_NAMES.get(finetuning_type, finetuning_type))
        else:
            text = alert(lang, "start_from_base")
    state = "checkpoint" if picked else "base"
    return f'<div class="lb-start-from" data-from="{state}">{escape(text)}</div>'


def device_count_html(lang: str | None, count: int) -> str:
    text = alert(lang, "device_count", count=count) if count else alert(lang, "no_gpu")
    return f'<div class="lb-devices">{escape(text)}</div>'


def progress_html(lang: str | None, progress: dict[str, Any] | None, job: dict[str, Any] | None) -> str:
    """The progress bar: state, steps, elapsed and remaining time; a failed job's one-line error in red. A running
    `job` with `loading: true` (set by the live view) is labelled "Loading"; its data-state stays "running". While a
    running job prepares its data (`phase: prepare`), "Preparing data" with rows done / total instead of steps."""
    if job is None:
        return f'<div class="lb-progress lb-idle">{escape(alert(lang, "no_run"))}</div>'
    state = str(job.get("state") or "unknown")
    progress = progress or {}
    current, total = progress.get("current") or 0, progress.get("total") or 0
    percentage = float(progress.get("percentage") or (100.0 * current / total if total else 0.0))
    if state == "finished":
        percentage = 100.0
    percentage = max(0.0, min(100.0, percentage))
    preparing = progress.get("phase") == "prepare" and state == "running"
    detail = alert(
        lang,
        "progress_prepare" if preparing else "progress",
        current=f"{current:,}" if preparing else current,
        total=(f"{total:,}" if preparing else total) or "?",
        elapsed=progress.get("elapsed") or "0:00:00",
        remaining=(progress.get("remaining") or "?") if state in ("queued", "running") else "-",
    )
    # A running job that has written no progress record yet is still loading its model and data.
    shown_state = state_name(lang, "loading" if state == "running" and job.get("loading") else state)
    if state == "queued" and job.get("queue_position"):
        devices = ",".join(job.get("devices") or [])
        detail = alert(lang, "queue_position", position=job["queue_position"], devices=devices)
    error = ""
    if state in ("failed", "aborted") and job.get("error"):
        error = f'<div class="lb-error">{escape(str(job["error"]))}</div>'
    return (
        f'<div class="lb-progress lb-{escape(state)}" data-state="{escape(state)}" data-current="{current}">'
        f'<div class="lb-progress-head"><span class="lb-state">{escape(shown_state)}'
        f'</span><span class="lb-detail">{escape(detail)}</span></div>'
        f'<div class="lb-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{percentage:.0f}"><div class="lb-fill" style="width:{percentage:.1f}%"></div></div>'
        f"{error}</div>"
    )


def health_title(lang: str | None, record: dict[str, Any]) -> str:
    """ "Alert at step N · Diverging" for an alert record of trainer_log.jsonl."""
    kind = str(record.get("alert"))
    name = alert(lang, HEALTH_TITLES[kind]) if kind in HEALTH_TITLES else kind
    return alert(lang, "health_title", step=record.get("current_steps", "?"), kind=name)


def alerts_html(
    lang: str | None, alerts: list[dict[str, Any]], stall: dict[str, Any] | None, last_lines: str = ""
) -> str:
    """The banner above the live view's charts: a stall (with the job's last log lines) and the newest health
    alerts; empty when there is nothing to say."""
    parts = []
    if stall:
        text = alert(
            lang, "stalled", silent=format_hms(stall["silent_s"]), typical=format_hms(max(1.0, stall["typical_s"]))
        )
        lines = f"<pre>{escape(last_lines)}</pre>" if last_lines else ""
        parts.append(f'<div class="lb-alert lb-alert-error" data-alert="stalled">{escape(text)}{lines}</div>')
    for record in alerts[-BANNER_ALERTS:][::-1]:
        level = "error" if record.get("level") == "error" else "warning"
        parts.append(
            f'<div class="lb-alert lb-alert-{level}" data-alert="{escape(str(record.get("alert")))}">'
            f"<b>{escape(health_title(lang, record))}</b>: {escape(str(record.get('message', '')))}</div>"
        )
    if not parts:
        return ""
    return f'<div class="lb-alerts" role="alert">{"".join(parts)}</div>'


def figures(
    lang: str | None,
    records: list[dict[str, Any]],
    stage: str | None,
    log_y: bool,
    samples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The live view's charts in `lang`: loss (raw, smoothed, eval; log scale on request), learning rate, for
    reward-logging stages (rm, dpo, kto) reward accuracy and margins, for grpo its rewards (total and per function)
    and a rollout chart (KL, completion length, share cut); the job's system use (metrics.jsonl samples) and its
    efficiency (real tokens/s, MFU) on the same step axis."""

    def title(key: str) -> str:
        return str(entry(lang, key).get("label") or "")

    updates: dict[str, Any] = {
        "train.loss_viewer": plots.loss_figure(
            records, log_y=log_y, title=title("train.loss_viewer"), hint=alert(lang, "loss_hint")
        ),
        "train.lr_viewer": plots.lr_figure(records, title=title("train.lr_viewer"), hint=alert(lang, "lr_hint")),
    }
    updates["train.system_viewer"] = plots.system_figure(
        samples or [], records, title=title("train.system_viewer"), hint=alert(lang, "system_hint")
    )
    updates["train.efficiency_viewer"] = plots.efficiency_figure(
        records, title=title("train.efficiency_viewer"), hint=alert(lang, "efficiency_hint")
    )
    if stage in REWARD_STAGES:
        reward = plots.reward_figure(records, title=title("train.reward_viewer"), hint=alert(lang, "reward_hint"))
        updates["train.reward_viewer"] = gr.update(value=reward, visible=True)
    elif stage == "grpo":
        reward = plots.grpo_reward_figure(
            records, title=title("train.reward_viewer"), hint=alert(lang, "grpo_reward_hint")
        )
        updates["train.reward_viewer"] = gr.update(value=reward, visible=True)
    else:
        updates["train.reward_viewer"] = gr.update(visible=False)
    if stage == "grpo":
        rollout = plots.rollout_figure(records, title=title("train.rollout_viewer"), hint=alert(lang, "rollout_hint"))
        updates["train.rollout_viewer"] = gr.update(value=rollout, visible=True)
    else:
        updates["train.rollout_viewer"] = gr.update(visible=False)
    return updates


SAMPLE_COLUMNS = ("step", "reward", "rewards", "advantage", "length", "completion", "reference", "prompt")
"""The samples table's columns (samples.jsonl keys): what was rewarded and by how much first; a completion cut at
max_new_tokens has its length marked."""


def samples_table(lang: str | None, records: list[dict[str, Any]], stage: str | None) -> dict[str, Any]:
    """grpo's sampled completions of the latest logged step (samples.jsonl) as a table, columns titled in `lang`
    (locale train.samples_view: columns); hidden for other stages. The rewards cell gives each function's score."""
    if stage != "grpo":
        return gr.update(visible=False)
    names = entry(lang, "train.samples_view").get("columns") or {}
    last = records[-1].get("step") if records else None
    rows = []
    for record in reversed(records):
        if record.get("step") != last:
            break
        scores = record.get("rewards") if isinstance(record.get("rewards"), dict) else {}
        row = {
            **record,
            "rewards": ", ".join(f"{name} {value:g}" for name, value in scores.items() if _is_number(value)),
            "length": f"{record.get('length', '')}{' (cut)' if record.get('cut') else ''}",
        }
        rows.append([cell(row.get(column, "")) for column in SAMPLE_COLUMNS])
    frame = pd.DataFrame(rows[::-1], columns=[names.get(column, column) for column in SAMPLE_COLUMNS])
    return gr.update(value=frame, visible=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def started_alert(lang: str | None, job: dict[str, Any], run_dir: Path) -> str:
    """ "Started" or, when its devices are busy, "queued at position N" (it starts by itself)."""
    if job.get("state") == "queued":
        return alert(lang, "queued", path=run_dir, position=job.get("queue_position") or 1)
    return alert(lang, "started", path=run_dir)


MAX_CELL_CHARS = 2000
"""A preview cell shows this much of a value; a 50 MB row must not travel to every browser that looks."""


def cell(value: Any) -> Any:
    """Nested values (messages, images lists) shown as JSON so a table can hold them; long text cut short."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return f"{value[:MAX_CELL_CHARS]}… (+{len(value) - MAX_CELL_CHARS} characters)"
    return value


def job_progress_html(lang: str | None, job: dict[str, Any] | None, progress: dict[str, Any]) -> str:
    """The progress bar of a job without per-step records (an export, an eval's first seconds): the elapsed time
    counts from the job's start while it runs, to its end once it has ended."""
    if job is not None and job.get("started") and not progress.get("elapsed"):
        if job.get("state") in ("queued", "running"):
            progress["elapsed"] = format_hms(time.time() - float(job["started"]))
        elif job.get("ended"):
            progress["elapsed"] = format_hms(float(job["ended"]) - float(job["started"]))
    return progress_html(lang, progress, job)

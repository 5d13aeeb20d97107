"""The Train tab's plan bar: will this job fit on the chosen devices, and about how long will it take (core.plan,
pure, from config.json alone), recomputed when a control that changes it changes; Start refuses a job that will
not fit, with the estimate and the "Fit it" proposal, unless "Start anyway" is ticked."""

from __future__ import annotations

import subprocess
import sys
from html import escape
from typing import Any

from core.plan import GB, Estimate, PlanError, estimate, fit, read_config
from core.plan_check import device_of, gpu_memory, host_memory
from core.runfolder import format_hms
from webui import args as argmod
from webui.handlers.base import BoardBase
from webui.handlers.choices import zero_choice
from webui.handlers.events import ALERTS, Updates, Values
from webui.handlers.train import form_of
from webui.manager import alert

__all__ = ["PLAN_INPUTS", "PlanHandlers", "gpu_memory", "host_memory", "plan_html", "plan_of"]

CALIBRATE_COMMAND = [sys.executable, "-m", "core.cli", "plan", "--calibrate"]
"""What the Calibrate button runs (core.plan_calibrate: two short measured jobs, about a minute)."""
CALIBRATE_TIMEOUT_S = 900

PLAN_INPUTS = (
    "top.lang",  # the bar is text in the page's language
    "top.model_name",
    "top.model_path",
    "top.finetuning_type",
    "top.quantization_bit",
    "top.booster",
    "train.stage",
    "train.compute_type",
    "train.cutoff_len",
    "train.per_device_train_batch_size",
    "train.gradient_accumulation_steps",
    "train.num_train_epochs",
    "train.lora_rank",
    "train.lora_target",
    "train.freeze_trainable_layers",
    "train.packing",
    "train.extra_args",
    "train.devices",
    "train.ds_stage",
)
"""The controls whose change redraws the plan bar (the rest of the form is read, not watched)."""

VERDICT_MESSAGES = {"fits": "plan_fits", "tight": "plan_tight", "too_big": "plan_too_big"}


def plan_of(args: dict[str, Any], values: Values) -> tuple[Estimate, int, list[str], str]:
    """The estimate of `args` on the chosen devices (core.plan_check.device_of: the chosen GPUs, or this machine's
    available memory and calibrated CPU), their memory, the "Fit it" lines (none when it fits) and the device's
    name. Raises PlanError when the model's config cannot be read."""
    args = dict(args)
    zero = zero_choice(values)
    if zero:
        args["deepspeed"] = f"ds_z{zero[0]}{'_offload' if zero[1] else ''}"
    devices = [str(device) for device in values.get("train.devices") or []]
    name, memory, timing, world = device_of(devices, host_memory())
    config = read_config(str(args.get("model_name_or_path") or ""))
    options = {"world_size": world, "device": "cpu" if name == "CPU" else "cuda", **timing}
    result = estimate(args, config, **options)
    changes = fit(args, config, memory, **options)[1] if result.verdict(memory) == "too_big" else []
    return result, memory, changes, name


def plan_html(lang: str | None, result: Estimate, memory: int, changes: list[str], device: str) -> str:
    verdict = result.verdict(memory)
    text = alert(
        lang,
        VERDICT_MESSAGES[verdict],
        need=f"{result.total / GB:.1f}",
        have=f"{memory / GB:.1f}",
        device=device,
        share=f"{100 * result.total / memory:.0f}",
    )
    if result.total_seconds is not None:
        text += " · " + alert(lang, "plan_time", time=format_hms(result.total_seconds))
    elif result.seconds_per_step is not None:
        text += " · " + alert(lang, "plan_step_time", seconds=f"{result.seconds_per_step:.2g}")
    elif device == "CPU":
        text += " · " + alert(lang, "plan_calibrate_hint")
    html = f'<div class="lb-plan lb-plan-{verdict}">{escape(text)}'
    if changes:
        items = "".join(f"<li><code>{escape(line)}</code></li>" for line in changes)
        html += f"<div>{escape(alert(lang, 'plan_fit_it'))}</div><ul>{items}</ul>"
    return html + "</div>"


class PlanHandlers(BoardBase):
    """The plan bar (mixed into webui.board.Board)."""

    def plan(self, values: Values) -> Updates:
        lang = values.get("top.lang")
        try:
            args = argmod.build_args(form_of(values))
            html = plan_html(lang, *plan_of(args, values))
        except PlanError as err:
            html = f'<div class="lb-plan lb-plan-unknown">{escape(alert(lang, "plan_unknown", error=err))}</div>'
        except ValueError:  # a form value the Start button will name
            html = ""
        return {"train.plan": html}

    def plan_refusal(self, args: dict[str, Any], values: Values) -> list[tuple[str, str]]:
        """Start's check: a warning with the estimate and the "Fit it" lines when the job will not fit, unless
        "Start anyway" is ticked or the model's config cannot be read (then the plan has nothing to say)."""
        if values.get("train.plan_insist"):
            return []
        try:
            result, memory, changes, device = plan_of(args, values)
        except PlanError:
            return []
        if result.verdict(memory) != "too_big":
            return []
        lang = values.get("top.lang")
        text = alert(lang, "plan_refused", need=f"{result.total / GB:.1f}", have=f"{memory / GB:.1f}", device=device)
        return [("warning", "\n".join([text, *changes]))]

    def plan_calibrate(self, values: Values) -> Updates:
        """The Calibrate button: measure this machine (`plan --calibrate`, about a minute), remember the figure in
        the cache folder, and redraw the bar with the time it now gives."""
        lang = values.get("top.lang")
        try:
            done = subprocess.run(
                CALIBRATE_COMMAND, capture_output=True, text=True, timeout=CALIBRATE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return {ALERTS: [("warning", alert(lang, "plan_calibrate_failed", error=err))]}
        if done.returncode:
            error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            return {ALERTS: [("warning", alert(lang, "plan_calibrate_failed", error=error))]}
        last = (done.stdout.strip().splitlines() or [""])[-1]
        return {**self.plan(values), ALERTS: [("info", alert(lang, "plan_calibrated", result=last))]}

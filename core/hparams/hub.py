"""Whether a push to the Hugging Face hub at the end of training can succeed, checked before it starts. Pure."""

from __future__ import annotations

import os


def push_problems(hub_model_id: str | None) -> list[tuple[str, str]]:
    """(why, fix) that make a push at the end of training fail, checked before training starts."""
    problems = []
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        problems.append(
            ("HF_HUB_OFFLINE is set, so nothing can be pushed", "unset HF_HUB_OFFLINE, or remove push_to_hub")
        )
    if not os.environ.get("HF_TOKEN"):
        problems.append(("pushing needs a token with write access", "set HF_TOKEN in the environment (never in YAML)"))
    if not hub_model_id:
        problems.append(("the hub repository is not named", "set hub_model_id: <user>/<model name>"))
    return problems

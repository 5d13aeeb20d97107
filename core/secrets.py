"""Secrets never travel in arguments: the one check the CLI, the core and the board share. Pure: no training stack.

Hub tokens and tracker keys reach a job through its environment (HF_TOKEN, WANDB_API_KEY, ...). An argument dict
that holds one, under a secret-looking key or as a token-shaped value anywhere, is refused before anything is
written (job.yaml, logs, checkpoints' training_args.bin, exported YAML, model cards), and `redact` is what any
message or file that echoes a value passes it through, so a refused token is not printed back either.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_ENV = {
    "hf_hub_token": "HF_TOKEN",
    "hub_token": "HF_TOKEN",
    "ms_hub_token": "MODELSCOPE_API_TOKEN",
    "om_hub_token": "MODELERS_API_TOKEN",
    "push_to_hub_token": "HF_TOKEN",
    "wandb_api_key": "WANDB_API_KEY",
    "swanlab_api_key": "SWANLAB_API_KEY",
    "swanlab_lark_secret": "SWANLAB_LARK_SECRET",
    "neptune_api_token": "NEPTUNE_API_TOKEN",
    "comet_api_key": "COMET_API_KEY",
}
"""Argument keys that hold secrets -> the environment variable that carries them to the job instead."""

_SECRET_KEY = re.compile(r"(^|_)(token|api_key|apikey|secret|password|passwd)$", re.IGNORECASE)
# Token shapes a value may carry by mistake: Hugging Face user tokens, the common sk- API keys, GitHub tokens.
TOKEN_PATTERN = re.compile(r"\b(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,})\b")
REDACTED = "<redacted>"


def is_secret_key(key: str) -> bool:
    """Whether an argument key names a secret (`hub_token`, `wandb_api_key`, `*_password`, ...)."""
    return key in SECRET_ENV or bool(_SECRET_KEY.search(key))


def looks_like_token(value: Any) -> bool:
    """Whether `value` (a string, or a list / dict holding strings) contains something shaped like a token."""
    if isinstance(value, str):
        return bool(TOKEN_PATTERN.search(value))
    if isinstance(value, dict):
        return any(looks_like_token(k) or looks_like_token(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(looks_like_token(item) for item in value)
    return False


def redact(text: str) -> str:
    """`text` with every token-shaped part replaced by <redacted>."""
    return TOKEN_PATTERN.sub(REDACTED, text)


def secret_problems(args: dict[str, Any]) -> list[str]:
    """Keys or values of `args` that look like secrets, each naming the environment variable to use instead.

    The messages never contain the value."""
    problems = []
    for key, value in args.items():
        if value in (None, "", False):
            continue
        key = str(key)
        if is_secret_key(key):
            variable = SECRET_ENV.get(key, "an environment variable")
            problems.append(
                f"{key}: secrets are never written into job.yaml, logs or exported files — remove the key and set "
                f"{variable} in the environment instead (jobs inherit it)"
            )
        elif looks_like_token(value) or looks_like_token(key):
            problems.append(
                f"{key}: the value looks like an access token — tokens belong in the environment (HF_TOKEN, "
                "WANDB_API_KEY, ...), never in the arguments; remove it"
            )
    return problems


def without_secrets(args: dict[str, Any]) -> dict[str, Any]:
    """A copy of `args` without secret keys and with token-shaped strings redacted: what may be written down."""
    return {key: _redact_value(value) for key, value in args.items() if not is_secret_key(str(key))}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redact_value(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value

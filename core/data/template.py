"""Pick a chat template by name and make the tokenizer fit it (eos, pad and stop tokens)."""

from __future__ import annotations

import difflib
import logging
from dataclasses import replace
from typing import Any

from core.data.registry import DataError
from core.data.templates import TEMPLATE_NAMES, TEMPLATES, Template
from core.data.tool_formats import get_tool_format

logger = logging.getLogger(__name__)


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        close = difflib.get_close_matches(name, TEMPLATE_NAMES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"template: unknown template '{name}'.{hint} Known: {', '.join(TEMPLATE_NAMES)}.")
    return TEMPLATES[name]


def get_template_and_fix_tokenizer(tokenizer: Any, data_args: Any) -> Template:
    """The template named by `data_args.template`, bound to the tokenizer's bos/eos.

    No template: the tokenizer's own chat_template when it has one, else `empty`. The tokenizer gains an eos
    token (the template's first stop word) and a pad token (= eos) when it lacks them, and the template's stop
    words become special tokens so that they are single ids (a new token means `resize_vocab`; logged).
    """
    name = getattr(data_args, "template", None)
    if not name:
        name = "tokenizer" if getattr(tokenizer, "chat_template", None) else "empty"
        logger.info("No template set: using '%s'.", name)
    template = get_template(name)
    if template.use_tokenizer_template and not getattr(tokenizer, "chat_template", None):
        where = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
        raise DataError(
            f"template: 'tokenizer' needs the tokenizer's chat_template, and {where} has none. "
            f"Pick a named template: {', '.join(n for n in TEMPLATE_NAMES if n != 'tokenizer')}."
        )

    added = []
    if tokenizer.eos_token is None:
        eos = template.stop_words[0] if template.stop_words else "<|endoftext|>"
        tokenizer.add_special_tokens({"eos_token": eos})
        added.append(eos)
        logger.info("The tokenizer had no eos token: set it to %s.", eos)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("The tokenizer had no pad token: using eos %s.", tokenizer.eos_token)
    vocab = tokenizer.get_vocab()
    missing = [w for w in template.stop_words if w not in vocab]
    if missing:
        tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        added.extend(missing)
    if added:
        logger.warning(
            "Added token(s) %s to the tokenizer; the model's embeddings must grow to match (resize_vocab: true).",
            ", ".join(added),
        )

    tool_format = getattr(data_args, "tool_format", None)
    if tool_format:
        if template.use_tokenizer_template:
            raise DataError(
                f"tool_format: {tool_format} does not apply to template 'tokenizer', which writes tools with the "
                "tokenizer's own chat_template. Remove tool_format, or set a named template."
            )
        get_tool_format(tool_format)  # an unknown name is named here, before any row is read
        template = replace(template, tool_format=tool_format)

    default_system = getattr(data_args, "default_system", None)
    enable_thinking = getattr(data_args, "enable_thinking", True)
    template = replace(
        template,
        default_system=default_system if default_system is not None else template.default_system,
        enable_thinking=True if enable_thinking is None else bool(enable_thinking),
    )
    return template.bind(tokenizer.bos_token, tokenizer.eos_token)


def tokenizer_and_template(model: str, data_args: Any) -> tuple[Any, Template]:
    """The tokenizer of `model` (a folder, hub id or demo name; never remote code) and the template of `data_args`
    fitted to it: what the data commands (`data stats`, `data tokens`) tokenize with, as training does."""
    from transformers import AutoTokenizer

    from core.demo import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model), trust_remote_code=False)
    return tokenizer, get_template_and_fix_tokenizer(tokenizer, data_args)

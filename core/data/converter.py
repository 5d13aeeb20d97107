"""Rows of any registered format (alpaca, sharegpt, openai) -> one canonical form, checked row by row.

The canonical row every processor reads:

    {"_prompt":   [{"role": "user", "content": ...}, {"role": "assistant", ...}, ..., {"role": "user", ...}],
     "_response": [{"role": "assistant", "content": ...}]        # sft / kto / predict reference: 0 or 1 message
                  or [chosen, rejected]                           # ranking datasets
     "_system": str, "_tools": str, "_kto_tag": bool | None}

`_prompt` alternates user-like (user, observation) and assistant-like (assistant, function) turns and ends with a
user-like turn. A row that cannot be brought to this form raises RowError naming the file, the row and the fix.
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

from typing import Any

from core.data.registry import DatasetAttr, RowError

USER, ASSISTANT, OBSERVATION, FUNCTION, SYSTEM = "user", "assistant", "observation", "function", "system"
USER_LIKE = (USER, OBSERVATION)
ASSISTANT_LIKE = (ASSISTANT, FUNCTION)

# What a stage needs from every row: an answer to learn from, a chosen/rejected pair, or a kto label.
NEEDS = {
    "pt": None, "sft": "response", "rm": "pair", "dpo": "pair", "kto": "kto", "ppo": None, "grpo": None,
    "predict": None,
}  # fmt: skip


def _text(value: Any, column: str, fail) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    fail(
        f"column '{column}' must be text, got {type(value).__name__} {str(value)[:60]!r}",
        "Make it a string.",
        kind="not_text",
        column=column,
    )
    return ""


def _as_bool(value: Any, column: str, fail) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    fail(
        f"column '{column}' must be true or false, got {value!r}", "Use true or false.", kind="not_bool", column=column
    )
    return False


def convert_row(row: dict[str, Any], attr: DatasetAttr, where: str, file: str, need: str | None = None) -> dict:
    """Canonical form of one raw row. `need` is NEEDS[stage]: what the row must provide."""

    def fail(what: str, fix: str = "", kind: str = "bad_row", column: str | None = None) -> None:
        message = f"{file}, {where}: dataset '{attr.name}': {what}." + (f" {fix}" if fix else "")
        raise RowError(message, kind=kind, column=column, what=what, fix=fix)

    def column(key: str, required: bool) -> Any:
        name = attr.columns.get(key)
        if name is None:
            if required:
                fail(f"no '{key}' column configured", f"Set columns.{key} in {attr.info_file.name}.", "unmapped")
            return None
        if name not in row:
            if required:
                present = ", ".join(sorted(map(str, row))) or "none"
                fail(
                    f"column '{name}' ({key}) is missing (this row has: {present})",
                    f"Add it to the row or map columns.{key} to the right name in {attr.info_file.name}.",
                    "missing_column",
                    name,
                )
            return None
        return row[name]

    if attr.formatting == "alpaca":
        prompt, response = _alpaca(attr, column, fail, need)
    else:
        prompt, response, system_from_messages = _sharegpt(attr, column, fail, need)
    system = _text(column("system", False), str(attr.columns.get("system")), fail)
    if attr.formatting != "alpaca" and not system:
        system = system_from_messages
    tools = column("tools", False)
    if tools is not None and not isinstance(tools, str):
        import json

        tools = json.dumps(tools, ensure_ascii=False)
    kto_tag = None
    if attr.has_kto_tag:
        kto_tag = _as_bool(column("kto_tag", need == "kto"), str(attr.columns["kto_tag"]), fail)
    elif need == "kto":
        fail(
            "no kto_tag column", f"Set columns.kto_tag in {attr.info_file.name} (true = desirable answer).", "unmapped"
        )

    if need == "response" and len(response) != 1:
        answer = attr.columns.get("response" if attr.formatting == "alpaca" else "messages")
        fail(
            "no assistant answer to learn from",
            "Each row needs a response (the conversation's last turn).",
            "no_answer",
            answer,
        )
    if need == "pair" and len(response) != 2:
        fail("no chosen/rejected pair", "Preference stages need ranking data.", "no_pair")
    return {"_prompt": prompt, "_response": response, "_system": system, "_tools": tools or "", "_kto_tag": kto_tag}


def _alpaca(attr: DatasetAttr, column, fail, need) -> tuple[list[dict], list[dict]]:
    prompt_name = str(attr.columns["prompt"])
    parts = [_text(column("prompt", True), prompt_name, fail)]
    query = column("query", False)
    if query:
        parts.append(_text(query, str(attr.columns["query"]), fail))
    messages = []
    history = column("history", False)
    if history:
        if not isinstance(history, list):
            history_name = attr.columns["history"]
            fail(
                f"column '{history_name}' must be a list of [question, answer] pairs", "", "bad_history", history_name
            )
        for i, pair in enumerate(history):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                what = f"history entry {i} must be a [question, answer] pair, got {str(pair)[:60]!r}"
                fail(what, "", "bad_history", attr.columns["history"])
            messages.append({"role": USER, "content": _text(pair[0], "history", fail)})
            messages.append({"role": ASSISTANT, "content": _text(pair[1], "history", fail)})
    messages.append({"role": USER, "content": "\n".join(p for p in parts if p)})

    response: list[dict] = []
    value = column("response", False)
    if attr.ranking:
        if isinstance(value, list) and len(value) == 2:
            chosen, rejected = value
        else:
            chosen, rejected = column("chosen", True), column("rejected", True)
        response = [
            {"role": ASSISTANT, "content": _text(chosen, str(attr.columns.get("chosen")), fail)},
            {"role": ASSISTANT, "content": _text(rejected, str(attr.columns.get("rejected")), fail)},
        ]
    elif value is not None:
        response = [{"role": ASSISTANT, "content": _text(value, str(attr.columns["response"]), fail)}]
    elif need in ("response", "kto"):
        column("response", True)
    return messages, response


def _sharegpt(attr: DatasetAttr, column, fail, need) -> tuple[list[dict], list[dict], str]:
    tags = attr.tags
    role_of = {
        tags["user_tag"]: USER,
        tags["assistant_tag"]: ASSISTANT,
        tags["observation_tag"]: OBSERVATION,
        tags["function_tag"]: FUNCTION,
        tags["system_tag"]: SYSTEM,
    }
    raw = column("messages", True)
    messages_name = attr.columns["messages"]
    if not isinstance(raw, list):
        what = f"column '{messages_name}' must be a list of messages, got {type(raw).__name__}"
        fail(what, "", "not_messages", messages_name)
    messages = []
    for i, msg in enumerate(raw):
        messages.append(_message(msg, i, role_of, tags, messages_name, fail))
    system = ""
    if messages and messages[0]["role"] == SYSTEM:
        system = messages.pop(0)["content"]
    for i, msg in enumerate(messages):
        expected = USER_LIKE if i % 2 == 0 else ASSISTANT_LIKE
        if msg["role"] not in expected:
            fail(
                f"conversation roles out of order: message {i + (1 if system else 0)} is '{msg['role']}' "
                f"but a {' or '.join(expected)} turn was expected there",
                "Turns must alternate user -> assistant (a system message may come first).",
                "role_order",
                messages_name,
            )
    if not messages:
        fail(f"column '{messages_name}' holds no user message", "", "no_prompt", messages_name)

    if attr.ranking:
        if len(messages) % 2 == 0:
            what = "a ranking conversation must end with a user turn (chosen and rejected are the answers)"
            fail(what, "", "role_order", messages_name)
        pair = []
        for key in ("chosen", "rejected"):
            value = column(key, True)
            if isinstance(value, str):
                pair.append({"role": ASSISTANT, "content": value})
            else:
                msg = _message(value, key, role_of, tags, str(attr.columns.get(key)), fail)
                if msg["role"] not in ASSISTANT_LIKE:
                    what = f"'{attr.columns.get(key)}' must be an assistant message, got role '{msg['role']}'"
                    fail(what, "", "bad_message", attr.columns.get(key))
                pair.append(msg)
        return messages, pair, system
    if len(messages) % 2 == 0:
        return messages[:-1], [messages[-1]], system
    return messages, [], system


def _message(msg: Any, index, role_of: dict[str, str], tags: dict[str, str], column: str, fail) -> dict[str, str]:
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    if not isinstance(msg, dict) or role_tag not in msg:
        fail(
            f"message {index} in '{column}' must be an object with '{role_tag}' and '{content_tag}', "
            f"got {str(msg)[:80]!r}",
            "Check tags.role_tag / tags.content_tag in dataset_info.json.",
            "bad_message",
            column,
        )
    role = role_of.get(msg[role_tag])
    if role is None:
        fail(
            f"message {index} has unknown role '{msg[role_tag]}' (known: {', '.join(role_of)})",
            "Map it with tags.user_tag / assistant_tag / observation_tag / function_tag / system_tag.",
            "unknown_role",
            column,
        )
    content = msg.get(content_tag)
    if content is None:
        # Training on an empty turn would teach the model to answer nothing: a row to fix (or skip_bad_rows).
        fail(
            f"message {index} ({msg[role_tag]}) in '{column}' has no '{content_tag}'"
            + (" (it is null)" if content_tag in msg else ""),
            f"Give every message its text in '{content_tag}' (or map tags.content_tag in dataset_info.json).",
            "empty_message",
            column,
        )
    if not isinstance(content, str):
        import json

        content = json.dumps(content, ensure_ascii=False) if role == FUNCTION else None
        if content is None:
            fail(f"message {index} content must be text", "", "not_text", column)
    return {"role": role, "content": content or ""}

"""Guess a data file's format and layout, and propose its dataset_info.json entry (the Data tab, `data add`).

    detect("my.csv") -> {"kind": "sft", "formatting": "alpaca", "columns": {"prompt": "question", ...}, ...}

Reads only the first `max_rows` rows. The guess is a proposal the user confirms or corrects: column names are
matched case-insensitively against the names LLaMA-Factory users give them (question/answer, prompt/response, ...),
message lists by the keys their messages carry (from/value, role/content) and the role names seen in them.
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from core.data.readers import file_type, iter_rows
from core.data.registry import FORMATTINGS, DataError, RowError

# The column roles a user may map, per formatting (dataset_info.json "columns" keys).
ROLES: dict[str, list[str]] = {
    "alpaca": ["prompt", "query", "response", "history", "system", "tools", "chosen", "rejected", "kto_tag"],
    "sharegpt": ["messages", "system", "tools", "chosen", "rejected", "kto_tag"],
    "openai": ["messages", "system", "tools", "chosen", "rejected", "kto_tag"],
}
TAG_KEYS = ["role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"]
KINDS = ("sft", "pairwise", "kto", "pt")

# Candidate raw names per role, best first (compared lower-cased).
_ALPACA_NAMES = {
    "prompt": ["instruction", "prompt", "question", "query", "instruct", "problem", "input_text", "user", "human"],
    "query": ["input", "context"],
    "response": ["output", "response", "answer", "completion", "target", "solution", "assistant", "gpt", "reply"],
    "history": ["history"],
    "system": ["system", "system_prompt"],
    "tools": ["tools", "functions"],
    "chosen": ["chosen", "accepted", "preferred", "better", "positive", "good"],
    "rejected": ["rejected", "dispreferred", "worse", "negative", "bad"],
}
_TEXT_NAMES = ["text", "content", "document", "body", "passage"]
_KTO_NAMES = ["kto_tag", "label", "tag", "desirable", "is_good", "good", "preferred"]
_MESSAGE_NAMES = ["conversations", "messages", "conversation", "dialog", "dialogue", "chat", "turns"]
_ROLE_KEYS = ["from", "role", "speaker", "author"]
_CONTENT_KEYS = ["value", "content", "text", "message"]
_ROLE_NAMES = {
    "user_tag": ["human", "user", "prompter", "question"],
    "assistant_tag": ["gpt", "assistant", "bot", "model", "chatbot", "answer"],
    "observation_tag": ["observation", "tool", "function_response", "ipython"],
    "function_tag": ["function_call", "function", "tool_call"],
    "system_tag": ["system"],
}
_DEFAULT_TAGS = {
    "sharegpt": {
        "role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
        "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system",
    },
    "openai": {
        "role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
        "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system",
    },
}  # fmt: skip
_BOOL_TEXT = {"true", "false"}


def make_entry(formatting: str, columns: dict[str, str | None], tags: dict[str, str] | None = None,
               ranking: bool = False) -> dict[str, Any]:  # fmt: skip
    """The dataset_info.json entry (without file_name) for a mapping: unmapped roles and tags equal to the
    formatting's defaults are left out, so the entry reads like a hand-written one."""
    if formatting not in FORMATTINGS:
        raise DataError(f"formatting: received {formatting!r} — use one of {', '.join(FORMATTINGS)}.")
    unknown = sorted(set(columns) - set(ROLES[formatting]))
    if unknown:
        raise DataError(
            f"columns: {', '.join(unknown)} cannot be mapped for formatting '{formatting}' "
            f"(roles: {', '.join(ROLES[formatting])})."
        )
    entry: dict[str, Any] = {}
    if formatting != "alpaca":
        entry["formatting"] = formatting
    if ranking:
        entry["ranking"] = True
    mapped = {role: raw for role, raw in columns.items() if raw}
    if mapped:
        entry["columns"] = {role: mapped[role] for role in ROLES[formatting] if role in mapped}
    defaults = _DEFAULT_TAGS.get(formatting, {})
    changed = {k: v for k, v in (tags or {}).items() if v and defaults.get(k) != v}
    if changed:
        entry["tags"] = {k: changed[k] for k in TAG_KEYS if k in changed}
    return entry


def _read(path: Path, max_rows: int) -> tuple[list[dict], list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file. Check the path.")
    if file_type(path) != "parquet":
        with path.open("rb") as f:
            if b"\x00" in f.read(4096):
                raise DataError(f"{path}: not UTF-8 text (it holds NUL bytes: UTF-16 or binary). Save it as UTF-8.")
    rows, errors = [], []
    try:
        for _, row in iter_rows(path, bad_rows="yield"):
            if isinstance(row, RowError):
                errors.append(str(row))
            else:
                rows.append(row)
            if len(rows) + len(errors) >= max_rows:
                break
    except UnicodeDecodeError as err:  # a BOM-less UTF-16 file, say
        raise DataError(f"{path}: not UTF-8 text ({err.reason}). Save the file as UTF-8.") from None
    if not rows:
        first = f" The first problem: {errors[0]}" if errors else ""
        raise DataError(f"{path}: no readable row in the first {max_rows} rows.{first}")
    return rows, errors


def _fields(rows: list[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _values(rows: list[dict], name: str) -> list[Any]:
    return [row[name] for row in rows if row.get(name) is not None]


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in _ROLE_KEYS + _CONTENT_KEYS)


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_message(m) for m in value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in _BOOL_TEXT)


def _pick(fields: list[str], names: list[str], taken: set[str], accept=None) -> str | None:
    """The first field whose lower-cased name is in `names` (in the order of `names`), not yet taken."""
    lower = {f.lower(): f for f in reversed(fields)}
    for name in names:
        field = lower.get(name)
        if field is not None and field not in taken and (accept is None or accept(field)):
            return field
    return None


def _message_tags(lists: list[list[dict]]) -> tuple[dict[str, str], list[str]]:
    keys = Counter(k for messages in lists for m in messages for k in m)
    role_tag = next((k for k in _ROLE_KEYS if k in keys), None)
    content_tag = next((k for k in _CONTENT_KEYS if k in keys and k != role_tag), None)
    notes = []
    if role_tag is None or content_tag is None:
        notes.append(f"messages carry keys {', '.join(sorted(keys))}: set tags.role_tag and tags.content_tag.")
        role_tag, content_tag = role_tag or "role", content_tag or "content"
    roles = Counter(str(m.get(role_tag)) for messages in lists for m in messages if role_tag in m)
    tags = {"role_tag": role_tag, "content_tag": content_tag}
    used: set[str] = set()
    for tag, names in _ROLE_NAMES.items():
        found = next((r for name in names for r in roles if r.lower() == name and r not in used), None)
        if found:
            tags[tag] = found
            used.add(found)
    unmapped = [r for r in roles if r not in used]
    if unmapped:
        notes.append(f"role name(s) {', '.join(unmapped)} match no known role: map them with the tags.")
    return tags, notes


def _conversation(rows: list[dict], fields: list[str], messages: str) -> dict[str, Any]:
    lists = [v for v in _values(rows, messages) if isinstance(v, list)]
    pair_lists = []
    columns: dict[str, str | None] = {"messages": messages}
    taken = {messages}
    for role in ("chosen", "rejected"):
        name = _pick(fields, _ALPACA_NAMES[role], taken)
        if name:
            columns[role] = name
            taken.add(name)
            pair_lists += [[v] for v in _values(rows, name) if _is_message(v)]
    tags, notes = _message_tags(lists + pair_lists)
    openai = tags["role_tag"] == "role" and tags["content_tag"] == "content" and tags.get("user_tag") == "user"
    formatting = "openai" if openai else "sharegpt"
    defaults = _DEFAULT_TAGS[formatting]
    full = {k: tags.get(k, defaults[k]) for k in TAG_KEYS}
    return {"formatting": formatting, "columns": columns, "tags": full, "taken": taken, "notes": notes}


def _alpaca(rows: list[dict], fields: list[str], path: Path) -> dict[str, Any]:
    columns: dict[str, str | None] = {}
    taken: set[str] = set()
    notes: list[str] = []
    strings = [f for f in fields if any(isinstance(v, str) for v in _values(rows, f))]

    def texty(field: str) -> bool:
        return field in strings or any(isinstance(v, (list, int, float)) for v in _values(rows, field))

    for role in ("prompt", "query", "response", "system", "tools", "history", "chosen", "rejected"):
        name = _pick(fields, _ALPACA_NAMES[role], taken, texty)
        if name:
            columns[role] = name
            taken.add(name)
    if "prompt" not in columns and "query" in columns:  # input/output: the input is the prompt
        columns["prompt"] = columns.pop("query")
    if "prompt" not in columns and "response" not in columns and "chosen" not in columns:
        text = _pick(fields, _TEXT_NAMES, taken) or ("text" if path.suffix.lower() == ".txt" else None)
        if text is None and len(strings) == 1:
            text = strings[0]
        if text is not None:
            return {"columns": {"prompt": text}, "taken": {text}, "notes": notes, "pt": True}
    free = [f for f in strings if f not in taken]
    for role in ("prompt", "response"):
        if role not in columns and free and not ("chosen" in columns and role == "response"):
            columns[role] = free.pop(0)
            taken.add(columns[role])
            notes.append(f"guessed column '{columns[role]}' as the {role}: check the mapping.")
    if "prompt" not in columns:
        notes.append(f"no prompt column found among {', '.join(fields)}: map one.")
    return {"columns": columns, "taken": taken, "notes": notes, "pt": False}


def _kto_column(rows: list[dict], fields: list[str], taken: set[str]) -> str | None:
    def labels(field: str) -> bool:
        # 0/1 values are labels only under a label-like name: elsewhere they are as likely ids or flags.
        digits = ("0", "1") if field.lower() in _KTO_NAMES else ()
        values = _values(rows, field)
        return bool(values) and all(_is_bool(v) or (str(v).strip() in digits) for v in values)

    bools = [f for f in fields if f not in taken and labels(f)]
    if not bools:
        return None
    return _pick(bools, _KTO_NAMES, set()) or bools[0]


def detect(path: str | Path, *, max_rows: int = 200, formatting: str | None = None) -> dict[str, Any]:
    """Proposed mapping of a file (see the module docstring and notes/studio-api.md for the keys).

    `formatting` forces one ("alpaca", "sharegpt", "openai") instead of guessing it. Raises DataError naming
    the file when it cannot be read or holds no readable row.
    """
    path = Path(path)
    rows, errors = _read(path, max_rows)
    fields = _fields(rows)
    messages = None
    if formatting != "alpaca":
        lists = {f: sum(_is_message_list(v) for v in _values(rows, f)) for f in fields}
        candidates = [f for f in fields if lists[f]]
        messages = _pick(candidates, _MESSAGE_NAMES, set()) or max(candidates, key=lists.get, default=None)
    notes = (
        [f"{len(errors)} of the first {len(rows) + len(errors)} rows cannot be read: {errors[0]}"] if errors else []
    )
    ranking, pt = False, False
    if messages is not None or formatting in ("sharegpt", "openai"):
        if messages is None:
            messages = _pick(fields, _MESSAGE_NAMES, set()) or "conversations"
            notes.append(f"no list of messages found: map the messages column (assumed '{messages}').")
        found = _conversation(rows, fields, messages)
        if formatting and formatting != found["formatting"]:
            found["tags"] = {**_DEFAULT_TAGS[formatting], **{k: found["tags"][k] for k in ("role_tag", "content_tag")}}
        formatting = formatting or found["formatting"]
        columns, tags, taken = found["columns"], found["tags"], found["taken"]
        notes += found["notes"]
        name = _pick(
            fields, _ALPACA_NAMES["system"], taken, lambda f: all(isinstance(v, str) for v in _values(rows, f))
        )
        if name:
            columns["system"] = name
            taken.add(name)
        name = _pick(fields, _ALPACA_NAMES["tools"], taken)
        if name:
            columns["tools"] = name
            taken.add(name)
        ranking = "chosen" in columns and "rejected" in columns
    else:
        formatting = "alpaca"
        found = _alpaca(rows, fields, path)
        columns, tags, taken, pt = found["columns"], {}, found["taken"], found["pt"]
        notes += found["notes"]
        response = columns.get("response")
        pairs = [v for v in _values(rows, response)] if response else []
        if pairs and all(isinstance(v, list) and len(v) == 2 for v in pairs):
            ranking = True
            notes.append(f"column '{response}' holds [chosen, rejected] pairs: preference data.")
        ranking = ranking or ("chosen" in columns and "rejected" in columns)
        if not ranking:
            for role in ("chosen", "rejected"):
                if role in columns:
                    notes.append(f"column '{columns.pop(role)}' looks like {role} but has no partner: not mapped.")
    kto = None if ranking or pt else _kto_column(rows, fields, taken)
    if kto:
        columns["kto_tag"] = kto
        notes.append(f"column '{kto}' holds true/false: kto labels (true = desirable answer).")
    kind = "pairwise" if ranking else "kto" if kto else "pt" if pt else "sft"
    unused = [f for f in fields if f not in columns.values()]
    if unused:
        notes.append(f"not used: {', '.join(unused)}.")
    full_columns = {role: columns.get(role) for role in ROLES[formatting]}
    return {
        "file": str(path),
        "file_type": file_type(path),
        "kind": kind,
        "formatting": formatting,
        "ranking": ranking,
        "fields": fields,
        "columns": full_columns,
        "tags": tags,
        "sample": rows[:5],
        "entry": make_entry(formatting, columns, tags, ranking),
        "notes": notes,
    }

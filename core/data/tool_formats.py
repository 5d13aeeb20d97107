"""How each model family writes tools: the tool definitions in the system prompt, the assistant's tool calls and
(for Llama 3) the tool results. Data plus a few small functions per family; `tool_format` picks one.

A sharegpt `function_call` turn holds one call or a list of calls as JSON, `{"name": ..., "arguments": {...}}`
(`arguments` may also be a JSON string, or named `parameters`); the `tools` column a JSON list of function
definitions, bare or OpenAI-wrapped (`{"type": "function", "function": {...}}`). The wrappers around a turn
(Qwen's `<tool_response>`, Mistral's `[TOOL_CALLS]`, Llama 3's `ipython` header) belong to the chat template
(core.data.templates); this module fills in what goes inside them.

Sources (golden tests in tests/data/test_tool_formats.py): qwen = Qwen2.5-Instruct's chat_template, qwen3 =
Qwen3's, llama3 = Llama 3.1-Instruct's (`tools_in_user_message=False`, its default date), mistral / glm4 /
default = LLaMA-Factory's tool formats (src/llamafactory/data/tool_utils.py), json = this project's own.
Pure: no torch, transformers or datasets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.data.registry import DataError


def _dumps(value: Any, indent: int | None = None) -> str:
    """json.dumps as the jinja `tojson` filter of transformers writes it (non-ASCII kept, ", " / ": ")."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _bare(tool: dict) -> dict:
    return tool["function"] if tool.get("type") == "function" and isinstance(tool.get("function"), dict) else tool


def _wrapped(tool: dict) -> dict:
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


# Tool definitions -> text


_QWEN_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call>"
    ' XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)
LLAMA3_DATE = "26 Jul 2024"  # the date Llama 3.1's template writes when none is given: a run is reproducible
_LLAMA3_TOOLS = (
    "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call."
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
    "Do not use variables.\n\n{tools}"
)
_GLM4_TOOLS = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tools}"
)
_DEFAULT_TOOLS = (
    "You have access to the following tools:\n{tools}Use the following format if using a tool:\n```\n"
    "Action: tool name (one of [{names}])\nAction Input: the input to the tool, in a JSON format representing the "
    'kwargs (e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n'
)


def _qwen_tools(tools: list[dict]) -> str:
    # The family's template dumps each definition as given (wrapped or not).
    return _QWEN_TOOLS.replace("{tools}", "".join("\n" + _dumps(tool) for tool in tools))


def _llama3_tools(tools: list[dict]) -> str:
    text = "".join(_dumps(tool, indent=4) + "\n\n" for tool in tools)
    return _LLAMA3_TOOLS.replace("{date}", LLAMA3_DATE).replace("{tools}", text)


def _mistral_tools(tools: list[dict]) -> str:
    return "[AVAILABLE_TOOLS] " + _dumps([_wrapped(tool) for tool in tools]) + "[/AVAILABLE_TOOLS]"


def _glm4_tools(tools: list[dict]) -> str:
    text = ""
    for tool in map(_bare, tools):
        body = _dumps(tool, indent=4)
        text += f"\n\n## {tool.get('name', '')}\n\n{body}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
    return _GLM4_TOOLS.replace("{tools}", text)


def _param_line(name: str, param: dict, required: list) -> str:
    extra = ", required" if name in required else ""
    text = f"  - {name} ({param.get('type', '')}{extra}): {param.get('description', '')}"
    if param.get("enum"):
        text += ", should be one of [{}]".format(", ".join(map(str, param["enum"])))
    if param.get("items"):
        text += f", where each item should be {param['items'].get('type', '')}"
    return text + "\n"


def _default_tools(tools: list[dict]) -> str:
    text, names = "", []
    for tool in map(_bare, tools):
        params = tool.get("parameters") or {}
        required = params.get("required", [])
        args = "".join(_param_line(n, p, required) for n, p in (params.get("properties") or {}).items())
        text += f"> Tool Name: {tool.get('name', '')}\nTool Description: {tool.get('description', '')}\n"
        text += f"Tool Args:\n{args}\n"
        names.append(str(tool.get("name", "")))
    return _DEFAULT_TOOLS.replace("{tools}", text).replace("{names}", ", ".join(names))


# Tool calls -> the assistant's text


def _qwen_calls(calls: list[tuple[str, Any]]) -> str:
    return "\n".join(
        f'<tool_call>\n{{"name": "{name}", "arguments": {_dumps(args)}}}\n</tool_call>' for name, args in calls
    )


def _llama3_calls(calls: list[tuple[str, Any]]) -> str:
    name, args = _single(calls, "llama3")
    return f'{{"name": "{name}", "parameters": {_dumps(args)}}}'


def _mistral_calls(calls: list[tuple[str, Any]]) -> str:
    return _dumps([{"name": name, "arguments": args} for name, args in calls])


def _glm4_calls(calls: list[tuple[str, Any]]) -> str:
    name, args = _single(calls, "glm4")
    return f"{name}\n{_dumps(args)}"


def _default_calls(calls: list[tuple[str, Any]]) -> str:
    return "\n".join(f"Action: {name}\nAction Input: {_dumps(args)}" for name, args in calls)


def _single(calls: list[tuple[str, Any]], family: str) -> tuple[str, Any]:
    if len(calls) != 1:
        raise DataError(
            f"tool_format {family}: the family's format has one tool call per turn, this turn has {len(calls)}; "
            "split it into several function_call / observation turns"
        )
    return calls[0]


# Tool results


def _llama3_result(text: str) -> str:
    """Llama 3.1's template writes a tool result with `tojson`: a JSON object or list as JSON, other text as a
    JSON string."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return _dumps(text)
    return _dumps(value if isinstance(value, (dict, list)) else text)


@dataclass(frozen=True)
class ToolFormat:
    name: str
    tools: Callable[[list[dict]], str] | None  # the definitions as the family writes them; None: the JSON as given
    calls: Callable[[list[tuple[str, Any]]], str] | None  # (name, arguments) pairs -> text; None: as given
    join: str = "{system}\n\n{tools}"  # system prompt with tools, when the conversation has a system prompt
    result: Callable[[str], str] | None = None  # the tool result's text; None: as given
    before_first_user: bool = False  # the tool text goes before the first user turn, not in the system prompt

    def system_text(self, system: str, tools: str) -> str:
        """The system prompt with the tool definitions (`tools` is the row's JSON list)."""
        text = self.tools(parse_tools(tools)) if self.tools else f"Tools you can call (JSON):\n{tools}"
        return self.join.replace("{system}", system).replace("{tools}", text) if system else text

    def call_text(self, content: str) -> str:
        return self.calls(parse_calls(content)) if self.calls else content

    def result_text(self, content: str) -> str:
        return self.result(content) if self.result else content


TOOL_FORMATS: dict[str, ToolFormat] = {
    f.name: f
    for f in [
        ToolFormat("json", None, None),
        ToolFormat("default", _default_tools, _default_calls, join="{system}{tools}"),
        ToolFormat("qwen", _qwen_tools, _qwen_calls),
        ToolFormat("llama3", _llama3_tools, _llama3_calls, join="{tools}{system}", result=_llama3_result),
        ToolFormat("mistral", _mistral_tools, _mistral_calls, before_first_user=True),
        ToolFormat("glm4", _glm4_tools, _glm4_calls, join="{system}{tools}"),
    ]
}
TOOL_FORMAT_NAMES: list[str] = list(TOOL_FORMATS)


def get_tool_format(name: str) -> ToolFormat:
    if name not in TOOL_FORMATS:
        raise DataError(f"tool_format: unknown format '{name}'. Known: {', '.join(TOOL_FORMAT_NAMES)}.")
    return TOOL_FORMATS[name]


def parse_tools(text: str) -> list[dict]:
    """The `tools` column as a list of definitions (a single definition counts as a list of one)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"tools: not valid JSON ({err.msg}, column {err.colno}) in {text[:80]!r}; give a JSON list of functions"
        ) from None
    value = [value] if isinstance(value, dict) else value
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise DataError(f"tools: expected a JSON list of function definitions (objects), got {text[:80]!r}")
    return value


def parse_calls(text: str) -> list[tuple[str, Any]]:
    """A function_call turn's JSON -> (name, arguments) pairs; arguments given as a JSON string are parsed."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"function_call: not valid JSON ({err.msg}) in {text[:80]!r}; write "
            '{"name": ..., "arguments": {...}} or a list of them'
        ) from None
    calls = []
    for item in value if isinstance(value, list) else [value]:
        item = _bare(item) if isinstance(item, dict) else item
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise DataError(f'function_call: each call needs a "name", got {str(item)[:80]!r}')
        args = item.get("arguments", item.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        calls.append((item["name"], args))
    return calls

"""Tool calling per model family (tool_format): tool definitions, calls and results written as the family writes them.

Golden where the family's jinja supports tools (tests/data/jinja: qwen.jinja = Qwen2.5-Instruct's chat_template,
qwen3.jinja = Qwen3's, llama31.jinja = Llama-3.1-Instruct's, each as its tokenizer_config.json ships it): our ids
equal apply_chat_template(messages, tools=...) token for token, and the prompt before every answer equals the
generation prompt. Mistral v0.3's jinja puts the tools before the *last* user message and needs 9-character call
ids, so a conversation's earlier prompts change as turns are added; like LLaMA-Factory we put them before the first
one, and mistral, glm4 (GLM-4-9B-Chat's tokenizer puts tools in a message field, not `tools=`) and default are
checked against strings written from LLaMA-Factory's src/llamafactory/data/tool_utils.py and templates.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from datahelp import data_args
from test_data_template_golden import jinja, reference

from core.data.registry import DataError
from core.data.template import get_template_and_fix_tokenizer
from core.data.templates import TEMPLATES

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city — températures in °C",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "description": "Local time", "parameters": {}}},
]
CALL = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
RESULT = {"temperature": 21, "sky": "clear"}


def ours(*, second_turn: bool = True, calls=None) -> list[dict[str, str]]:
    """The conversation as a sharegpt row becomes (converter roles; function / observation contents are text)."""
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "function", "content": json.dumps(calls or CALL)},
        {"role": "observation", "content": json.dumps(RESULT)},
        {"role": "assistant", "content": "It is 21 degrees and clear in Paris."},
    ]
    if second_turn:
        messages += [
            {"role": "user", "content": "Thanks! Add the numbers 12 and 30."},
            {"role": "assistant", "content": "The sum is 42."},
        ]
    return messages


def hf(messages: list[dict[str, str]], result_as_object: bool) -> list[dict]:
    """The same conversation as apply_chat_template takes it (OpenAI tool_calls, role tool)."""
    out = []
    for m in messages:
        if m["role"] == "function":
            calls = json.loads(m["content"])
            calls = calls if isinstance(calls, list) else [calls]
            out.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"type": "function", "function": c} for c in calls],
                }
            )
        elif m["role"] == "observation":
            out.append({"role": "tool", "content": json.loads(m["content"]) if result_as_object else m["content"]})
        else:
            out.append(dict(m))
    return out


# family -> (jinja file, bos, eos, extra apply_chat_template kwargs, tool results given as objects)
GOLDEN = {
    "qwen": ("qwen", None, "<|im_end|>", {}, False),
    "qwen3": ("qwen3", None, "<|im_end|>", {}, False),
    "llama3": ("llama31", "<|begin_of_text|>", "<|eot_id|>", {"tools_in_user_message": False}, True),
}


def check(template, tokenizer, messages, system, hf_messages, **kwargs) -> None:
    pairs = template.encode_multiturn(tokenizer, messages, system=system, tools=json.dumps(TOOLS))
    head = [{"role": "system", "content": system}] if system else []
    full = reference(tokenizer, head + hf_messages, tools=TOOLS, **kwargs)
    assert [i for p, r in pairs for i in p + r] == full, "whole conversation differs from apply_chat_template"
    done: list[int] = []
    for k, (prompt, response) in enumerate(pairs):
        expected = reference(
            tokenizer, head + hf_messages[: 2 * k + 1], tools=TOOLS, add_generation_prompt=True, **kwargs
        )
        assert done + prompt == expected, f"prompt of turn {k + 1} differs from the generation prompt"
        done += prompt + response


@pytest.mark.parametrize("family", list(GOLDEN))
@pytest.mark.parametrize("system", [None, "You are a helpful assistant."])
def test_tool_conversation_equals_apply_chat_template_with_tools(make_tokenizer, family, system):
    file, bos, eos, kwargs, as_object = GOLDEN[family]
    tokenizer = make_tokenizer(bos=bos, eos=eos, chat_template=jinja(file))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template=family))
    messages = ours()
    check(template, tokenizer, messages, system, hf(messages, as_object), **kwargs)


@pytest.mark.parametrize("family", ["qwen", "qwen3"])
def test_qwen_parallel_calls_equal_apply_chat_template(make_tokenizer, family):
    file, bos, eos, kwargs, as_object = GOLDEN[family]
    tokenizer = make_tokenizer(bos=bos, eos=eos, chat_template=jinja(file))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template=family))
    messages = ours(calls=[CALL, {"name": "get_time", "arguments": "{}"}])  # arguments as a JSON string too
    expected = hf(ours(calls=[CALL, {"name": "get_time", "arguments": {}}]), as_object)
    check(template, tokenizer, messages, None, expected, **kwargs)


def test_llama3_plain_text_result_is_written_as_a_json_string_like_its_template(make_tokenizer):
    file, bos, eos, kwargs, _ = GOLDEN["llama3"]
    tokenizer = make_tokenizer(bos=bos, eos=eos, chat_template=jinja(file))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="llama3"))
    messages = ours(second_turn=False)
    messages[2]["content"] = "Sunny, 21 degrees"
    check(template, tokenizer, messages, None, hf(messages, result_as_object=False), **kwargs)
    text = "".join(p + r for p, r in template.render(messages, tools=json.dumps(TOOLS)))
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"Sunny, 21 degrees"<|eot_id|>' in text


def test_tokenizer_template_passes_calls_as_tool_calls(make_tokenizer):
    tokenizer = make_tokenizer(bos=None, eos="<|im_end|>", chat_template=jinja("qwen"))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="tokenizer"))
    messages = ours()
    check(template, tokenizer, messages, None, hf(messages, result_as_object=False))


def rendered(family: str, bos: str, eos: str, system: str | None, **args) -> str:
    template = TEMPLATES[family]
    if args.get("tool_format"):
        template = replace(template, tool_format=args["tool_format"])
    template = template.bind(bos, eos)
    return "".join(p + r for p, r in template.render(ours(second_turn=False), system, json.dumps(TOOLS[:1])))


WEATHER = TOOLS[0]["function"]


def test_mistral_writes_available_tools_before_the_first_user_turn_and_tool_calls_results():
    tools = json.dumps([TOOLS[0]], ensure_ascii=False)
    expected = (
        f"<s>[AVAILABLE_TOOLS] {tools}[/AVAILABLE_TOOLS] [INST] Be brief.\n\nWhat is the weather in Paris? [/INST]"
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]</s>'
        '[TOOL_RESULTS] {"content": {"temperature": 21, "sky": "clear"}}[/TOOL_RESULTS]'
        " It is 21 degrees and clear in Paris.</s>"
    )
    assert rendered("mistral", "<s>", "</s>", "Be brief.") == expected


def test_glm4_writes_its_tool_prompt_and_name_newline_arguments():
    body = json.dumps(WEATHER, ensure_ascii=False, indent=4)
    expected = (
        "[gMASK]<sop><|system|>\n"
        "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
        "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具"
        f"\n\n## get_weather\n\n{body}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
        "<|user|>\nWhat is the weather in Paris?<|assistant|>"
        'get_weather\n{"city": "Paris", "unit": "celsius"}'
        '<|observation|>\n{"temperature": 21, "sky": "clear"}<|assistant|>'
        "\nIt is 21 degrees and clear in Paris.<|endoftext|>"
    )
    assert rendered("glm4", "", "<|endoftext|>", None) == expected


def test_default_format_is_llamafactorys_action_lines_on_any_template():
    expected = (
        "System: Be brief.You have access to the following tools:\n"
        "> Tool Name: get_weather\nTool Description: Weather of a city — températures in °C\nTool Args:\n"
        "  - city (string, required): The city\n"
        "  - unit (string): , should be one of [celsius, fahrenheit]\n\n"
        "Use the following format if using a tool:\n```\n"
        "Action: tool name (one of [get_weather])\n"
        "Action Input: the input to the tool, in a JSON format representing the kwargs "
        '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n\n'
        "Human: What is the weather in Paris?\nAssistant:"
        ' Action: get_weather\nAction Input: {"city": "Paris", "unit": "celsius"}</s>\n'
        'Human: {"temperature": 21, "sky": "clear"}\nAssistant: It is 21 degrees and clear in Paris.</s>\n'
    )
    assert rendered("default", "<s>", "</s>", "Be brief.", tool_format="default") == expected


def test_json_format_keeps_the_rows_text_as_before():
    text = rendered("chatml", "", "<|im_end|>", None)
    assert f"Tools you can call (JSON):\n{json.dumps(TOOLS[:1])}" in text
    assert f"<|im_start|>assistant\n{json.dumps(CALL)}<|im_end|>" in text


def test_tool_format_key_overrides_the_templates_and_is_checked(make_tokenizer):
    tokenizer = make_tokenizer(bos=None, eos="<|im_end|>")
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml", tool_format="qwen"))
    text = "".join(p + r for p, r in template.render(ours(second_turn=False), None, json.dumps(TOOLS)))
    assert "<tools>\n" + json.dumps(TOOLS[0], ensure_ascii=False) in text and "<tool_call>\n" in text
    with pytest.raises(DataError, match="tool_format: unknown format 'hermes'.*qwen"):
        get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml", tool_format="hermes"))


def test_one_call_per_turn_families_name_the_fix(make_tokenizer):
    tokenizer = make_tokenizer(bos="<|begin_of_text|>", eos="<|eot_id|>")
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="llama3"))
    with pytest.raises(DataError, match="llama3.*one tool call per turn.*split it"):
        template.render(ours(calls=[CALL, CALL]), None, json.dumps(TOOLS))
    with pytest.raises(DataError, match="function_call: not valid JSON.*arguments"):
        template.render([{"role": "user", "content": "q"}, {"role": "function", "content": "get_weather(Paris)"}])


@pytest.mark.parametrize("name", ["default", "qwen", "llama3", "mistral", "glm4", "json"])
def test_chat_reads_back_the_calls_each_format_writes(name):
    from core.chat import parse_tool_calls
    from core.data.tool_formats import TOOL_FORMATS

    template = {"mistral": "mistral", "glm4": "glm4"}.get(name, "chatml")
    function = TEMPLATES[template].function or "{content}"
    calls = [CALL] if name in ("llama3", "glm4") else [CALL, {"name": "get_time", "arguments": {}}]
    text = function.replace("{eos}", "").replace("{content}", TOOL_FORMATS[name].call_text(json.dumps(calls)))
    assert parse_tool_calls(text) == calls
    assert parse_tool_calls("It is sunny.\nNo call here: {}") == []

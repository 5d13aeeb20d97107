"""Template choice and tokenizer fixes; the templates with no model family of their own (default, empty)."""

from __future__ import annotations

import pytest
from datahelp import data_args

from core.data.registry import DataError
from core.data.template import get_template_and_fix_tokenizer
from core.data.templates import TEMPLATE_NAMES, TEMPLATES

REQUIRED = [
    "default",
    "empty",
    "chatml",
    "qwen",
    "qwen3",
    "llama3",
    "mistral",
    "gemma",
    "phi",
    "deepseek",
    "tokenizer",
]
CHAT = [
    {"role": "user", "content": "q1"},
    {"role": "assistant", "content": "a1"},
    {"role": "user", "content": "q2"},
    {"role": "assistant", "content": "a2"},
]


def test_required_templates_exist():
    assert set(REQUIRED) <= set(TEMPLATE_NAMES) and list(TEMPLATES) == TEMPLATE_NAMES


def test_default_template_text():
    template = TEMPLATES["default"].bind("<s>", "</s>")
    assert template.render(CHAT, system="Be kind.") == [
        ("System: Be kind.\nHuman: q1\nAssistant:", " a1</s>\n"),
        ("Human: q2\nAssistant:", " a2</s>\n"),
    ]


def test_empty_template_adds_nothing_but_eos():
    template = TEMPLATES["empty"].bind("<s>", "</s>")
    assert template.render(CHAT) == [("q1", "a1</s>"), ("q2", "a2</s>")]


def test_default_system_applies_when_a_row_has_none(tokenizer):
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml", default_system="Be brief."))
    assert template.render(CHAT[:2])[0][0].startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert template.render(CHAT[:2], system="Own.")[0][0].startswith("<|im_start|>system\nOwn.<|im_end|>\n")


def test_generation_prompt_has_an_empty_response():
    pairs = TEMPLATES["chatml"].render(CHAT[:3])
    assert pairs[-1] == ("<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n", "")


def test_missing_eos_and_pad_are_added(make_tokenizer):
    tokenizer = make_tokenizer(bos=None, eos=None, pad=None)
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml"))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>"
    assert template.stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_stop_words_missing_from_the_vocabulary_become_special_tokens(make_tokenizer, caplog, monkeypatch):
    from core.data import template as template_module
    from core.data.templates import Template

    tokenizer = make_tokenizer()
    size = len(tokenizer)
    get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml"))
    assert len(tokenizer) == size  # <|im_end|> is in the vocabulary already: nothing added
    monkeypatch.setitem(template_module.TEMPLATES, "custom", Template(name="custom", stop_words=("<|brand_new|>",)))
    with caplog.at_level("WARNING"):
        get_template_and_fix_tokenizer(tokenizer, data_args(template="custom"))
    assert len(tokenizer) == size + 1 and tokenizer.convert_tokens_to_ids("<|brand_new|>") == size
    assert tokenizer.encode("a<|brand_new|>", add_special_tokens=False)[-1] == size  # one id, never split
    assert "resize_vocab" in caplog.text


def test_no_template_uses_the_tokenizers_own_or_empty(make_tokenizer):
    plain = make_tokenizer()
    assert get_template_and_fix_tokenizer(plain, data_args(template=None)).name == "empty"
    chat = make_tokenizer(chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert get_template_and_fix_tokenizer(chat, data_args(template=None)).name == "tokenizer"


def test_unknown_template_and_tokenizer_without_chat_template(make_tokenizer):
    with pytest.raises(DataError, match=r"unknown template 'lama3'\. Did you mean llama3"):
        get_template_and_fix_tokenizer(make_tokenizer(), data_args(template="lama3"))
    with pytest.raises(DataError, match="'tokenizer' needs the tokenizer's chat_template"):
        get_template_and_fix_tokenizer(make_tokenizer(), data_args(template="tokenizer"))

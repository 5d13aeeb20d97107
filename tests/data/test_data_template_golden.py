"""Golden tests: our encoding of a conversation equals the family's own jinja chat template, token for token.

Each tests/data/jinja/<family>.jinja is written as that family's tokenizer ships it (tool-call branches left
out). For every family we check the named template and the `tokenizer` template (which splits the jinja
rendering itself):
- the ids of the whole conversation equal apply_chat_template(messages);
- the prompt ids before each answer equal apply_chat_template(messages so far, add_generation_prompt=True),
  i.e. what the model is given at inference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datahelp import data_args

from core.data.template import get_template_and_fix_tokenizer

JINJA = Path(__file__).parent / "jinja"


def jinja(family: str) -> str:
    """The family's chat template, as its tokenizer ships it (tests/data/jinja/<family>.jinja)."""
    return (JINJA / f"{family}.jinja").read_text(encoding="utf-8")


# name -> (jinja, bos, eos) as the family's tokenizer sets them
FAMILIES = {
    "chatml": (None, "<|im_end|>"),
    "qwen": (None, "<|im_end|>"),
    "qwen3": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "phi": ("<s>", "<|endoftext|>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
}

SYSTEM = "You are a helpful assistant."
TURNS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Add the numbers 12 and 30.", "The sum is 42."),
    ("  Reverse the words: red fox jumps.\n", "jumps fox red"),
]


def conversation(turns: int, system: bool, answers=None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}] if system else []
    for i, (question, answer) in enumerate(TURNS[:turns]):
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": (answers or {}).get(i, answer)})
    return messages


def reference(tokenizer, messages, **kwargs) -> list[int]:
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


def our_pairs(template, tokenizer, messages):
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    chat = messages[1:] if system else messages
    return template.encode_multiturn(tokenizer, chat, system=system)


def check_conversation(template, tokenizer, messages, **kwargs) -> None:
    pairs = our_pairs(template, tokenizer, messages)
    ours = [i for p, r in pairs for i in p + r]
    assert ours == reference(tokenizer, messages, **kwargs), "whole conversation differs from apply_chat_template"
    offset = 1 if messages[0]["role"] == "system" else 0
    done: list[int] = []
    for k, (prompt, response) in enumerate(pairs):
        expected = reference(tokenizer, messages[: offset + 2 * k + 1], add_generation_prompt=True, **kwargs)
        assert done + prompt == expected, f"prompt of turn {k + 1} differs from the generation prompt"
        assert response, f"turn {k + 1} has no answer tokens"
        done += prompt + response


@pytest.mark.parametrize("mode", ["named", "tokenizer"])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("turns", [1, 3])
@pytest.mark.parametrize("system", [False, True])
def test_encoding_equals_apply_chat_template(make_tokenizer, family, mode, turns, system):
    bos, eos = FAMILIES[family]
    tokenizer = make_tokenizer(bos=bos, eos=eos, chat_template=jinja(family))
    template = get_template_and_fix_tokenizer(
        tokenizer, data_args(template=family if mode == "named" else "tokenizer")
    )
    if family == "qwen3" and mode == "tokenizer" and turns > 1:
        # Qwen3's jinja renders an answer with its think block only while it is the last one: no consistent cut.
        with pytest.raises(ValueError, match="renders this answer differently.*named template"):
            check_conversation(template, tokenizer, conversation(turns, system))
        return
    check_conversation(template, tokenizer, conversation(turns, system))


def test_qwen3_reasoning_is_kept_on_the_last_answer_only(make_tokenizer):
    tokenizer = make_tokenizer(bos=None, eos="<|im_end|>", chat_template=jinja("qwen3"))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="qwen3"))
    answers = {0: "<think>\nParis is in France.\n</think>\n\nParis.", 1: "<think>12+30</think>42"}
    messages = conversation(2, system=True, answers=answers)
    pairs = our_pairs(template, tokenizer, messages)
    assert [i for p, r in pairs for i in p + r] == reference(tokenizer, messages)
    first_answer = tokenizer.decode(pairs[0][1])
    last_answer = tokenizer.decode(pairs[1][1])
    assert "<think>" not in first_answer and first_answer.startswith("Paris.")
    assert last_answer.startswith("<think>\n12+30\n</think>\n\n42")


def test_qwen3_without_thinking_puts_the_empty_think_block_in_the_prompt(make_tokenizer):
    tokenizer = make_tokenizer(bos=None, eos="<|im_end|>", chat_template=jinja("qwen3"))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="qwen3", enable_thinking=False))
    messages = conversation(2, system=False)
    pairs = our_pairs(template, tokenizer, messages)
    assert [i for p, r in pairs for i in p + r] == reference(tokenizer, messages)
    prompt = [i for p, r in pairs[:-1] for i in p + r] + pairs[-1][0]
    assert prompt == reference(tokenizer, messages[:-1], add_generation_prompt=True, enable_thinking=False)
    assert tokenizer.decode(pairs[-1][1]) == "The sum is 42.<|im_end|>\n"  # the empty block is not learned


def test_phi_closes_the_conversation_with_eos_that_only_the_last_answer_learns(make_tokenizer):
    tokenizer = make_tokenizer(bos="<s>", eos="<|endoftext|>", chat_template=jinja("phi"))
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="phi"))
    pairs = template.encode_multiturn(tokenizer, conversation(2, system=False))
    assert tokenizer.decode(pairs[0][1]) == "The capital of France is Paris.<|end|>\n"
    assert tokenizer.decode(pairs[1][1]) == "The sum is 42.<|end|>\n<|endoftext|>"


def test_demo_model_chat_template_matches_chatml_on_every_demo_conversation():
    """The demo model runs with `template: chatml`; its tokenizer ships its own ChatML jinja. They must agree on
    the demo data, or training and chat would format conversations differently."""
    from core.data.loader import load_rows
    from core.data.registry import get_dataset_attr
    from core.demo import SIZES, build_tokenizer

    tokenizer = build_tokenizer(SIZES["tiny"].vocab_size)
    template = get_template_and_fix_tokenizer(tokenizer, data_args(template="chatml"))
    checked = 0
    for name in ("demo_sft", "demo_sharegpt", "demo_openai"):
        for row in load_rows(get_dataset_attr(name, "demo"), "response", data_args(), seed=0)[:40]:
            system = [{"role": "system", "content": row["_system"]}] if row["_system"] else []
            check_conversation(template, tokenizer, system + row["_prompt"] + row["_response"])
            checked += 1
    assert checked == 120

"""Chat templates as data: a few format strings and flags per model family, plus the code that renders and
encodes a conversation with them.

A template turns a conversation into (prompt, response) pieces, one pair per turn. `{content}` is the message
text, `{bos}` / `{eos}` the tokenizer's tokens (filled in by `Template.bind`). The named templates reproduce
the chat templates that the families' tokenizers ship (golden tests in tests/data/test_template_golden.py
compare our ids with `apply_chat_template` token for token). `tokenizer` uses the tokenizer's own
`chat_template` and splits its rendering into the same pieces.

Each piece is tokenized on its own, so a merge across a turn boundary is never formed: the prompt ids are
exactly what the model is given at inference, and generation starts right after them.
Pure: importing this module imports no torch, transformers or datasets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from core.data.tool_formats import get_tool_format, parse_calls

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class Template:
    name: str
    user: str = "{content}"
    assistant: str = "{content}"
    system: str = "{content}"
    observation: str | None = None  # None: formatted like a user turn
    function: str | None = None  # None: formatted like an assistant turn
    prefix: str = ""  # once, before everything (usually "{bos}")
    suffix: str = ""  # once, after the last answer of a conversation
    default_system: str = ""
    system_in_user: str | None = None  # families without a system turn merge it into the first user message
    stop_words: tuple[str, ...] = ()
    strip_content: bool = False  # the family's jinja trims message text
    thinking: bool = False  # Qwen3-style <think> blocks
    enable_thinking: bool = True
    use_tokenizer_template: bool = False
    tool_format: str = "json"  # core.data.tool_formats: tool definitions, calls and results as the family writes them

    def bind(self, bos: str | None, eos: str | None) -> Template:
        """A copy with {bos} / {eos} replaced by the tokenizer's tokens (empty when it has none)."""

        def fill(text: str | None) -> str | None:
            if text is None:
                return None
            return text.replace("{bos}", bos or "").replace("{eos}", eos or "")

        names = ("user", "assistant", "system", "observation", "function", "prefix", "suffix", "system_in_user")
        return replace(self, **{n: fill(getattr(self, n)) for n in names})

    # Rendering to strings

    def render(
        self, messages: list[dict[str, str]], system: str | None = None, tools: str | None = None
    ) -> list[tuple[str, str]]:
        """(prompt, response) strings per turn. `messages` alternate user-like / assistant-like turns; when
        they end with a user turn the last pair's response is "" (a generation prompt)."""
        system_text = system if system else self.default_system
        tool_format = get_tool_format(self.tool_format)
        before_user = ""
        if tools and tool_format.before_first_user:
            before_user = tool_format.system_text("", tools)
        elif tools:
            system_text = tool_format.system_text(system_text, tools)
        last_answer = len(messages) - 1 if len(messages) % 2 == 0 else -1
        pairs = []
        for i in range(0, len(messages), 2):
            user = messages[i]
            content = self._clean(user["content"])
            prompt = ""
            if i == 0:
                prompt += self.prefix + before_user
                if system_text and self.system_in_user is None:
                    prompt += self.system.replace("{content}", system_text)
                elif system_text:
                    content = self.system_in_user.replace("{system}", system_text).replace("{content}", content)
            user_format = self.user
            if user["role"] == "observation":
                user_format = self.observation or self.user
                content = tool_format.result_text(content)
            prompt += user_format.replace("{content}", content)
            response = ""
            if i + 1 < len(messages):
                answer = messages[i + 1]
                text = self._clean(answer["content"])
                if answer["role"] == "function":
                    text = tool_format.call_text(text)
                if self.thinking:
                    text, think_in_prompt = self._think(text, is_last=i + 1 == last_answer)
                    prompt += think_in_prompt
                answer_format = self.assistant if answer["role"] != "function" else (self.function or self.assistant)
                response = answer_format.replace("{content}", text)
                if i + 1 == last_answer:
                    response += self.suffix
            elif self.thinking and not self.enable_thinking:
                prompt += EMPTY_THINK
            pairs.append((prompt, response))
        return pairs

    def _clean(self, text: str) -> str:
        return text.strip() if self.strip_content else text

    def _think(self, text: str, is_last: bool) -> tuple[str, str]:
        """(answer text, text appended to the prompt). Earlier answers lose their reasoning, as Qwen3's own
        template renders them; the last one always carries a think block, empty when the data has none
        (in the prompt when enable_thinking is false, so it is not learned)."""
        reasoning = ""
        if THINK_CLOSE in text:
            reasoning = text.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            text = text.split(THINK_CLOSE)[-1].lstrip("\n")
        if not is_last:
            return text, ""
        text = text.lstrip("\n")
        block = f"{THINK_OPEN}\n{reasoning.strip(chr(10))}\n{THINK_CLOSE}\n\n"
        if not reasoning and not self.enable_thinking:
            return text, block
        return block + text, ""

    # Encoding to ids

    def encode_multiturn(
        self, tokenizer: Any, messages: list[dict[str, str]], system: str | None = None, tools: str | None = None
    ) -> list[tuple[list[int], list[int]]]:
        """(prompt_ids, response_ids) per turn."""
        return self.encode_many(tokenizer, [(messages, system, tools)])[0]

    def encode_oneturn(
        self, tokenizer: Any, messages: list[dict[str, str]], system: str | None = None, tools: str | None = None
    ) -> tuple[list[int], list[int]]:
        """(prompt_ids, response_ids) with every earlier turn folded into the prompt."""
        return fold(self.encode_multiturn(tokenizer, messages, system, tools))

    def encode_many(
        self, tokenizer: Any, conversations: list[tuple[list[dict[str, str]], str | None, str | None]]
    ) -> list[list[tuple[list[int], list[int]]]]:
        """encode_multiturn of many (messages, system, tools) at once: one batched tokenizer call for every piece
        of every conversation, several times faster than a call per piece.

        Each distinct piece is encoded once: pieces are encoded on their own, so equal text gives equal ids, and
        preference data repeats them (a pair's prompt on both sides; kto's prompt and answers again in its
        mismatched KL rows), which halves the tokenizer's work for kto. Repeats get their own copy of the ids."""
        if self.use_tokenizer_template:
            return [encode_with_chat_template(tokenizer, m, s, t, self.enable_thinking) for m, s, t in conversations]
        rendered = [self.render(m, s, t) for m, s, t in conversations]
        texts = [text for pairs in rendered for pair in pairs for text in pair]
        unique: dict[str, int] = {}
        for text in texts:
            if text and text not in unique:
                unique[text] = len(unique)
        ids = encode_texts(tokenizer, list(unique)) if unique else []
        used = [False] * len(ids)
        flat = []
        for text in texts:
            if not text:
                flat.append([])
                continue
            index = unique[text]
            flat.append(list(ids[index]) if used[index] else ids[index])
            used[index] = True
        out, k = [], 0
        for pairs in rendered:
            out.append([(flat[k + 2 * i], flat[k + 2 * i + 1]) for i in range(len(pairs))])
            k += 2 * len(pairs)
        return out

    def stop_token_ids(self, tokenizer: Any) -> list[int]:
        """Ids that end generation: the tokenizer's eos and the template's stop words."""
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for word in self.stop_words:
            token_id = tokenizer.convert_tokens_to_ids(word)
            if token_id is not None and token_id != tokenizer.unk_token_id and token_id not in ids:
                ids.append(token_id)
        return ids


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Ids of each text without special tokens added: `tokenizer(texts, add_special_tokens=False)["input_ids"]`.

    A fast tokenizer's Rust backend is called directly (`encode_batch_fast`: threads, no offsets, no Python object
    per encoding), which is what the tokenizer's own call does underneath once padding and truncation are off.
    Other tokenizers, or a backend with truncation or padding set, take the ordinary call.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    if fast is None or backend.truncation is not None or backend.padding is not None:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    split = bool(getattr(tokenizer, "split_special_tokens", False))
    if backend.encode_special_tokens != split:
        backend.encode_special_tokens = split
    return [encoding.ids for encoding in fast(texts, add_special_tokens=False)]


def fold(pairs: list[tuple[list[int], list[int]]]) -> tuple[list[int], list[int]]:
    """Per-turn pairs -> (everything before the last answer, the last answer)."""
    prompt = [i for p, r in pairs[:-1] for i in p + r] + pairs[-1][0]
    return prompt, pairs[-1][1]


def _chat_message(message: dict[str, str]) -> dict[str, Any]:
    """A canonical message as apply_chat_template takes it: observation -> tool, function -> tool_calls."""
    if message["role"] == "observation":
        return {"role": "tool", "content": message["content"]}
    if message["role"] == "function":
        calls = [
            {"type": "function", "function": {"name": n, "arguments": a}} for n, a in parse_calls(message["content"])
        ]
        return {"role": "assistant", "content": "", "tool_calls": calls}
    return {"role": message["role"], "content": message["content"]}


def encode_with_chat_template(
    tokenizer: Any,
    messages: list[dict[str, str]],
    system: str | None = None,
    tools: str | None = None,
    enable_thinking: bool = True,
) -> list[tuple[list[int], list[int]]]:
    """Split the tokenizer's own encoding of a conversation into (prompt_ids, response_ids) per turn.

    The whole conversation is encoded once with apply_chat_template and cut into slices: turn k's prompt ends
    where the encoding of the first 2k+1 messages with a generation prompt ends; its answer ends where the whole
    encoding and that of the first 2k+2 messages part (Phi-3's template closes a conversation with eos, which
    the next turn does not repeat). A template that renders an earlier answer differently once later turns
    follow (Qwen3 drops earlier reasoning) cannot be cut this way beyond one turn: use its named template.
    """
    chat = ([{"role": "system", "content": system}] if system else []) + [_chat_message(m) for m in messages]
    offset = 1 if system else 0
    kwargs: dict[str, Any] = {"tokenize": True, "return_dict": False, "enable_thinking": enable_thinking}
    if tools:
        try:
            kwargs["tools"] = json.loads(tools)
        except json.JSONDecodeError:
            pass

    def encode(upto: int, generation: bool) -> list[int]:
        return list(tokenizer.apply_chat_template(chat[: offset + upto], add_generation_prompt=generation, **kwargs))

    def cannot(turn: int, what: str) -> ValueError:
        return ValueError(
            f"template 'tokenizer': the tokenizer's chat_template {what} in turn {turn}, so prompt and answer "
            "cannot be told apart. Set a named template instead (see core.data.templates.TEMPLATE_NAMES)."
        )

    full = encode(len(messages), len(messages) % 2 == 1)
    pairs, start = [], 0
    for i in range(0, len(messages), 2):
        prompt = encode(i + 1, True)
        if full[: len(prompt)] != prompt or len(prompt) < start:
            raise cannot(i // 2 + 1, "does not render the generation prompt as a prefix of the whole conversation")
        end = len(prompt)
        if i + 1 < len(messages):
            if i + 2 >= len(messages):
                end = len(full)
            else:
                upto = encode(i + 2, False)
                end = next((n for n, (a, b) in enumerate(zip(upto, full, strict=False)) if a != b), len(upto))
            if end <= len(prompt):
                raise cannot(i // 2 + 1, "renders this answer differently once later turns follow")
        pairs.append((full[start : len(prompt)], full[len(prompt) : end]))
        start = end
    return pairs


_QWEN_TOOL_RESPONSE = (
    "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
)
_CHATML = Template(
    name="chatml",
    system="<|im_start|>system\n{content}<|im_end|>\n",
    user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{content}<|im_end|>\n",
    observation="<|im_start|>tool\n{content}<|im_end|>\n<|im_start|>assistant\n",
    stop_words=("<|im_end|>",),
)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in [
        Template(
            name="default",
            system="System: {content}\n",
            user="Human: {content}\nAssistant:",
            assistant=" {content}{eos}\n",
        ),
        Template(name="empty", assistant="{content}{eos}"),
        Template(
            name="alpaca",
            system="{content}\n\n",
            user="### Instruction:\n{content}\n\n### Response:\n",
            assistant="{content}{eos}\n\n",
            default_system=(
                "Below is an instruction that describes a task. Write a response that appropriately completes the "
                "request."
            ),
        ),
        _CHATML,
        replace(
            _CHATML,
            name="qwen",
            default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
            observation=_QWEN_TOOL_RESPONSE,
            tool_format="qwen",
        ),
        replace(_CHATML, name="qwen3", thinking=True, observation=_QWEN_TOOL_RESPONSE, tool_format="qwen"),
        Template(
            name="llama3",
            prefix="{bos}",
            system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
            user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            assistant="{content}<|eot_id|>",
            observation="<|start_header_id|>ipython<|end_header_id|>\n\n{content}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            strip_content=True,
            stop_words=("<|eot_id|>", "<|eom_id|>"),
            tool_format="llama3",
        ),
        Template(
            name="mistral",
            prefix="{bos}",
            user=" [INST] {content} [/INST]",
            assistant=" {content}{eos}",
            function="[TOOL_CALLS] {content}{eos}",
            observation='[TOOL_RESULTS] {"content": {content}}[/TOOL_RESULTS]',
            system_in_user="{system}\n\n{content}",
            tool_format="mistral",
        ),
        Template(
            name="glm4",
            prefix="[gMASK]<sop>",
            system="<|system|>\n{content}",
            user="<|user|>\n{content}<|assistant|>",
            assistant="\n{content}",
            function="{content}",
            observation="<|observation|>\n{content}<|assistant|>",
            suffix="{eos}",
            stop_words=("<|user|>", "<|observation|>"),
            tool_format="glm4",
        ),
        Template(
            name="gemma",
            prefix="{bos}",
            user="<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n",
            assistant="{content}<end_of_turn>\n",
            system_in_user="{system}\n\n{content}",
            strip_content=True,
            stop_words=("<end_of_turn>",),
        ),
        Template(
            name="phi",
            system="<|system|>\n{content}<|end|>\n",
            user="<|user|>\n{content}<|end|>\n<|assistant|>\n",
            assistant="{content}<|end|>\n",
            suffix="{eos}",
            stop_words=("<|end|>",),
        ),
        Template(
            name="deepseek",
            prefix="{bos}",
            system="{content}\n\n",
            user="User: {content}\n\nAssistant:",
            assistant=" {content}{eos}",
        ),
        Template(name="tokenizer", use_tokenizer_template=True),
    ]
}

TEMPLATE_NAMES: list[str] = list(TEMPLATES)

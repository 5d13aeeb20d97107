"""Chat: tool-call parsing and message checks (pure), ChatModel streaming / seeds / stop / tools on the demo model,
the worker protocol through the board's client (two workers side by side, a wrong path, a crash), and the terminal
chat fed through a pipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.chat import normalize_messages, parse_tool_calls, tools_json

ROOT = Path(__file__).resolve().parent.parent
HI = [{"role": "user", "content": "reverse: cat dog sun"}]
TOOLS = [{"name": "get_weather", "description": "Weather in a city", "parameters": {"city": {"type": "string"}}}]


# Pure helpers


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}',
        '```json\n{"name": "get_weather", "parameters": {"city": "Oslo"}}\n```',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}',
        'Action: get_weather\nAction Input: {"city": "Oslo"}',
        '[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]',
    ],
    ids=["hermes", "json", "fenced-llama3", "string-arguments", "action", "openai"],
)
def test_tool_calls_are_parsed_from_the_common_forms(text):
    assert parse_tool_calls(text) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]


def test_plain_answers_have_no_tool_calls_and_several_calls_are_kept_in_order():
    assert parse_tool_calls("The weather in Oslo is mild.") == []
    assert parse_tool_calls('{"city": "Oslo"}') == []  # JSON, but not a call
    assert parse_tool_calls("{not json") == []
    two = '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n<tool_call>{"name": "b", "arguments": {"x": 1}}'
    assert [call["name"] for call in parse_tool_calls(two)] == ["a", "b"]


def test_messages_are_checked_and_mapped_to_template_roles():
    turns, system = normalize_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather?"},
            {"role": "function", "content": '{"name": "get_weather", "arguments": {}}'},
            {"role": "tool", "content": "sunny"},
        ]
    )
    assert system == "Be brief."
    assert [t["role"] for t in turns] == ["user", "function", "observation"]
    with pytest.raises(ValueError, match="the last message is the assistant's"):
        normalize_messages([*HI, {"role": "assistant", "content": "x"}])
    with pytest.raises(ValueError, match="turn 2 is user, expected assistant"):
        normalize_messages([*HI, *HI])
    with pytest.raises(ValueError, match=r"messages\[0\]: role 'bot'"):
        normalize_messages([{"role": "bot", "content": "x"}])
    with pytest.raises(ValueError, match="tools: not valid JSON"):
        tools_json("[{oops")
    assert json.loads(tools_json(TOOLS[0])) == TOOLS  # one definition becomes a list


# The model, in this process


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A temporary LLAMABOARD_CACHE with the tiny demo model, also inherited by the subprocesses below."""
    previous = os.environ.get("LLAMABOARD_CACHE")
    os.environ["LLAMABOARD_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from core.demo import ensure_demo_model

    ensure_demo_model("tiny")
    yield Path(os.environ["LLAMABOARD_CACHE"])
    if previous is None:
        os.environ.pop("LLAMABOARD_CACHE", None)
    else:
        os.environ["LLAMABOARD_CACHE"] = previous


@pytest.fixture(scope="module")
def adapter(cache, tmp_path_factory) -> Path:
    """A LoRA adapter with random weights: the fine-tuned side of a side-by-side chat."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.demo import ensure_demo_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("adapter")
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(ensure_demo_model("tiny")), config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chat_model(cache):
    pytest.importorskip("torch")
    from core.chat import ChatModel

    steps = []
    model = ChatModel(
        {"model_name_or_path": "demo", "template": "chatml", "max_new_tokens": 12}, progress=steps.append
    )
    assert steps[0] == "Reading the arguments" and steps[-1].startswith("Ready:")
    return model


def test_streamed_pieces_add_up_to_the_whole_answer(chat_model):
    pieces = list(chat_model.stream_chat(HI, temperature=0))
    reply = chat_model.chat(HI, temperature=0)
    assert len(pieces) > 1
    assert "".join(pieces) == reply.text
    assert 0 < reply.new_tokens <= 12 and reply.prompt_tokens > 5


def test_a_seed_makes_sampling_repeatable(chat_model):
    gen = {"temperature": 1.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 20}
    first = chat_model.chat(HI, seed=7, **gen).text
    assert chat_model.chat(HI, seed=7, **gen).text == first
    assert "".join(chat_model.stream_chat(HI, seed=7, **gen)) == first
    others = {chat_model.chat(HI, seed=seed, **gen).text for seed in (8, 9, 10)}
    assert others != {first}


def test_setting_stop_ends_the_answer_early(chat_model):
    stop = threading.Event()
    pieces = []
    for piece in chat_model.stream_chat(HI, stop=stop, temperature=1.5, top_k=0, max_new_tokens=60, seed=1):
        pieces.append(piece)
        stop.set()
    assert 1 <= len(pieces) <= 3
    assert chat_model.chat(HI, temperature=1.5, top_k=0, max_new_tokens=60, seed=1).new_tokens > 20


def _force_answer(chat_model, monkeypatch, answer: list[int]) -> None:
    """Make the model generate exactly `answer` (then its end of turn), through the real generate and streamer."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    generate = chat_model.model.generate
    end = chat_model.tokenizer.convert_tokens_to_ids("<|im_end|>")

    class Force(LogitsProcessor):
        def __init__(self, start: int) -> None:
            self.start = start

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, -float("inf"))
            forced[:, answer[step] if step < len(answer) else end] = 0.0
            return forced

    def forced_generate(input_ids, **kwargs):
        force = LogitsProcessorList([Force(input_ids.shape[1])])
        return generate(input_ids=input_ids, logits_processor=force, **kwargs)

    monkeypatch.setattr(chat_model.model, "generate", forced_generate)


def test_answers_are_whole_printable_characters(chat_model, monkeypatch):
    """A model early in training samples byte tokens freely: a character split over three tokens (with a special
    token in between), a control byte and a byte that is no UTF-8 at all. The answer shows none of that."""
    tok = chat_model.tokenizer
    ok, split_char = tok.encode("ok"), tok.encode("あ")
    assert len(split_char) == 3  # one token per byte: the character is only whole after the third
    start_token = tok.convert_tokens_to_ids("<|im_start|>")
    control, not_utf8 = tok.encode("\x18"), tok.convert_tokens_to_ids("ÿ")  # byte 0xff's token
    answer = ok + split_char[:1] + [start_token] + split_char[1:] + control + [not_utf8] + ok
    _force_answer(chat_model, monkeypatch, answer)

    pieces = list(chat_model.stream_chat(HI, max_new_tokens=len(answer) + 1))
    assert "".join(pieces) == chat_model.chat(HI, max_new_tokens=len(answer) + 1).text == "okあok"
    assert "あ" in pieces  # sent whole, once its last byte came


def test_tools_and_system_go_into_the_prompt(chat_model):
    plain = chat_model._prompt_ids(HI, None, None)
    with_tools = chat_model._prompt_ids(HI, "Be brief.", TOOLS)
    text = chat_model.tokenizer.decode(with_tools)
    assert text.startswith("<|im_start|>system\nBe brief.") and '"name": "get_weather"' in text
    assert with_tools[-len(plain) :] == plain
    with pytest.raises(ValueError, match="temprature: not a generation setting"):
        chat_model.chat(HI, temprature=0.5)


def test_the_worker_reports_tool_calls_in_done():
    """The worker's chat request, with a stand-in model that answers with a tool call."""
    from core.chat_worker import Worker

    class Scripted:
        def stream_chat(self, messages, system=None, tools=None, stop=None, **gen):
            yield '{"name": "get_weather", '
            yield '"arguments": {"city": "Oslo"}}'

    out = io.StringIO()
    worker = Worker(out)
    worker.model = Scripted()
    worker.chat({"op": "chat", "messages": HI, "tools": TOOLS})
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["token", "token", "done"]
    assert events[-1]["tool_calls"] == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]


# The worker process, through the board's client


def test_two_workers_side_by_side_stream_base_and_fine_tuned(cache, adapter, tmp_path):
    from core.chat_client import ChatWorker

    base = ChatWorker(log_path=tmp_path / "base.log").start()
    tuned = ChatWorker().start()
    try:
        events = list(base.load({"model_name_or_path": str(tmp_path / "no-model")}))
        assert events[-1]["event"] == "error"
        assert f"model_name_or_path: {tmp_path / 'no-model'} does not exist" in events[-1]["message"]
        assert base.alive and base.loaded is None

        # Both load at once, as the board's side-by-side mode does.
        loads = {}
        threads = [
            threading.Thread(target=lambda w=w, a=a: loads.__setitem__(w, list(w.load(a))))
            for w, a in [
                (base, {"model_name_or_path": "demo", "template": "chatml"}),
                (tuned, {"model_name_or_path": "demo", "template": "chatml", "adapter_name_or_path": str(adapter)}),
            ]
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for worker in (base, tuned):
            kinds = [e["event"] for e in loads[worker]]
            assert kinds[-1] == "ready" and kinds.count("progress") >= 3, loads[worker]
        assert tuned.loaded["adapters"] == [str(adapter)] and base.loaded["adapters"] == []
        assert base.loaded["dtype"] == "float32" and base.loaded["device"] in ("cpu", "cuda:0")

        answers = {}
        for name, worker in (("base", base), ("tuned", tuned)):
            # A system prompt under which the untrained model answers in words (others give control bytes, now hidden).
            events = list(worker.stream(HI, system="Answer.", temperature=0, max_new_tokens=10))
            assert events[-1]["event"] == "done" and events[-1]["stopped"] is False, events[-1]
            tokens = [e["text"] for e in events if e["event"] == "token"]
            assert len(tokens) > 1 and "".join(tokens) == events[-1]["text"]
            answers[name] = events[-1]["text"]
        assert answers["base"] != answers["tuned"]

        # Stop from another thread (the board's Stop button) while tokens stream.
        tokens = 0
        for event in tuned.stream(HI, temperature=1.5, top_k=0, max_new_tokens=400, seed=1):
            if event["event"] == "token":
                tokens += 1
                tuned.stop()
        assert event["event"] == "done" and event["stopped"] is True and tokens < 50

        assert base.unload() == {"event": "unloaded"}
        assert base.ping()["loaded"] is False and tuned.ping()["loaded"] is True
        events = list(base.stream(HI))
        assert events == [{"event": "error", "message": "chat: no model loaded — load one first"}]

        # A crash (here: killed) ends the request with an error; the client survives it.
        tuned.process.kill()
        events = list(tuned.stream(HI))
        assert len(events) == 1 and events[0]["event"] == "error" and "The chat worker" in events[0]["message"]
        assert not tuned.alive and tuned.loaded is None
    finally:
        base.close()
        tuned.close()
    assert base.process is None and (tmp_path / "base.log").is_file()


# The terminal chat


def test_terminal_chat_streams_clears_history_and_exits(cache, tmp_path):
    config = tmp_path / "chat.yaml"
    config.write_text("model_name_or_path: demo\ntemplate: chatml\ntemperature: 0\nmax_new_tokens: 6\n")
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "chat", str(config)],
        input="reverse: cat dog\nclear\nreverse: cat dog\nexit\nnever read\n",
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    turns = result.stdout.split("User: ")
    assert turns[0].startswith("Chat ready.")
    assert turns[1].startswith("Assistant: ") and turns[2] == "History cleared.\n"
    assert turns[3] == turns[1]  # after `clear` the same question gets the same greedy answer
    assert len(turns) == 5 and turns[4] == ""  # `exit` quits before the last line is read


def test_terminal_chat_names_a_wrong_adapter_path(cache, tmp_path, capsys):
    from core.cli import main

    missing = tmp_path / "none"
    status = main(["chat", "model_name_or_path=demo", "template=chatml", f"adapter_name_or_path={missing}"])
    assert status == 2
    assert f"adapter_name_or_path: received '{missing}' — no such folder" in capsys.readouterr().err

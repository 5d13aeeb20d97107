"""Chat tab handlers without a browser, against real chat workers on the demo model: loading shows its steps, a
wrong path says so, answers stream token by token into the chat box (two boxes side by side), tools that are not
JSON are refused, unload ends the worker processes."""

from __future__ import annotations

from typing import Any

import psutil
import pytest

from webui.handlers.chat import _shown_answer
from webui.handlers.events import ALERTS


def _values(**changes: Any) -> dict[str, Any]:
    values = {
        "top.lang": "en",
        "top.model_name": "Demo (offline)",
        "top.model_path": "demo",
        "top.finetuning_type": "lora",
        "top.checkpoint_path": [],
        "top.quantization_bit": "none",
        "top.quantization_method": "bnb",
        "top.template": "chatml",
        "top.rope_scaling": "none",
        "top.booster": "auto",
        "chat.infer_dtype": "auto",
        "chat.side_by_side": False,
        "chat.compare_path": [],
        "chat.query": "Reverse: cat dog sun",
        "chat.role": "user",
        "chat.system": "",
        "chat.tools": "",
        "chat.chatbot": [],
        "chat.chatbot_b": [],
        "chat.history": {},
        "chat.max_new_tokens": 48,
        "chat.top_p": 0.9,
        "chat.temperature": 1.0,
        "chat.seed": 3,
    }
    values.update({f"chat.{key}" if "." not in key else key: value for key, value in changes.items()})
    return values


@pytest.fixture(scope="module")
def infer(ui: Any) -> Any:
    yield ui.infer
    ui.infer.close()


def _alerts(updates: list[dict[str, Any]]) -> list[str]:
    return [text for update in updates for _, text in update.get(ALERTS, [])]


def test_wrong_model_path_is_a_clear_message_and_the_board_stays_up(infer: Any, board_home) -> None:
    missing = board_home / "no-such-model"
    updates = list(infer.chat_load(_values(**{"top.model_name": "Custom", "top.model_path": str(missing)})))
    alerts = _alerts(updates)
    assert alerts and "Could not load the model" in alerts[-1] and str(missing) in alerts[-1]
    assert str(missing) in updates[-1]["chat.info"]
    sent = list(infer.chat_send(_values()))
    assert "Load the model first" in _alerts(sent)[0]


def test_side_by_side_answers_stream_token_by_token_into_both_boxes(infer: Any, monkeypatch) -> None:
    import webui.handlers.chat as handlers_infer

    loading = [update["chat.info"] for update in infer.chat_load(_values(side_by_side=True)) if "chat.info" in update]
    assert "Importing" in loading[1] or "Loading" in loading[1]  # steps are shown while loading, not only the end
    assert "[A] Ready: demo" in loading[-1] and "[B] Ready: demo" in loading[-1]

    # Count what worker A streams, and send every token on (the handler batches tokens that come within 50 ms).
    tokens: list[str] = []
    worker = infer._workers["a"]
    real_stream = worker.stream

    def spy(*args: Any, **kwargs: Any) -> Any:
        for event in real_stream(*args, **kwargs):
            if event["event"] == "token":
                tokens.append(event["text"])
            yield event

    monkeypatch.setattr(worker, "stream", spy)
    monkeypatch.setattr(handlers_infer, "STREAM_INTERVAL_S", 0.0)
    updates = list(infer.chat_send(_values(side_by_side=True, query="Reverse: cat dog", temperature=0)))
    assert not _alerts(updates)
    assert updates[0]["chat.query"] == ""  # the message box empties at once
    final = updates[-1]
    answer_a = final["chat.history"]["a"][-1]["content"]
    answer_b = final["chat.history"]["b"][-1]["content"]
    assert answer_a and answer_a == answer_b == "".join(tokens)  # same model, greedy: the same answer in both
    assert final["chat.chatbot"][-2] == {"role": "user", "content": "Reverse: cat dog"}
    assert final["chat.chatbot"][-1]["content"] == answer_a

    # Streaming: box A showed each growing beginning of the answer, one update per token, before the end.
    assert len(tokens) >= 3, tokens
    shown = [update["chat.chatbot"][-1]["content"] for update in updates[1:] if "chat.chatbot" in update]
    prefixes = ["".join(tokens[: index + 1]) for index in range(len(tokens))]
    assert [text for text in shown if text in prefixes][: len(prefixes)] == prefixes

    # The conversation continues from the history; Clear empties it.
    values = _values(
        side_by_side=True,
        query="Again",
        chatbot=final["chat.chatbot"],
        chatbot_b=final["chat.chatbot_b"],
        history=final["chat.history"],
    )
    again = list(infer.chat_send(values))[-1]
    assert [m["role"] for m in again["chat.history"]["a"]] == ["user", "assistant", "user", "assistant"]
    assert infer.chat_clear(values)["chat.history"] == {}

    # A worker that dies (out of memory, killed) ends only the chat, with a message saying so.
    infer._workers["b"].process.kill()
    infer._workers["b"].process.wait()
    crashed = list(infer.chat_send(values))
    assert len(crashed) == 1 and "[B] The answer failed: The chat worker" in _alerts(crashed)[0]
    assert "exit code -9" in _alerts(crashed)[0] and infer.loaded("a") is not None

    pids = [infer._workers[slot].pid for slot in infer._workers]
    assert "unloaded" in infer.chat_unload(_values())["chat.info"]
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def test_tools_that_are_not_json_are_refused_before_sending(infer: Any) -> None:
    updates = list(infer.chat_send(_values(tools="[{'name': 'calc'}]")))
    assert len(updates) == 1 and "Tools are not valid JSON" in _alerts(updates)[0]


def test_tool_calls_are_shown_as_calls_with_their_arguments() -> None:
    shown = _shown_answer("en", '{"name": "add", "arguments": {"a": 1}}', [{"name": "add", "arguments": {"a": 1}}])
    assert shown[0]["metadata"]["title"] == "Tool call: add"
    assert '"a": 1' in shown[0]["content"]
    assert _shown_answer("en", "plain", []) == [{"role": "assistant", "content": "plain"}]

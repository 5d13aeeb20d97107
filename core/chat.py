"""Chat with a model and its adapters: `ChatModel(args).stream_chat(messages)` yields the answer piece by piece.

The chat worker (`core.chat_worker`, the board's separate chat process) and `llamafactory-cli chat` both drive a
`ChatModel`. Importing this module is cheap (torch and transformers load when a model does), so the pure helpers
below, `parse_tool_calls` and `normalize_messages`, are safe to use from the board.

Messages are `{"role", "content"}` dicts with roles user / assistant / tool (or LLaMA-Factory's observation) /
function; a leading `system` message becomes the system prompt. Tools are a JSON list of function definitions
(a string, or a list the caller has not serialized yet); the template renders them into the prompt, and a tool
call in the answer comes back parsed as `{"name": ..., "arguments": ...}`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.decoding import StreamDecoder, decode_text
from core.errors import ModelPathError

logger = logging.getLogger(__name__)

__all__ = ["ChatModel", "Reply", "check_adapter_paths", "normalize_messages", "parse_tool_calls", "tools_json"]

# Keys a single request may override (GeneratingArguments' fields plus seed).
GENERATION_KEYS = (
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "num_beams",
    "max_length",
    "max_new_tokens",
    "repetition_penalty",
    "length_penalty",
    "skip_special_tokens",
    "seed",
)
_ROLES = {
    "user": "user",
    "assistant": "assistant",
    "tool": "observation",
    "observation": "observation",
    "function": "function",
}


@dataclass
class Reply:
    """A finished answer: its text, the tool calls parsed from it, and token counts."""

    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    new_tokens: int = 0


# Pure helpers


def tools_json(tools: str | list | dict | None) -> str | None:
    """Tool definitions as the JSON text the template renders; raises ValueError naming what is not JSON."""
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            parsed = json.loads(tools)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"tools: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}) — give a JSON list of "
                'function definitions, for example [{"name": "get_weather", "parameters": {...}}]'
            ) from None
    else:
        parsed = tools
    if isinstance(parsed, dict):
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(tool, dict) for tool in parsed):
        raise ValueError("tools: expected a JSON list of objects (one per function) — wrap each definition in {}")
    return json.dumps(parsed, ensure_ascii=False)


def normalize_messages(messages: list[dict[str, Any]], system: str | None = None) -> tuple[list[dict], str | None]:
    """(template messages, system): roles mapped to the template's, a leading system message taken out.

    Raises ValueError when the turns do not alternate user-like / assistant-like or do not end with a user-like
    turn (the model answers the last message).
    """
    out = []
    for index, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            if index != 0:
                raise ValueError(f"messages[{index}]: a system message must come first — move it or use system=")
            system = system or content
            continue
        if role not in _ROLES:
            raise ValueError(
                f"messages[{index}]: role {role!r} — use user, assistant, tool (observation), function or system"
            )
        if not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False) if content is not None else ""
        out.append({"role": _ROLES[role], "content": content})
    if not out:
        raise ValueError("messages: empty — send at least one user message")
    for index, message in enumerate(out):
        user_like = message["role"] in ("user", "observation")
        if user_like != (index % 2 == 0):
            want = "user (or tool)" if index % 2 == 0 else "assistant (or function)"
            raise ValueError(
                f"messages: turn {index + 1} is {message['role']}, expected {want} — turns alternate, starting "
                "with the user"
            )
    if len(out) % 2 == 0:
        raise ValueError("messages: the last message is the assistant's — end with the user message to answer")
    return out, system


_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_ACTION = re.compile(r"Action:\s*(?P<name>[^\n]+?)\s*\nAction Input:\s*(?P<args>.*?)(?=\nAction:|\Z)", re.DOTALL)


_GLM4_CALL = re.compile(r"^(?P<name>[A-Za-z_][\w.-]*)\n(?P<args>\{.*\})$", re.DOTALL)


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _as_call(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI's {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    return {"name": name, "arguments": arguments}


def _calls_from_json(text: str) -> list[dict[str, Any]] | None:
    fenced = _FENCE.match(text.strip())
    try:
        parsed = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        return None
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = [_as_call(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls in an answer, each `{"name", "arguments"}`; [] when the answer is plain text.

    Understood forms: `<tool_call>{...}</tool_call>` blocks (Qwen / Hermes), an answer that is only a JSON object
    or list of them with `name` and `arguments` (or `parameters`, Llama 3), possibly in a ```json fence or after
    Mistral's `[TOOL_CALLS]`, GLM-4's `name` line followed by the arguments object, and LLaMA-Factory's
    `Action: name` / `Action Input: {...}` lines (every tool_format of core.data.tool_formats).
    """
    text = text.strip().removeprefix("[TOOL_CALLS]").strip()  # Mistral's marker, when decoded as text
    if not text:
        return []
    glm4 = _GLM4_CALL.match(text)  # GLM-4: the name on its own line, then the arguments
    if glm4 and isinstance(_json_or_none(glm4.group("args")), dict):
        return [{"name": glm4.group("name"), "arguments": json.loads(glm4.group("args"))}]
    if "<tool_call>" in text:
        calls = []
        for block in _TOOL_CALL_TAG.findall(text):
            found = _calls_from_json(block)
            if found:
                calls.extend(found)
        return calls
    if text[0] in "{[`":
        return _calls_from_json(text) or []
    calls = []
    for match in _ACTION.finditer(text):
        arguments: Any = match.group("args").strip()
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
        calls.append({"name": match.group("name").strip(), "arguments": arguments})
    return calls


def check_adapter_paths(adapters: list[str]) -> None:
    """A missing adapter folder, or one without adapter_config.json, named before any weights are read."""
    for adapter in adapters:
        path = Path(adapter).expanduser()
        if path.is_dir():
            if not (path / "adapter_config.json").is_file():
                raise ModelPathError(
                    f"adapter_name_or_path: {adapter} has no adapter_config.json — point it at a LoRA run's output "
                    "folder (or one of its checkpoint-N folders)"
                )
        elif adapter.startswith((".", "/", "~")) or adapter.count("/") > 1 or path.exists():
            raise ModelPathError(
                f"adapter_name_or_path: {adapter} does not exist — check the path (relative to {Path.cwd()})"
            )


def resolve_infer_dtype(model_args: Any, path: str) -> Any:
    """The torch dtype of `infer_dtype`; for auto the one the model's config names (float32 when it names none)."""
    import torch

    if model_args.infer_dtype != "auto":
        return getattr(torch, model_args.infer_dtype)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


# The model


class ChatModel:
    """A model with its adapters merged, its tokenizer and template, ready to answer.

    `args` is an argument dict (or YAML path / argv) with model_name_or_path, adapter_name_or_path, template,
    infer_dtype and the generation keys (GeneratingArguments), which are the defaults of every request.
    `progress(message)` is called at each loading step. Raises ArgumentError, or FileNotFoundError / ValueError
    with a message naming the key, for arguments that cannot load.
    """

    def __init__(self, args: dict | str | list[str] | None, progress: Callable[[str], None] | None = None) -> None:
        report = progress or (lambda message: logger.info("%s", message))
        report("Reading the arguments")
        import torch

        from core.data.template import get_template_and_fix_tokenizer
        from core.hparams import get_infer_args
        from core.model import load_model, load_tokenizer
        from core.model.loader import resolve_model_path

        self.model_args, self.data_args, self.finetuning_args, self.generating_args = get_infer_args(args)
        check_adapter_paths(self.model_args.adapters)
        report(f"Loading the tokenizer of {self.model_args.model_name_or_path}")
        self.tokenizer = load_tokenizer(self.model_args)
        dtype = resolve_infer_dtype(self.model_args, resolve_model_path(self.model_args.model_name_or_path))
        if dtype == torch.float16 and not torch.cuda.is_available():
            # Half precision on the CPU is slow where it works at all; auto should not pick it there.
            logger.info("No GPU: computing in float32 instead of the config's float16.")
            dtype = torch.float32
        self.model_args.compute_dtype = dtype
        self.template = get_template_and_fix_tokenizer(self.tokenizer, self.data_args)
        adapters = self.model_args.adapters
        what = f" with {len(adapters)} adapter(s): {', '.join(adapters)}" if adapters else ""
        report(f"Loading the model in {str(dtype).removeprefix('torch.')}{what}")
        model = load_model(self.tokenizer, self.model_args, self.finetuning_args, is_trainable=False)
        if torch.cuda.is_available() and not getattr(model, "hf_device_map", None):
            report("Moving the model to the GPU")
            model = model.to("cuda")
        self.model = model
        self.device = next(model.parameters()).device
        self.stop_ids = self.template.stop_token_ids(self.tokenizer)
        self.lock = threading.Lock()  # one generation at a time: two would interleave on the device anyway
        report(f"Ready: {sum(p.numel() for p in model.parameters()):,} parameters on {self.device}")

    # Requests

    def _prompt_ids(self, messages: list[dict], system: str | None, tools: Any) -> list[int]:
        turns, system = normalize_messages(messages, system)
        prompt, _ = self.template.encode_oneturn(self.tokenizer, turns, system, tools_json(tools))
        limit = self.model_args.model_max_length
        if limit and len(prompt) > limit:
            # Keep the end: the latest turns matter most, and generation must start right after the prompt.
            logger.warning("The prompt has %d tokens; keeping the last %d (cutoff_len).", len(prompt), limit)
            prompt = prompt[-limit:]
        return prompt

    def _generate_kwargs(self, gen: dict[str, Any]) -> tuple[dict[str, Any], bool, int | None]:
        unknown = sorted(set(gen) - set(GENERATION_KEYS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a generation setting — use {', '.join(GENERATION_KEYS)}")
        from dataclasses import replace

        settings = {key: value for key, value in gen.items() if value is not None}
        seed = settings.pop("seed", None)
        merged = replace(self.generating_args, **settings)
        if merged.temperature <= 0:  # LLaMA-Factory's convention (YAML or request): temperature 0 is greedy
            merged = replace(merged, temperature=1.0, do_sample=False)
        kwargs = merged.to_generate_kwargs()
        kwargs["eos_token_id"] = self.stop_ids or self.tokenizer.eos_token_id
        kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        return kwargs, merged.skip_special_tokens, seed

    def stream_chat(
        self,
        messages: list[dict],
        system: str | None = None,
        tools: str | list | None = None,
        stop: threading.Event | None = None,
        **gen: Any,
    ) -> Iterator[str]:
        """The answer to the last user message, piece by piece as tokens are generated.

        `gen` overrides the generation settings for this request (temperature, top_p, max_new_tokens, seed, ...;
        seed makes sampling repeatable). Setting `stop` ends the answer after the current token.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, set_seed

        prompt = self._prompt_ids(messages, system, tools)
        kwargs, skip_special, seed = self._generate_kwargs(gen)
        # A caller that stops reading (a closed generator) must not leave generation running: we set it then.
        stop = stop if stop is not None else threading.Event()
        streamer = _readable_streamer(self.tokenizer, skip_special)

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **_: Any) -> torch.BoolTensor:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with self.lock:
                    if seed is not None:
                        set_seed(int(seed))
                    input_ids = torch.tensor([prompt], device=self.device)
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stop()]),
                        **kwargs,
                    )
            except BaseException as err:  # re-raised in the caller's thread below
                failure.append(err)
                streamer.end()

        thread = threading.Thread(target=generate, name="chat-generate", daemon=True)
        thread.start()
        finished = False
        try:
            for piece in streamer:
                if piece:
                    yield piece
            finished = True
        finally:
            if not finished:
                stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def chat(
        self, messages: list[dict], system: str | None = None, tools: str | list | None = None, **gen: Any
    ) -> Reply:
        """The whole answer at once, with tool calls parsed and token counts."""
        import torch
        from transformers import set_seed

        prompt = self._prompt_ids(messages, system, tools)
        kwargs, skip_special, seed = self._generate_kwargs(gen)
        with self.lock:
            if seed is not None:
                set_seed(int(seed))
            input_ids = torch.tensor([prompt], device=self.device)
            with torch.no_grad():
                output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        new = output[0, len(prompt) :].tolist()
        text = decode_text(self.tokenizer, new, skip_special)
        return Reply(text=text, tool_calls=parse_tool_calls(text), prompt_tokens=len(prompt), new_tokens=len(new))

    def close(self) -> None:
        """Free the model's memory (the worker's `unload`)."""
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _readable_streamer(tokenizer: Any, skip_special_tokens: bool):
    """transformers' iterator streamer, fed by a `StreamDecoder`: every piece is whole printable characters (its own
    word-boundary heuristic would still hand out a half character, a control byte, or a replacement character)."""
    from transformers import TextIteratorStreamer

    class ReadableStreamer(TextIteratorStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True)
            self.decoder = StreamDecoder(tokenizer, skip_special_tokens)

        def put(self, value: Any) -> None:
            if self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            piece = self.decoder.push(value.reshape(-1).tolist())
            if piece:
                self.on_finalized_text(piece)

        def end(self) -> None:
            self.on_finalized_text(self.decoder.flush(), stream_end=True)

    return ReadableStreamer()

"""A sharegpt dataset with tool calls (function_call / observation turns and a tools column) trains on the demo model
with the family's own tool markup: labels only on the assistant's answers and its tool calls, and the loss falls."""

from __future__ import annotations

import json
from pathlib import Path

from core.runfolder import read_log_records

CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Rome", "Delhi"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def write_dataset(folder: Path, rows: int = 48) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "tools.jsonl").open("w", encoding="utf-8") as f:
        for i in range(rows):
            city, degrees = CITIES[i % len(CITIES)], 10 + i % 17
            conversation = [
                {"from": "human", "value": f"What is the weather in {city}?"},
                {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": city}})},
                {"from": "observation", "value": json.dumps({"degrees": degrees})},
                {"from": "gpt", "value": f"It is {degrees} degrees in {city}."},
            ]
            f.write(json.dumps({"conversations": conversation, "tools": json.dumps(TOOLS)}) + "\n")
    info = {
        "tools_demo": {
            "file_name": "tools.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "tools": "tools"},
        }
    }
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")


def test_tool_calls_train_with_labels_on_answers_and_calls_only(make_args, tmp_path):
    from core import run_exp
    from core.data.loader import get_dataset
    from core.data.template import get_template_and_fix_tokenizer
    from core.hparams import get_train_args
    from core.model.loader import load_tokenizer

    write_dataset(tmp_path / "data")
    args = make_args(
        "sft",
        dataset_dir=str(tmp_path / "data"),
        dataset="tools_demo",
        template="qwen",
        cutoff_len=1024,
        max_samples=None,
        max_steps=16,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
    )

    model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(args))
    tokenizer = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    sample = get_dataset(template, model_args, data_args, training_args, "sft", tokenizer)["train_dataset"][0]
    text = tokenizer.decode(sample["input_ids"])
    learned = tokenizer.decode([i for i in sample["labels"] if i != -100])
    city, degrees = "Paris", 10
    assert "# Tools" in text and '<tools>\n{"type": "function"' in text  # the definitions, Qwen's way
    assert f'<tool_response>\n{{"degrees": {degrees}}}\n</tool_response>' in text
    assert learned == (
        f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}\n</tool_call><|im_end|>\n'
        f"It is {degrees} degrees in {city}.<|im_end|>\n"
    )

    run_exp(args)
    losses = [r["loss"] for r in read_log_records(Path(args["output_dir"]) / "trainer_log.jsonl") if "loss" in r]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0], losses

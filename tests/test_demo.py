"""The offline demo model and the demo datasets (core/demo.py, assets/data)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import demo
from core.paths import DEMO_DATA_DIR

# ---------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    # Import first: the promise is about building (about half a second here), not about importing the stack.
    import tokenizers  # noqa: F401
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: F401

    folder = tmp_path_factory.mktemp("demo") / "model"
    start = time.perf_counter()
    demo.build_demo_model(folder, seed=7)
    return folder, time.perf_counter() - start


def test_builds_fast_and_loads_with_auto_classes(built: tuple[Path, float]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, seconds = built
    assert seconds < 10, f"building the tiny demo model took {seconds:.1f} s"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 < n_params < 1_000_000
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert 256 < len(tokenizer) <= 1024

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Reverse: cat dog"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert torch.equal(out[0, : prompt["input_ids"].shape[1]], prompt["input_ids"][0])


def test_same_seed_gives_identical_files(built: tuple[Path, float], tmp_path: Path) -> None:
    folder, _ = built
    again = demo.build_demo_model(tmp_path / "again", seed=7)
    other = demo.build_demo_model(tmp_path / "other", seed=8)
    assert _hashes(again) == _hashes(folder)
    assert _hashes(other)["model.safetensors"] != _hashes(folder)["model.safetensors"]
    assert _hashes(other)["tokenizer.json"] == _hashes(folder)["tokenizer.json"]


def test_same_tokenizer_in_a_fresh_process() -> None:
    # tokenizers' trainer uses hash maps; a fresh interpreter checks nothing depends on their order.
    code = "from core.demo import train_bpe; print(train_bpe(512).to_str())"
    fresh = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert fresh.stdout.strip() == demo.train_bpe(512).to_str()


def test_chat_template_is_chatml_and_ends_assistant_turns_with_eos(built: tuple[Path, float]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built[0])
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_token and tokenizer.pad_token and tokenizer.pad_token_id != tokenizer.eos_token_id
    messages = [
        {"role": "system", "content": "Reply briefly."},
        {"role": "user", "content": "3+4="},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Uppercase: cat"},
        {"role": "assistant", "content": "CAT"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\nReply briefly.<|im_end|>\n<|im_start|>user\n3+4=<|im_end|>\n"
        "<|im_start|>assistant\n7<|im_end|>\n<|im_start|>user\nUppercase: cat<|im_end|>\n"
        "<|im_start|>assistant\nCAT<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\n3+4=<|im_end|>\n<|im_start|>assistant\n")

    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assistant = [i for i, m in zip(ids, mask, strict=True) if m]
    # Each assistant turn is its content and then eos: that is what training learns to stop on.
    assert tokenizer.decode(assistant) == "7<|im_end|>CAT<|im_end|>"
    assert sum(1 for i in assistant if i == tokenizer.eos_token_id) == 2
    # The markers are single tokens, never spelled out byte by byte.
    assert tokenizer.convert_tokens_to_ids("<|im_start|>") in ids


def test_task_words_and_digits_are_single_tokens(built: tuple[Path, float]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built[0])
    for word in demo.WORDS:
        for form in (f" {word}", f" {word.upper()}"):
            assert len(tokenizer.tokenize(form)) == 1, (form, tokenizer.tokenize(form))
    assert tokenizer.tokenize("12+7=19") == ["1", "2", "+", "7", "=", "1", "9"]
    text = "Reverse: owl fox\nCAT DOG 3+4=7"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_small_size_is_about_30m_parameters() -> None:
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = demo.build_tokenizer(demo.SIZES["small"].vocab_size)
    with torch.device("meta"):
        model = LlamaForCausalLM(demo.demo_config("small", tokenizer))
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 40e6


def test_importing_core_demo_does_not_import_the_training_stack() -> None:
    code = (
        "import sys, core.demo; "
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------------------------------------------
# Cache and names
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLAMABOARD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_ensure_demo_model_builds_once_and_repairs(cache: Path) -> None:
    path = demo.ensure_demo_model()
    assert path == cache / "demo-model"
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert demo.ensure_demo_model() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp, "a complete model was rebuilt"

    (path / "tokenizer.json").unlink()  # an interrupted copy, a user's cleanup...
    assert demo.ensure_demo_model() == path
    assert (path / "tokenizer.json").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["demo-model"], "temporary folders were left behind"


def test_racing_builders_never_expose_half_a_model(cache: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(demo.ensure_demo_model())
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 3
    assert all(demo._is_complete(p, "tiny", demo.DEFAULT_SEED) for p in results)
    assert sorted(p.name for p in cache.iterdir()) == ["demo-model"]


def test_resolve_model_path(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert demo.resolve_model_path("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert demo.resolve_model_path("/models/x") == "/models/x"
    assert demo.resolve_model_path("demo") == str(cache / "demo-model")

    workdir = tmp_path / "work"
    (workdir / "demo").mkdir(parents=True)
    monkeypatch.chdir(workdir)
    assert demo.resolve_model_path("demo") == "demo", "a real folder named demo must win"


def test_cli_output_dir_never_overwrites_foreign_files(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        demo.main(["--output-dir", str(folder), "--force"])
    assert exc.value.code == 2
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]

    target = tmp_path / "model"
    assert demo.main(["--output-dir", str(target), "--seed", "3"]) == 0
    assert json.loads((target / "demo.json").read_text())["seed"] == 3


# ---------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(path.read_text(encoding="utf-8"))


def _solve(prompt: str) -> str:
    """The right answer, worked out from the prompt text alone (independently of core.demo)."""
    if prompt.endswith("="):
        a, b = prompt[:-1].split("+")
        return str(int(a) + int(b))
    head, _, rest = prompt.partition("\n")
    words = (rest or head.split(": ", 1)[1]).split()
    if head.startswith("Reverse"):
        return " ".join(reversed(words))
    if head.startswith("Copy"):
        return " ".join(words)
    if "uppercase" in head.lower():
        return " ".join(w.upper() for w in words)
    raise AssertionError(f"unrecognised demo prompt {prompt!r}")


def _alpaca_prompt(row: dict) -> str:
    return f"{row['instruction']}\n{row['input']}" if row["input"] else row["instruction"]


INFO = json.loads((DEMO_DATA_DIR / "dataset_info.json").read_text(encoding="utf-8"))


def test_committed_data_equals_a_fresh_generation() -> None:
    fresh = demo.demo_data_files()
    committed = {p.name for p in DEMO_DATA_DIR.iterdir() if p.suffix in (".json", ".jsonl")}
    assert committed == set(fresh), "run `python -m core.demo --write-data` and commit assets/data"
    for name, text in fresh.items():
        assert (DEMO_DATA_DIR / name).read_text(encoding="utf-8") == text, (
            f"assets/data/{name} differs from core.demo's generator: run `python -m core.demo --write-data`"
        )
    assert sum((DEMO_DATA_DIR / n).stat().st_size for n in fresh) < 1_000_000


def test_dataset_info_lists_every_demo_dataset() -> None:
    expected = {
        "demo_sft": 1000,
        "demo_sft_eval": 48,
        "demo_sharegpt": 300,
        "demo_openai": 100,
        "demo_pt": 500,
        "demo_pref": 500,
        "demo_pref_sharegpt": 200,
        "demo_kto": 600,
        "demo_ppo": 300,
        "demo_grpo": 400,
    }
    assert set(INFO) == set(expected)
    for name, count in expected.items():
        assert len(_load(DEMO_DATA_DIR / INFO[name]["file_name"])) == count, name


@pytest.mark.parametrize("name", sorted(INFO))
def test_declared_columns_and_tags_exist_in_every_row(name: str) -> None:
    entry = INFO[name]
    rows = _load(DEMO_DATA_DIR / entry["file_name"])
    formatting = entry.get("formatting", "alpaca")
    default_columns = (
        {"prompt": "instruction", "query": "input", "response": "output"} if formatting == "alpaca" else {}
    )
    columns = entry.get("columns", default_columns)
    tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}
    tags |= {"system_tag": "system"} | entry.get("tags", {})
    roles = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"]}
    for i, row in enumerate(rows):
        for key, column in columns.items():
            assert column in row, f"{name} row {i}: no column {column!r} (declared as {key})"
        if formatting == "sharegpt":
            messages = row[columns["messages"]]
            assert messages and all(m[tags["role_tag"]] in roles for m in messages), (name, i)
            turns = [m for m in messages if m[tags["role_tag"]] != tags["system_tag"]]
            expected_roles = [tags["user_tag"], tags["assistant_tag"]] * len(turns)
            assert [m[tags["role_tag"]] for m in turns] == expected_roles[: len(turns)], (name, i)
            # Ranking rows end on a user turn (the answers are in chosen/rejected); the rest on the assistant.
            assert len(turns) % 2 == (1 if entry.get("ranking") else 0), (name, i)
    if "kto_tag" in columns:
        assert all(isinstance(row[columns["kto_tag"]], bool) for row in rows)


def test_answers_are_right_and_rejected_answers_plausibly_wrong() -> None:
    # demo_grpo's references are what grpo's exact_match rewards: a wrong one would teach wrong answers.
    for row in (
        _load(DEMO_DATA_DIR / "demo_sft.json")
        + _load(DEMO_DATA_DIR / "demo_ppo.json")
        + _load(DEMO_DATA_DIR / "demo_grpo.json")
    ):
        assert row["output"] == _solve(_alpaca_prompt(row)), row

    pref = _load(DEMO_DATA_DIR / "demo_pref.json")
    for row in pref:
        assert row["chosen"] == _solve(_alpaca_prompt(row)) != row["rejected"], row
        # Plausible: the same length in words (or a number), not noise.
        assert len(row["rejected"].split()) == len(row["chosen"].split()), row
    arithmetic = [r for r in pref if r["instruction"].endswith("=")]
    assert arithmetic and all(abs(int(r["chosen"]) - int(r["rejected"])) == 1 for r in arithmetic)

    for row in _load(DEMO_DATA_DIR / "demo_pref_sharegpt.json"):
        assert row["chosen"]["value"] == _solve(row["conversations"][-1]["value"]) != row["rejected"]["value"]

    kto = _load(DEMO_DATA_DIR / "demo_kto.jsonl")
    for row in kto:
        user, answer = (m["value"] for m in row["conversations"])
        assert (answer == _solve(user)) == row["kto_tag"], row
    share = sum(row["kto_tag"] for row in kto) / len(kto)
    assert 0.35 < share < 0.65, f"kto desirable share {share:.2f}"


def test_multi_turn_data_is_right_and_has_system_prompts() -> None:
    share = _load(DEMO_DATA_DIR / "demo_sharegpt.jsonl")
    assert any(len(r["conversations"]) > 2 for r in share) and any(r["system"] for r in share)
    for row in share:
        turns = row["conversations"]
        for user, answer in zip(turns[::2], turns[1::2], strict=True):
            assert answer["value"] == _solve(user["value"])
    openai = _load(DEMO_DATA_DIR / "demo_openai.jsonl")
    assert any(r["messages"][0]["role"] == "system" for r in openai)


def test_eval_prompts_are_held_out_of_every_training_set() -> None:
    held_out = {_alpaca_prompt(r) for r in _load(DEMO_DATA_DIR / "demo_sft_eval.json")}
    assert {_solve(p) for p in held_out}, "eval set is empty"
    seen = {
        _alpaca_prompt(r)
        for name in ("demo_sft.json", "demo_pref.json", "demo_ppo.json", "demo_grpo.json")
        for r in _load(DEMO_DATA_DIR / name)
    }
    for name in ("demo_sharegpt.jsonl", "demo_pref_sharegpt.json", "demo_kto.jsonl"):
        seen |= {m["value"] for r in _load(DEMO_DATA_DIR / name) for m in r["conversations"] if m["from"] == "human"}
    seen |= {m["content"] for r in _load(DEMO_DATA_DIR / "demo_openai.jsonl") for m in r["messages"]}
    assert not held_out & seen
    # Every task is evaluated.
    kinds = {("sum" if p.endswith("=") else p.split()[0].rstrip(":")) for p in held_out}
    assert {"sum", "Reverse", "Copy"} <= kinds and kinds & {"Uppercase", "Write"}


def test_the_wheel_ships_the_demo_data() -> None:
    # LlamaBoard's wheel shipped no data; ours must, or `dataset_dir: demo` is empty outside a checkout.
    pyproject = (DEMO_DATA_DIR.parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    package_data = re.search(r'^"\*" = \[(.*?)\]', pyproject, re.M | re.S).group(1)
    globs = re.findall(r'"([^"]+)"', package_data)
    for name in demo.demo_data_files():
        assert any(fnmatch.fnmatchcase(name, g) for g in globs), f"{name} is not in pyproject's package-data"
    assert (DEMO_DATA_DIR / "__init__.py").is_file(), "assets.data must stay a package to be found"

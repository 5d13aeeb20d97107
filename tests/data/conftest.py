"""Fixtures for the data tests: a small byte-level BPE tokenizer knowing every template family's special tokens,
argument objects, and a helper that writes a dataset_dir."""

from __future__ import annotations

import pytest

SPECIAL_TOKENS = [
    "<s>",
    "</s>",
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<bos>",
    "<eos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<think>",
    "</think>",
]

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "Reverse the words: red fox jumps. jumps fox red",
    "You are a helpful assistant. Answer briefly and correctly.",
    "Add the numbers 12 and 30. The sum is 42.",
    "system user assistant model Human Assistant User tool ipython",
    "Hello there! How are you today? I am fine, thank you.",
    "Let me think step by step about it before answering.",
]


@pytest.fixture(scope="session")
def base_tokenizer_json() -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Newlines are pre-tokens of their own, as in the Llama 3 / Qwen regexes, so "\n\n" never merges with text.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex("\n"), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    return tok.to_str()


@pytest.fixture(scope="session")
def make_tokenizer(base_tokenizer_json):
    """make_tokenizer(bos="<s>", eos="</s>", pad=None, chat_template=None) -> a fresh fast tokenizer."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    def make(bos: str | None = "<s>", eos: str | None = "</s>", pad: str | None = None, chat_template=None):
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(base_tokenizer_json), bos_token=bos, eos_token=eos, pad_token=pad
        )
        if chat_template is not None:
            tok.chat_template = chat_template
        return tok

    return make


@pytest.fixture
def tokenizer(make_tokenizer):
    return make_tokenizer()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Preprocessing caches go to a temporary folder, never to the user's ~/.cache."""
    monkeypatch.setenv("LLAMABOARD_CACHE", str(tmp_path / "cache"))


WORDS = ["\n", " ", "user", "assistant", "system", "tool", "hello", "world", "good", "bad", "text"]
WORDS += [f"{kind}{i}" for kind in ("q", "a", "c", "r", "w") for i in range(1, 10)]


@pytest.fixture(scope="session")
def word_tokenizer_json() -> str:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(["[UNK]", *SPECIAL_TOKENS, *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\n ]"), "isolated")
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok.to_str()


@pytest.fixture
def word_tokenizer(word_tokenizer_json):
    """One token per word, space, newline or special token, so expected ids can be written out by hand."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(word_tokenizer_json), eos_token="<|im_end|>", unk_token="[UNK]"
    )
    return tok

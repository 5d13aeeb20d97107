"""Every processor's ids and labels, position by position, on hand-made conversations.

The word tokenizer gives one token per word, space, newline and special token, so expectations are written out
as token strings. `_` marks a position whose label is IGNORE_INDEX.
"""

from __future__ import annotations

import pytest
from datahelp import data_args

from core.data.processor.common import IGNORE_INDEX, fit_turn
from core.data.processor.feedback import preprocess_feedback
from core.data.processor.pairwise import preprocess_pairwise
from core.data.processor.pretrain import preprocess_pretrain
from core.data.processor.supervised import pack, pack_bins, preprocess_supervised
from core.data.processor.unsupervised import preprocess_unsupervised
from core.data.template import get_template_and_fix_tokenizer

_ = "_"
S, E, NL = "<|im_start|>", "<|im_end|>", "\n"


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def batch(*rows):
    """Canonical rows -> the batched dict a processor receives."""
    keys = ("_prompt", "_response", "_system", "_tools", "_kto_tag")
    defaults = {"_system": "", "_tools": "", "_kto_tag": None}
    return {k: [row.get(k, defaults.get(k)) for row in rows] for k in keys}


def run(processor, tokenizer, rows, **args):
    args = data_args(template="chatml", **args)
    template = get_template_and_fix_tokenizer(tokenizer, args)
    return processor(batch(*rows), template=template, tokenizer=tokenizer, data_args=args)


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def shown_labels(tokenizer, labels):
    return [_ if i == IGNORE_INDEX else tokenizer.convert_ids_to_tokens(i) for i in labels]


def prompt_tokens(text):
    return [S, "user", NL, text, E, NL, S, "assistant", NL]


def answer_tokens(text):
    return [text, E, NL]


def test_supervised_masks_the_prompt(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [{"_prompt": [user("q1")], "_response": [bot("a1")]}])
    assert tokens(word_tokenizer, out["input_ids"][0]) == prompt_tokens("q1") + answer_tokens("a1")
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 9 + ["a1", E, NL]
    assert out["attention_mask"][0] == [1] * 12


def test_supervised_system_prompt_is_context_only(word_tokenizer):
    row = {"_prompt": [user("q1")], "_response": [bot("a1")], "_system": "hello"}
    out = run(preprocess_supervised, word_tokenizer, [row])
    system = [S, "system", NL, "hello", E, NL]
    assert tokens(word_tokenizer, out["input_ids"][0]) == system + prompt_tokens("q1") + answer_tokens("a1")
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 15 + ["a1", E, NL]


MULTI = {"_prompt": [user("q1"), bot("a1"), user("q2")], "_response": [bot("a2")]}


def test_supervised_learns_every_turn_of_a_conversation(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [MULTI])
    expected = prompt_tokens("q1") + answer_tokens("a1") + prompt_tokens("q2") + answer_tokens("a2")
    assert tokens(word_tokenizer, out["input_ids"][0]) == expected
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 9 + ["a1", E, NL] + [_] * 9 + ["a2", E, NL]


def test_mask_history_learns_the_last_answer_only(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [MULTI], mask_history=True)
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 21 + ["a2", E, NL]


def test_train_on_prompt_learns_everything(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [MULTI], train_on_prompt=True)
    assert out["labels"][0] == out["input_ids"][0]


def test_truncation_keeps_the_prompt_end_and_the_answer_start(word_tokenizer):
    row = {"_prompt": [user("q1")], "_response": [bot("a1 a2 a3 a4 a5 a6")]}
    out = run(preprocess_supervised, word_tokenizer, [row], cutoff_len=10)
    # 9 prompt + 13 answer tokens into 10: both are long, so each keeps half.
    assert tokens(word_tokenizer, out["input_ids"][0]) == [E, NL, S, "assistant", NL, "a1", " ", "a2", " ", "a3"]
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 5 + ["a1", " ", "a2", " ", "a3"]


def test_truncation_drops_later_turns_that_do_not_fit(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [MULTI], cutoff_len=14)
    # Turn 1 (12 tokens) fits; turn 2 gets 2 tokens: one answer token (half of the budget) and one prompt token.
    assert tokens(word_tokenizer, out["input_ids"][0]) == prompt_tokens("q1") + answer_tokens("a1") + [NL, "a2"]
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 9 + ["a1", E, NL, _, "a2"]


def test_mask_history_truncation_keeps_the_last_turn(word_tokenizer):
    out = run(preprocess_supervised, word_tokenizer, [MULTI], cutoff_len=12, mask_history=True)
    assert tokens(word_tokenizer, out["input_ids"][0]) == prompt_tokens("q2") + answer_tokens("a2")
    assert shown_labels(word_tokenizer, out["labels"][0]) == [_] * 9 + ["a2", E, NL]


def test_sample_with_nothing_left_to_learn_is_dropped(word_tokenizer):
    rows = [{"_prompt": [user("q1")], "_response": [bot("")]}, {"_prompt": [user("q2")], "_response": [bot("a2")]}]
    out = run(preprocess_supervised, word_tokenizer, rows, cutoff_len=1)
    assert out["input_ids"] == []  # one token of budget goes to the prompt end: no answer token survives


@pytest.mark.parametrize(
    ("prompt", "response", "budget", "expected"),
    [(3, 4, 10, (3, 4)), (9, 3, 10, (7, 3)), (2, 20, 10, (2, 8)), (20, 20, 10, (5, 5)), (5, 5, 0, (0, 0))],
)
def test_fit_turn_rule(prompt, response, budget, expected):
    assert fit_turn(prompt, response, budget) == expected


def test_unsupervised_gives_the_generation_prompt_and_the_reference(word_tokenizer):
    rows = [MULTI, {"_prompt": [user("q3")], "_response": []}]
    out = run(preprocess_unsupervised, word_tokenizer, rows)
    assert tokens(word_tokenizer, out["input_ids"][0]) == prompt_tokens("q1") + answer_tokens("a1") + prompt_tokens(
        "q2"
    )
    assert tokens(word_tokenizer, out["labels"][0]) == answer_tokens("a2")
    assert tokens(word_tokenizer, out["input_ids"][1]) == prompt_tokens("q3")
    assert tokens(word_tokenizer, out["labels"][1]) == [E, NL]  # no reference answer: just the end of turn
    assert out["prompt"] == ["q2", "q3"]  # the last user turn's text, as generated_predictions.jsonl shows it


def test_pairwise_shares_the_prompt_and_masks_it(word_tokenizer):
    row = {"_prompt": [user("q1")], "_response": [bot("c1"), bot("r1 r2")]}
    out = run(preprocess_pairwise, word_tokenizer, [row])
    assert tokens(word_tokenizer, out["chosen_input_ids"][0]) == prompt_tokens("q1") + answer_tokens("c1")
    assert tokens(word_tokenizer, out["rejected_input_ids"][0]) == prompt_tokens("q1") + ["r1", " ", "r2", E, NL]
    assert shown_labels(word_tokenizer, out["chosen_labels"][0]) == [_] * 9 + ["c1", E, NL]
    assert shown_labels(word_tokenizer, out["rejected_labels"][0]) == [_] * 9 + ["r1", " ", "r2", E, NL]
    assert out["chosen_attention_mask"][0] == [1] * 12 and out["rejected_attention_mask"][0] == [1] * 14


def test_pairwise_truncation_sizes_both_answers_by_the_longer(word_tokenizer):
    row = {"_prompt": [user("q1")], "_response": [bot("c1"), bot("r1 r2 r3 r4 r5 r6 r7")]}
    out = run(preprocess_pairwise, word_tokenizer, [row], cutoff_len=12)
    # longer answer 15 tokens, prompt 9: each keeps 6; the short chosen answer keeps all 3 of its tokens.
    assert tokens(word_tokenizer, out["chosen_input_ids"][0]) == prompt_tokens("q1")[3:] + answer_tokens("c1")
    rejected = prompt_tokens("q1")[3:] + ["r1", " ", "r2", " ", "r3", " "]
    assert tokens(word_tokenizer, out["rejected_input_ids"][0]) == rejected


def test_feedback_pairs_each_prompt_with_the_next_answer_for_kl(word_tokenizer):
    rows = [
        {"_prompt": [user("q1")], "_response": [bot("a1")], "_kto_tag": True},
        {"_prompt": [user("q2")], "_response": [bot("a2")], "_kto_tag": False},
        {"_prompt": [user("q3")], "_response": [bot("a3")], "_kto_tag": True},
    ]
    out = run(preprocess_feedback, word_tokenizer, rows)
    assert out["kto_tags"] == [True, False, True]
    for i, (q, a, kl) in enumerate([("q1", "a1", "a2"), ("q2", "a2", "a3"), ("q3", "a3", "a1")]):
        assert tokens(word_tokenizer, out["input_ids"][i]) == prompt_tokens(q) + answer_tokens(a)
        assert tokens(word_tokenizer, out["kl_input_ids"][i]) == prompt_tokens(q) + answer_tokens(kl)
        assert shown_labels(word_tokenizer, out["labels"][i]) == [_] * 9 + answer_tokens(a)
        assert shown_labels(word_tokenizer, out["kl_labels"][i]) == [_] * 9 + answer_tokens(kl)


def test_pretrain_concatenates_with_eos_and_cuts_blocks(word_tokenizer):
    rows = [{"_prompt": [user("hello world")], "_response": []}, {"_prompt": [user("good")], "_response": []}]
    out = run(preprocess_pretrain, word_tokenizer, rows, cutoff_len=3)
    blocks = [tokens(word_tokenizer, b) for b in out["input_ids"]]
    assert blocks == [["hello", " ", "world"], [E, "good", E]]
    assert out["labels"] == out["input_ids"]
    assert all(len(b) == 3 for b in out["input_ids"])  # no padding needed


def test_pack_bins_fill_rows_best_fit():
    bins = pack_bins([6, 5, 4, 3, 2], capacity=8)
    assert sorted(sorted(b) for b in bins) == [[0, 4], [1, 3], [2]]
    assert all(sum([6, 5, 4, 3, 2][i] for i in b) <= 8 for b in bins)


def test_packing_restarts_positions_and_never_learns_across_samples():
    out = pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], [[-100, 2, 3], [4, 5], [-100, -100, 8, 9]], cutoff_len=7, neat=True)
    assert out["input_ids"] == [[1, 2, 3, 6, 7, 8, 9], [4, 5]]
    assert out["labels"] == [[-100, 2, 3, -100, -100, 8, 9], [-100, 5]]
    assert out["position_ids"] == [[0, 1, 2, 0, 1, 2, 3], [0, 1]]
    plain = pack([[1, 2, 3], [4, 5]], [[1, 2, 3], [4, 5]], cutoff_len=8, neat=False)
    assert "position_ids" not in plain and plain["input_ids"] == [[1, 2, 3, 4, 5]]


def test_supervised_packing_fills_cutoff_len_rows(word_tokenizer):
    rows = [{"_prompt": [user(f"q{i}")], "_response": [bot(f"a{i}")]} for i in range(1, 6)]
    out = run(preprocess_supervised, word_tokenizer, rows, cutoff_len=24, packing=True, neat_packing=True)
    assert [len(ids) for ids in out["input_ids"]] == [24, 24, 12]
    assert all(len(p) == len(i) for p, i in zip(out["position_ids"], out["input_ids"], strict=True))
    assert sum(label != IGNORE_INDEX for labels in out["labels"] for label in labels) == 5 * 3

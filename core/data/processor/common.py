"""What every processor shares: the truncation rule and the label mask value.

Truncation rule (one turn of `p` prompt and `r` response tokens into a budget of `b` tokens):
- a turn that fits is kept whole;
- otherwise the response keeps `min(r, max(b - p, b // 2))` tokens and the prompt the rest of the budget: a short
  answer is kept whole, a short prompt is kept whole, and when both are long each gets half;
- the prompt loses its beginning (its end holds the template's "assistant" header, which the answer must follow),
  the response loses its end.
Multi-turn samples spend the budget turn by turn from the first (from the last with `mask_history`, whose earlier
turns are only context), and drop the turns that no longer fit.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def fit_turn(prompt_len: int, response_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and response tokens of one turn to keep within `budget` tokens."""
    if prompt_len + response_len <= budget:
        return prompt_len, response_len
    budget = max(budget, 0)
    keep_response = min(response_len, max(budget - prompt_len, budget // 2))
    keep_prompt = min(prompt_len, budget - keep_response)
    return keep_prompt, keep_response


def truncate_pair(prompt: list[int], response: list[int], budget: int) -> tuple[list[int], list[int]]:
    keep_prompt, keep_response = fit_turn(len(prompt), len(response), budget)
    return prompt[len(prompt) - keep_prompt :], response[:keep_response]


def truncate_turns(
    pairs: list[tuple[list[int], list[int]]], cutoff_len: int, from_last: bool = False
) -> list[tuple[int, list[int], list[int]]]:
    """The turns kept within cutoff_len as (turn index, prompt ids, response ids), in conversation order."""
    order = range(len(pairs) - 1, -1, -1) if from_last else range(len(pairs))
    budget, kept = cutoff_len, []
    for index in order:
        if budget <= 0:
            break
        prompt, response = truncate_pair(*pairs[index], budget)
        budget -= len(prompt) + len(response)
        kept.append((index, prompt, response))
    return sorted(kept)


def messages_of(prompt: list[dict], response: list[dict]) -> list[dict]:
    """The conversation a processor encodes: prompt turns plus the (first) answer when there is one."""
    return list(prompt) + list(response[:1])

"""Reward functions for the grpo tests, loaded through `reward_file` (with `trust_reward_file: true`)."""


def uppercase(prompts, completions, **kwargs):
    """Share of the completion's letters that are capitals: a dense reward the random demo model can climb."""
    scores = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        scores.append(sum(c.isupper() for c in letters) / len(letters) if letters else 0.0)
    return scores


def broken(prompts, completions, **kwargs):
    return [len(text) / 0 for text in completions]

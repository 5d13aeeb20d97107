"""How to generate text in chat and in predict: GeneratingArguments. Pure: no training stack imported."""

from dataclasses import asdict, dataclass, field
from typing import Any

# ppo's response length when max_new_tokens is not given (chat and predict keep 1024). The score arrives at a
# response's last token, and until the value head has learned, GAE (lambda 0.95) carries 0.95**k of it to the token
# k places earlier: 0.6% at 100 tokens. A policy that has not learned to stop runs to the limit: on the demo model
# (LoRA, 8 prompts a step, a shared 2-core machine) 3 PPO steps took 36 s at 128 (mean length 85-109) and 414 s at
# 1024 (243-464), with no reward gained from the longer answers.
PPO_MAX_NEW_TOKENS = 128


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class GeneratingArguments:
    """Decoding settings for chat, sft predict (predict_with_generate) and ppo rollouts.

    Defaults are LLaMA-Factory's (sampling on, temperature 0.95, top_p 0.7); transformers' own default is greedy.
    """

    do_sample: bool = field(default=True, metadata=_help("Sample tokens (true) or pick the most likely (false)."))
    temperature: float = field(
        default=0.95, metadata=_help("Sampling temperature; lower is more deterministic. do_sample only.")
    )
    top_p: float = field(
        default=0.7, metadata=_help("Sample only from the smallest set of tokens with this total probability.")
    )
    top_k: int = field(default=50, metadata=_help("Sample only from the k most likely tokens; 0 = no limit."))
    num_beams: int = field(default=1, metadata=_help("Beam search width; 1 = no beam search."))
    max_length: int = field(
        default=1024, metadata=_help("Longest prompt + answer, in tokens. Ignored when max_new_tokens > 0.")
    )
    max_new_tokens: int = field(
        default=1024,
        metadata=_help(f"Longest answer, in tokens. ppo: {PPO_MAX_NEW_TOKENS} when not given (a note says so)."),
    )
    repetition_penalty: float = field(default=1.0, metadata=_help("Penalty on repeating tokens; 1.0 = none."))
    length_penalty: float = field(
        default=1.0, metadata=_help("Beam search: exponent on length; above 1 favors longer answers.")
    )
    skip_special_tokens: bool = field(
        default=True, metadata=_help("Drop special tokens when decoding answers to text.")
    )

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`, without the ones that do not apply (transformers warns)."""
        kwargs = asdict(self)
        kwargs.pop("skip_special_tokens")
        if kwargs["max_new_tokens"] > 0:
            kwargs.pop("max_length")
        else:
            kwargs.pop("max_new_tokens")
        if not self.do_sample:
            for key in ("temperature", "top_p", "top_k"):
                kwargs.pop(key)
        if self.num_beams == 1:
            kwargs.pop("length_penalty")
        return kwargs

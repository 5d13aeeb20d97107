"""grpo's reward functions: built-in checks of an answer, a reward model, or your own Python functions.

    reward_funcs: exact_match,format
    reward_weights: 1.0,0.2

Every function has trl's signature, `fn(prompts, completions, **kwargs) -> list[float]`: one score per completion,
the texts decoded without special tokens. kwargs hold `reference` (the dataset's answer per completion: alpaca
`output`, or the sharegpt assistant turn; "" when the row has none), `completion_ids` (token ids), `cut` (True when
the completion reached max_new_tokens without a stop token) and `max_new_tokens`. Accept **kwargs, so that keys added
later do not break your function.

Built-ins (names in `core.hparams.keys.REWARD_FUNCS`):
- `exact_match`: 1 when the answer equals the reference after normalising (Unicode NFKC, whitespace collapsed and
  trimmed, one final period dropped; case is kept: it is part of many answers).
- `numeric`: 1 when the last number in the answer equals the last number in the reference (1,000 = 1000, 1/2 = 0.5,
  relative tolerance 1e-6).
- `math`: 1 when math-verify finds the answer mathematically equal to the reference (LaTeX or plain expressions).
- `format`: 1 when the completion puts its answer inside `<reward_format_tag>...</reward_format_tag>`, or, with
  `reward_format_regex`, when the whole completion matches it.
- `length`: minus the share of max_new_tokens the completion used (0 for an empty answer, -1 at the limit).
- `rm`: the score of a reward model trained by the rm stage (`reward_model`, `reward_model_type` lora or full).
The three answer checks read the text inside the tag when the completion has one, else the whole completion.

A user's function comes from `reward_file` and runs only with `trust_reward_file: true` (it is code, as with
trust_remote_code). An exception in it, or a result that is not one number per completion, fails the job with a
`RewardError` naming the file, the line and the function.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import re
import sys
import traceback
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.hparams.keys import REWARD_FUNCS, split_arg

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., Sequence[float]]


class RewardError(UserError):
    """A reward function that could not be loaded or failed: names the function, and the file and line if it is
    the user's."""


# Built-in checks


def extract_answer(completion: str, tag: str = "answer") -> str:
    """The text inside the last `<tag>...</tag>` of the completion, or the whole completion when it has none."""
    found = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", completion, flags=re.DOTALL)
    return found[-1] if found else completion


def normalize(text: str) -> str:
    """Unicode NFKC, whitespace collapsed and trimmed, one final period dropped. Case is kept."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text[:-1].rstrip() if text.endswith(".") else text


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?|[-+]?\.\d+")


def last_number(text: str) -> float | None:
    """The last number written in the text (thousands separators and a fraction a/b understood), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    token = found[-1].replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            top, bottom = token.split("/")
            return float(top) / float(bottom) if float(bottom) else None
        return float(token)
    except ValueError:
        return None


def exact_match(prompts: list[str], completions: list[str], reference: list[str], tag: str = "answer", **_) -> list:
    return [
        float(bool(ref.strip()) and normalize(extract_answer(c, tag)) == normalize(ref))
        for c, ref in zip(completions, reference, strict=True)
    ]


def numeric(prompts: list[str], completions: list[str], reference: list[str], tag: str = "answer", **_) -> list:
    scores = []
    for completion, ref in zip(completions, reference, strict=True):
        got, want = last_number(extract_answer(completion, tag)), last_number(ref)
        scores.append(float(got is not None and want is not None and math.isclose(got, want, rel_tol=1e-6)))
    return scores


def _parse_math(text: str) -> list:
    from math_verify import parse

    parsed = parse(text)
    return parsed or parse(f"${text}$")


def math_equal(prompts: list[str], completions: list[str], reference: list[str], tag: str = "answer", **_) -> list:
    from math_verify import verify

    scores = []
    for completion, ref in zip(completions, reference, strict=True):
        try:
            gold, answer = _parse_math(ref), _parse_math(extract_answer(completion, tag))
            scores.append(float(bool(gold) and bool(answer) and verify(gold, answer)))
        except Exception:  # math-verify raises on some malformed LaTeX and on its own timeouts: no credit
            scores.append(0.0)
    return scores


def format_check(
    prompts: list[str], completions: list[str], tag: str = "answer", regex: str | None = None, **_
) -> list[float]:
    if regex:
        pattern = re.compile(regex, flags=re.DOTALL)
        return [float(pattern.fullmatch(c.strip()) is not None) for c in completions]
    pattern = re.compile(rf"<{re.escape(tag)}>.*?</{re.escape(tag)}>", flags=re.DOTALL)
    return [float(pattern.search(c) is not None) for c in completions]


def length_penalty(
    prompts: list[str], completions: list[str], completion_ids: list[list[int]], max_new_tokens: int, **_
) -> list[float]:
    return [-len(ids) / max(1, max_new_tokens) for ids in completion_ids]


# Loading


@dataclasses.dataclass
class Rewards:
    """The run's reward functions with their weights; `score` gives every function's scores and the weighted
    total."""

    names: list[str]
    weights: list[float]
    funcs: list[RewardFunc]
    origins: list[Path | None]  # the user's file, or None for a built-in

    def score(self, prompts: list[str], completions: list[str], **kwargs: Any) -> tuple[list[float], dict]:
        """(total per completion, {name: scores}); raises RewardError for a failing or malformed function."""
        per_func: dict[str, list[float]] = {}
        for name, func, origin in zip(self.names, self.funcs, self.origins, strict=True):
            # `rollout` (token tensors) is for the reward model only; a user's function gets the documented keys.
            given = kwargs if origin is None else {k: v for k, v in kwargs.items() if k != "rollout"}
            try:
                values = func(prompts, completions, **given)
            except RewardError:
                raise
            except Exception as err:
                raise RewardError(_failure(name, origin, err)) from err
            per_func[name] = _checked(name, origin, values, len(completions))
        totals = [
            sum(w * per_func[n][i] for n, w in zip(self.names, self.weights, strict=True))
            for i in range(len(completions))
        ]
        return totals, per_func


def _failure(name: str, origin: Path | None, err: BaseException) -> str:
    where = f"reward function {name}"
    if origin is not None:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if _same_file(f.filename, origin)]
        line = f", line {frames[-1].lineno}" if frames else ""
        where = f"reward_file {origin}{line}, in {name}"
    return f"{where}: {type(err).__name__}: {err} — fix the function, or remove {name} from reward_funcs"


def _same_file(filename: str, origin: Path) -> bool:
    try:
        return Path(filename).resolve() == origin.resolve()
    except OSError:
        return False


def _checked(name: str, origin: Path | None, values: Any, count: int) -> list[float]:
    where = f"reward_file {origin}: {name}" if origin else f"reward function {name}"
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise RewardError(
            f"{where} returned {type(values).__name__} ({err}) — return a list of {count} numbers, one per completion"
        ) from err
    if len(out) != count:
        raise RewardError(f"{where} returned {len(out)} scores for {count} completions — return one per completion")
    if any(math.isnan(v) for v in out):
        raise RewardError(f"{where} returned NaN — return a number for every completion")
    return out


def load_reward_file(path: str | Path, names: list[str]) -> dict[str, RewardFunc]:
    """Import `path` as a module (the caller checked trust_reward_file) and take the named functions from it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RewardError(f"reward_file: {path} does not exist — give the path of a Python file")
    module_name = f"llamaboard_reward_file_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardError(f"reward_file: {path} is not a Python file — give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise RewardError(f"reward_file {path}, line {err.lineno}: SyntaxError: {err.msg} — fix the file") from err
    except Exception as err:
        raise RewardError(_failure("(module)", path, err)) from err
    funcs = {}
    for name in names:
        func = getattr(module, name, None)
        if not callable(func):
            defined = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
            raise RewardError(
                f"reward_funcs: {name} is not a function in reward_file {path} — it defines: "
                f"{', '.join(defined) or 'no functions'}"
            )
        funcs[name] = func
    return funcs


def build_rewards(finetuning_args: Any, rm_scorer: RewardFunc | None = None) -> Rewards:
    """The reward functions `reward_funcs` names, with `reward_weights`; `rm_scorer` is the reward model's when
    `rm` is among them (see `reward_model_scorer`)."""
    names = split_arg(finetuning_args.reward_funcs)
    weights = [float(w) for w in split_arg(finetuning_args.reward_weights)] if finetuning_args.reward_weights else []
    weights = weights or [1.0] * len(names)
    tag, regex = finetuning_args.reward_format_tag, finetuning_args.reward_format_regex
    builtins: dict[str, RewardFunc] = {
        "exact_match": lambda p, c, **kw: exact_match(p, c, tag=tag, **kw),
        "numeric": lambda p, c, **kw: numeric(p, c, tag=tag, **kw),
        "math": lambda p, c, **kw: math_equal(p, c, tag=tag, **kw),
        "format": lambda p, c, **kw: format_check(p, c, tag=tag, regex=regex, **kw),
        "length": length_penalty,
    }
    if rm_scorer is not None:
        builtins["rm"] = rm_scorer
    assert set(builtins) | {"rm"} == set(REWARD_FUNCS)

    own = [name for name in names if name not in REWARD_FUNCS]
    user: dict[str, RewardFunc] = {}
    if own:
        if not finetuning_args.reward_file:
            raise RewardError(f"reward_funcs: {', '.join(own)} — not built-in ({', '.join(REWARD_FUNCS)}); fix it")
        if not finetuning_args.trust_reward_file:
            raise RewardError(
                f"reward_file: {finetuning_args.reward_file} is Python code — set trust_reward_file: true to run it"
            )
        user = load_reward_file(finetuning_args.reward_file, own)
        logger.info("Reward functions from %s: %s", finetuning_args.reward_file, ", ".join(own))
    if "math" in names:
        try:
            import math_verify  # noqa: F401
        except ImportError as err:
            raise RewardError("reward_funcs: math needs the math-verify package — pip install math-verify") from err
    if "rm" in names and rm_scorer is None:
        raise RewardError("reward_funcs: rm needs reward_model — set it to the output_dir of an rm run")
    origin = Path(finetuning_args.reward_file).expanduser() if own else None
    return Rewards(
        names=names,
        weights=weights,
        funcs=[user.get(name) or builtins[name] for name in names],
        origins=[origin if name in user else None for name in names],
    )


def reward_model_scorer(tokenizer: Any, model_args: Any, finetuning_args: Any, device: Any) -> RewardFunc:
    """`rm`: a reward model from an rm run, loaded beside the policy (a LoRA rm merged into its own copy of the
    base model, so the policy may be lora, freeze or full). Scores the prompt + completion token ids."""
    from core.train.ppo_rewards import create_reward_fn

    rm_args = finetuning_args
    if finetuning_args.reward_model_type == "lora":
        # ppo shares the policy's base with a LoRA rm; grpo's policy need not be LoRA, so the rm gets its own copy.
        rm_args = dataclasses.replace(
            finetuning_args,
            reward_model_type="full",
            reward_model=str(model_args.model_name_or_path),
            reward_model_adapters=finetuning_args.reward_model,
        )
    scorer = create_reward_fn(None, tokenizer, model_args, rm_args, device)

    def rm(prompts: list[str], completions: list[str], rollout: Any = None, **_) -> list[float]:
        return scorer(rollout).tolist()

    return rm

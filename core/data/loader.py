"""From dataset names to tokenized `datasets.Dataset`s for a stage.

    get_dataset(template, model_args, data_args, training_args, stage, tokenizer)
      -> {"train_dataset": Dataset | None, "eval_dataset": Dataset | dict[str, Dataset] | None}

Steps: registry entry -> rows read and checked (core.data.readers / converter) -> per-dataset num_samples and
max_samples -> mix (concat or interleave) -> validation split (val_size or eval_dataset) -> the stage's processor
via `Dataset.map`, cached under `<cache_dir>/preprocessed` by a fingerprint of the rows, the processing settings,
the template, the tokenizer and this package's code (`overwrite_cache: true` recomputes), in
`preprocessing_num_workers` processes.

Which processor: pt -> pretrain, sft -> supervised, rm/dpo/orpo/simpo -> pairwise, kto -> feedback,
ppo, grpo -> unsupervised. The eval set is processed as unsupervised (prompt -> reference answer) when generating
(`predict_with_generate`, or `do_predict` without `do_train`). Without `do_train`, `dataset` is the eval set
unless `eval_dataset` names one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from functools import partial
from pathlib import Path
from typing import Any

from core.data.converter import NEEDS, convert_row
from core.data.processor.common import IGNORE_INDEX
from core.data.processor.feedback import preprocess_feedback
from core.data.processor.pairwise import preprocess_pairwise
from core.data.processor.pretrain import preprocess_pretrain
from core.data.processor.supervised import preprocess_supervised
from core.data.processor.unsupervised import preprocess_unsupervised
from core.data.readers import iter_rows
from core.data.registry import PAIRWISE_STAGES, DataError, DatasetAttr, RowError, get_dataset_list
from core.paths import cache_dir

logger = logging.getLogger(__name__)

PROCESSORS = {
    "pretrain": preprocess_pretrain,
    "supervised": preprocess_supervised,
    "pairwise": preprocess_pairwise,
    "feedback": preprocess_feedback,
    "unsupervised": preprocess_unsupervised,
}
STAGE_PROCESSOR = {
    "pt": "pretrain",
    "sft": "supervised",
    "rm": "pairwise",
    "dpo": "pairwise",
    "orpo": "pairwise",
    "simpo": "pairwise",
    "kto": "feedback",
    "ppo": "unsupervised",
    "grpo": "unsupervised",
}
_CODE_FILES = ["converter.py", "templates.py", "processor/common.py"] + [f"processor/{name}.py" for name in PROCESSORS]


# Rows


def _check_stage(attr: DatasetAttr, stage: str) -> None:
    if stage in PAIRWISE_STAGES and not attr.ranking:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' has no chosen/rejected pairs (no \"ranking\": true), and stage "
            f"{stage} trains on preference pairs. Pick a ranking dataset or another stage."
        )
    if stage == "kto" and not attr.has_kto_tag:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' has no kto_tag column, and stage kto needs each answer tagged "
            "desirable (true) or not (false). Add columns.kto_tag or pick another dataset."
        )
    if stage in ("pt", "sft", "ppo", "grpo", "predict") and attr.ranking:
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' is preference data (\"ranking\": true), and stage {stage} "
            "needs plain prompts and answers. Pick a non-ranking dataset, or stage rm / dpo."
        )


def _hub_rows(attr: DatasetAttr) -> list[tuple[str, str, dict]]:
    offline = any(
        os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    try:
        import datasets

        loaded = datasets.load_dataset(attr.dataset_name, name=attr.subset, split=attr.split, data_dir=attr.folder)
    except Exception as err:  # noqa: BLE001 - any failure becomes one readable message
        reason = (
            "this machine is offline (HF_HUB_OFFLINE=1) and the dataset is not in the local datasets cache"
            if offline
            else f"loading failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
        raise DataError(
            f"{attr.info_file}: dataset '{attr.name}' lives on the Hugging Face Hub ({attr.dataset_name}), and "
            f"{reason}. Download it once while online, or save it as a file in the dataset_dir and use file_name."
        ) from None
    return [(attr.dataset_name, f"row {i + 1}", row) for i, row in enumerate(loaded)]


def _raw_rows(attr: DatasetAttr):
    if attr.load_from == "hf_hub":
        yield from _hub_rows(attr)
        return
    for file in attr.files():
        for where, row in iter_rows(file, bad_rows="yield"):
            yield str(file), where, row


def load_rows(attr: DatasetAttr, need: str | None, data_args: Any, seed: int) -> list[dict]:
    """Canonical rows of one dataset (num_samples, then max_samples applied). A bad row raises RowError naming
    the file and the row; with `skip_bad_rows` it is skipped and the count logged."""
    skip = bool(data_args.skip_bad_rows)
    rows, skipped, first_error = [], 0, None
    for file, where, raw in _raw_rows(attr):
        try:
            if isinstance(raw, RowError):
                raise raw
            rows.append(convert_row(raw, attr, where, file, need))
        except RowError as err:
            if not skip:
                raise DataError(f"{err} (or set skip_bad_rows: true to skip such rows)") from None
            skipped += 1
            first_error = first_error or err
    if skipped:
        logger.warning(
            "Dataset '%s': skipped %d bad row(s) (skip_bad_rows). First: %s", attr.name, skipped, first_error
        )
    if not rows:
        raise DataError(f"{attr.info_file}: dataset '{attr.name}' has no usable rows.")
    if attr.num_samples:
        rng = random.Random(seed)
        order = list(range(len(rows)))
        rng.shuffle(order)
        while len(order) < attr.num_samples:
            order.append(rng.randrange(len(rows)))
        rows = [rows[i] for i in order[: attr.num_samples]]
    max_samples = data_args.max_samples
    if max_samples:
        rows = rows[:max_samples]
    return rows


def _probabilities(data_args: Any, n: int) -> list[float]:
    probs = data_args.interleave_probs
    if not probs:
        return [1.0 / n] * n
    values = [float(p) for p in (probs.split(",") if isinstance(probs, str) else probs)]
    if len(values) != n or any(p < 0 for p in values) or sum(values) <= 0:
        raise DataError(f"interleave_probs: received {probs!r} — need {n} non-negative numbers, one per dataset.")
    return [p / sum(values) for p in values]


def mix(sources: list[list[dict]], data_args: Any, seed: int) -> list[dict]:
    """concat (default); interleave_under stops when one dataset runs out; interleave_over goes on, repeating
    exhausted datasets, until every dataset has been used whole."""
    strategy = data_args.mix_strategy or "concat"
    if len(sources) == 1 or strategy == "concat":
        return [row for rows in sources for row in rows]
    if strategy not in ("interleave_under", "interleave_over"):
        raise DataError(f"mix_strategy: received {strategy!r} — use concat, interleave_under or interleave_over.")
    probs = _probabilities(data_args, len(sources))
    rng = random.Random(seed)
    positions = [0] * len(sources)
    done = [False] * len(sources)
    out = []
    while True:
        k = rng.choices(range(len(sources)), weights=probs)[0]
        if positions[k] >= len(sources[k]):
            if strategy == "interleave_under":
                return out
            done[k] = True
            if all(done):
                return out
            positions[k] = 0
        out.append(sources[k][positions[k]])
        positions[k] += 1
        if positions[k] >= len(sources[k]):
            done[k] = True
            if strategy == "interleave_over" and all(done):
                return out


def split_rows(rows: list[dict], val_size: float | int | None, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval): val_size < 1 is a fraction, >= 1 a count of rows drawn at random with `seed`."""
    if not val_size:
        return rows, []
    count = int(round(val_size * len(rows))) if val_size < 1 else int(val_size)
    count = max(1, count)
    if count >= len(rows):
        raise DataError(
            f"val_size: received {val_size} — that leaves no training rows out of {len(rows)}. Use a smaller value."
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


# Processing


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = json.dumps(sorted(tokenizer.get_vocab().items()))
    extra = [type(tokenizer).__name__, getattr(tokenizer, "padding_side", ""), str(tokenizer.special_tokens_map)]
    return hashlib.sha256((body + "|".join(extra)).encode()).hexdigest()


def _code_fingerprint() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _settings(data_args: Any) -> dict:
    keys = ("cutoff_len", "train_on_prompt", "mask_history", "packing", "neat_packing")
    return {k: getattr(data_args, k, None) for k in keys}


def fingerprint(rows: list[dict], kind: str, template: Any, tokenizer: Any, data_args: Any) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(rows, ensure_ascii=False, default=str).encode())
    settings = {"kind": kind, "settings": _settings(data_args), "template": repr(template)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(_tokenizer_fingerprint(tokenizer).encode())
    digest.update(_code_fingerprint().encode())
    return digest.hexdigest()[:32]


def process(rows: list[dict], kind: str, template: Any, tokenizer: Any, data_args: Any, desc: str):
    """Tokenize canonical rows with one processor, through datasets' map cache."""
    from datasets import Dataset

    fp = fingerprint(rows, kind, template, tokenizer, data_args)
    folder = cache_dir() / "preprocessed"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.from_list(rows)
    workers = data_args.preprocessing_num_workers
    batch_size = data_args.preprocessing_batch_size or 1000
    if kind == "feedback":
        # Each KL pair borrows the answer of the next row in its batch; small batches would pair rows too locally.
        batch_size = max(batch_size, 2)
    processed = dataset.map(
        partial(PROCESSORS[kind], template=template, tokenizer=tokenizer, data_args=data_args),
        batched=True,
        batch_size=batch_size,
        num_proc=workers if workers and workers > 1 and len(dataset) >= workers else None,
        remove_columns=dataset.column_names,
        cache_file_name=str(folder / f"{kind}-{fp}.arrow"),
        load_from_cache_file=not data_args.overwrite_cache,
        new_fingerprint=fp,
        desc=desc,
    )
    if kind == "supervised" and not (data_args.packing or data_args.neat_packing):
        dropped = len(dataset) - len(processed)
        if dropped:
            logger.warning(
                "%s: dropped %d sample(s) whose answer did not fit in cutoff_len=%d.",
                desc,
                dropped,
                data_args.cutoff_len,
            )
    if len(processed) == 0:
        raise DataError(f"{desc}: no sample left after preprocessing. Raise cutoff_len or check the data.")
    return processed


def _log_example(dataset, kind: str, tokenizer: Any) -> None:
    if not logger.isEnabledFor(logging.INFO) or len(dataset) == 0:
        return
    example = dataset[0]
    prefix = "chosen_" if kind == "pairwise" else ""
    ids, labels = example[f"{prefix}input_ids"], example[f"{prefix}labels"]
    learned = [i for i in labels if i != IGNORE_INDEX]
    logger.info("First training sample:\n%s", tokenizer.decode(ids, skip_special_tokens=False))
    logger.info("Its labels (what is learned):\n%s", tokenizer.decode(learned, skip_special_tokens=False))


def _rows_for(names: Any, data_args: Any, need: str | None, stage: str, seed: int) -> dict[str, list[dict]]:
    out = {}
    for attr in get_dataset_list(names, data_args.dataset_dir):
        _check_stage(attr, stage)
        out[attr.name] = load_rows(attr, need, data_args, seed)
    return out


def get_dataset(
    template: Any, model_args: Any, data_args: Any, training_args: Any, stage: str, tokenizer: Any
) -> dict[str, Any]:
    """Tokenized train and eval sets for a stage (see the module docstring)."""
    if stage not in STAGE_PROCESSOR:
        raise DataError(f"stage: received {stage!r} — use one of {', '.join(STAGE_PROCESSOR)}.")
    if data_args.streaming:
        raise DataError("streaming: not supported yet — remove it; datasets are read into memory and cached.")
    tokenized_path = data_args.tokenized_path
    if tokenized_path and Path(tokenized_path).exists():
        from datasets import load_from_disk

        logger.info("Loading the tokenized dataset from %s (tokenized_path).", tokenized_path)
        saved = load_from_disk(str(tokenized_path))
        return {"train_dataset": saved.get("train"), "eval_dataset": saved.get("validation")}

    seed = training_args.data_seed or training_args.seed
    do_train = training_args.do_train
    do_predict = training_args.do_predict
    generate = training_args.predict_with_generate or (do_predict and not do_train)
    train_kind = STAGE_PROCESSOR[stage]
    eval_kind = "unsupervised" if generate else train_kind
    eval_need = NEEDS.get(stage) if eval_kind == train_kind else None
    eval_stage = "predict" if eval_kind == "unsupervised" and stage not in ("ppo", "grpo") else stage

    first = getattr(training_args, "main_process_first", None)
    guard = first(desc="preprocessing the dataset") if callable(first) else contextlib.nullcontext()
    with guard:
        train_rows: list[dict] = []
        eval_sets: dict[str, list[dict]] = {}
        if data_args.dataset and do_train:
            sources = _rows_for(data_args.dataset, data_args, NEEDS.get(stage), stage, seed)
            train_rows = mix(list(sources.values()), data_args, seed)
            if data_args.val_size and not data_args.eval_dataset:
                train_rows, held = split_rows(train_rows, data_args.val_size, seed)
                eval_sets["validation"] = held
        elif data_args.dataset and not data_args.eval_dataset:
            # Evaluate / predict without training: `dataset` is the set to evaluate on.
            eval_sets = _rows_for(data_args.dataset, data_args, eval_need, eval_stage, seed)
        if data_args.eval_dataset:
            eval_sets = _rows_for(data_args.eval_dataset, data_args, eval_need, eval_stage, seed)

        train_dataset = None
        if train_rows:
            train_dataset = process(train_rows, train_kind, template, tokenizer, data_args, "train set")
            _log_example(train_dataset, train_kind, tokenizer)
        eval_dataset: Any = None
        if eval_sets:
            if data_args.eval_on_each_dataset and len(eval_sets) > 1:
                eval_dataset = {
                    name: process(rows, eval_kind, template, tokenizer, data_args, f"eval set {name}")
                    for name, rows in eval_sets.items()
                }
            else:
                rows = mix(list(eval_sets.values()), data_args, seed)
                eval_dataset = process(rows, eval_kind, template, tokenizer, data_args, "eval set")

        if tokenized_path:
            from datasets import DatasetDict

            parts = {"train": train_dataset, "validation": eval_dataset}
            DatasetDict({k: v for k, v in parts.items() if v is not None and not isinstance(v, dict)}).save_to_disk(
                str(tokenized_path)
            )
            logger.info("Saved the tokenized dataset to %s; later runs load it from there.", tokenized_path)
    return {"train_dataset": train_dataset, "eval_dataset": eval_dataset}

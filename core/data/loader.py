"""From dataset names to tokenized `datasets.Dataset`s for a stage.

    get_dataset(template, model_args, data_args, training_args, stage, tokenizer)
      -> {"train_dataset": Dataset | None, "eval_dataset": Dataset | dict[str, Dataset] | None}

Steps: registry entry -> rows read and checked (core.data.readers / converter) -> per-dataset num_samples and
max_samples -> mix (concat or interleave) -> validation split (val_size or eval_dataset) -> the stage's processor,
a batch of `preprocessing_batch_size` rows at a time (in `preprocessing_num_workers` processes), written to an
Arrow file under `<cache_dir>/preprocessed` named by a fingerprint of the data files' content, how rows are drawn
from them, the processing settings, the template, the tokenizer and this package's code. A later run with the same
fingerprint opens that file without reading a row (`overwrite_cache: true` prepares it again).

Memory: when no step needs every row at once (no num_samples, interleaving or val_size), rows go from the file to
the processor and the Arrow file one batch at a time: one batch of rows is held (2 per worker with workers), plus
its result, whatever the file's size. Otherwise the canonical rows are held in memory before they are prepared.
Progress: core.data.progress (a log line every few seconds, `phase: prepare` records in trainer_log.jsonl).

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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.data.converter import NEEDS, convert_row
from core.data.processor.common import IGNORE_INDEX
from core.data.processor.feedback import preprocess_feedback
from core.data.processor.pairwise import preprocess_pairwise
from core.data.processor.pretrain import preprocess_pretrain
from core.data.processor.supervised import preprocess_supervised
from core.data.processor.unsupervised import preprocess_unsupervised
from core.data.progress import PrepareProgress
from core.data.readers import count_rows, iter_rows
from core.data.registry import FILE_TYPES, DataError, DatasetAttr, RowError, check_stage, get_dataset_list
from core.paths import cache_dir
from core.runfolder import TRAINER_LOG

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
_CODE_FILES = ["readers.py", "registry.py", "converter.py", "templates.py", "processor/common.py"]
_CODE_FILES += [f"processor/{name}.py" for name in PROCESSORS]


# Rows


_check_stage = check_stage  # core.data.stats imports it under this name


_HUB: dict[tuple, Any] = {}


def _hub_dataset(attr: DatasetAttr):
    key = (attr.dataset_name, attr.subset, attr.split, attr.folder)
    if key not in _HUB:
        _HUB[key] = _load_hub(attr)
    return _HUB[key]


def _load_hub(attr: DatasetAttr):
    offline = any(
        os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    try:
        import datasets

        return datasets.load_dataset(attr.dataset_name, name=attr.subset, split=attr.split, data_dir=attr.folder)
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


def _hub_rows(attr: DatasetAttr) -> Iterator[tuple[str, str, dict]]:
    for i, row in enumerate(_hub_dataset(attr)):
        yield attr.dataset_name, f"row {i + 1}", row


def _raw_rows(attr: DatasetAttr):
    if attr.load_from == "hf_hub":
        yield from _hub_rows(attr)
        return
    for file in attr.files():
        for where, row in iter_rows(file, bad_rows="yield"):
            yield str(file), where, row


def _converted(attr: DatasetAttr, need: str | None, data_args: Any, limit: int | None) -> Iterator[dict]:
    """Canonical rows of one dataset, read lazily, at most `limit`. A bad row raises DataError naming the file and
    the row; with `skip_bad_rows` it is skipped and the count logged."""
    skip = bool(data_args.skip_bad_rows)
    count, skipped, first_error = 0, 0, None
    for file, where, raw in _raw_rows(attr):
        if limit and count >= limit:
            break
        try:
            if isinstance(raw, RowError):
                raise raw
            row = convert_row(raw, attr, where, file, need)
        except RowError as err:
            if not skip:
                raise DataError(f"{err} (or set skip_bad_rows: true to skip such rows)") from None
            skipped += 1
            first_error = first_error or err
            continue
        count += 1
        yield row
    if skipped:
        logger.warning(
            "Dataset '%s': skipped %d bad row(s) (skip_bad_rows). First: %s", attr.name, skipped, first_error
        )
    if not count:
        raise DataError(f"{attr.info_file}: dataset '{attr.name}' has no usable rows.")


def load_rows(
    attr: DatasetAttr, need: str | None, data_args: Any, seed: int, progress: PrepareProgress | None = None
) -> list[dict]:
    """Canonical rows of one dataset (num_samples, then max_samples applied); see `_converted`."""
    max_samples = data_args.max_samples
    rows = []
    for row in _converted(attr, need, data_args, None if attr.num_samples else max_samples):
        rows.append(row)
        if progress is not None and len(rows) % 1000 == 0:
            progress.update(1000)
    if progress is not None:
        progress.update(len(rows) % 1000)
    if attr.num_samples:
        rng = random.Random(seed)
        order = list(range(len(rows)))
        rng.shuffle(order)
        while len(order) < attr.num_samples:
            order.append(rng.randrange(len(rows)))
        rows = [rows[i] for i in order[: attr.num_samples]]
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
    return list(mix_lazily([partial(iter, rows) for rows in sources], data_args, seed))


_END = object()


def mix_lazily(sources: list[Callable[[], Iterator[dict]]], data_args: Any, seed: int) -> Iterator[dict]:
    """`mix` over datasets read as they go: each source is a function that starts reading one dataset again.
    The rows come in the same order as `mix` of the same datasets held in lists."""
    strategy = data_args.mix_strategy or "concat"
    if len(sources) == 1 or strategy == "concat":
        for source in sources:
            yield from source()
        return
    if strategy not in ("interleave_under", "interleave_over"):
        raise DataError(f"mix_strategy: received {strategy!r} — use concat, interleave_under or interleave_over.")
    probs = _probabilities(data_args, len(sources))
    rng = random.Random(seed)
    readers = [source() for source in sources]
    ahead = [next(reader, _END) for reader in readers]  # each source's next row, so running out is seen early
    done = [False] * len(sources)
    while True:
        k = rng.choices(range(len(sources)), weights=probs)[0]
        if ahead[k] is _END:
            if strategy == "interleave_under":
                return
            done[k] = True
            if all(done):
                return
            readers[k] = sources[k]()
            ahead[k] = next(readers[k], _END)
        yield ahead[k]
        ahead[k] = next(readers[k], _END)
        if ahead[k] is _END:
            done[k] = True
            if strategy == "interleave_over" and all(done):
                return


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


# Which rows make up each set


@dataclass
class Part:
    """One set to prepare: its rows come from `attrs` (mixed), or from one side of their val_size split."""

    what: str  # "train set", "eval set", "eval set <name>": for log lines
    kind: str  # the processor
    attrs: list[DatasetAttr]
    need: str | None
    split: str | None = None  # "train" / "validation": a side of the val_size split
    name: str | None = None  # eval_on_each_dataset: the key of this eval set


def _checked(names: Any, data_args: Any, stage: str) -> list[DatasetAttr]:
    attrs = get_dataset_list(names, data_args.dataset_dir)
    for attr in attrs:
        _check_stage(attr, stage)
    return attrs


def _parts(data_args: Any, training_args: Any, stage: str) -> list[Part]:
    do_train = training_args.do_train
    do_predict = training_args.do_predict
    generate = training_args.predict_with_generate or (do_predict and not do_train)
    train_kind = STAGE_PROCESSOR[stage]
    eval_kind = "unsupervised" if generate else train_kind
    eval_need = NEEDS.get(stage) if eval_kind == train_kind else None
    eval_stage = "predict" if eval_kind == "unsupervised" and stage not in ("ppo", "grpo") else stage
    eval_names = data_args.eval_dataset

    parts = []
    if data_args.dataset and do_train:
        attrs = _checked(data_args.dataset, data_args, stage)
        if data_args.val_size and not eval_names:
            parts.append(Part("train set", train_kind, attrs, NEEDS.get(stage), split="train"))
            parts.append(Part("eval set", eval_kind, attrs, NEEDS.get(stage), split="validation"))
        else:
            parts.append(Part("train set", train_kind, attrs, NEEDS.get(stage)))
    elif data_args.dataset and not eval_names:
        eval_names = data_args.dataset  # evaluate / predict without training: `dataset` is the set to evaluate on
    if eval_names:
        attrs = _checked(eval_names, data_args, eval_stage)
        if data_args.eval_on_each_dataset and len(attrs) > 1:
            parts += [Part(f"eval set {a.name}", eval_kind, [a], eval_need, name=a.name) for a in attrs]
        else:
            parts.append(Part("eval set", eval_kind, attrs, eval_need))
    return parts


def _streams(part: Part, data_args: Any) -> bool:
    """Can the rows go from the files to the processor without being held: no sampling, shuffling or splitting?"""
    concat = len(part.attrs) == 1 or (data_args.mix_strategy or "concat") == "concat"
    plain = all(a.load_from == "file" and not a.num_samples for a in part.attrs)
    return concat and plain and part.split is None


def _scan(path: Path) -> tuple[str, int | None]:
    """(content digest, number of rows or None when counting would mean parsing a big file), in one read."""
    digest, newlines, size, last = hashlib.sha256(), 0, 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            size, last = size + len(chunk), chunk[-1:]
    kind = FILE_TYPES.get(path.suffix.lower())
    if kind in ("jsonl", "txt"):
        count = newlines + (last != b"\n")  # blank lines count too: an estimate, corrected as rows come
    else:
        count = count_rows(path)
    return digest.hexdigest(), count


def _source(attr: DatasetAttr, scans: dict[Path, tuple[str, int | None]]) -> tuple[dict, int | None]:
    """What the rows of one dataset depend on (its dataset_info entry and its files' content), and its row count."""
    entry = json.loads(json.dumps(asdict(attr), default=str))
    if attr.load_from == "hf_hub":
        return {"entry": entry, "hub": _hub_dataset(attr)._fingerprint}, None
    files, total = [], 0
    for file in attr.files():
        if file not in scans:
            scans[file] = _scan(file)
        digest, count = scans[file]
        files.append([file.name, digest])
        total = None if total is None or count is None else total + count
    return {"entry": entry, "files": files}, total


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


def _row_settings(part: Part, data_args: Any, seed: int) -> dict:
    keys = ("max_samples", "skip_bad_rows", "mix_strategy", "interleave_probs")
    settings = {k: getattr(data_args, k, None) for k in keys}
    settings.update(need=part.need, split=part.split)
    if part.split:
        settings["val_size"] = data_args.val_size
    if part.split or not _streams(part, data_args):
        settings["seed"] = seed  # sampling, interleaving and splitting draw with it
    return settings


def fingerprint(sources: list[dict], part: Part, template: Any, tokenizer: Any, data_args: Any, seed: int) -> str:
    """The prepared set's cache key: its sources' content, how rows are drawn from them, the processing settings,
    the template, the tokenizer and this package's code."""
    key = {
        "sources": sources,
        "rows": _row_settings(part, data_args, seed),
        "kind": part.kind,
        "settings": _settings(data_args),
        "template": repr(template),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode())
    digest.update(_tokenizer_fingerprint(tokenizer).encode())
    digest.update(_code_fingerprint().encode())
    return digest.hexdigest()[:32]


def _id_lists(lists: list[list[int]]) -> pa.Array:
    """list<int64> Arrow array of Python id lists, through numpy (pa.array on nested lists is ~20x slower)."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))


# Processor output columns that are not id lists, and their Arrow type (the same in every batch, even an empty one).
_OTHER_COLUMNS = {"kto_tags": pa.bool_(), "prompt": pa.string()}


def _table(columns: dict[str, list]) -> pa.Table:
    """A processor's output as an Arrow table: id lists as list<int64>, the columns in _OTHER_COLUMNS as their type
    (kto_tags booleans, unsupervised's prompt text)."""
    arrays = {k: pa.array(v, _OTHER_COLUMNS[k]) if k in _OTHER_COLUMNS else _id_lists(v) for k, v in columns.items()}
    return pa.table(arrays)


def _batches(rows: Iterable[dict], size: int) -> Iterator[dict[str, list]]:
    """Columns of `size` canonical rows at a time, the form a processor takes."""
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield {key: [row[key] for row in chunk] for key in chunk[0]}


# A worker process's processor and its arguments, set once by _init_worker.
_WORK: dict[str, Any] = {}


def _init_worker(function: Any) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process: the processes are the parallelism
    _WORK["function"] = function


def _work(columns: dict[str, list]) -> pa.Table:
    return _table(_WORK["function"](columns))


def _tables(function: Any, batches: Iterator[dict[str, list]], workers: int) -> Iterator[tuple[int, pa.Table]]:
    """(rows in, prepared table) per batch, in order. With workers, at most 2 batches per worker are in flight
    (the reader waits), so memory stays a few batches whatever the file's size."""
    if workers <= 1:
        for columns in batches:
            yield len(columns["_prompt"]), _table(function(columns))
        return
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with multiprocessing.get_context(method).Pool(workers, _init_worker, (function,)) as pool:
        pending: deque = deque()
        for columns in batches:
            pending.append((len(columns["_prompt"]), pool.apply_async(_work, (columns,))))
            if len(pending) >= 2 * workers:
                rows, result = pending.popleft()
                yield rows, result.get()
        while pending:
            rows, result = pending.popleft()
            yield rows, result.get()


def process(
    rows: Iterable[dict],
    total: int | None,
    part: Part,
    template: Any,
    tokenizer: Any,
    data_args: Any,
    path: Path,
    log_file: Path | None = None,
):
    """Prepare canonical rows with the part's processor, a batch at a time, into the Arrow file `path` (written
    atomically), and open it as a Dataset. Progress goes to the log and to `log_file` (core.data.progress)."""
    from datasets import Dataset, Features
    from datasets.arrow_writer import ArrowWriter

    batch_size = data_args.preprocessing_batch_size or 1000
    if part.kind == "feedback":
        # Each KL pair borrows the answer of the next row in its batch; small batches would pair rows too locally.
        batch_size = max(batch_size, 2)
    workers = data_args.preprocessing_num_workers or 1
    if total is not None and total < workers:
        workers = 1
    function = partial(PROCESSORS[part.kind], template=template, tokenizer=tokenizer, data_args=data_args)
    progress = PrepareProgress(part.what, total, log_file)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    writer = None
    try:
        for n, table in _tables(function, _batches(rows, batch_size), workers):
            if writer is None:
                writer = ArrowWriter(path=str(tmp), features=Features.from_arrow_schema(table.schema))
            writer.write_table(table)
            progress.update(n)
        if writer is None:
            raise DataError(f"{part.what}: no rows to prepare. Check the dataset.")
        writer.finalize()
        writer.close()
        os.replace(tmp, path)
    finally:
        if writer is not None and tmp.exists():
            writer.close()
            tmp.unlink(missing_ok=True)
    dataset = Dataset.from_file(str(path))
    progress.finish(len(dataset))
    if part.kind == "supervised" and not (data_args.packing or data_args.neat_packing):
        dropped = progress.done - len(dataset)
        if dropped:
            logger.warning(
                "%s: dropped %d sample(s) whose answer did not fit in cutoff_len=%d.",
                part.what,
                dropped,
                data_args.cutoff_len,
            )
    return dataset


def _log_example(dataset, kind: str, tokenizer: Any) -> None:
    if not logger.isEnabledFor(logging.INFO) or len(dataset) == 0:
        return
    example = dataset[0]
    prefix = "chosen_" if kind == "pairwise" else ""
    ids, labels = example[f"{prefix}input_ids"], example[f"{prefix}labels"]
    learned = [i for i in labels if i != IGNORE_INDEX]
    logger.info("First training sample:\n%s", tokenizer.decode(ids, skip_special_tokens=False))
    logger.info("Its labels (what is learned):\n%s", tokenizer.decode(learned, skip_special_tokens=False))


class _Rows:
    """The rows of each part: streamed from the files when nothing needs them all at once, else read, sampled,
    mixed and split in memory (shared by the two sides of a val_size split)."""

    def __init__(self, data_args: Any, seed: int) -> None:
        self.data_args, self.seed = data_args, seed
        self.held: dict[tuple, tuple[list[dict], list[dict]]] = {}

    def of(self, part: Part, counts: list[int | None]) -> tuple[Iterable[dict], int | None]:
        data_args, seed = self.data_args, self.seed
        if _streams(part, data_args):
            limit = data_args.max_samples
            counts = [min(c, limit) if c is not None and limit else c for c in counts]
            total = None if any(c is None for c in counts) else sum(counts)
            return chain.from_iterable(_converted(a, part.need, data_args, limit) for a in part.attrs), total
        key = (tuple(a.name for a in part.attrs), part.need)
        if key not in self.held:
            sources = []
            for attr, count in zip(part.attrs, counts, strict=True):
                reading = PrepareProgress(f"dataset '{attr.name}'", count, verbs=("Reading", "Read"))
                sources.append(load_rows(attr, part.need, data_args, seed, reading))
                reading.finish()
            rows = mix(sources, data_args, seed)
            val_size = data_args.val_size if part.split else None
            self.held[key] = split_rows(rows, val_size, seed)
        train, held = self.held[key]
        rows = held if part.split == "validation" else train
        return rows, len(rows)


def _prepared(
    part: Part, rows: _Rows, scans: dict, template: Any, tokenizer: Any, data_args: Any, log_file: Path | None
):
    sources = [_source(attr, scans) for attr in part.attrs]
    counts = [count for _, count in sources]
    fp = fingerprint([s for s, _ in sources], part, template, tokenizer, data_args, rows.seed)
    folder = cache_dir() / "preprocessed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{part.kind}-{fp}.arrow"
    if path.is_file() and not data_args.overwrite_cache:
        from datasets import Dataset

        dataset = Dataset.from_file(str(path))
        logger.info(
            "Reused the prepared %s (%s samples) from %s: same data and settings as an earlier run "
            "(overwrite_cache: true prepares it again).",
            part.what,
            f"{len(dataset):,}",
            path,
        )
        return dataset
    part_rows, total = rows.of(part, counts)
    dataset = process(part_rows, total, part, template, tokenizer, data_args, path, log_file)
    if len(dataset) == 0:
        raise DataError(f"{part.what}: no sample left after preprocessing. Raise cutoff_len or check the data.")
    return dataset


def _progress_file(training_args: Any) -> Path | None:
    """trainer_log.jsonl of the run, written by the main process only."""
    output_dir = training_args.output_dir
    if not output_dir or training_args.process_index != 0:
        return None
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return Path(output_dir) / TRAINER_LOG


def get_dataset(
    template: Any, model_args: Any, data_args: Any, training_args: Any, stage: str, tokenizer: Any
) -> dict[str, Any]:
    """Tokenized train and eval sets for a stage (see the module docstring)."""
    if stage not in STAGE_PROCESSOR:
        raise DataError(f"stage: received {stage!r} — use one of {', '.join(STAGE_PROCESSOR)}.")
    if data_args.streaming and data_args.tokenized_path:
        raise DataError(
            "tokenized_path: a stream is tokenized while training and cannot be saved; remove one of them."
        )
    tokenized_path = data_args.tokenized_path
    if tokenized_path and Path(tokenized_path).exists():
        from datasets import load_from_disk

        logger.info("Loading the tokenized dataset from %s (tokenized_path).", tokenized_path)
        saved = load_from_disk(str(tokenized_path))
        return {"train_dataset": saved.get("train"), "eval_dataset": saved.get("validation")}

    seed = training_args.data_seed or training_args.seed
    first = getattr(training_args, "main_process_first", None)
    guard = first(desc="preprocessing the dataset") if callable(first) else contextlib.nullcontext()
    with guard:
        parts = _parts(data_args, training_args, stage)
        rows, scans, log_file = _Rows(data_args, seed), {}, _progress_file(training_args)
        train_dataset: Any = None
        eval_dataset: Any = None
        for part in parts:
            if part.what == "train set" and data_args.streaming:
                from core.data.streaming import streamed_dataset

                train_dataset = streamed_dataset(
                    part,
                    template,
                    tokenizer,
                    data_args,
                    stage,
                    seed,
                    convert=_converted,
                    mix=mix_lazily,
                    processor=PROCESSORS[part.kind],
                )
                continue
            dataset = _prepared(part, rows, scans, template, tokenizer, data_args, log_file)
            if part.what == "train set":
                train_dataset = dataset
                _log_example(dataset, part.kind, tokenizer)
            elif part.name is not None:
                eval_dataset = {**(eval_dataset or {}), part.name: dataset}
            else:
                eval_dataset = dataset

        if tokenized_path:
            from datasets import DatasetDict

            parts = {"train": train_dataset, "validation": eval_dataset}
            DatasetDict({k: v for k, v in parts.items() if v is not None and not isinstance(v, dict)}).save_to_disk(
                str(tokenized_path)
            )
            logger.info("Saved the tokenized dataset to %s; later runs load it from there.", tokenized_path)
    return {"train_dataset": train_dataset, "eval_dataset": eval_dataset}

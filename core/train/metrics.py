"""Scores for generated text: BLEU-4 over characters, ROUGE-1/2/L over words (jieba segments Chinese).

Characters for BLEU and jieba words for ROUGE make both meaningful for Chinese, where whitespace splitting would
see one "word" per sentence; jieba leaves English words and numbers whole. Scores are 0-100, averaged over
samples, as LLaMA-Factory reports them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def _words(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [word for word in jieba.cut(text) if word.strip()]


def sample_scores(prediction: str, label: str) -> dict[str, float]:
    """BLEU-4 and ROUGE-1/2/L F1 of one prediction against one reference, 0-100."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    hypothesis, reference = _words(prediction), _words(label)
    scores = {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    if hypothesis and reference:
        # rouge_chinese wants space-joined tokens; it raises on an empty side, which scores 0 anyway.
        result = Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
        scores = {key: 100 * value["f"] for key, value in result.items()}
    if prediction.strip() and label.strip():
        bleu = sentence_bleu([list(label)], list(prediction), smoothing_function=SmoothingFunction().method3)
    else:
        bleu = 0.0
    scores["bleu-4"] = 100 * bleu
    return scores


def compute_generation_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Mean `predict_bleu-4`, `predict_rouge-1`, `predict_rouge-2`, `predict_rouge-l`, and exact-match accuracy."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not predictions:
        return {}
    totals = {"bleu-4": 0.0, "rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    exact = 0
    for prediction, label in zip(predictions, labels, strict=True):
        for key, value in sample_scores(prediction, label).items():
            totals[key] += value
        exact += prediction.strip() == label.strip()
    count = len(predictions)
    metrics = {key: round(value / count, 4) for key, value in totals.items()}
    metrics["exact_match"] = round(100 * exact / count, 4)
    return metrics

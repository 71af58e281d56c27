"""Text-generation metrics, as pure functions of predictions and references.

Every score is in [0, 1]. A ``None`` prediction (a failed generation) counts as the empty string, so it scores 0
against any non-empty reference instead of being dropped.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

from tunekit.components.common.errors import UserError

CLASSIFICATION = "classification"
SUMMARIZATION = "summarization"
EXTRACTIVE_QA = "extractive_qa"
CHAT = "chat"
GENERIC = "generic"
TASKS = (CLASSIFICATION, SUMMARIZATION, EXTRACTIVE_QA, CHAT, GENERIC)

#: The metric a task's model is judged (and gated) on.
PRIMARY_METRIC: dict[str, str] = {
    CLASSIFICATION: "accuracy",
    # F1 gives partial credit for answers that overlap the gold span; exact_match is reported alongside.
    EXTRACTIVE_QA: "token_f1",
    SUMMARIZATION: "rougeL",
    CHAT: "rougeL",
    GENERIC: "rougeL",
}

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str | None) -> str:
    """SQuAD-style normalisation: lowercase, drop punctuation and the articles a/an/the, squeeze whitespace."""
    if not text:
        return ""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str | None, reference: str | None) -> float:
    """1.0 when the normalised prediction equals the normalised reference, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str | None, reference: str | None) -> float:
    """SQuAD token-overlap F1 of the normalised texts; two empty texts agree (1.0), one empty text scores 0.0."""
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = collections.Counter(predicted) & collections.Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def accuracy(predictions: Sequence[str | None], references: Sequence[str | None]) -> float:
    """Share of predicted classes equal to the reference class after normalisation; 0.0 for no examples."""
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    return sum(exact_match(p, r) for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[str | None], references: Sequence[str | None]) -> float:
    """F1 per reference class (normalised), averaged over the classes, so rare classes weigh as much as others."""
    _check_lengths(predictions, references)
    predicted = [normalize_answer(p) for p in predictions]
    gold = [normalize_answer(r) for r in references]
    classes = sorted(set(gold))
    if not classes:
        return 0.0
    scores = []
    for label in classes:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


class _UnicodeTokenizer:
    """rouge-score's tokenisation (lowercase, Porter stems of words over 3 letters) for any script.

    rouge-score's default tokenizer keeps only ``[a-z0-9]``, which scores every non-English text 0.
    """

    def __init__(self) -> None:
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens = re.findall(r"\w+", text.lower(), re.UNICODE)
        return [self._stemmer.stem(t) if t.isascii() and len(t) > 3 else t for t in tokens]


_ROUGE_SCORERS: dict[tuple[str, ...], object] = {}


def _rouge_scorer(types: tuple[str, ...]):
    from rouge_score import rouge_scorer

    if types not in _ROUGE_SCORERS:
        _ROUGE_SCORERS[types] = rouge_scorer.RougeScorer(list(types), tokenizer=_UnicodeTokenizer())
    return _ROUGE_SCORERS[types]


def rouge(prediction: str | None, reference: str | None, types: Sequence[str] = ("rougeL",)) -> dict[str, float]:
    """ROUGE F-measures (Google's rouge-score) of one prediction, e.g. ``{"rougeL": 0.5}``."""
    scores = _rouge_scorer(tuple(types)).score(reference or "", prediction or "")
    return {name: float(score.fmeasure) for name, score in scores.items()}


def rouge_l(prediction: str | None, reference: str | None) -> float:
    """ROUGE-L F-measure of one prediction against one reference."""
    return rouge(prediction, reference)["rougeL"]


def chrf(prediction: str | None, reference: str | None) -> float:
    """Sentence-level chrF (sacrebleu) of one prediction, scaled to [0, 1]."""
    from sacrebleu.metrics import CHRF

    # Averaging sentence scores, unlike corpus chrF, lets an empty answer to a short reference cost its share.
    return CHRF().sentence_score(prediction or "", [reference or ""]).score / 100.0


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def compute_metrics(
    task: str, predictions: Sequence[str | None], references: Sequence[str | None]
) -> dict[str, float]:
    """The metrics of ``task``, averaged over examples.

    - ``classification``: ``accuracy``, ``macro_f1``.
    - ``extractive_qa``: ``exact_match``, ``token_f1``.
    - ``summarization``: ``rouge1``, ``rouge2``, ``rougeL``.
    - ``chat``: ``rougeL``, ``chrf``.
    - ``generic``: ``rougeL``, ``chrf``, ``exact_match``.

    Args:
        task: One of :data:`TASKS`.
        predictions: Model outputs; ``None`` counts as an empty answer.
        references: Gold answers, one per prediction.

    Returns:
        ``metric name -> score`` in [0, 1], including the task's :data:`PRIMARY_METRIC`. Every score is 0.0 when
        there are no examples.

    Raises:
        UserError: ``task`` is unknown.
        ValueError: The two lists differ in length.
    """
    if task not in TASKS:
        raise UserError(f"unknown task '{task}'; use one of {', '.join(TASKS)}", field="task")
    _check_lengths(predictions, references)
    pairs = list(zip(predictions, references, strict=True))
    if task == CLASSIFICATION:
        return {"accuracy": accuracy(predictions, references), "macro_f1": macro_f1(predictions, references)}
    if task == EXTRACTIVE_QA:
        return {
            "exact_match": _mean([exact_match(p, r) for p, r in pairs]),
            "token_f1": _mean([token_f1(p, r) for p, r in pairs]),
        }
    if task == SUMMARIZATION:
        types = ("rouge1", "rouge2", "rougeL")
        scores = [rouge(p, r, types) for p, r in pairs]
        return {name: _mean([s[name] for s in scores]) for name in types}
    result = {
        "rougeL": _mean([rouge_l(p, r) for p, r in pairs]),
        "chrf": _mean([chrf(p, r) for p, r in pairs]),
    }
    if task == GENERIC:
        result["exact_match"] = _mean([exact_match(p, r) for p, r in pairs])
    return result

"""Text-generation metrics, as pure functions of predictions and references.

Every score is in [0, 1]. A ``None`` prediction (a failed generation) counts as the empty string, so it scores 0
against any non-empty reference instead of being dropped.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def normalize_label(text: str | None) -> str:
    """A class label for comparison: lowercase, no punctuation, squeezed whitespace.

    Unlike :func:`normalize_answer` it keeps articles, so that labels such as ``A`` (a multiple-choice option)
    stay distinct from the empty answer.
    """
    if not text:
        return ""
    return " ".join("".join(ch for ch in text.lower() if ch not in _PUNCTUATION).split())


def label_match(prediction: str | None, reference: str | None) -> float:
    """1.0 when the two labels are equal after :func:`normalize_label`, else 0.0."""
    return float(normalize_label(prediction) == normalize_label(reference))


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
    """Share of predicted classes equal to the reference class (:func:`normalize_label`); 0.0 for no examples."""
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    return sum(label_match(p, r) for p, r in zip(predictions, references, strict=True)) / len(references)


def macro_f1(predictions: Sequence[str | None], references: Sequence[str | None]) -> float:
    """F1 per reference class (normalised), averaged over the classes, so rare classes weigh as much as others."""
    _check_lengths(predictions, references)
    predicted = [normalize_label(p) for p in predictions]
    gold = [normalize_label(r) for r in references]
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


#: The confusion matrix's column for predictions that are none of the reference classes.
OTHER = "(other)"


@dataclass
class ClassificationReport:
    """Per-class figures and the confusion matrix of a classifier's answers (normalised labels).

    Attributes:
        labels: The reference classes, sorted, plus :data:`OTHER` when some prediction is none of them.
        matrix: ``matrix[i][j]`` counts rows whose reference is ``labels[i]`` and prediction ``labels[j]``. The
            :data:`OTHER` row is all zeros (no reference is "other"), which keeps the matrix square as KFP's
            ``ClassificationMetrics.log_confusion_matrix`` requires.
        precision: ``class -> precision`` (0.0 for a class never predicted).
        recall: ``class -> recall``.
        f1: ``class -> F1``.
        support: ``class -> number of reference rows``.
    """

    labels: list[str]
    matrix: list[list[int]]
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    f1: dict[str, float] = field(default_factory=dict)
    support: dict[str, int] = field(default_factory=dict)


def classification_report(
    predictions: Sequence[str | None], references: Sequence[str | None]
) -> ClassificationReport:
    """Per-class precision, recall and F1, and the confusion matrix, after :func:`normalize_label`.

    A ``None`` prediction counts as the empty answer, which is :data:`OTHER` unless '' is a reference class.
    """
    _check_lengths(predictions, references)
    predicted = [normalize_label(p) for p in predictions]
    gold = [normalize_label(r) for r in references]
    classes = sorted(set(gold))
    labels = classes + ([OTHER] if any(p not in classes for p in predicted) else [])
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for p, g in zip(predicted, gold, strict=True):
        matrix[index[g]][index.get(p, index.get(OTHER, 0))] += 1
    report = ClassificationReport(labels=labels, matrix=matrix)
    for label in classes:
        i = index[label]
        tp = matrix[i][i]
        predicted_as = sum(row[i] for row in matrix)
        support = sum(matrix[i])
        report.support[label] = support
        report.precision[label] = tp / predicted_as if predicted_as else 0.0
        report.recall[label] = tp / support if support else 0.0
        report.f1[label] = 2 * tp / (predicted_as + support) if tp else 0.0
    return report


def row_scores(task: str, predictions: Sequence[str | None], references: Sequence[str | None]) -> list[float]:
    """The primary metric (:data:`PRIMARY_METRIC`) of every row, whose mean is the task's primary figure.

    These are what the paired bootstrap resamples (see :mod:`tunekit.components.evaluation.bootstrap`).

    Raises:
        UserError: ``task`` is unknown.
        ValueError: The two lists differ in length.
    """
    _check_task_and_lengths(task, predictions, references)
    metric = PRIMARY_METRIC[task]
    pairs = zip(predictions, references, strict=True)
    if metric == "accuracy":
        return [label_match(p, r) for p, r in pairs]
    if metric == "token_f1":
        return [token_f1(p, r) for p, r in pairs]
    return [rouge(p, r, (metric,))[metric] for p, r in pairs]


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


def _check_task_and_lengths(task: str, predictions: Sequence, references: Sequence) -> None:
    if task not in TASKS:
        raise UserError(f"unknown task '{task}'; use one of {', '.join(TASKS)}", field="task")
    _check_lengths(predictions, references)


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
    _check_task_and_lengths(task, predictions, references)
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

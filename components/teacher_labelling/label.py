"""Teacher labelling: a large model labels unlabelled inputs from a few-shot prompt.

Input columns:
    ``input_text`` (required); ``output_text`` (optional gold label); ``context`` (optional, extractive QA: else
    the ``context:`` section of ``input_text``); any other columns are carried through.

Output columns (one row per input row, in order, nothing dropped):
    every input column, and
    ``output_text``: the gold label when the row had one, else the teacher's label when it is usable, else null;
    ``teacher_label``: the teacher's normalised label (null when unusable or not asked);
    ``teacher_raw``: the teacher's text as it answered (null when not asked);
    ``label_status``: ``ok``, ``out_of_set`` (a class not allowed, or a QA answer not in its context),
    ``blocked``, ``truncated``, ``empty``, ``failed``, ``not_requested`` (a gold row not sent: an exemplar, or
    gold evaluation off) or ``dry_run``;
    ``label_source``: ``gold``, ``teacher`` or ``none``;
    ``teacher_correct``: for gold rows the teacher was asked about, whether it agreed (else null);
    ``label_error``: why the status is not ``ok``;
    ``from_cache``: whether the answer came from the response cache (nothing paid).

Prompts: an instruction (a default per task type), the allowed classes for classification, exemplars as
``Input: ... / Output: ...`` pairs, then the row's input and an open ``Output:``. Exemplars come from the user,
else from a labelled seed set, else from the input's own labelled rows (which then do not count toward accuracy).
"""

from __future__ import annotations

import collections
import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import FAILED, OK, GenerationConfig, Prompt
from tunekit.components.model_clients.engine import Engine, dry_run

CLASSIFICATION = "classification"
EXTRACTIVE_QA = "extractive_qa"
#: Row statuses beyond the model's own (ok, blocked, truncated, empty, failed).
OUT_OF_SET = "out_of_set"
NOT_REQUESTED = "not_requested"
DRY_RUN = "dry_run"
#: ``label_mode`` values: ``cot`` passes rows through (rationale extraction labels them), ``separate`` labels them.
LABEL_MODES = ("cot", "separate")

DEFAULT_INSTRUCTIONS = {
    CLASSIFICATION: "Classify the input into exactly one of the classes below. Answer with the class name only.",
    EXTRACTIVE_QA: (
        "Answer the question with the shortest span copied exactly from the context. Answer with the span only."
    ),
}
GENERIC_INSTRUCTION = "Write the output for the input, in the same style and format as the examples."

_CONTEXT_RE = re.compile(r"(?:^|\n)\s*context\s*:\s*(.*?)(?=\n\s*question\s*:|\Z)", re.IGNORECASE | re.DOTALL)
_PREFIX_RE = re.compile(r"^\s*(?:output|answer|label|class|category)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’"


@dataclass
class LabellingConfig:
    """What the teacher is asked and how its answers are read.

    Attributes:
        task: ``classification``, ``extractive_qa``, or any other name for free text (``summarization``...).
        classes: The allowed classes (classification; required there).
        instruction: Replaces the default instruction of the task type.
        exemplars: Exemplars given by the user: ``{"input_text": ..., "output_text": ...}`` rows.
        num_exemplars: Exemplars drawn from the seed set (or the input's labelled rows) when none are given.
        seed: Seed of the exemplar draw (the same prompts every run, so the cache answers a re-run).
        evaluate_gold: Also ask the teacher about rows that have a gold label, to report its accuracy.
        max_output_tokens: The teacher's output budget.
        temperature: The teacher's sampling temperature.
        system: An optional system instruction.
    """

    task: str = "generic"
    classes: list[str] = field(default_factory=list)
    instruction: str = ""
    exemplars: list[dict[str, Any]] = field(default_factory=list)
    num_exemplars: int = 4
    seed: int = 0
    evaluate_gold: bool = True
    max_output_tokens: int = 64
    temperature: float = 0.0
    system: str = ""

    def __post_init__(self):
        if self.task == CLASSIFICATION and not self.classes:
            raise UserError("classification needs the allowed classes", field="classes")
        if self.num_exemplars < 0:
            raise UserError("num_exemplars must be >= 0", field="num_exemplars")

    def generation_config(self) -> GenerationConfig:
        """The decoding settings sent to the teacher."""
        return GenerationConfig(max_output_tokens=self.max_output_tokens, temperature=self.temperature)


def has_gold(row: Mapping[str, Any]) -> bool:
    """Whether a row carries a gold label in ``output_text``."""
    value = row.get("output_text")
    return value is not None and str(value).strip() != ""


def row_context(row: Mapping[str, Any]) -> str | None:
    """An extractive-QA row's context: its ``context`` column, else the ``context:`` section of its input."""
    if row.get("context"):
        return str(row["context"])
    match = _CONTEXT_RE.search(str(row.get("input_text") or ""))
    return match.group(1).strip() if match else None


def seed_pair(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A seed row as an exemplar (``input_text``, ``output_text``), or None when it has no input or no label.

    Text pairs are taken as they are. Chain-of-thought exemplars (rationale extraction's: ``question``, ``input``
    or ``text`` with an ``answer``) become text pairs too, so one exemplar file serves both teacher prompts; rows
    with fields a text pair cannot hold (``choices``, ``premise``, ``context``) are left out.
    """
    if str(row.get("input_text") or "").strip() and has_gold(row):
        return dict(row)
    if any(row.get(k) is not None for k in ("choices", "premise", "hypothesis", "context")):
        return None
    text = next((str(row[k]) for k in ("input", "question", "text") if str(row.get(k) or "").strip()), "")
    answer = row.get("answer", row.get("label"))
    if not text or answer is None or not str(answer).strip():
        return None
    return {"input_text": text, "output_text": str(answer).strip()}


def choose_exemplars(
    config: LabellingConfig, seed_rows: Sequence[Mapping[str, Any]], input_rows: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], set[int]]:
    """The exemplars, and the indices of input rows used as exemplars (kept out of the accuracy).

    Raises:
        UserError: A given exemplar lacks ``input_text`` or ``output_text``.
    """
    if config.exemplars:
        for number, exemplar in enumerate(config.exemplars, start=1):
            if not str(exemplar.get("input_text") or "").strip() or not has_gold(exemplar):
                raise UserError(f"exemplar {number} needs input_text and output_text", field="exemplars")
        return [dict(e) for e in config.exemplars], set()
    if config.num_exemplars == 0:
        return [], set()
    rng = random.Random(config.seed)
    pool = [pair for pair in (seed_pair(r) for r in seed_rows) if pair is not None]
    if pool:
        return rng.sample(pool, min(config.num_exemplars, len(pool))), set()
    labelled = [i for i, r in enumerate(input_rows) if has_gold(r) and str(r.get("input_text") or "").strip()]
    picked = sorted(rng.sample(labelled, min(config.num_exemplars, len(labelled))))
    return [dict(input_rows[i]) for i in picked], set(picked)


def build_prompt(config: LabellingConfig, exemplars: Sequence[Mapping[str, Any]], input_text: str) -> Prompt:
    """The few-shot labelling prompt for one input."""
    instruction = config.instruction.strip() or DEFAULT_INSTRUCTIONS.get(config.task, GENERIC_INSTRUCTION)
    parts = [instruction]
    if config.task == CLASSIFICATION:
        parts.append("Classes: " + ", ".join(str(c) for c in config.classes))
    for exemplar in exemplars:
        parts.append(
            f"Input: {str(exemplar['input_text']).strip()}\nOutput: {str(exemplar['output_text']).strip()}"
        )
    parts.append(f"Input: {input_text.strip()}\nOutput:")
    return Prompt(text="\n\n".join(parts), system=config.system or None)


def _clean_answer(text: str) -> str:
    # The teacher may go on into an invented next example; the label is what comes before it.
    text = re.split(r"\n\s*Input\s*:", text, maxsplit=1)[0].strip()
    return _PREFIX_RE.sub("", text).strip()


def normalise_label(
    task: str, text: str, classes: Sequence[str] = (), context: str | None = None
) -> tuple[str | None, str, str]:
    """Reads a teacher's answer for the task type.

    Classification: the allowed class it names (case-insensitive, quotes and end punctuation ignored, or the one
    class its first line mentions); anything else is ``out_of_set``. Extractive QA: the answer must be a
    substring of the context (case-insensitive; the context's own spelling is returned), else ``out_of_set``.
    Free text: kept as is (trimmed).

    Returns:
        ``(label or None, status, error)``.
    """
    cleaned = _clean_answer(text)
    if not cleaned:
        return None, "empty", "no answer text"
    if task == CLASSIFICATION:
        first = cleaned.splitlines()[0].strip().strip(_QUOTES).rstrip(".!").strip().strip(_QUOTES).strip()
        lowered = {str(c).strip().lower(): str(c) for c in classes}
        if first.lower() in lowered:
            return lowered[first.lower()], OK, ""
        named = [c for low, c in lowered.items() if re.search(rf"(?<!\w){re.escape(low)}(?!\w)", first.lower())]
        if len(named) == 1:
            return named[0], OK, ""
        return None, OUT_OF_SET, f"{first[:80]!r} is not one of the classes"
    if task == EXTRACTIVE_QA:
        span = cleaned.splitlines()[0].strip().strip(_QUOTES).strip()
        if context is None:
            return span, OK, ""
        for candidate in (span, span.rstrip(".")):
            if candidate and candidate in context:
                return candidate, OK, ""
            start = context.lower().find(candidate.lower()) if candidate else -1
            if start >= 0:
                return context[start : start + len(candidate)], OK, ""
        return None, OUT_OF_SET, f"{span[:80]!r} is not a substring of the context"
    return cleaned, OK, ""


def _norm_text(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def labels_agree(task: str, predicted: str | None, gold: object) -> bool:
    """Whether a teacher label matches a gold label.

    Class names compare case-insensitively; QA spans and free text after SQuAD-style normalisation (case,
    punctuation, articles, spaces).
    """
    if predicted is None or gold is None:
        return False
    if task == CLASSIFICATION:
        return predicted.strip().lower() == str(gold).strip().lower()
    return _norm_text(predicted) == _norm_text(str(gold))


@dataclass
class LabellingResult:
    """Labelled rows and the report.

    Attributes:
        rows: One output row per input row, in order (see the module docstring's output columns).
        report: Counts (``rows``, ``labelled_by_teacher``, ``gold_rows``, ``status_*``...), ``accuracy`` against
            gold where there was gold, and the engine's tokens, calls and cost (or the dry run's estimate).
    """

    rows: list[dict[str, Any]]
    report: dict[str, Any]


def label_rows(
    rows: Sequence[Mapping[str, Any]],
    engine: Engine,
    config: LabellingConfig,
    *,
    seed_rows: Sequence[Mapping[str, Any]] = (),
    dry_run_only: bool = False,
    expected_output_tokens: int | None = None,
) -> LabellingResult:
    """Labels the rows with the teacher behind ``engine``.

    Args:
        rows: Input rows (``input_text``, optional ``output_text`` and ``context``).
        engine: The teacher (any backend); its cache makes a re-run free.
        config: What to ask and how to read answers.
        seed_rows: A labelled seed set for exemplars.
        dry_run_only: Estimate tokens and cost; send nothing (rows get status ``dry_run``).
        expected_output_tokens: A typical answer's length for the dry run's likelier cost.

    Raises:
        UserError: A row has no ``input_text``.
    """
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("input_text"), str) or not row["input_text"].strip():
            raise UserError("every row needs a non-empty input_text", line=number, field="input_text")
    exemplars, exemplar_rows = choose_exemplars(config, seed_rows, rows)
    ask = [
        i for i, row in enumerate(rows) if not has_gold(row) or (config.evaluate_gold and i not in exemplar_rows)
    ]
    prompts = [build_prompt(config, exemplars, rows[i]["input_text"]) for i in ask]
    generation_config = config.generation_config()
    report: dict[str, Any] = {
        "rows": len(rows),
        "gold_rows": sum(1 for r in rows if has_gold(r)),
        "unlabelled_rows": sum(1 for r in rows if not has_gold(r)),
        "asked": len(ask),
        "exemplars": len(exemplars),
        "task": config.task,
    }
    out = [_base_row(row) for row in rows]
    if dry_run_only:
        estimate = dry_run(engine, prompts, generation_config, expected_output_tokens=expected_output_tokens)
        for i in ask:
            out[i].update(label_status=DRY_RUN)
        report.update({k: v for k, v in vars(estimate).items()})
        report["statuses"] = dict(collections.Counter(r["label_status"] for r in out))
        return LabellingResult(out, report)

    results = engine.run(prompts, generation_config) if prompts else []
    correct = answered_gold = asked_gold = 0
    for i, result in zip(ask, results, strict=True):
        row, generation = out[i], result.generation
        row["teacher_raw"] = generation.text if generation.status != FAILED else None
        row["from_cache"] = result.cached
        if generation.status == OK:
            label, status, error = normalise_label(
                config.task,
                generation.text,
                config.classes,
                row_context(rows[i]) if config.task == EXTRACTIVE_QA else None,
            )
        else:
            label, status, error = None, generation.status, generation.error
        row.update(teacher_label=label, label_status=status, label_error=error)
        if has_gold(rows[i]):
            asked_gold += 1
            agree = labels_agree(config.task, label, rows[i]["output_text"])
            row["teacher_correct"] = agree
            correct += agree
            answered_gold += label is not None
        elif label is not None:
            row.update(output_text=label, label_source="teacher")
    statuses = collections.Counter(r["label_status"] for r in out)
    report.update(
        labelled_by_teacher=sum(1 for r in out if r["label_source"] == "teacher"),
        unusable=sum(1 for i in ask if out[i]["label_status"] != OK and not has_gold(rows[i])),
        statuses=dict(statuses),
        gold_evaluated=asked_gold,
        accuracy=(correct / asked_gold) if asked_gold else None,
        accuracy_answered=(correct / answered_gold) if answered_gold else None,
        engine=engine.report.to_dict(),
    )
    return LabellingResult(out, report)


def _base_row(row: Mapping[str, Any]) -> dict[str, Any]:
    gold = has_gold(row)
    out = dict(row)
    out.update(
        output_text=row.get("output_text") if gold else None,
        teacher_label=None,
        teacher_raw=None,
        label_status=NOT_REQUESTED,
        label_source="gold" if gold else "none",
        teacher_correct=None,
        label_error="",
        from_cache=False,
    )
    return out


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The report's numbers as flat metrics (for a KFP ``Metrics`` artifact)."""
    metrics: dict[str, float] = {}
    for key in ("rows", "gold_rows", "unlabelled_rows", "asked", "exemplars", "labelled_by_teacher", "unusable"):
        if key in report:
            metrics[key] = float(report[key])
    for key in ("accuracy", "accuracy_answered"):
        if report.get(key) is not None:
            metrics[f"teacher_{key}"] = float(report[key])
    for status, count in (report.get("statuses") or {}).items():
        metrics[f"rows_{status}"] = float(count)
    engine = report.get("engine") or {}
    for key in (
        "calls",
        "billed_calls",
        "unanswered_billed",
        "attempts",
        "retries",
        "cache_hits",
        "input_tokens",
        "output_tokens",
        "rate_limited",
    ):
        if key in engine:
            metrics[key] = float(engine[key])
    if engine.get("cost") is not None:
        metrics["estimated_cost_usd"] = round(float(engine["cost"]), 6)
    for key in ("to_send", "cached", "input_tokens", "max_output_tokens", "cost_upper_bound", "cost_expected"):
        if key in report and report[key] is not None and "engine" not in report:
            metrics[f"dry_run_{key}"] = float(report[key])
    return metrics

"""Evaluating a distilled student beside its teacher (and a label-only baseline) on the same held-out rows.

Input rows (JSON Lines, from the student-dataset step): ``input_text``, ``reference`` (the label to match),
``reference_source`` (``gold`` or ``teacher``), and the task type's fields for the teacher's prompt.

For every model the answers are scored against ``reference``: ``accuracy`` (answers that agree for the task type:
the same class or option, equal arithmetic value, the same text up to case and spacing), plus the task's metrics
from :func:`~tunekit.components.evaluation.metrics.compute_metrics`. The teacher answers with its chain of thought
(the answer parsed from it); the students answer the label task only, as they would in serving (a ``cot`` student
writes its reasoning and the answer after it is taken).

One table sets them side by side with each model's size and cost per 1,000 predictions: the teacher's and a Gemini
student's from token counts at list prices (``price_table``), an open student's from its measured prediction time
here at ``student_cost_per_hour`` (an assumed serving machine's price; say which when reporting it).

When a model is already deployed for the run's ``purpose`` (the champion), it answers the same rows as a fourth
model, and the gate requires the student to beat it (:mod:`~tunekit.components.evaluation.gate`);
the differences against the baseline and the champion come with paired bootstrap intervals over the rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.evaluation.gate import (
    CHAMPION,
    GatePolicy,
    compare,
    describe_champion,
    locate_champion,
)
from tunekit.components.evaluation.metrics import compute_metrics, row_scores
from tunekit.components.model_clients.base import OK, Generation, GenerationConfig, ModelClient, Prompt
from tunekit.components.rationale_extraction.parsing import answers_agree

TEACHER, BASELINE, STUDENT = "teacher", "baseline", "student"

#: Distillation is judged on label accuracy, except where the label is text to be scored by overlap.
GATE_METRIC = {"summarization": "rougeL", "extractive_qa": "token_f1"}


def gate_metric(task: str) -> str:
    """The metric the gate compares for ``task``."""
    return GATE_METRIC.get(task, "accuracy")


@dataclass
class ModelScore:
    """One model's results on the evaluation rows.

    Attributes:
        name: ``teacher``, ``baseline`` or ``student``.
        metrics: Metric name -> value in [0, 1].
        statuses: Generation status -> count.
        size: A human-readable size (parameters, or the model's name for managed models).
        parameters: Parameter count, when known.
        cost_per_1000: Dollars per 1,000 predictions, or None when unknown.
        cost_basis: How the cost was computed.
        seconds_per_prediction: Measured wall time per prediction, when measured here.
        predictions: The answers, one per row.
        row_scores: The gate metric of every row, in row order (for the paired bootstrap).
    """

    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    size: str = ""
    parameters: int | None = None
    cost_per_1000: float | None = None
    cost_basis: str = ""
    seconds_per_prediction: float | None = None
    predictions: list[str] = field(default_factory=list)
    row_scores: list[float] = field(default_factory=list)


def gate_row_scores(
    answers: Sequence[str | None], rows: Sequence[dict], *, task: str, task_type: str
) -> list[float]:
    """The gate metric (:func:`gate_metric`) of every row: agreement for accuracy, else the task's row score."""
    references = [str(r["reference"]) for r in rows]
    if gate_metric(task) == "accuracy":
        return [float(answers_agree(task_type, a, ref)) for a, ref in zip(answers, references, strict=True)]
    return row_scores(task, [a or "" for a in answers], references)


def score(
    name: str, answers: Sequence[str | None], rows: Sequence[dict], *, task: str, task_type: str
) -> dict[str, float]:
    """``accuracy`` against the rows' references for ``task_type``, plus ``task``'s metrics."""
    references = [str(r["reference"]) for r in rows]
    agree = [answers_agree(task_type, a, ref) for a, ref in zip(answers, references, strict=True)]
    metrics = {"accuracy": sum(agree) / len(agree) if agree else 0.0}
    for key, value in compute_metrics(task, [a or "" for a in answers], references).items():
        metrics.setdefault(key, value)
    return metrics


def student_answers(
    client: ModelClient, rows: Sequence[dict], *, prefix: str, cot: bool, max_output_tokens: int
) -> tuple[list[str], list[Generation], float]:
    """The student's answers (the label task only), its generations, and the seconds it took."""
    from tunekit.components.tuning.distillation.local import answer_from_cot

    prompts = [Prompt(prefix + str(r["input_text"])) for r in rows]
    started = time.perf_counter()
    generations = client.generate(prompts, GenerationConfig(max_output_tokens=max_output_tokens))
    elapsed = time.perf_counter() - started
    texts = [g.text if g.status == OK else (g.text or "") for g in generations]
    return [answer_from_cot(t) if cot else t.strip() for t in texts], generations, elapsed


def token_cost_per_1000(model: str, generations: Sequence[Generation], price_table: dict | None) -> float | None:
    """Dollars per 1,000 predictions at ``model``'s list price, from the generations' token counts."""
    from tunekit.components.model_clients import pricing

    if not generations:
        return None
    cost = pricing.estimate_cost(
        model,
        sum(g.input_tokens for g in generations),
        sum(g.output_tokens for g in generations),
        pricing.parse_price_table(price_table),
    )
    return None if cost is None else cost * 1000 / len(generations)


def render_table(scores: Sequence[ModelScore], *, task: str, reference_source: str, rows: int) -> str:
    """The report's one table: accuracy, the gate metric, size and cost per 1,000 predictions per model."""
    metric = gate_metric(task)
    extra = [m for m in (metric,) if m != "accuracy"]
    header = ["model", "accuracy", *extra, "size", "cost per 1,000 predictions"]
    lines = [
        f"Evaluation on {rows} held-out rows (references: {reference_source} labels)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    for s in scores:
        cost = "n/a" if s.cost_per_1000 is None else f"${s.cost_per_1000:.4f} ({s.cost_basis})"
        cells = [s.name, f"{s.metrics.get('accuracy', 0.0):.4f}"]
        cells += [f"{s.metrics.get(m, 0.0):.4f}" for m in extra]
        cells += [s.size or "n/a", cost]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval_text(a: ModelScore, b: ModelScore, policy: GatePolicy) -> str:
    if not a.row_scores or len(a.row_scores) != len(b.row_scores):
        return ""
    from tunekit.components.evaluation.bootstrap import paired_bootstrap

    interval = paired_bootstrap(
        a.row_scores, b.row_scores, resamples=policy.resamples, confidence=policy.confidence, seed=policy.seed
    )
    return f", {interval.confidence:.0%} CI [{interval.low:+.4f}, {interval.high:+.4f}]"


def decide_gate(
    scores: dict[str, ModelScore],
    *,
    task: str,
    min_student_metric: float,
    min_improvement_over_baseline: float,
    policy: GatePolicy | None = None,
    champion_label: str = "",
    champion_error: str = "",
) -> tuple[bool, str]:
    """The gate: the student's metric, the label-only baseline (when trained) and the champion (when deployed).

    Passes when the student reaches ``min_student_metric``, beats the baseline by ``min_improvement_over_baseline``
    and, with ``policy.beat_champion``, beats the champion (ties at a perfect score pass); with
    ``policy.require_significant`` the required differences' bootstrap intervals must lie above 0. A champion that
    could not be scored (``champion_error``) fails the gate when beating it is required.
    """
    policy = policy or GatePolicy()
    metric = gate_metric(task)
    student = scores[STUDENT].metrics[metric]
    reasons = []
    passed = student >= min_student_metric
    reasons.append(f"student {metric} {student:.4f} (required at least {min_student_metric:.4f})")
    if BASELINE in scores:
        baseline = scores[BASELINE].metrics[metric]
        delta = student - baseline
        ok = delta >= min_improvement_over_baseline
        ci = _interval_text(scores[STUDENT], scores[BASELINE], policy)
        if policy.require_significant and BASELINE in scores:
            result = compare(
                BASELINE, scores[STUDENT].row_scores, scores[BASELINE].row_scores, metric=metric, policy=policy
            )
            ok = ok and result.interval is not None and result.interval.low > 0
        passed = passed and ok
        reasons.append(
            f"vs label-only baseline {baseline:.4f} (change {delta:+.4f}{ci}, required at least "
            f"{min_improvement_over_baseline:+.4f})"
        )
    if champion_error:
        reasons.append(f"the champion {champion_label} could not be scored ({champion_error})")
        if policy.beat_champion:
            passed = False
            reasons.append("set beat_champion: false to deploy without it, or roll the champion back")
    elif CHAMPION in scores:
        result = compare(
            CHAMPION,
            scores[STUDENT].row_scores or None,
            scores[CHAMPION].row_scores or None,
            metric=metric,
            policy=policy,
            required=policy.beat_champion,
            label=f"champion {champion_label}".strip(),
            candidate_value=student,
            other_value=scores[CHAMPION].metrics[metric],
        )
        passed = passed and (result.passed or not result.required)
        reasons.append(result.describe(STUDENT))
    if TEACHER in scores:
        reasons.append(f"teacher {scores[TEACHER].metrics[metric]:.4f}")
    return passed, ("deploy: " if passed else "do not deploy: ") + "; ".join(reasons)


def _model_record(path: str, metadata: dict) -> dict:
    record = dict(metadata)
    info = os.path.join(path, "tunekit_model.json")
    if os.path.exists(info):
        with open(info, encoding="utf-8") as handle:
            record.update(json.load(handle))
    return record


def _student_client(record: dict, model_path: str, project: str, location: str) -> ModelClient:
    if record.get("backend") == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return HFLocalClient(model_path)
    from tunekit.components.model_clients.vertex import VertexGeminiClient

    return VertexGeminiClient(record["endpoint"], project, location)


def evaluate_student(
    name: str,
    record: dict,
    model_path: str,
    rows: Sequence[dict],
    *,
    task: str,
    task_type: str,
    max_output_tokens: int,
    price_table: dict | None,
    student_cost_per_hour: float,
    project: str = "",
    location: str = "",
    client: ModelClient | None = None,
) -> ModelScore:
    """Scores one student (or the baseline) on the rows; its size and serving cost come from its record."""
    cot = record.get("mode") == "cot"
    own = client is None
    client = client or _student_client(record, model_path, project, location)
    try:
        answers, generations, elapsed = student_answers(
            client,
            rows,
            prefix=str(record.get("serving_prefix", "")),
            cot=cot,
            max_output_tokens=max(max_output_tokens, 256) if cot else max_output_tokens,
        )
    finally:
        if own:
            client.close()
    result = ModelScore(name, predictions=answers)
    result.metrics = score(name, answers, rows, task=task, task_type=task_type)
    result.row_scores = gate_row_scores(answers, rows, task=task, task_type=task_type)
    result.statuses = {s: sum(g.status == s for g in generations) for s in {g.status for g in generations}}
    if record.get("backend") == "local":
        training = record.get("training") or {}
        result.parameters = training.get("parameters")
        result.size = f"{result.parameters / 1e6:.2f}M parameters" if result.parameters else "open model"
        result.seconds_per_prediction = elapsed / len(rows) if rows else None
        if result.seconds_per_prediction is not None and student_cost_per_hour > 0:
            result.cost_per_1000 = result.seconds_per_prediction * 1000 / 3600 * student_cost_per_hour
            result.cost_basis = (
                f"{result.seconds_per_prediction * 1000:.1f} ms each here at ${student_cost_per_hour:g}/h"
            )
    else:
        base = str(record.get("base_model", ""))
        result.size = f"{base} (tuned)"
        result.cost_per_1000 = token_cost_per_1000(base, generations, price_table)
        result.cost_basis = f"{base} list price"
    return result


def evaluate_teacher(
    client: ModelClient,
    rows: Sequence[dict],
    *,
    teacher_model: str,
    task_type: str,
    task: str,
    exemplars: Sequence[dict],
    max_output_tokens: int,
    price_table: dict | None,
    instruction: str | None = None,
    classes: Sequence[str] | None = None,
) -> ModelScore:
    """The teacher's accuracy on the same rows, answering with its few-shot chain of thought."""
    from tunekit.components.rationale_extraction.extract import LABEL_KEYS, extract_rationales

    # The teacher must not see the reference: strip every label column from its rows.
    queries = [{k: v for k, v in r.items() if k not in (*LABEL_KEYS, "reference")} for r in rows]
    out, counts = extract_rationales(
        queries,
        client,
        task_type=task_type,
        exemplars=exemplars,
        config=GenerationConfig(max_output_tokens=max_output_tokens),
        instruction=instruction,
        choices=list(classes) if classes else None,
    )
    answers = [r["teacher_answer"] for r in out]
    result = ModelScore(TEACHER, predictions=[a or "" for a in answers])
    result.metrics = score(TEACHER, answers, rows, task=task, task_type=task_type)
    result.row_scores = gate_row_scores(answers, rows, task=task, task_type=task_type)
    result.statuses = {k[len("status_") :]: v for k, v in counts.items() if k.startswith("status_") and v}
    result.size = teacher_model
    from tunekit.components.model_clients import pricing

    cost = pricing.estimate_cost(
        teacher_model, counts["input_tokens"], counts["output_tokens"], pricing.parse_price_table(price_table)
    )
    if cost is not None and rows:
        result.cost_per_1000 = cost * 1000 / len(rows)
        result.cost_basis = f"{teacher_model} list price, few-shot CoT prompt"
    return result


def run_evaluate_distillation(
    *,
    task: str,
    task_type: str,
    eval_path: str,
    student_path: str,
    student_metadata: dict,
    baseline_path: str,
    baseline_metadata: dict,
    predictions_path: str,
    summary_path: str,
    teacher_factory: Callable[[], ModelClient] | None = None,
    teacher_model: str = "",
    exemplars: Sequence[dict] = (),
    instruction: str | None = None,
    classes: Sequence[str] | None = None,
    teacher_max_output_tokens: int = 512,
    max_eval_examples: int = 0,
    max_output_tokens: int = 64,
    min_student_metric: float = 0.0,
    min_improvement_over_baseline: float = 0.0,
    price_table: dict | None = None,
    student_cost_per_hour: float = 0.0,
    project: str = "",
    location: str = "",
    student_clients: dict[str, ModelClient] | None = None,
    purpose: str = "",
    local_registry: str = "",
    policy: GatePolicy | None = None,
) -> tuple[dict[str, ModelScore], bool, str, str]:
    """Scores teacher, baseline (when trained), champion (when deployed) and student on the held-out rows.

    ``student_clients`` gives clients by model name (``student``, ``baseline``, ``champion``) instead of loading
    them; the model deployed for ``purpose`` now (the champion, looked up in ``local_registry`` for local students)
    is scored too; ``policy`` holds the gate's champion and significance options.

    Returns:
        The scores by model, whether the gate passed, its reason, and the Markdown table.
    """
    from tunekit.components.tuning.distillation.local import read_jsonl

    rows = read_jsonl(eval_path)
    if max_eval_examples > 0:
        rows = rows[:max_eval_examples]
    if not rows:
        from tunekit.components.common.errors import UserError

        raise UserError("no evaluation rows", path=eval_path)
    student_clients = student_clients or {}
    scores: dict[str, ModelScore] = {}
    if teacher_factory is not None:
        teacher = teacher_factory()
        try:
            scores[TEACHER] = evaluate_teacher(
                teacher,
                rows,
                teacher_model=teacher_model,
                task_type=task_type,
                task=task,
                exemplars=exemplars,
                max_output_tokens=teacher_max_output_tokens,
                price_table=price_table,
                instruction=instruction,
                classes=classes,
            )
        finally:
            teacher.close()
    common: dict[str, Any] = dict(
        task=task,
        task_type=task_type,
        max_output_tokens=max_output_tokens,
        price_table=price_table,
        student_cost_per_hour=student_cost_per_hour,
        project=project,
        location=location,
    )
    baseline_record = _model_record(baseline_path, baseline_metadata)
    if baseline_path and not baseline_record.get("skipped"):
        scores[BASELINE] = evaluate_student(
            BASELINE, baseline_record, baseline_path, rows, client=student_clients.get(BASELINE), **common
        )
    student_record = _model_record(student_path, student_metadata)
    scores[STUDENT] = evaluate_student(
        STUDENT, student_record, student_path, rows, client=student_clients.get(STUDENT), **common
    )
    champion_label, champion_error = "", ""
    champion_backend = "local" if student_record.get("backend") == "local" else "vertex"
    champion = (
        locate_champion(
            purpose, backend=champion_backend, local_registry=local_registry, project=project, location=location
        )
        if purpose
        else None
    )
    if champion is not None:
        champion_label = describe_champion(champion)
        if champion.backend == "local":
            record = {"backend": "local", **_model_record(champion.model, {})}
        else:
            record = {"backend": "vertex", "endpoint": champion.endpoint, "base_model": champion.base_model}
        try:
            if record["backend"] == "vertex" and not record["endpoint"] and CHAMPION not in student_clients:
                raise ValueError(f"no endpoint is recorded for {champion.model}")
            scores[CHAMPION] = evaluate_student(
                CHAMPION, record, champion.model, rows, client=student_clients.get(CHAMPION), **common
            )
            failed = scores[CHAMPION].statuses.get("failed", 0)
            if failed and failed == len(rows):
                champion_error = f"all {failed} requests failed"
                del scores[CHAMPION]
        except Exception as exc:  # noqa: BLE001 - any failure to load the champion is reported by the gate
            champion_error = f"{type(exc).__name__}: {exc}"
    passed, reason = decide_gate(
        scores,
        task=task,
        min_student_metric=min_student_metric,
        min_improvement_over_baseline=min_improvement_over_baseline,
        policy=policy,
        champion_label=champion_label,
        champion_error=champion_error,
    )
    source = "gold" if all(r.get("reference_source", "gold") == "gold" for r in rows) else "teacher"
    table = render_table(list(scores.values()), task=task, reference_source=source, rows=len(rows))
    with open(predictions_path, "w", encoding="utf-8") as handle:
        for index, row in enumerate(rows):
            record = {"input_text": row["input_text"], "reference": row["reference"]}
            for name, s in scores.items():
                record[f"{name}_prediction"] = s.predictions[index]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with open(summary_path, "w", encoding="utf-8") as handle:
        handle.write(f"# Distilling step-by-step: evaluation ({task})\n\n{table}\n**Gate:** {reason}\n")
        if source == "teacher":
            handle.write(
                "\nNo held-out row had a gold label, so the references are the teacher's labels: the teacher's "
                "accuracy is 1 by construction, and the students' is their agreement with it.\n"
            )
    return scores, passed, reason, table

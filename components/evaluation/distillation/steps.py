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

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import read_jsonl
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.deployment.champion import champion_record, is_open_model
from tunekit.components.evaluation.gate import (
    CHAMPION,
    GateDecision,
    GatePolicy,
    all_failed,
    decide,
    describe_champion,
    error_text,
    locate_champion,
    require_endpoint,
)
from tunekit.components.evaluation.metrics import compute_metrics, row_scores
from tunekit.components.evaluation.result import EvaluationResult, gate_markdown
from tunekit.components.evaluation.scoring import champion_client
from tunekit.components.model_clients.base import OK, Generation, GenerationConfig, ModelClient, Prompt
from tunekit.components.rationale_extraction.parsing import answer_from_cot, answers_agree

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


def gate_policy(
    *,
    min_student_metric: float = 0.0,
    min_improvement_over_baseline: float = 0.0,
    policy: GatePolicy | None = None,
) -> GatePolicy:
    """The distillation gate as a :class:`~tunekit.components.evaluation.gate.GatePolicy`.

    The student must reach ``min_student_metric``, beat the label-only baseline (when trained) by at least
    ``min_improvement_over_baseline`` and, with ``policy.beat_champion``, beat the champion (ties at a perfect
    score pass); ``policy`` gives the champion, significance and bootstrap options.
    """
    return dataclasses.replace(
        policy or GatePolicy(),
        min_value=min_student_metric,
        min_improvement=min_improvement_over_baseline,
        margin_inclusive=True,
    )


def gate_inputs(scores: dict[str, ModelScore], *, task: str) -> dict[str, Any]:
    """The scores as :func:`~tunekit.components.evaluation.gate.decide`'s keyword arguments.

    The student is the candidate, the label-only baseline (when trained) the base, the champion (when scored)
    the champion; the teacher's figure is quoted in the reason and does not gate.
    """
    metric = gate_metric(task)

    def rows(name: str) -> list[float] | None:
        return scores[name].row_scores or None if name in scores else None

    def value(name: str) -> float | None:
        return scores[name].metrics[metric] if name in scores else None

    return {
        "metric": metric,
        "candidate_name": STUDENT,
        "candidate_scores": rows(STUDENT),
        "candidate_value": value(STUDENT),
        "base_scores": rows(BASELINE),
        "base_value": value(BASELINE),
        "base_label": "label-only baseline",
        "champion_scores": rows(CHAMPION),
        "champion_value": value(CHAMPION),
        "references": {TEACHER: scores[TEACHER].metrics[metric]} if TEACHER in scores else None,
    }


def _student_client(record: ModelRecord, model_path: str, project: str, location: str) -> ModelClient:
    if record.backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return HFLocalClient(model_path)
    if record.get("open_model"):
        # Managed open-model tuning writes weights, not an endpoint: the student answers from its weights in Cloud
        # Storage (the /gcs mount), as open students from our own GPU custom job do.
        from tunekit.components.evaluation.scoring import managed_open_model_client

        return managed_open_model_client(record)
    endpoint = require_endpoint(record.endpoint, model_path)
    from tunekit.components.model_clients.vertex import VertexGeminiClient

    return VertexGeminiClient(endpoint, project, location, base_model=record.base_model)


def evaluate_student(
    name: str,
    record: ModelRecord,
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
            prefix=record.serving_prefix,
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
    if record.backend == "local":
        training = record.training
        result.parameters = training.get("parameters")
        result.size = f"{result.parameters / 1e6:.2f}M parameters" if result.parameters else "open model"
        result.seconds_per_prediction = elapsed / len(rows) if rows else None
        if result.seconds_per_prediction is not None and student_cost_per_hour > 0:
            result.cost_per_1000 = result.seconds_per_prediction * 1000 / 3600 * student_cost_per_hour
            result.cost_basis = (
                f"{result.seconds_per_prediction * 1000:.1f} ms each here at ${student_cost_per_hour:g}/h"
            )
    else:
        base = record.base_model
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
) -> EvaluationResult:
    """Scores teacher, baseline (when trained), champion (when deployed) and student on the held-out rows.

    ``student_clients`` gives clients by model name (``student``, ``baseline``, ``champion``) instead of loading
    them; the model deployed for ``purpose`` now (the champion, looked up in ``local_registry`` for local students)
    is scored too; ``policy`` holds the gate's champion and significance options (see :func:`gate_policy`).

    Returns:
        The evaluation: every model's metrics (with ``cost_per_1000`` and ``parameters`` where known), the
        sizes and the Markdown table in ``metadata``, the :class:`ModelScore` of each model in
        ``extras["scores"]`` and the table in ``extras["table"]``.
    """
    rows = read_jsonl(eval_path)
    if max_eval_examples > 0:
        rows = rows[:max_eval_examples]
    if not rows:
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
    baseline_record = ModelRecord.read(baseline_path, baseline_metadata)
    if baseline_path and not baseline_record.skipped:
        scores[BASELINE] = evaluate_student(
            BASELINE, baseline_record, baseline_path, rows, client=student_clients.get(BASELINE), **common
        )
    student_record = ModelRecord.read(student_path, student_metadata)
    scores[STUDENT] = evaluate_student(
        STUDENT, student_record, student_path, rows, client=student_clients.get(STUDENT), **common
    )
    champion = locate_champion(
        purpose,
        backend=student_record.backend,
        model_uri=student_path,
        local_registry=local_registry,
        project=project,
        location=location,
    )
    champion_error = ""
    if champion is not None:
        own_client = None
        try:
            record = champion_record(champion)
            if CHAMPION not in student_clients and is_open_model(champion):
                # An open student trained on Vertex serves on its endpoint's vLLM container, not generateContent.
                own_client = champion_client(champion, project=project, location=location)
            scored = evaluate_student(
                CHAMPION,
                record,
                champion.model,
                rows,
                client=student_clients.get(CHAMPION) or own_client,
                **common,
            )
            champion_error = all_failed(scored.statuses)
            if not champion_error:
                scores[CHAMPION] = scored
        except Exception as exc:  # noqa: BLE001 - any failure to score the champion is reported by the gate
            champion_error = error_text(exc)
        finally:
            if own_client is not None:
                own_client.close()
    decision = decide(
        **gate_inputs(scores, task=task),
        champion_label=describe_champion(champion),
        champion_error=champion_error,
        policy=gate_policy(
            min_student_metric=min_student_metric,
            min_improvement_over_baseline=min_improvement_over_baseline,
            policy=policy,
        ),
    )
    result = _result(scores, decision, rows, task=task)
    result.write(predictions_path=predictions_path, summary_path=summary_path)
    return result


def _result(
    scores: dict[str, ModelScore], decision: GateDecision, rows: Sequence[dict], *, task: str
) -> EvaluationResult:
    source = "gold" if all(r.get("reference_source", "gold") == "gold" for r in rows) else "teacher"
    table = render_table(list(scores.values()), task=task, reference_source=source, rows=len(rows))
    summary = f"# Distilling step-by-step: evaluation ({task})\n\n{table}\n{gate_markdown(decision)}\n"
    if source == "teacher":
        summary += (
            "\nNo held-out row had a gold label, so the references are the teacher's labels: the teacher's "
            "accuracy is 1 by construction, and the students' is their agreement with it.\n"
        )
    metrics = {}
    for name, model in scores.items():
        metrics[name] = dict(model.metrics)
        if model.cost_per_1000 is not None:
            metrics[name]["cost_per_1000"] = float(model.cost_per_1000)
        if model.parameters:
            metrics[name]["parameters"] = float(model.parameters)
    predictions = [
        {
            "input_text": row["input_text"],
            "reference": row["reference"],
            **{f"{name}_prediction": model.predictions[index] for name, model in scores.items()},
        }
        for index, row in enumerate(rows)
    ]
    return EvaluationResult(
        method="distillation",
        candidate=STUDENT,
        primary_metric=gate_metric(task),
        decision=decision,
        metrics=metrics,
        metadata={**{f"{name}_size": model.size for name, model in scores.items()}, "table": table},
        predictions=predictions,
        summary=summary,
        extras={"scores": scores, "table": table},
    )

"""Scoring a tuned model beside its base on the same held-out rows, and the deploy gate.

Input rows (JSON Lines), either of:

- ``prompt`` and ``completion`` (local backend), or
- the Gemini format (``systemInstruction``?, ``contents`` ending with a model turn; Vertex backend).

Output: one prediction row per input row and model (``line``, ``reference``, ``<model>_prediction``,
``<model>_status``), metrics per model from :mod:`tunekit.components.evaluation.metrics`, and a gate decision.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from tunekit.components.common.errors import UserError
from tunekit.components.data_validation import formats
from tunekit.components.evaluation.metrics import PRIMARY_METRIC, compute_metrics
from tunekit.components.model_clients.base import OK, GenerationConfig, ModelClient, Prompt


@dataclass
class EvalRow:
    """One held-out example: what the model is asked, and the answer it should give."""

    prompt: Prompt
    reference: str
    line: int


@dataclass
class EvalReport:
    """The result of scoring several models on the same rows.

    Attributes:
        task: The task whose metrics were computed.
        primary_metric: The metric the gate compares.
        metrics: ``model name -> metric -> value``.
        statuses: ``model name -> status -> count`` of the generations.
        predictions: One dict per row with the reference and each model's prediction and status.
    """

    task: str
    primary_metric: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)


@dataclass
class GateDecision:
    """Whether to deploy, and why."""

    passed: bool
    reason: str


def load_eval_rows(path: str, limit: int = 0) -> list[EvalRow]:
    """Reads held-out rows in either supported layout; ``limit`` > 0 keeps the first ``limit`` rows.

    Raises:
        UserError: A row has neither layout, or no reference answer.
    """
    rows: list[EvalRow] = []
    for line, obj in formats.iter_jsonl(path):
        if "prompt" in obj:
            rows.append(EvalRow(Prompt(text=str(obj["prompt"])), str(obj.get("completion", "")), line))
        elif "contents" in obj:
            example = formats.to_example(obj, formats.GEMINI, path=path, line=line)
            if example.target is None or not example.prompt_turns:
                raise UserError(
                    "an evaluation row must end with a model turn after a user turn", path=path, line=line
                )
            *history, last = example.prompt_turns
            prompt = Prompt(
                text=last.text, system=example.system, history=tuple((t.role, t.text) for t in history)
            )
            rows.append(EvalRow(prompt, example.target, line))
        else:
            raise UserError("expected 'prompt'/'completion' or 'contents'", path=path, line=line)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise UserError("the evaluation dataset is empty", path=path)
    return rows


def evaluate_models(
    rows: list[EvalRow],
    models: dict[str, ModelClient],
    *,
    task: str,
    config: GenerationConfig | None = None,
) -> EvalReport:
    """Generates with every model on every row and scores the answers.

    A generation that failed or was blocked counts as a wrong (empty) answer, so a model cannot look better by
    failing on hard rows; the status counts say how often it happened.
    """
    report = EvalReport(task=task, primary_metric=PRIMARY_METRIC[task])
    references = [row.reference for row in rows]
    report.predictions = [{"line": row.line, "reference": row.reference} for row in rows]
    for name, client in models.items():
        generations = client.generate([row.prompt for row in rows], config)
        if len(generations) != len(rows):
            raise RuntimeError(f"model '{name}' returned {len(generations)} answers for {len(rows)} prompts")
        texts = [g.text if g.status == OK else (g.text or "") for g in generations]
        report.metrics[name] = compute_metrics(task, texts, references)
        report.statuses[name] = dict(Counter(g.status for g in generations))
        for record, generation in zip(report.predictions, generations, strict=True):
            record[f"{name}_prediction"] = generation.text
            record[f"{name}_status"] = generation.status
    return report


def decide(report: EvalReport, *, candidate: str, baseline: str, min_improvement: float = 0.0) -> GateDecision:
    """Passes when the candidate's primary metric beats the baseline's by at least ``min_improvement``."""
    metric = report.primary_metric
    new = report.metrics[candidate][metric]
    old = report.metrics[baseline][metric]
    delta = new - old
    verdict = delta >= min_improvement if min_improvement > 0 else delta > 0 or (delta == 0 and new == 1.0)
    comparison = f"{candidate} {metric} {new:.4f} vs {baseline} {old:.4f} (change {delta:+.4f}"
    comparison += f", required at least {min_improvement:+.4f})" if min_improvement > 0 else ", required > 0)"
    return GateDecision(passed=bool(verdict), reason=("deploy: " if verdict else "do not deploy: ") + comparison)


def render_markdown(report: EvalReport, decision: GateDecision) -> str:
    """A Markdown summary: metrics per model, generation statuses, the gate's decision, a few examples."""
    names = list(report.metrics)
    metric_names = sorted({m for values in report.metrics.values() for m in values})
    lines = [f"# Evaluation ({report.task}, {len(report.predictions)} held-out rows)", ""]
    lines += ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for metric in metric_names:
        marker = " (gate)" if metric == report.primary_metric else ""
        cells = " | ".join(f"{report.metrics[n].get(metric, float('nan')):.4f}" for n in names)
        lines.append(f"| {metric}{marker} | {cells} |")
    lines += ["", "Generation statuses: " + "; ".join(f"{n}: {report.statuses[n]}" for n in names), ""]
    lines += [f"**Gate:** {decision.reason}", "", "## First examples", ""]
    lines += ["| line | reference | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    for record in report.predictions[:10]:
        cells = [str(record.get(f"{n}_prediction", "")).replace("|", "\\|").replace("\n", " ")[:80] for n in names]
        reference = record["reference"].replace("|", "\\|").replace("\n", " ")[:80]
        lines.append(f"| {record['line']} | {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_predictions(report: EvalReport, path: str) -> None:
    """Writes one JSON line per evaluated row."""
    with open(path, "w", encoding="utf-8") as handle:
        for record in report.predictions:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

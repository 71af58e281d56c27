"""The one result of every evaluation step, and how a step writes and logs it.

Every method's evaluation (supervised, distillation, preference, embedding) returns an :class:`EvaluationResult`:
each model's figures on the same held-out rows, figures of the evaluation as a whole, the gate's decision
(:mod:`.gate`) and the per-row predictions. The step writes it with :meth:`EvaluationResult.write` (predictions
as JSON Lines, the Markdown summary) and its KFP component logs it with :func:`log_evaluation`, so the metrics
artifact of every evaluation has the same shape:

- ``<model>_<metric>`` for every model and metric in :attr:`EvaluationResult.metrics`, and every figure in
  :attr:`EvaluationResult.figures` under its own name (numbers, logged with ``log_metric``);
- the gate: ``gate_delta_<against>``, ``gate_ci_low_<against>``, ``gate_ci_high_<against>`` (numbers),
  ``gate_passed``, ``gate_reason`` and ``gate`` (the comparisons in full) in the metadata;
- ``evaluation``: the declared schema (:data:`SCHEMA_KEY`): the method, the candidate's name, the primary metric,
  the names of the models and of the figures, so that readers (the run report) need not guess which keys name a
  model;
- the method's own metadata (:attr:`EvaluationResult.metadata`: distillation's table and model sizes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.evaluation.gate import CANDIDATE, Comparison, GateDecision, gate_metrics

#: The metadata key of the declared schema.
SCHEMA_KEY = "evaluation"


@dataclass
class EvaluationResult:
    """What an evaluation step found.

    Attributes:
        method: ``supervised``, ``distillation``, ``preference`` or ``embedding``.
        primary_metric: The metric the gate compares.
        decision: The gate's decision.
        candidate: The name of the model the gate judges (``tuned``; ``student`` for distillation).
        metrics: ``model name -> metric -> value`` of every model scored (logged as ``<model>_<metric>``).
        figures: Figures of the evaluation as a whole, not of one model (preference's ``win_rate`` and
            ``reward_accuracy``, the autorater's win rates), logged under their own names.
        metadata: The method's own entries for the metrics artifact's metadata (not numbers: sizes, tables).
        predictions: One record per held-out row.
        summary: The Markdown summary.
        extras: The method's own objects, for callers in Python (not written anywhere): the autorater's results,
            per-class reports, per-model scores.
    """

    method: str
    primary_metric: str
    decision: GateDecision
    candidate: str = CANDIDATE
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)
    summary: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the gate passed."""
        return self.decision.passed

    @property
    def reason(self) -> str:
        """The gate's reason."""
        return self.decision.reason

    @property
    def comparisons(self) -> list[Comparison]:
        """The gate's comparisons."""
        return self.decision.comparisons

    def schema(self) -> dict[str, Any]:
        """The declared names: method, candidate, primary metric, models and figures."""
        return {
            "method": self.method,
            "candidate": self.candidate,
            "primary_metric": self.primary_metric,
            "models": list(self.metrics),
            "figures": list(self.figures),
        }

    def logged_metrics(self) -> dict[str, float]:
        """Every number of the result under its logged name (see the module's docstring)."""
        out = {
            f"{model}_{name}": float(value)
            for model, values in self.metrics.items()
            for name, value in values.items()
            if value is not None
        }
        out.update({name: float(value) for name, value in self.figures.items() if value is not None})
        out.update(gate_metrics(self.decision))
        return out

    def artifact_metadata(self) -> dict[str, Any]:
        """The metrics artifact's metadata besides the numbers: the method's own, the schema and the gate."""
        return {
            **self.metadata,
            SCHEMA_KEY: self.schema(),
            "gate_passed": self.decision.passed,
            "gate_reason": self.decision.reason,
            "gate": [c.as_dict() for c in self.decision.comparisons],
        }

    def write(self, *, predictions_path: str = "", summary_path: str = "") -> None:
        """Writes the predictions (JSON Lines) and the Markdown summary, where a path is given."""
        if predictions_path:
            write_jsonl(predictions_path, self.predictions)
        if summary_path:
            os.makedirs(os.path.dirname(os.path.abspath(summary_path)), exist_ok=True)
            with open(summary_path, "w", encoding="utf-8") as handle:
                handle.write(self.summary)


def log_evaluation(result: EvaluationResult, metrics: Any) -> bool:
    """Logs ``result`` into a KFP ``Metrics`` artifact (numbers with ``log_metric``, the rest as metadata).

    Returns:
        Whether the gate passed: the evaluation component's output, which the pipeline's condition reads.
    """
    for name, value in result.logged_metrics().items():
        metrics.log_metric(name, value)
    metrics.metadata.update(result.artifact_metadata())
    print(result.decision.reason)
    return result.decision.passed


def gate_markdown(decision: GateDecision) -> str:
    """The gate's part of a Markdown summary: the reason, then a table of the comparisons (no final newline)."""
    lines = [f"**Gate:** {decision.reason}"]
    if decision.comparisons:
        lines += ["", "| comparison | candidate | other | change | CI low | CI high | required | passed |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in decision.comparisons:
            low = f"{c.interval.low:+.4f}" if c.interval else "n/a"
            high = f"{c.interval.high:+.4f}" if c.interval else "n/a"
            lines.append(
                f"| vs {c.label} | {c.candidate:.4f} | {c.other:.4f} | {c.delta:+.4f} | {low} | {high} | "
                f"{'yes' if c.required else 'no'} | {'yes' if c.passed else 'no'} |"
            )
    return "\n".join(lines)

"""The run report: one self-contained HTML page per pipeline run.

It gathers what the run's steps left behind and renders it with the Jinja2 templates in ``templates/``:

- the validation summary (validate-data's ``report`` JSON: verdict, files, findings by kind, first findings);
- teacher usage and cost (rationale extraction's or teacher labelling's ``metrics``: calls, tokens, estimated
  cost), for distillation runs;
- training curves (the tuned model's ``training_log.json``: training loss, per-task losses, evaluation loss,
  learning rate; a reinforcement run's rewards per step on a chart of their own: :func:`step_rewards`), or the
  tuning summary (its :class:`~tunekit.components.common.model_record.ModelRecord`,
  ``tunekit_model.json``) when a backend records no per-step log;
- evaluation tables and plots (the evaluation's ``metrics`` metadata, as
  :class:`~tunekit.components.evaluation.result.EvaluationResult` logs it: the declared schema names the models
  and the figures, so every ``<model>_<metric>`` key of a declared model is a cell and every declared figure or
  other key a row of "other figures"; metadata written without a schema is read by the known model names;
  intervals drawn as error bars when present; confusion matrices from a KFP ``ClassificationMetrics`` artifact or
  any metadata value shaped like one);
- the gate's decision and its reasons;
- the checkpoint selection (every checkpoint's primary metric and interval, the one chosen, the endpoints
  undeployed) when the evaluation chose among checkpoints;
- the costs side by side: the tuning bill estimated before the job and billed after it (the model records'
  ``tuning_cost``), the teacher's, and each model's cost per 1,000 predictions where the evaluation logs one.

The page has no external assets (inline CSS, inline SVG charts, no scripts), so it opens offline and in Vertex
AI's pipeline UI, which shows it as the step's HTML artifact. Missing inputs are sections that say so, never an
error: not every pipeline has every part, and a report must not fail a run.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

import jinja2

from tunekit.components.common.model_record import RECORD_FILE, ModelRecord
from tunekit.components.evaluation.result import SCHEMA_KEY
from tunekit.components.reporting import charts

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "run_report.html.j2"
TRAINING_LOG = "training_log.json"

#: Model names of evaluation metric keys in metadata that declares none (no :data:`SCHEMA_KEY`), in the order
#: their columns are shown. Longer names first where one is a prefix of another ("baseline" before "base") is
#: handled by :func:`split_model_key`.
MODEL_PREFIXES = ("teacher", "base", "baseline", "champion", "candidate", "student", "tuned")
#: Evaluation metadata keys that are the gate's or the schema's, not metrics (so are all keys starting with
#: ``gate_``).
GATE_KEYS = ("gate", "gate_passed", "gate_reason", "gate_comparisons", "gate_policy", "decision", SCHEMA_KEY)
#: ``<metric>[<class>]``: a per-class figure (``tuned_precision[billing]``).
_PER_CLASS = re.compile(r"^(?P<metric>.+)\[(?P<label>.*)\]$")
#: Suffixes that mark the two ends of an interval for the metric named by the rest of the key.
INTERVAL_SUFFIXES = (("_ci_low", "_ci_high"), ("_lower", "_upper"), ("_low", "_high"))
#: Metric names that are not scores on a 0-1 scale (kept out of the score bar chart, still in the table).
_NOT_A_SCORE = re.compile(r"(cost|parameters|queries|rows|examples|count|tokens|seconds|latency|size|_n$|^n$)")
#: Gate comparison columns shown first, in this order; and the ones left out (repeats of others).
_COMPARISON_ORDER = (
    "against", "label", "metric", "candidate", "other", "delta", "interval.low", "interval.high", "ci_low",
    "ci_high", "interval.confidence", "interval.rows", "rule", "required", "passed",
)  # fmt: skip
_COMPARISON_HIDDEN = ("interval.delta", "interval.resamples", "head_to_head")
_COMPARISON_HEADERS = {
    "interval.low": "CI low",
    "interval.high": "CI high",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "interval.confidence": "confidence",
    "interval.rows": "rows",
}
#: How many findings the validation section lists in detail.
MAX_FINDINGS = 12


@dataclass
class MetricRow:
    """One row of the evaluation table: a metric, each model's value and interval."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The evaluation metrics, parsed generically from a KFP Metrics artifact's metadata."""

    models: list[str]
    rows: list[MetricRow]
    other: list[tuple[str, Any]]
    chart: charts.BarChart | None = None
    markdown_table: str = ""
    per_class_columns: list[tuple[str, str]] = field(default_factory=list)  # (model, metric)
    per_class: list[tuple[str, dict[tuple[str, str], Any]]] = field(default_factory=list)  # (class, values)


@dataclass
class Gate:
    """The deploy gate's decision."""

    passed: bool | None
    reason: str
    comparisons: list[dict] = field(default_factory=list)
    chart: charts.BarChart | None = None

    @property
    def columns(self) -> list[str]:
        """The comparisons' keys: the usual ones in a fixed order, then any other, minus repeats."""
        keys = list(dict.fromkeys(key for c in self.comparisons for key in c))
        first = [k for k in _COMPARISON_ORDER if k in keys]
        rest = [k for k in keys if k not in first and k not in _COMPARISON_HIDDEN]
        # The label repeats `against` unless it names the model (a champion's registry id).
        if all(c.get("label") in (None, c.get("against")) for c in self.comparisons):
            first = [k for k in first if k != "label"]
        return first + rest

    @staticmethod
    def header(key: str) -> str:
        """A column's heading."""
        return _COMPARISON_HEADERS.get(key, key)

    @property
    def headline(self) -> str:
        """The decision in one line, starting with the verdict."""
        verdict = "Deploy" if self.passed else "Do not deploy"
        if self.reason.lower().startswith(("deploy", "do not deploy", "not deployed", "skip")):
            return self.reason[:1].upper() + self.reason[1:]
        return f"{verdict}: {self.reason}" if self.reason else verdict


@dataclass
class Training:
    """What one trained model's log says."""

    model: str
    source: str
    loss_chart: charts.LineChart | None = None
    lr_chart: charts.LineChart | None = None
    reward_chart: charts.LineChart | None = None
    summary: list[tuple[str, Any]] = field(default_factory=list)
    note: str = ""


@dataclass
class Usage:
    """A teacher step's usage: calls, tokens, estimated cost."""

    step: str
    cost_usd: float | None
    figures: list[tuple[str, Any]]


@dataclass
class ConfusionMatrix:
    """One confusion matrix and its heat map."""

    title: str
    labels: list[str]
    matrix: list[list[float]]
    chart: charts.HeatMap | None = None


@dataclass
class CheckpointTable:
    """The evaluation's checkpoint selection: every checkpoint's primary metric with its interval."""

    metric: str
    best: str
    rows: list[dict]
    undeployed: list[str] = field(default_factory=list)
    default_changed: bool = False
    chart: charts.BarChart | None = None


@dataclass
class CostRow:
    """One line of the costs table: what, for which model, dollars (None: unpriced or unknown), and on what basis."""

    item: str
    model: str
    dollars: float | None
    basis: str


@dataclass
class RunReport:
    """Everything the page shows; each part is None or empty when the run has no such input."""

    pipeline_name: str
    run_name: str = ""
    created: str = ""
    parameters: list[tuple[str, Any]] = field(default_factory=list)
    validation: dict | None = None
    usage: list[Usage] = field(default_factory=list)
    training: list[Training] = field(default_factory=list)
    evaluation: Evaluation | None = None
    confusion: list[ConfusionMatrix] = field(default_factory=list)
    gate: Gate | None = None
    checkpoints: CheckpointTable | None = None
    costs: list[CostRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def teacher_cost_usd(self) -> float | None:
        """The teacher steps' estimated cost together (None when none of them has an estimate)."""
        costs = [u.cost_usd for u in self.usage if u.cost_usd is not None]
        return sum(costs) if costs else None


# ---------------------------------------------------------------------------------------------------- reading


def _read_json(path: str, notes: list[str], what: str) -> Any:
    """The JSON at ``path``, or None (with a note saying why) when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        notes.append(f"{what}: could not read {path}: {exc}")
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar_items(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Scalars of ``mapping`` (one level of nested dicts flattened as ``outer.inner``), in key order."""
    items: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            items.extend(_scalar_items(value, prefix=f"{name}."))
        elif isinstance(value, (str, int, float, bool)) or value is None:
            items.append((name, value))
    return items


def split_model_key(key: str, models: tuple[str, ...] = MODEL_PREFIXES) -> tuple[str, str] | None:
    """``("tuned", "accuracy")`` for ``tuned_accuracy``; None when the key names no known model."""
    for model in sorted(models, key=len, reverse=True):
        if key.startswith(model + "_") and len(key) > len(model) + 1:
            return model, key[len(model) + 1 :]
    return None


def _split_interval(metric: str) -> tuple[str, int] | None:
    """``("accuracy", 0)`` for ``accuracy_ci_low``, ``("accuracy", 1)`` for ``accuracy_ci_high``; else None."""
    for low, high in INTERVAL_SUFFIXES:
        for end, suffix in enumerate((low, high)):
            if metric.endswith(suffix) and len(metric) > len(suffix):
                return metric[: -len(suffix)], end
    return None


def _find_confusion(value: Any) -> tuple[list[str], list[list[float]]] | None:
    """(labels, matrix) from a KFP ClassificationMetrics ``confusionMatrix`` value (or a plain dict of both)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    if "confusionMatrix" in value:
        value = value["confusionMatrix"]
    if isinstance(value, dict) and "annotationSpecs" in value and "rows" in value:
        labels = [str(spec.get("displayName", "")) for spec in value["annotationSpecs"]]
        rows = [list(row.get("row", [])) if isinstance(row, dict) else list(row) for row in value["rows"]]
    elif isinstance(value, dict) and "labels" in value and "matrix" in value:
        labels = [str(label) for label in value["labels"]]
        rows = [list(row) for row in value["matrix"]]
    else:
        return None
    if not labels or len(rows) != len(labels) or any(len(r) != len(labels) for r in rows):
        return None
    try:
        return labels, [[float(c) for c in r] for r in rows]
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------- sections


def validation_section(report: dict) -> dict:
    """The template's view of a validation report (``validate-data``'s ``report`` JSON)."""
    files = []
    for role, stats in (report.get("summary", {}).get("files") or {}).items():
        tokens_in = stats.get("input_tokens_estimate") or {}
        tokens_out = stats.get("output_tokens_estimate") or {}
        files.append(
            {
                "role": role,
                "path": stats.get("path", ""),
                "format": stats.get("format") or "",
                "rows": stats.get("rows"),
                "valid_rows": stats.get("valid_rows"),
                "duplicates": stats.get("duplicates"),
                "input_tokens": "/".join(str(tokens_in.get(k, "-")) for k in ("p50", "p90", "max"))
                if tokens_in
                else "",
                "output_tokens": "/".join(str(tokens_out.get(k, "-")) for k in ("p50", "p90", "max"))
                if tokens_out
                else "",
                "labels": stats.get("labels") or {},
            }
        )
    severity = report.get("severity_by_kind") or {}
    kinds = [
        {"kind": kind, "count": count, "severity": severity.get(kind, "")}
        for kind, count in (report.get("counts_by_kind") or {}).items()
    ]
    findings = [
        {key: finding.get(key) for key in ("severity", "kind", "path", "line", "field", "message", "hint")}
        for finding in report.get("findings") or []
        if isinstance(finding, dict)
    ]
    return {
        "ok": bool(report.get("ok")),
        "method": report.get("method") or "",
        "task": report.get("task") or "",
        "model": report.get("model") or "",
        "strict": bool(report.get("strict")),
        "errors": report.get("errors", 0),
        "warnings": report.get("warnings", 0),
        "files": files,
        "kinds": kinds,
        "findings": findings[:MAX_FINDINGS],
        "more_findings": max(0, len(findings) - MAX_FINDINGS),
    }


def read_model_record(model_dir: str, notes: list[str], model: str) -> ModelRecord | None:
    """The :class:`ModelRecord` a tuning step wrote in ``model_dir``; None (with a note when unreadable) if none."""
    if not os.path.isfile(os.path.join(model_dir, RECORD_FILE)):
        return None
    try:
        return ModelRecord.read(model_dir)
    except (OSError, ValueError, TypeError) as exc:
        notes.append(f"{model} model record: could not read {os.path.join(model_dir, RECORD_FILE)}: {exc}")
        return None


def declared_schema(metadata: dict) -> dict | None:
    """The evaluation's declared schema (:data:`SCHEMA_KEY`: method, candidate, primary metric, models, figures).

    None for metadata that declares none (written before the schema, or by another tool).
    """
    schema = metadata.get(SCHEMA_KEY)
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            return None
    if isinstance(schema, dict) and isinstance(schema.get("models"), list):
        return schema
    return None


#: The reward chart's line of the weighted mean reward per step.
MEAN_REWARD = "mean reward"


def _is_reward_key(key: str) -> bool:
    """A ``task_losses`` key the reinforcement trainer uses for a reward: ``reward`` or ``reward NAME``."""
    return key == "reward" or key.startswith("reward ")


def step_rewards(entry: dict) -> dict[str, float]:
    """One logged step's rewards by line name: :data:`MEAN_REWARD` and each reward's own mean.

    Read from the entry's ``rewards`` (``{"mean": x, NAME: y}``), and from the reinforcement trainer's
    ``task_losses`` keys ``reward`` (the mean) and ``reward NAME`` (components/tuning/reinforcement/local.py
    ``write_training_log``), which are rewards, not losses.
    """
    found: dict[str, float] = {}
    for key, value in (entry.get("task_losses") or {}).items():
        if _is_reward_key(key) and _is_number(value):
            found[MEAN_REWARD if key == "reward" else key.removeprefix("reward ")] = value
    for key, value in (entry.get("rewards") or {}).items() if isinstance(entry.get("rewards"), dict) else ():
        if _is_number(value):
            found[MEAN_REWARD if key == "mean" else key] = value
    return found


def training_section(model_dir: str, model: str, notes: list[str]) -> Training | None:
    """Training curves from ``training_log.json`` in ``model_dir``, else the summary in its model record.

    None when the folder holds neither, or its record says the step was skipped (an unasked baseline).
    """
    record = read_model_record(model_dir, notes, model)
    if record is not None and record.skipped:
        return None
    log = _read_json(os.path.join(model_dir, TRAINING_LOG), notes, f"{model} training log")
    if isinstance(log, dict) and isinstance(log.get("log"), list):
        steps = [e for e in log["log"] if isinstance(e, dict) and _is_number(e.get("step"))]
        series: list[tuple[str, list[tuple[float, float]]]] = [
            ("training loss", [(e["step"], e["loss"]) for e in steps if _is_number(e.get("loss"))])
        ]
        task_names = sorted({t for e in steps for t in (e.get("task_losses") or {}) if not _is_reward_key(t)})
        for task in task_names:
            series.append(
                (
                    f"{task} loss",
                    [
                        (e["step"], e["task_losses"][task])
                        for e in steps
                        if _is_number((e.get("task_losses") or {}).get(task))
                    ],
                )
            )
        evals = [e for e in log.get("eval") or [] if isinstance(e, dict)]
        series.append(
            (
                "evaluation loss",
                [
                    (e["step"], e["eval_loss"])
                    for e in evals
                    if _is_number(e.get("step")) and _is_number(e.get("eval_loss"))
                ],
            )
        )
        lr = [(e["step"], e["learning_rate"]) for e in steps if _is_number(e.get("learning_rate"))]
        rewards = [(e["step"], step_rewards(e)) for e in steps]
        reward_names = sorted(
            {name for _, values in rewards for name in values}, key=lambda n: (n != MEAN_REWARD, n)
        )
        reward_series = [
            (name, [(step, values[name]) for step, values in rewards if name in values]) for name in reward_names
        ]
        summary = _scalar_items(log.get("summary") or {})
        summary = [(k, v) for k, v in summary if k not in ("output_dir",)]
        return Training(
            model=model,
            source=TRAINING_LOG,
            loss_chart=charts.line_chart(
                f"Loss ({model})", series, y_label="loss", dashed=[f"{t} loss" for t in task_names]
            ),
            lr_chart=charts.line_chart(
                f"Learning rate ({model})", [("learning rate", lr)], y_label="rate", height=180
            ),
            reward_chart=charts.line_chart(
                f"Rewards ({model})",
                reward_series,
                y_label="reward",
                dashed=[n for n in reward_names if n != MEAN_REWARD],
            ),
            summary=summary,
        )
    if record is not None:
        summary = [(k, v) for k, v in _scalar_items(record.to_dict()) if not k.endswith("output_dir")]
        return Training(
            model=model,
            source=RECORD_FILE,
            summary=summary,
            note="This backend records a summary of the tuning, not a loss per step.",
        )
    return None


def usage_section(step: str, metadata: dict) -> Usage | None:
    """A teacher step's figures (every number in its metrics), with the estimated cost picked out."""
    figures = [(k, v) for k, v in metadata.items() if _is_number(v) or isinstance(v, str)]
    if not any(_is_number(v) and v for _, v in figures):
        return None  # a step that called no teacher (teacher labelling passes labelled rows through)
    cost = metadata.get("estimated_cost_usd")
    return Usage(step=step, cost_usd=float(cost) if _is_number(cost) else None, figures=figures)


def evaluation_section(metadata: dict) -> Evaluation:
    """Parses an evaluation's metrics metadata (unknown keys are kept as "other figures").

    With a declared schema (:func:`declared_schema`) the model names, the figures and the primary metric are the
    declared ones; without, keys are split by :data:`MODEL_PREFIXES` and the primary metric is the gate's.
    """
    schema = declared_schema(metadata) or {}
    names = tuple(str(m) for m in schema.get("models") or ()) or MODEL_PREFIXES
    figures = {str(f) for f in schema.get("figures") or ()}
    models: list[str] = []
    rows: dict[str, MetricRow] = {}
    other: list[tuple[str, Any]] = []
    markdown_table = ""
    pending_intervals: list[tuple[str, str, int, float]] = []
    per_class: dict[str, dict[tuple[str, str], Any]] = {}
    per_class_columns: list[tuple[str, str]] = []
    for key, value in metadata.items():
        if key in GATE_KEYS or key.startswith("gate_"):
            continue
        if key == "table" and isinstance(value, str):
            markdown_table = value
            continue
        if _find_confusion(value) is not None:
            continue
        split = None if key in figures else split_model_key(key, names)
        if split is None or isinstance(value, (dict, list)):
            other.append((key, value))
            continue
        model, metric = split
        match = _PER_CLASS.match(metric)
        if match:
            column = (model, match["metric"])
            if column not in per_class_columns:
                per_class_columns.append(column)
            per_class.setdefault(match["label"], {})[column] = value
            continue
        interval = _split_interval(metric) if _is_number(value) else None
        if interval is not None:
            pending_intervals.append((model, interval[0], interval[1], float(value)))
            continue
        if model not in models:
            models.append(model)
        rows.setdefault(metric, MetricRow(metric)).values[model] = value
    for model, metric, end, value in pending_intervals:
        row = rows.get(metric)
        if row is None or model not in row.values:
            # An interval of nothing shown: keep it visible as it was logged.
            suffix = INTERVAL_SUFFIXES[0][end]
            other.append((f"{model}_{metric}{suffix}", value))
            continue
        low, high = row.intervals.get(model, (math.nan, math.nan))
        row.intervals[model] = (value, high) if end == 0 else (low, value)
    for row in rows.values():
        row.intervals = {m: pair for m, pair in row.intervals.items() if all(math.isfinite(v) for v in pair)}
    # Known names in their usual column order, then any other declared model in declared order.
    ordered = sorted((m for m in names if m in models), key=_model_rank)
    # The gate's metric first, then by name: KFP does not keep the order metrics were logged in.
    primary = str(schema.get("primary_metric") or "") or next(
        (str(c["metric"]) for c in _comparisons(metadata) if c.get("metric")), ""
    )
    rows = dict(sorted(rows.items(), key=lambda item: (item[0] != primary, item[0])))
    scores = [
        r
        for r in rows.values()
        if not _NOT_A_SCORE.search(r.name)
        and all(_is_number(v) and -1.0 <= v <= 1.0 for v in r.values.values())
        and any(_is_number(v) for v in r.values.values())
    ]
    chart = charts.bar_chart(
        "Scores on held-out rows",
        [r.name for r in scores],
        ordered,
        {r.name: {m: float(v) for m, v in r.values.items() if _is_number(v)} for r in scores},
        {r.name: r.intervals for r in scores if r.intervals},
        colors=model_colors(ordered),
    )
    return Evaluation(
        models=ordered,
        rows=list(rows.values()),
        other=other,
        chart=chart,
        markdown_table=markdown_table,
        per_class_columns=sorted(per_class_columns, key=lambda c: (_model_rank(c[0]), c[1])),
        per_class=sorted(per_class.items()),
    )


#: A fixed colour per model, the same in every report: the model a run trained in blue, references around it.
MODEL_COLORS = {
    "teacher": "#E69F00",
    "base": "#999999",
    "baseline": "#CC79A7",
    "champion": "#009E73",
    "candidate": "#0072B2",
    "student": "#0072B2",
    "tuned": "#0072B2",
}


def _model_rank(model: str) -> int:
    return MODEL_PREFIXES.index(model) if model in MODEL_PREFIXES else len(MODEL_PREFIXES)


def model_colors(models: list[str]) -> dict[str, str]:
    """The colour of each model in ``models`` (known names keep theirs; others take the palette's next)."""
    spare = iter(c for c in charts.PALETTE if c not in MODEL_COLORS.values())
    return {m: MODEL_COLORS.get(m) or next(spare, "#555555") for m in models}


def _flatten(record: dict) -> dict:
    """One level of nested dicts flattened as ``outer.inner`` (a comparison's ``interval``)."""
    flat: dict = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": v for inner, v in value.items()})
        else:
            flat[key] = value
    return flat


def _comparisons(metadata: dict) -> list[dict]:
    """The gate's comparisons: a list (``gate``/``gate_comparisons``, maybe as JSON), a dict, or ``gate_*`` keys."""
    for key in ("gate", "gate_comparisons"):
        value = metadata.get(key)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if isinstance(value, dict):
            value = [
                dict(v, against=k) if isinstance(v, dict) else {"against": k, "value": v} for k, v in value.items()
            ]
        if isinstance(value, list) and value:
            return [_flatten(c) for c in value if isinstance(c, dict)]
    # Flat figures only (``gate_delta_base``, ``gate_ci_low_base``, ``gate_ci_high_base``).
    found: dict[str, dict] = {}
    for key, value in metadata.items():
        match = re.match(r"^gate_(delta|ci_low|ci_high)_(.+)$", key)
        if match and _is_number(value):
            found.setdefault(match[2], {"against": match[2]})[match[1]] = value
    return list(found.values())


def _interval_of(comparison: dict) -> tuple[float, float] | None:
    for low, high in (("interval.low", "interval.high"), ("ci_low", "ci_high"), ("low", "high")):
        if _is_number(comparison.get(low)) and _is_number(comparison.get(high)):
            return float(comparison[low]), float(comparison[high])
    return None


def gate_section(metadata: dict) -> Gate | None:
    """The gate's decision from an evaluation's metadata; None when it records none.

    The comparisons (candidate against base and champion) are drawn as the change of the primary metric with its
    interval, when the evaluation logged them.
    """
    if "gate_passed" not in metadata and "gate_reason" not in metadata:
        return None
    passed = metadata.get("gate_passed")
    comparisons = _comparisons(metadata)
    deltas: dict[str, float] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for c in comparisons:
        name = f"vs {c.get('label') or c.get('against') or '?'}"
        if _is_number(c.get("delta")):
            deltas[name] = float(c["delta"])
            interval = _interval_of(c)
            if interval:
                intervals[name] = interval
    metric = next((str(c["metric"]) for c in comparisons if c.get("metric")), "primary metric")
    chart = None
    if deltas:
        chart = charts.bar_chart(
            f"Change in {metric} (candidate minus the other model), with its interval",
            [metric],
            list(deltas),
            {metric: deltas},
            {metric: intervals},
            colors={name: charts.PALETTE[i % len(charts.PALETTE)] for i, name in enumerate(deltas)},
            height=240,
        )
    return Gate(
        passed=bool(passed) if passed is not None else None,
        reason=str(metadata.get("gate_reason") or ""),
        comparisons=comparisons,
        chart=chart,
    )


def confusion_sections(sources: list[tuple[str, dict]]) -> list[ConfusionMatrix]:
    """Confusion matrices found in ``(title, metadata)`` pairs (ClassificationMetrics or metrics metadata)."""
    found = []
    for title, metadata in sources:
        direct = _find_confusion(metadata)
        items = [(title, metadata)] if direct else list(metadata.items())
        for key, value in items:
            parsed = _find_confusion(value)
            if parsed is None:
                continue
            labels, matrix = parsed
            name = title if direct else f"{title}: {key}"
            found.append(
                ConfusionMatrix(
                    title=name, labels=labels, matrix=matrix, chart=charts.heat_map(name, labels, matrix)
                )
            )
    return found


# ---------------------------------------------------------------------------------------------------- assembling


def checkpoints_section(metadata: dict) -> CheckpointTable | None:
    """The evaluation's checkpoint selection, or None when it chose none.

    It is the metadata's ``checkpoints``, as :mod:`tunekit.components.evaluation.checkpoints` records it.
    """
    value = metadata.get("checkpoints")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, dict) or not isinstance(value.get("checkpoints"), list):
        return None
    rows = [r for r in value["checkpoints"] if isinstance(r, dict) and _is_number(r.get("value"))]
    if not rows:
        return None
    metric = str(value.get("metric", ""))
    names = [f"checkpoint {r.get('checkpoint_id')}" for r in rows]
    intervals = {
        metric: {
            n: (float(r["ci_low"]), float(r["ci_high"]))
            for n, r in zip(names, rows, strict=True)
            if _is_number(r.get("ci_low")) and _is_number(r.get("ci_high"))
        }
    }
    chart = charts.bar_chart(
        f"{metric} per checkpoint",
        [metric],
        names,
        {metric: {n: float(r["value"]) for n, r in zip(names, rows, strict=True)}},
        intervals,
    )
    return CheckpointTable(
        metric=metric,
        best=str(value.get("best", "")),
        rows=rows,
        undeployed=[str(e) for e in value.get("undeployed") or []],
        default_changed=bool(value.get("default_changed")),
        chart=chart,
    )


def _tuning_cost_rows(model: str, record: ModelRecord) -> list[CostRow]:
    costs = record.get("tuning_cost")
    rows: list[CostRow] = []
    if not isinstance(costs, dict):
        return rows
    for when, label in (("estimate", "tuning (estimated before the job)"), ("billed", "tuning (billed tokens)")):
        entry = costs.get(when)
        if not isinstance(entry, dict):
            continue
        tokens = entry.get("training_tokens")
        if tokens is None:
            basis = f"{entry.get('dataset_tokens', 0):,} tokens x epochs not known"
        else:
            basis = f"{tokens:,} training tokens ({entry.get('counted_by', '')})"
        price = entry.get("price_per_million")
        basis += (
            f" at ${price:.2f}/1M, prices of {entry.get('prices_as_of', '')}"
            if _is_number(price)
            else f"; {entry.get('model', '')} has no tuning price (unpriced)"
        )
        dollars = entry.get("dollars")
        rows.append(CostRow(label, model, float(dollars) if _is_number(dollars) else None, basis))
    return rows


def costs_section(
    records: list[tuple[str, ModelRecord]], teacher_cost: float | None, evaluation_metrics: dict | None
) -> list[CostRow]:
    """The run's costs side by side.

    Tuning (before and after), the teacher's, and each evaluated model's cost per 1,000 predictions
    (``<model>_cost_per_1000``, where the evaluation logs it).
    """
    rows = [row for model, record in records for row in _tuning_cost_rows(model, record)]
    if teacher_cost is not None:
        rows.append(CostRow("teacher calls", "teacher", teacher_cost, "list prices of the price table"))
    for key, value in (evaluation_metrics or {}).items():
        if key.endswith("_cost_per_1000") and _is_number(value):
            model = key[: -len("_cost_per_1000")]
            rows.append(CostRow("1,000 predictions", model, float(value), "the evaluation's estimate"))
    return rows


def build_report(
    *,
    pipeline_name: str,
    run_name: str = "",
    parameters: dict | None = None,
    validation_report_path: str = "",
    teacher_metrics: list[tuple[str, dict]] | None = None,
    models: list[tuple[str, str]] | None = None,
    evaluation_metrics: dict | None = None,
    classification_metrics: list[tuple[str, dict]] | None = None,
    now: _dt.datetime | None = None,
) -> RunReport:
    """Gathers a run's outputs into a :class:`RunReport`.

    Args:
        pipeline_name: The pipeline (e.g. ``supervised-tuning``).
        run_name: The pipeline job's name.
        parameters: A few run parameters to show at the top (task, backend, base model...).
        validation_report_path: validate-data's ``report`` JSON ('' when the run has none).
        teacher_metrics: ``(step, metrics metadata)`` of the steps that called a teacher.
        models: ``(name, folder)`` of the trained models whose logs to plot (``tuned``, ``student``...).
        evaluation_metrics: The evaluation's metrics metadata (``<model>_<metric>`` keys, gate keys).
        classification_metrics: ``(title, metadata)`` of KFP ClassificationMetrics artifacts.
        now: The report's time stamp (default: now, UTC).
    """
    notes: list[str] = []
    report = RunReport(
        pipeline_name=pipeline_name,
        run_name=run_name,
        created=(now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        parameters=[(k, v) for k, v in (parameters or {}).items() if v not in ("", None)],
        notes=notes,
    )
    if validation_report_path:
        data = _read_json(validation_report_path, notes, "validation report")
        if isinstance(data, dict):
            report.validation = validation_section(data)
        elif data is None and not any("validation report" in n for n in notes):
            notes.append(f"validation report: {validation_report_path} does not exist")
    for step, metadata in teacher_metrics or []:
        usage = usage_section(step, metadata or {})
        if usage:
            report.usage.append(usage)
    records: list[tuple[str, ModelRecord]] = []
    for name, folder in models or []:
        if folder and os.path.isdir(folder):
            section = training_section(folder, name, notes)
            if section:
                report.training.append(section)
            record = read_model_record(folder, [], name)
            if record is not None:
                records.append((name, record))
    if evaluation_metrics:
        report.evaluation = evaluation_section(evaluation_metrics)
        report.gate = gate_section(evaluation_metrics)
        report.checkpoints = checkpoints_section(evaluation_metrics)
    report.costs = costs_section(records, report.teacher_cost_usd, evaluation_metrics)
    report.confusion = confusion_sections(
        list(classification_metrics or []) + ([("evaluation", evaluation_metrics)] if evaluation_metrics else [])
    )
    return report


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _format_value
    env.tests["number"] = _is_number
    return env


def _format_value(value: Any) -> str:
    """Numbers for tables: four decimals for scores, thousands separators for counts."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    # Whole floats from 2 up are counts (KFP metrics are floats); 0 and 1 may be scores and keep their decimals.
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 2):
        return f"{int(value):,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 0.001:
            return f"{value:.3g}"
        return f"{value:.4f}"
    return str(value)


def render_html(report: RunReport) -> str:
    """The report as one self-contained HTML page."""
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(report=report, colors=model_colors(report.evaluation.models if report.evaluation else []))
    )


def write_report(path: str, report: RunReport) -> str:
    """Renders ``report`` to ``path`` (folders created); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_html(report))
    return path


#: The report step's task folder and artifact in a local run (``<run_dir>/<task>/<artifact>``).
REPORT_TASK, REPORT_ARTIFACT = "make-run-report", "html_report"
#: Where a local run's report is copied, with a name browsers open as HTML (the artifact file has no extension).
LOCAL_REPORT_NAME = "report.html"


def publish_local_report(run_dir: str) -> str:
    """Copies a local run's report to ``<run_dir>/report.html``; returns that path, or '' when there is none."""
    found = [
        os.path.join(folder, REPORT_ARTIFACT)
        for folder, _, files in os.walk(run_dir)
        if os.path.basename(folder) == REPORT_TASK and REPORT_ARTIFACT in files
    ]
    if not found:
        return ""
    target = os.path.join(run_dir, LOCAL_REPORT_NAME)
    shutil.copyfile(max(found, key=os.path.getmtime), target)
    return target

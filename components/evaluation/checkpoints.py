"""Checkpoint selection: every checkpoint of a tuning run scored on the same held-out rows; the best one wins.

A Gemini tuning job keeps about one checkpoint per epoch (about ten, evenly spread, for ten epochs or more; the
final one always), deploys each to an endpoint of its own, and serves the tuned model's main endpoint from the
*default* checkpoint, which can be changed (Vertex AI, "Use checkpoints in supervised fine-tuning for Gemini
models", https://cloud.google.com/vertex-ai/generative-ai/docs/models/tuning-checkpoints). google-genai 2.34
reports them as ``TuningJob.tuned_model.checkpoints`` (``TunedModelCheckpoint``: ``checkpoint_id``, ``epoch``,
``step``, ``endpoint``) and changes the default with ``client.models.update(model=..., config=UpdateModelConfig(
default_checkpoint_id=...))`` (a ``PATCH`` of the model with ``defaultCheckpointId``; google/genai/models.py
``_UpdateModelConfig_to_vertex``).

Locally the trainer writes ``checkpoints/checkpoint-<step>`` folders into the tuned model's folder
(:mod:`tunekit.components.tuning.trainers`), each a LoRA adapter the local client loads like the final one.

The selection is the same on both sides: every checkpoint answers the same rows
(:func:`~tunekit.components.evaluation.scoring.evaluate_models`), its primary metric gets a bootstrap interval
(:func:`~tunekit.components.evaluation.bootstrap.paired_bootstrap` of its per-row scores against zero: the
interval of its mean), and the highest mean wins (ties: the checkpoint that is already the default, then the
later step). The winner's figures become the candidate's (``tuned``), so the gate judges the model that will be
served. On Vertex the winner is made the default checkpoint and every other checkpoint's endpoint is undeployed
(each one is billed while deployed); the tuned model's main endpoint is kept, since it serves the default.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tunekit.components.evaluation.bootstrap import paired_bootstrap
from tunekit.components.evaluation.gate import CANDIDATE
from tunekit.components.evaluation.scoring import EvalReport

#: The checkpoints' folder inside a local tuned model's folder (tuning.trainers.CHECKPOINTS; read here by name,
#: as evaluation may not import tuning).
CHECKPOINTS = "checkpoints"
#: The mark a complete local checkpoint holds (tuning.trainers.COMPLETE).
COMPLETE = "tunekit_checkpoint.json"
#: A checkpoint's model name in the scoring report: ``checkpoint-<id>``.
PREFIX = "checkpoint-"

_LOCAL = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class Checkpoint:
    """One checkpoint of a tuning run.

    Attributes:
        checkpoint_id: Vertex's checkpoint id; locally the step.
        step: The optimizer step it was saved at, if known.
        epoch: The epoch it was saved at, if known.
        endpoint: Vertex: the endpoint it is deployed to.
        path: Local: its adapter folder.
        is_default: Whether it is the checkpoint the tuned model serves now (the final one locally).
    """

    checkpoint_id: str
    step: int | None = None
    epoch: int | None = None
    endpoint: str = ""
    path: str = ""
    is_default: bool = False

    @property
    def label(self) -> str:
        """Its name among the scored models (``checkpoint-<id>``)."""
        return f"{PREFIX}{self.checkpoint_id}"


@dataclass
class CheckpointScore:
    """A checkpoint's figures on the held-out rows."""

    checkpoint: Checkpoint
    value: float
    ci_low: float
    ci_high: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Selection:
    """The outcome of a checkpoint selection.

    Attributes:
        metric: The primary metric compared.
        scores: Every checkpoint's figures, in step order.
        best: The winner.
        default_changed: Whether the default checkpoint was changed to the winner (Vertex).
        undeployed: The endpoints undeployed (the other checkpoints').
    """

    metric: str
    scores: list[CheckpointScore]
    best: Checkpoint
    default_changed: bool = False
    undeployed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the metadata entry ``checkpoints`` of the evaluation's metrics artifact (the report reads it)."""
        return {
            "metric": self.metric,
            "best": self.best.checkpoint_id,
            "default_changed": self.default_changed,
            "undeployed": list(self.undeployed),
            "checkpoints": [
                {
                    **asdict(s.checkpoint),
                    "value": s.value,
                    "ci_low": s.ci_low,
                    "ci_high": s.ci_high,
                    "best": s.checkpoint.checkpoint_id == self.best.checkpoint_id,
                }
                for s in self.scores
            ],
        }

    def figures(self) -> dict[str, float]:
        """``checkpoint_<id>_<metric>`` with ``_ci_low``/``_ci_high`` for every checkpoint (logged numbers)."""
        out: dict[str, float] = {}
        for s in self.scores:
            key = f"checkpoint_{s.checkpoint.checkpoint_id}_{self.metric}"
            out[key] = s.value
            out[f"{key}_ci_low"] = s.ci_low
            out[f"{key}_ci_high"] = s.ci_high
        return out


def check_config(select_checkpoint: bool, config: Any) -> None:
    """A config check: locally, ``select_checkpoint`` needs the trainer to keep its checkpoints.

    Raises:
        UserError: ``select_checkpoint`` with ``backend: local`` but no ``local_options.keep_checkpoints``.
    """
    from tunekit.components.common.errors import UserError

    options = getattr(config, "local_options", None) or {}
    if select_checkpoint and getattr(config, "backend", "") == "local" and not options.get("keep_checkpoints"):
        raise UserError(
            "select_checkpoint with backend 'local' compares the trainer's checkpoints, which it deletes unless "
            "told to keep them: set local_options.keep_checkpoints: true (and eval_steps, save_total_limit)",
            field="select_checkpoint",
        )
    from tunekit.components.tuning.gemini import is_open_model

    if (
        select_checkpoint
        and getattr(config, "backend", "") == "vertex"
        and is_open_model(getattr(config, "base_model", ""))
    ):
        # Refused before the job is paid for: a managed open-model tuning's weights are scored from Cloud Storage
        # (evaluation.scoring.managed_open_model_client); its checkpoints have no endpoints to compare here.
        raise UserError(
            "select_checkpoint compares a tuned Gemini model's checkpoints on their endpoints; a managed open-model "
            "tuning is evaluated from its final weights: set select_checkpoint: false",
            field="select_checkpoint",
        )


# --- finding the checkpoints ----------------------------------------------------------------------------------


def local_checkpoints(model_dir: str) -> list[Checkpoint]:
    """The complete ``checkpoints/checkpoint-<step>`` folders of a local tuned model, in step order.

    A folder without the trainer's completeness mark was cut short and is skipped; the last one is marked default
    (the final adapter in ``model_dir`` is trained to the same step or further).
    """
    folder = os.path.join(model_dir, CHECKPOINTS)
    found: list[Checkpoint] = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            match = _LOCAL.match(name)
            path = os.path.join(folder, name)
            if match and os.path.isfile(os.path.join(path, COMPLETE)):
                step = int(match.group(1))
                found.append(Checkpoint(checkpoint_id=str(step), step=step, path=path))
    found.sort(key=lambda c: c.step or 0)
    if found:
        found[-1].is_default = True
    return found


def vertex_checkpoints(job: Any, model: Any = None) -> list[Checkpoint]:
    """The checkpoints of a finished tuning job (google-genai ``TuningJob``), in step order.

    ``model`` (the tuned model's ``types.Model``, from ``client.models.get``) names the default checkpoint
    (``default_checkpoint_id``); without it the last one is taken as the default, as the service makes the final
    checkpoint the default.
    """
    tuned = getattr(job, "tuned_model", None)
    listed = list(getattr(tuned, "checkpoints", None) or [])
    default = getattr(model, "default_checkpoint_id", None) if model is not None else None
    found = [
        Checkpoint(
            checkpoint_id=str(c.checkpoint_id),
            step=c.step,
            epoch=c.epoch,
            endpoint=c.endpoint or "",
        )
        for c in listed
        if c.checkpoint_id is not None
    ]
    found.sort(key=lambda c: (c.step if c.step is not None else -1, c.epoch if c.epoch is not None else -1))
    for c in found:
        c.is_default = c.checkpoint_id == default if default else False
    if found and not any(c.is_default for c in found):
        found[-1].is_default = True
    return found


# --- scoring and choosing -------------------------------------------------------------------------------------


def score(report: EvalReport, checkpoints: list[Checkpoint]) -> list[CheckpointScore]:
    """Every checkpoint's primary metric on the report's rows, with the bootstrap interval of its mean."""
    metric = report.primary_metric
    out: list[CheckpointScore] = []
    for checkpoint in checkpoints:
        rows = report.scores[checkpoint.label]
        interval = paired_bootstrap(rows, [0.0] * len(rows))
        out.append(
            CheckpointScore(
                checkpoint=checkpoint,
                value=float(report.metrics[checkpoint.label][metric]),
                ci_low=interval.low,
                ci_high=interval.high,
                metrics=dict(report.metrics[checkpoint.label]),
            )
        )
    return out


def choose(scores: list[CheckpointScore]) -> Checkpoint:
    """The highest mean; ties go to the current default, then to the later step."""
    if not scores:
        raise ValueError("no checkpoints to choose from")
    best = max(scores, key=lambda s: (s.value, s.checkpoint.is_default, s.checkpoint.step or 0))
    return best.checkpoint


def promote(report: EvalReport, best: Checkpoint, checkpoints: list[Checkpoint]) -> None:
    """Makes ``best``'s figures the candidate's (``tuned``) and drops the checkpoints' own entries from the report.

    The per-row predictions keep every checkpoint's answer and score (``checkpoint-<id>_prediction``, ...), so the
    rows show what each one said; the candidate's columns are the winner's.
    """
    label = best.label
    for table in (report.metrics, report.statuses, report.scores, report.classification):
        if label in table:
            table[CANDIDATE] = table[label]
    for record in report.predictions:
        for suffix in ("prediction", "status", "score"):
            key = f"{label}_{suffix}"
            if key in record:
                record[f"{CANDIDATE}_{suffix}"] = record[key]
    for checkpoint in checkpoints:
        for table in (report.metrics, report.statuses, report.scores, report.classification):
            table.pop(checkpoint.label, None)


def select(
    report: EvalReport,
    checkpoints: list[Checkpoint],
    *,
    set_default: Callable[[Checkpoint], bool] | None = None,
    undeploy: Callable[[str], bool] | None = None,
    keep_endpoints: tuple[str, ...] = (),
) -> Selection:
    """Scores ``checkpoints`` (already answered in ``report``), picks the best, makes it the candidate.

    Args:
        report: The scoring report in which every checkpoint answered under :attr:`Checkpoint.label`.
        checkpoints: The run's checkpoints.
        set_default: Makes a checkpoint the default (Vertex); returns whether it changed anything.
        undeploy: Undeploys what is deployed on an endpoint (Vertex); returns whether anything was undeployed.
        keep_endpoints: Endpoints never undeployed (the tuned model's main endpoint).
    """
    scores = score(report, checkpoints)
    best = choose(scores)
    promote(report, best, checkpoints)
    selection = Selection(metric=report.primary_metric, scores=scores, best=best)
    if set_default is not None and not best.is_default:
        selection.default_changed = bool(set_default(best))
    if undeploy is not None:
        keep = {best.endpoint, *keep_endpoints}
        for checkpoint in checkpoints:
            if checkpoint.endpoint and checkpoint.endpoint not in keep and undeploy(checkpoint.endpoint):
                selection.undeployed.append(checkpoint.endpoint)
    return selection


# --- Vertex calls ---------------------------------------------------------------------------------------------


def set_default_checkpoint(client: Any, tuned_model: str, checkpoint: Checkpoint) -> bool:
    """Makes ``checkpoint`` the default of ``tuned_model`` (``client.models.update``); True when it changed.

    A retried step finds the default already set and changes nothing (the call is a ``PATCH``: repeating it is
    harmless).
    """
    from google.genai import types

    current = client.models.get(model=tuned_model)
    if current.default_checkpoint_id == checkpoint.checkpoint_id:
        return False
    client.models.update(
        model=tuned_model, config=types.UpdateModelConfig(default_checkpoint_id=checkpoint.checkpoint_id)
    )
    return True


def undeploy_endpoint(endpoints: Any, endpoint: str, *, timeout_s: float = 1800.0) -> bool:
    """Undeploys every model deployed on ``endpoint`` (aiplatform ``EndpointServiceClient``); True when any was.

    An endpoint already gone or emptied by an earlier attempt undeploys nothing (a retried step pays nothing
    twice). Traffic is taken away with each undeployment (an empty split when the last model goes).
    """
    from google.api_core import exceptions

    from tunekit.components.deployment.registry import undeploy

    try:
        found = endpoints.get_endpoint(name=endpoint)
    except exceptions.NotFound:
        return False
    deployed = [d.id for d in found.deployed_models]
    changed = False
    for index, deployed_id in enumerate(deployed):
        rest = deployed[index + 1 :]
        split = {rest[0]: 100} if rest else {}
        changed = undeploy(endpoints, endpoint, deployed_id, split, timeout_s) or changed
    return changed


def vertex_selection_calls(
    tuned_model: str, *, client: Any, endpoints: Any
) -> tuple[Callable[[Checkpoint], bool], Callable[[str], bool]]:
    """The ``set_default`` and ``undeploy`` functions :func:`select` takes, for a tuned Gemini model."""
    return (
        lambda checkpoint: set_default_checkpoint(client, tuned_model, checkpoint),
        lambda endpoint: undeploy_endpoint(endpoints, endpoint),
    )


def describe(selection: Selection) -> str:
    """A Markdown table of the checkpoints' figures (for the evaluation's summary)."""
    lines = [
        f"## Checkpoints ({selection.metric}, best: {selection.best.checkpoint_id})",
        "",
        "| checkpoint | step | epoch | value | CI low | CI high | chosen |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in selection.scores:
        c = s.checkpoint
        lines.append(
            f"| {c.checkpoint_id} | {'' if c.step is None else c.step} | {'' if c.epoch is None else c.epoch} | "
            f"{s.value:.4f} | {s.ci_low:.4f} | {s.ci_high:.4f} | "
            f"{'yes' if c.checkpoint_id == selection.best.checkpoint_id else ''} |"
        )
    if selection.undeployed:
        lines += ["", "Undeployed: " + ", ".join(selection.undeployed)]
    return "\n".join(lines)


def from_metadata(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The selection a metrics artifact's metadata records (``checkpoints``), or None."""
    value = metadata.get("checkpoints")
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else None

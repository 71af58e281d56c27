"""Scoring a tuned model beside its base on the same held-out rows, and the deploy gate.

Input rows (JSON Lines), either of:

- ``prompt`` and ``completion`` (local backend), or
- the Gemini format (``systemInstruction``?, ``contents`` ending with a model turn; Vertex backend).

Output: one prediction row per input row and model (``line``, ``reference``, ``<model>_prediction``,
``<model>_status``, ``<model>_score``), metrics per model from :mod:`tunekit.components.evaluation.metrics`, and
a gate decision (:mod:`tunekit.components.evaluation.gate`): the candidate against the base model
and, when one is deployed for the same purpose, the champion, with paired bootstrap intervals.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common import progress
from tunekit.components.common.errors import UserError
from tunekit.components.data_validation import formats
from tunekit.components.evaluation.gate import (
    BASE,
    CANDIDATE,
    CHAMPION,
    GateDecision,
    all_failed,
    require_endpoint,
)
from tunekit.components.evaluation.metrics import (
    CLASSIFICATION,
    PRIMARY_METRIC,
    ClassificationReport,
    classification_report,
    compute_metrics,
    row_scores,
)
from tunekit.components.evaluation.result import gate_markdown
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
        predictions: One dict per row with the reference and each model's prediction, status and score.
        scores: ``model name -> the primary metric of every row``, in row order (for the paired bootstrap).
        classification: ``model name ->`` per-class figures and confusion matrix (classification only).
        autorater: ``base``/``champion`` -> :class:`~tunekit.components.evaluation.autorater.PairwiseResult`
            (optional model-based evaluation on Vertex).
    """

    task: str
    primary_metric: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    classification: dict[str, ClassificationReport] = field(default_factory=dict)
    autorater: dict = field(default_factory=dict)

    def unscorable(self, name: str) -> str:
        """Why ``name``'s answers cannot stand for the model (every generation failed), or ''."""
        return all_failed(self.statuses.get(name) or {})

    def gate_inputs(
        self,
        *,
        candidate: str = CANDIDATE,
        baseline: str = BASE,
        champion: str = CHAMPION,
        champion_label: str = "",
        champion_error: str = "",
    ) -> dict[str, Any]:
        """The report's figures as :func:`~tunekit.components.evaluation.gate.decide`'s keyword arguments.

        ``decide(**report.gate_inputs(), policy=policy)`` gates the candidate on the primary metric against the
        baseline and, when the report scored one (under the name ``champion``), the champion; a champion whose
        every answer failed cannot be scored (``champion_error``).
        """
        champion_error = champion_error or (self.unscorable(champion) if champion in self.scores else "")
        has_champion = champion in self.scores and not champion_error
        metric = self.primary_metric
        return {
            "metric": metric,
            "candidate_scores": self.scores.get(candidate),
            "base_scores": self.scores.get(baseline),
            "candidate_value": self.metrics[candidate][metric],
            "base_value": self.metrics[baseline][metric],
            "champion_scores": self.scores[champion] if has_champion else None,
            "champion_value": self.metrics[champion][metric] if has_champion else None,
            "champion_label": champion_label,
            "champion_error": champion_error,
            "candidate_name": candidate,
        }


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


def vertex_client(
    model: str, project: str, location: str, cache_dir: str = "", base_model: str = ""
) -> ModelClient:
    """Gemini (a publisher model or an endpoint) through the model engine (retries, rate limits, cache).

    With ``cache_dir`` answers go to the persistent response cache, so a retried step pays for none twice. For a
    tuned model's endpoint, ``base_model`` (the model it was tuned from) picks the thinking setting of its family.
    """
    from tunekit.components.model_clients.backends import make_engine

    options = {"project": project, "location": location, "base_model": base_model}
    return make_engine("vertex", model, options=options, cache_dir=cache_dir or None)


def champion_client(champion, *, project: str, location: str, cache_dir: str = "") -> ModelClient:
    """A client for the champion: its model directory locally, its endpoint on Vertex (cached in ``cache_dir``).

    On Vertex, a tuned Gemini model answers ``generateContent``; an open model on Model Garden's vLLM container
    answers ``:predict`` (:func:`open_model_client`).

    Raises:
        UserError: A local champion whose directory is gone.
        ValueError: A Vertex champion with no endpoint recorded.
    """
    if champion.backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        if not os.path.isdir(champion.model):
            raise UserError(
                f"the champion's model directory is gone; roll back to another model (tunekit rollback) or set "
                f"beat_champion: false (registry entry {champion.registry_id})",
                path=champion.model,
            )
        # An adapter directory names its base model in adapter_config.json; HFLocalClient loads both.
        return HFLocalClient(champion.model)
    endpoint = require_endpoint(champion.endpoint, champion.model)
    from tunekit.components.deployment.champion import is_open_model

    if is_open_model(champion):
        return open_model_client(champion, endpoint, location=location, cache_dir=cache_dir)
    return vertex_client(endpoint, project or "", location or "", cache_dir, base_model=champion.base_model)


def open_model_client(champion, endpoint: str, *, location: str, cache_dir: str = "") -> ModelClient:
    """An open-model champion on its Vertex endpoint, through the engine's ``vertex_vllm`` backend (``:predict``).

    Raises:
        ValueError: Its serving container is not Model Garden's vLLM (whose request shape is the one spoken).
    """
    from tunekit.components.model_clients.backends import make_engine

    image = str(champion.extra.get("serving_image") or "")
    if "vllm" not in image.rsplit("/", 1)[-1]:
        raise ValueError(
            f"the champion is served by {image}; tunekit scores open models served by Model Garden's vLLM "
            "container (deployment.rollout's default serving image)"
        )
    return make_engine("vertex_vllm", endpoint, options={"location": location}, cache_dir=cache_dir or None)


def managed_open_model_dirs(record) -> tuple[str, str]:
    """``(base weights, tuned weights)`` of a managed open-model tuning, as this worker reads them.

    Vertex AI's managed open-model tuning writes the tuned weights under the job's ``output_uri``
    (``record.model_dir``, ``.../postprocess/node-0/checkpoints/final``, Hugging Face format) and serves nothing;
    the base is scored from ``custom_base_model``, the user's copy of its weights in Cloud Storage (types.py
    ``CreateTuningJobConfig.custom_base_model``: ".safetensors format along with associated model metadata files").
    Inside Vertex AI Pipelines both are read through the worker's ``/gcs`` mount (:func:`uris.gcs_to_fuse`), as the
    open models of our own GPU custom job are.

    Raises:
        UserError: No base weights in Cloud Storage (config preflight refuses this before the tuning job), or a
            folder this worker cannot read.
    """
    from tunekit.components.common import uris

    base_uri = str(record.get("custom_base_model", "") or "")
    if not base_uri:
        raise UserError(
            f"the open model {record.base_model} was tuned, but its base cannot be scored beside it: tunekit reads "
            "the base from its weights in Cloud Storage; set custom_base_model to a gs:// folder of "
            f"{record.base_model}'s .safetensors weights and re-run (the tuned weights are in {record.model_dir})",
            field="custom_base_model",
        )
    base_dir = uris.gcs_to_fuse(base_uri)
    if not os.path.isfile(os.path.join(base_dir, "config.json")):
        raise UserError(
            f"no model in custom_base_model {base_uri} (read at {base_dir}): the evaluation reads open-model "
            "weights through the /gcs mount of Vertex AI Pipelines; run it there, with the base weights in that folder",
            path=base_dir,
        )
    return base_dir, uris.gcs_to_fuse(str(record.model_dir or ""))


def managed_open_model_client(record, base_dir: str = "") -> ModelClient:
    """The tuned model of a managed open-model tuning, loaded from its weights (``record.model_dir``, ``/gcs``).

    A LoRA tuning's folder may hold an adapter: it is loaded onto ``base_dir`` (its own ``adapter_config.json``
    names the service's copy of the base, which this worker cannot read).

    Raises:
        UserError: The folder holds no model, or an adapter with no ``base_dir`` to load it onto.
    """
    from tunekit.components.common import uris
    from tunekit.components.model_clients.hf import ADAPTER_CONFIG, HFLocalClient

    tuned_dir = uris.gcs_to_fuse(str(record.model_dir or ""))
    if os.path.isfile(os.path.join(tuned_dir, ADAPTER_CONFIG)):
        if not base_dir:
            raise UserError(
                f"the tuned weights in {record.model_dir} are a LoRA adapter and no base weights are at hand to "
                "load it onto; tune with tuning mode full (finetuning: full for a distillation student)",
                path=tuned_dir,
            )
        return HFLocalClient(base_dir, adapter_dir=tuned_dir)
    if not os.path.isfile(os.path.join(tuned_dir, "config.json")):
        raise UserError(
            f"no model in {record.model_dir} (read at {tuned_dir}): the evaluation reads open-model weights "
            "through the /gcs mount of Vertex AI Pipelines; run it there, after the tuning job wrote them",
            path=tuned_dir,
        )
    return HFLocalClient(tuned_dir)


def managed_open_model_clients(record, *, candidate: bool = True) -> dict[str, ModelClient]:
    """The base's and (with ``candidate``) the tuned model's clients for a managed open-model tuning.

    Both answer from their weights (:func:`managed_open_model_dirs`) through the local Hugging Face client, on
    the step's accelerator when it has one (:func:`managed_open_model_client` for the tuned one).
    """
    from tunekit.components.model_clients.hf import HFLocalClient

    base_dir, _ = managed_open_model_dirs(record)
    models: dict[str, ModelClient] = {BASE: HFLocalClient(base_dir)}
    if candidate:
        models[CANDIDATE] = managed_open_model_client(record, base_dir)
    return models


#: The fewest rows one call of a client gets when the rows are asked in parts for progress (engine-backed clients
#: answer a call's prompts concurrently: parts smaller than its concurrency would slow it down).
MIN_PART_ROWS = 32
#: Parts the rows of one model are asked in, at most (a progress line each).
PROGRESS_PARTS = 20


def generate_with_progress(
    client: ModelClient, prompts: list[Prompt], config: GenerationConfig | None, label: str
) -> list:
    """``client.generate(prompts, config)`` in up to :data:`PROGRESS_PARTS` parts, reporting progress after each."""
    size = max(MIN_PART_ROWS, -(-len(prompts) // PROGRESS_PARTS))
    generations: list = []
    for start in range(0, len(prompts), size):
        generations.extend(client.generate(prompts[start : start + size], config))
        progress.report(label, min(start + size, len(prompts)), len(prompts))
    return generations


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
        generations = generate_with_progress(
            client, [row.prompt for row in rows], config, f"evaluation rows ({name})"
        )
        if len(generations) != len(rows):
            raise RuntimeError(f"model '{name}' returned {len(generations)} answers for {len(rows)} prompts")
        texts = [g.text if g.status == OK else (g.text or "") for g in generations]
        report.metrics[name] = compute_metrics(task, texts, references)
        report.statuses[name] = dict(Counter(g.status for g in generations))
        report.scores[name] = row_scores(task, texts, references)
        if task == CLASSIFICATION:
            report.classification[name] = classification_report(texts, references)
        for record, generation, value in zip(report.predictions, generations, report.scores[name], strict=True):
            record[f"{name}_prediction"] = generation.text
            record[f"{name}_status"] = generation.status
            record[f"{name}_score"] = value
    return report


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
    lines += [gate_markdown(decision), ""]
    for result in report.autorater.values():
        lines += [f"**Model-based (does not gate):** {result.describe()}", ""]
    for name, details in report.classification.items():
        lines += [f"## Per class ({name})", "", "| class | precision | recall | F1 | rows |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for label in details.precision:
            lines.append(
                f"| {label or '(empty)'} | {details.precision[label]:.4f} | {details.recall[label]:.4f} | "
                f"{details.f1[label]:.4f} | {details.support[label]} |"
            )
        lines.append("")
    lines += ["## First examples", ""]
    lines += ["| line | reference | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    for record in report.predictions[:10]:
        cells = [str(record.get(f"{n}_prediction", "")).replace("|", "\\|").replace("\n", " ")[:80] for n in names]
        reference = record["reference"].replace("|", "\\|").replace("\n", " ")[:80]
        lines.append(f"| {record['line']} | {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

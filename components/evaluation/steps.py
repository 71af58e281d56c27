"""The evaluation step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import json
import os

from tunekit.components.evaluation.evaluate import (
    EvalReport,
    GateDecision,
    decide,
    evaluate_models,
    load_eval_rows,
    render_markdown,
    write_predictions,
)
from tunekit.components.model_clients.base import GenerationConfig, ModelClient


def _clients(backend: str, base_model: str, tuned: dict, model_path: str, project: str, location: str):
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return {"base": HFLocalClient(base_model), "tuned": HFLocalClient(base_model, adapter_dir=model_path)}
    if backend == "vertex":
        from tunekit.components.model_clients.vertex import VertexGeminiClient, make_genai_client

        client = make_genai_client(project, location)
        return {
            "base": VertexGeminiClient(base_model, project, location, client=client),
            "tuned": VertexGeminiClient(tuned["endpoint"], project, location, client=client),
        }
    raise ValueError(f"unknown backend '{backend}'")


def run_evaluate(
    *,
    backend: str,
    task: str,
    base_model: str,
    model_path: str,
    model_metadata: dict,
    validation_path: str,
    predictions_path: str,
    summary_path: str,
    max_eval_examples: int = 0,
    max_output_tokens: int = 64,
    min_improvement: float = 0.0,
    project: str = "",
    location: str = "",
    clients: dict[str, ModelClient] | None = None,
) -> tuple[EvalReport, GateDecision]:
    """Scores the tuned model beside its base on the held-out rows and decides whether to deploy.

    Writes the per-row predictions (JSON Lines) and a Markdown summary; returns the report and decision.
    """
    tuned = dict(model_metadata)
    info_file = os.path.join(model_path, "tunekit_model.json")
    if os.path.exists(info_file):
        with open(info_file, encoding="utf-8") as handle:
            tuned.update(json.load(handle))
    rows = load_eval_rows(validation_path, limit=max_eval_examples)
    models = clients or _clients(backend, base_model, tuned, model_path, project, location)
    try:
        report = evaluate_models(
            rows, models, task=task, config=GenerationConfig(max_output_tokens=max_output_tokens)
        )
    finally:
        for client in models.values():
            client.close()
    decision = decide(report, candidate="tuned", baseline="base", min_improvement=min_improvement)
    write_predictions(report, predictions_path)
    with open(summary_path, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(report, decision))
    return report, decision

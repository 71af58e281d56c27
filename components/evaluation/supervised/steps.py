"""The evaluation step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.evaluation.gate import (
    BASE,
    CANDIDATE,
    CHAMPION,
    GatePolicy,
    decide,
    describe_champion,
    load_champion,
    locate_champion,
)
from tunekit.components.evaluation.result import EvaluationResult
from tunekit.components.evaluation.scoring import (
    EvalReport,
    champion_client,
    evaluate_models,
    load_eval_rows,
    render_markdown,
    vertex_client,
)
from tunekit.components.model_clients.base import GenerationConfig, ModelClient


def _clients(
    backend: str,
    base_model: str,
    tuned: ModelRecord,
    model_path: str,
    project: str,
    location: str,
    cache_dir: str = "",
):
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return {BASE: HFLocalClient(base_model), CANDIDATE: HFLocalClient(base_model, adapter_dir=model_path)}
    if backend == "vertex":
        return {
            BASE: vertex_client(base_model, project, location, cache_dir),
            CANDIDATE: vertex_client(tuned.endpoint, project, location, cache_dir, base_model=base_model),
        }
    raise ValueError(f"unknown backend '{backend}'")


def _judge_with_autorater(
    report: EvalReport, rows, *, project: str, location: str, client=None, cache_dir: str = ""
) -> None:
    """Fills ``report.autorater``: the pairwise autorater's verdicts of the candidate against base and champion."""
    from tunekit.components.evaluation.autorater import judge_pairwise
    from tunekit.components.model_clients.cache import ResponseCache
    from tunekit.components.model_clients.hf import prompt_text

    prompts = [prompt_text(row.prompt) for row in rows]
    tuned_answers = [p.get(f"{CANDIDATE}_prediction") for p in report.predictions]
    verdicts = ResponseCache(cache_dir) if cache_dir else None
    try:
        for other in (BASE, CHAMPION):
            if other in report.metrics:
                report.autorater[other] = judge_pairwise(
                    other,
                    prompts,
                    tuned_answers,
                    [p.get(f"{other}_prediction") for p in report.predictions],
                    project=project,
                    location=location,
                    client=client,
                    cache=verdicts,
                )
    finally:
        if verdicts is not None:
            verdicts.close()


def _result(report: EvalReport, decision) -> EvaluationResult:
    metrics = {name: dict(values) for name, values in report.metrics.items()}
    details = report.classification.get(CANDIDATE)
    if details is not None:
        for label in details.precision:
            metrics[CANDIDATE][f"precision[{label}]"] = details.precision[label]
            metrics[CANDIDATE][f"recall[{label}]"] = details.recall[label]
    figures: dict[str, float] = {}
    for other, result in report.autorater.items():
        figures[f"autorater_win_rate_vs_{other}"] = result.win_rate
        figures[f"autorater_win_rate_vs_{other}_ci_low"] = result.interval.low + 0.5
        figures[f"autorater_win_rate_vs_{other}_ci_high"] = result.interval.high + 0.5
    return EvaluationResult(
        method="supervised",
        primary_metric=report.primary_metric,
        decision=decision,
        metrics=metrics,
        figures=figures,
        predictions=report.predictions,
        summary=render_markdown(report, decision),
        extras={"autorater": report.autorater, "classification": report.classification, "report": report},
    )


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
    purpose: str = "",
    local_registry: str = "",
    policy: GatePolicy | None = None,
    model_based: bool = False,
    evaluation_client=None,
    cache_dir: str = "",
) -> EvaluationResult:
    """Scores the tuned model beside its base and the champion on the held-out rows; decides whether to deploy.

    The champion is the model deployed for ``purpose`` now (none when ``purpose`` is '' or nothing is deployed);
    it answers the same rows. Writes the per-row predictions (JSON Lines) and a Markdown summary; returns the
    evaluation (``extras``: ``autorater``, ``classification`` and the scoring ``report``).

    ``clients`` gives ``base``, ``tuned`` and optionally ``champion`` clients (tests); they are built from the
    arguments when None, and the champion's when the registry has a champion and ``clients`` has none. ``policy``
    is the gate policy (by default one with ``min_improvement``); ``local_registry`` is the local registry file.
    ``model_based`` (Vertex only) also asks the Gen AI evaluation service's pairwise autorater whether the tuned
    model's answers beat the base's and the champion's (:mod:`.autorater`; reported, not gated), through
    ``evaluation_client`` when given.

    ``cache_dir`` (the step's ``response_cache`` output; '' for none) keeps the Vertex models' answers and the
    autorater's verdicts as they arrive: a retried or re-run step asks again only for what is missing.
    """
    tuned = ModelRecord.read(model_path, model_metadata)
    if model_based and backend != "vertex":
        raise UserError(
            "model-based evaluation uses the Vertex AI Gen AI evaluation service: set backend: vertex, or "
            "model_based_evaluation: false",
            field="model_based_evaluation",
        )
    rows = load_eval_rows(validation_path, limit=max_eval_examples)
    policy = policy or GatePolicy(min_improvement=min_improvement)
    champion = locate_champion(
        purpose, backend=backend, local_registry=local_registry, project=project, location=location
    )
    models = (
        dict(clients)
        if clients
        else _clients(backend, base_model, tuned, model_path, project, location, cache_dir)
    )
    champion_error = ""
    if CHAMPION not in models:
        client, champion_error = load_champion(
            champion, lambda c: champion_client(c, project=project, location=location, cache_dir=cache_dir)
        )
        if client is not None:
            models[CHAMPION] = client
    try:
        report = evaluate_models(
            rows, models, task=task, config=GenerationConfig(max_output_tokens=max_output_tokens)
        )
    finally:
        for client in models.values():
            client.close()
    decision = decide(
        **report.gate_inputs(champion_label=describe_champion(champion), champion_error=champion_error),
        policy=policy,
    )
    if model_based:
        _judge_with_autorater(
            report, rows, project=project, location=location, client=evaluation_client, cache_dir=cache_dir
        )
    result = _result(report, decision)
    result.write(predictions_path=predictions_path, summary_path=summary_path)
    return result

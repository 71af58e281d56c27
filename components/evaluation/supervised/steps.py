"""The evaluation step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import json
import os

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation.gate import (
    CHAMPION,
    GatePolicy,
    describe_champion,
    locate_champion,
)
from tunekit.components.evaluation.scoring import (
    EvalReport,
    GateDecision,
    decide,
    evaluate_models,
    load_eval_rows,
    render_markdown,
    write_predictions,
)
from tunekit.components.model_clients.base import GenerationConfig, ModelClient


def vertex_client(model: str, project: str, location: str, cache_dir: str = "") -> ModelClient:
    """Gemini (a publisher model or an endpoint) through the model engine (retries, rate limits, cache).

    With ``cache_dir`` answers go to the persistent response cache, so a retried step pays for none twice.
    """
    from tunekit.components.model_clients.backends import make_engine

    return make_engine(
        "vertex", model, options={"project": project, "location": location}, cache_dir=cache_dir or None
    )


def _clients(
    backend: str, base_model: str, tuned: dict, model_path: str, project: str, location: str, cache_dir: str = ""
):
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return {"base": HFLocalClient(base_model), "tuned": HFLocalClient(base_model, adapter_dir=model_path)}
    if backend == "vertex":
        return {
            "base": vertex_client(base_model, project, location, cache_dir),
            "tuned": vertex_client(tuned["endpoint"], project, location, cache_dir),
        }
    raise ValueError(f"unknown backend '{backend}'")


def champion_client(champion, *, project: str, location: str, cache_dir: str = "") -> ModelClient:
    """A client for the champion: its model directory locally, its endpoint on Vertex (cached in ``cache_dir``).

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
    if not champion.endpoint:
        raise ValueError(f"no endpoint is recorded for {champion.model}")
    return vertex_client(champion.endpoint, project or "", location or "", cache_dir)


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
) -> tuple[EvalReport, GateDecision]:
    """Scores the tuned model beside its base and the champion on the held-out rows; decides whether to deploy.

    The champion is the model deployed for ``purpose`` now (none when ``purpose`` is '' or nothing is deployed);
    it answers the same rows. Writes the per-row predictions (JSON Lines) and a Markdown summary; returns the
    report and decision.

    ``clients`` gives ``base``, ``tuned`` and optionally ``champion`` clients (tests); they are built from the
    arguments when None, and the champion's when the registry has a champion and ``clients`` has none. ``policy``
    is the gate policy (by default one with ``min_improvement``); ``local_registry`` is the local registry file.
    ``model_based`` (Vertex only) also asks the Gen AI evaluation service's pairwise autorater whether the tuned
    model's answers beat the base's and the champion's (:mod:`.autorater`; reported, not gated), through
    ``evaluation_client`` when given.

    ``cache_dir`` (the step's ``response_cache`` output; '' for none) keeps the Vertex models' answers and the
    autorater's verdicts as they arrive: a retried or re-run step asks again only for what is missing.
    """
    tuned = dict(model_metadata)
    info_file = os.path.join(model_path, "tunekit_model.json")
    if os.path.exists(info_file):
        with open(info_file, encoding="utf-8") as handle:
            tuned.update(json.load(handle))
    if model_based and backend != "vertex":
        raise UserError(
            "model-based evaluation uses the Vertex AI Gen AI evaluation service: set backend: vertex, or "
            "model_based_evaluation: false",
            field="model_based_evaluation",
        )
    rows = load_eval_rows(validation_path, limit=max_eval_examples)
    policy = policy or GatePolicy(min_improvement=min_improvement)
    champion = (
        locate_champion(
            purpose, backend=backend, local_registry=local_registry, project=project, location=location
        )
        if purpose
        else None
    )
    models = (
        dict(clients)
        if clients
        else _clients(backend, base_model, tuned, model_path, project, location, cache_dir)
    )
    champion_error = ""
    if champion is not None and CHAMPION not in models:
        try:
            models[CHAMPION] = champion_client(champion, project=project, location=location, cache_dir=cache_dir)
        except Exception as exc:  # noqa: BLE001 - any failure to load the champion is reported by the gate
            champion_error = f"{type(exc).__name__}: {exc}"
    try:
        report = evaluate_models(
            rows, models, task=task, config=GenerationConfig(max_output_tokens=max_output_tokens)
        )
    finally:
        for client in models.values():
            client.close()
    decision = decide(
        report,
        candidate="tuned",
        baseline="base",
        policy=policy,
        champion_label=describe_champion(champion) if champion is not None else "",
        champion_error=champion_error,
    )
    if model_based:
        from tunekit.components.evaluation.autorater import judge_pairwise
        from tunekit.components.model_clients.cache import ResponseCache
        from tunekit.components.model_clients.hf import prompt_text

        prompts = [prompt_text(row.prompt) for row in rows]
        tuned_answers = [p.get("tuned_prediction") for p in report.predictions]
        verdicts = ResponseCache(cache_dir) if cache_dir else None
        try:
            for other in ("base", CHAMPION):
                if other in report.metrics:
                    report.autorater[other] = judge_pairwise(
                        other,
                        prompts,
                        tuned_answers,
                        [p.get(f"{other}_prediction") for p in report.predictions],
                        project=project,
                        location=location,
                        client=evaluation_client,
                        cache=verdicts,
                    )
        finally:
            if verdicts is not None:
                verdicts.close()
    write_predictions(report, predictions_path)
    with open(summary_path, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(report, decision))
    return report, decision

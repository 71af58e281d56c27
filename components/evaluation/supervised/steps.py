"""The evaluation step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import os

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
    managed_open_model_clients,
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
    candidate: bool = True,
):
    """The base's client and, with ``candidate``, the tuned model's (not built when its checkpoints answer)."""
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        models = {BASE: HFLocalClient(base_model)}
        if candidate:
            models[CANDIDATE] = HFLocalClient(base_model, adapter_dir=model_path)
        return models
    if backend == "vertex":
        if tuned.get("open_model"):
            # Managed open-model tuning writes weights, not an endpoint: base and tuned model answer from their
            # weights in Cloud Storage (the /gcs mount), as open models from our own GPU custom job do.
            return managed_open_model_clients(tuned, candidate=candidate)
        models = {BASE: vertex_client(base_model, project, location, cache_dir)}
        if candidate:
            models[CANDIDATE] = vertex_client(tuned.endpoint, project, location, cache_dir, base_model=base_model)
        return models
    raise ValueError(f"unknown backend '{backend}'")


def _checkpoint_client(backend: str, base_model: str, checkpoint, project: str, location: str, cache_dir: str):
    """A client for one checkpoint: its adapter folder locally, its endpoint on Vertex."""
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        return HFLocalClient(base_model, adapter_dir=checkpoint.path)
    return vertex_client(checkpoint.endpoint, project, location, cache_dir, base_model=base_model)


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


def _checkpoint_selection(
    backend: str, tuned: ModelRecord, model_path: str, project: str, location: str, genai_client=None
) -> list:
    """The tuned model's checkpoints (:mod:`tunekit.components.evaluation.checkpoints`); a UserError when none."""
    from tunekit.components.evaluation import checkpoints as ckpt

    if backend == "local":
        found = ckpt.local_checkpoints(model_path)
        hint = "the tuning step keeps them when select_checkpoint is set (local_options.keep_checkpoints)"
    else:
        job_name = tuned.get("job_name") or ""
        if not job_name or genai_client is None:
            found = []
        else:
            job = genai_client.tunings.get(name=job_name)
            model = genai_client.models.get(model=tuned.tuned_model) if tuned.tuned_model else None
            found = ckpt.vertex_checkpoints(job, model)
        hint = "its tuning job reports none (export_last_checkpoint_only, or a model without checkpoints)"
    if not found:
        raise UserError(
            f"select_checkpoint: the tuned model has no checkpoints to choose from; {hint}; "
            "or set select_checkpoint: false",
            field="select_checkpoint",
        )
    return found


def _adopt_local_checkpoint(model_path: str, best) -> bool:
    """Makes a local checkpoint's adapter the tuned model's (what deploy and serve load); True when it changed."""
    import shutil

    if best.is_default:
        return False
    if not os.path.isfile(os.path.join(model_path, "adapter_config.json")):
        raise UserError(
            "select_checkpoint needs a LoRA adapter in the tuned model's folder (local_options.merge_adapter: false)",
            field="select_checkpoint",
        )
    for name in os.listdir(best.path):
        if name.startswith("adapter_"):
            shutil.copyfile(os.path.join(best.path, name), os.path.join(model_path, name))
    return True


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
    select_checkpoint: bool = False,
    genai_client=None,
    endpoint_client=None,
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

    ``select_checkpoint``: every checkpoint of the tuned model answers the same rows instead of the tuned model
    alone (:mod:`tunekit.components.evaluation.checkpoints`); the best one on the primary metric is the candidate
    the gate judges, the default checkpoint on Vertex (the others' endpoints undeployed), and locally its adapter
    becomes the tuned model's. ``genai_client`` / ``endpoint_client`` (tests) are the google-genai client and the
    aiplatform ``EndpointServiceClient`` it uses on Vertex.
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
        else _clients(
            backend, base_model, tuned, model_path, project, location, cache_dir, candidate=not select_checkpoint
        )
    )
    checkpoints: list = []
    if select_checkpoint:
        if backend == "vertex" and genai_client is None:
            from tunekit.components.model_clients.vertex import make_genai_client

            genai_client = make_genai_client(project, location)
        checkpoints = _checkpoint_selection(backend, tuned, model_path, project, location, genai_client)
        # The checkpoints answer instead of the tuned model (its main endpoint or adapter is one of them).
        dropped = models.pop(CANDIDATE, None)
        if dropped is not None:
            dropped.close()
        for c in checkpoints:
            if c.label not in models:
                models[c.label] = _checkpoint_client(backend, base_model, c, project, location, cache_dir)
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
    selection = None
    if checkpoints:
        from tunekit.components.evaluation import checkpoints as ckpt

        set_default = undeploy = None
        if backend == "vertex":
            if endpoint_client is None:
                from tunekit.components.deployment.registry import make_endpoint_client

                endpoint_client = make_endpoint_client(location)
            set_default, undeploy = ckpt.vertex_selection_calls(
                tuned.tuned_model, client=genai_client, endpoints=endpoint_client
            )
        selection = ckpt.select(
            report, checkpoints, set_default=set_default, undeploy=undeploy, keep_endpoints=(tuned.endpoint,)
        )
        if backend == "local":
            selection.default_changed = _adopt_local_checkpoint(model_path, selection.best)
        print(
            f"checkpoint {selection.best.checkpoint_id} chosen of {len(checkpoints)} on {selection.metric}; "
            f"undeployed {len(selection.undeployed)} endpoint(s)",
            flush=True,
        )
    decision = decide(
        **report.gate_inputs(champion_label=describe_champion(champion), champion_error=champion_error),
        policy=policy,
    )
    if model_based:
        _judge_with_autorater(
            report, rows, project=project, location=location, client=evaluation_client, cache_dir=cache_dir
        )
    result = _result(report, decision)
    if selection is not None:
        from tunekit.components.evaluation.checkpoints import describe

        result.figures.update(selection.figures())
        result.metadata["checkpoints"] = selection.to_dict()
        result.extras["checkpoints"] = selection
        result.summary = f"{result.summary.rstrip()}\n\n{describe(selection)}\n"
    result.write(predictions_path=predictions_path, summary_path=summary_path)
    return result

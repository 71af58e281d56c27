"""What every pipeline shares: the deploy gate and the deploy step behind it, the validation and the report steps.

Every method ends the same way: its evaluation step scores the candidate beside the base model and the champion
and returns the gate's decision as a single ``bool`` (``Output``); :func:`gated_deploy` builds the nested pipeline
that runs the method's deploy step only when that decision is ``True``::

    evaluation = evaluation_step(evaluate_supervised, p, tuned_model=..., validation_dataset=...)
    deploy_and_report(gate_and_deploy, p, evaluation=evaluation, tuned_model=..., ...)

The sub-graph is a real nested ``@dsl.pipeline`` (a task named ``gate-and-deploy`` holding the ``gate-passed``
condition and the deploy task); KFP 2.17's local runner runs nested pipelines and conditions on their inputs, and
writes the deploy task's outputs under the run folder like any other task's. Its parameters are the deploy
component's own inputs (without ``pipeline_job_name``, which it fills in) plus ``gate_passed``, so a new deploy
option reaches it without editing this file; the pipeline fills them by name (:func:`~tunekit.pipelines.wiring.wire`).

No ``from __future__ import annotations`` here: KFP reads parameter types from real annotations.
"""

import inspect

from kfp import dsl

from tunekit.components.deployment.component import deploy_embedding_model, deploy_model
from tunekit.components.reporting.component import make_run_report
from tunekit.pipelines.wiring import wire

#: The parameter that carries the evaluation's decision into the sub-graph.
GATE_PARAMETER = "gate_passed"
#: The condition's name inside the sub-graph (also shown in the Vertex AI pipeline graph).
CONDITION_NAME = "gate-passed"


def _is_output(annotation) -> bool:
    from kfp.dsl.types import type_annotations

    return type_annotations.is_artifact_wrapped_in_Output(annotation) or isinstance(
        annotation, type_annotations.OutputPath
    )


def gated_deploy(deploy_op, *, name: str, retries: int = 2):
    """A nested pipeline: ``deploy_op`` runs only when the ``gate_passed`` parameter is ``True``.

    Args:
        deploy_op: A deploy component; its inputs (but ``pipeline_job_name``) become the sub-graph's parameters.
        name: The sub-graph's name (its task name in the parent pipeline).
        retries: Retries of the deploy task (deploying re-attaches to what it created; see the deploy steps).

    Returns:
        The sub-graph, to be called inside a pipeline like a component.
    """
    signature = inspect.signature(deploy_op.python_func)
    params = [inspect.Parameter(GATE_PARAMETER, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=bool)]
    for parameter in signature.parameters.values():
        if parameter.name == "pipeline_job_name" or _is_output(parameter.annotation):
            continue
        params.append(parameter.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD))

    def graph(*args, **kwargs):
        kwargs = dict(graph.__signature__.bind(*args, **kwargs).arguments)
        passed = kwargs.pop(GATE_PARAMETER)
        with dsl.If(passed == True, name=CONDITION_NAME):  # noqa: E712 - a KFP condition
            task = wire(deploy_op, kwargs)  # pipeline_job_name: the run's own
            if retries:
                retried(task, retries=retries)

    graph.__signature__ = inspect.Signature(params)
    graph.__name__ = name.replace("-", "_")
    graph.__qualname__ = graph.__name__
    graph.__doc__ = f"Runs {deploy_op.name} when the evaluation's gate passed."
    return dsl.pipeline(name=name, description=graph.__doc__)(graph)


def retried(task, *, retries: int = 2, backoff: str = "60s"):
    """Retries a step that does paid or flaky work; each step re-attaches to the job it started. Returns the task.

    KFP's retry policy retries any failure; a user error (``UserError``) is not tried again all the same: the local
    run stops on it, and on Vertex AI a retried attempt fails at once from the first attempt's record
    (:mod:`tunekit.components.common.artifacts`).
    """
    return task.set_retry(num_retries=retries, backoff_duration=backoff, backoff_factor=2.0)


def validation_step(validate_op, params, /, **given):
    """The first step of every pipeline: ``validate_op`` wired by name (:func:`wire`), task ``validate-data``."""
    task = wire(validate_op, params, **given).set_display_name("validate-data")
    # The URIs name data that can change under the same name; a cached result would hide the change.
    task.set_caching_options(False)
    return task


def evaluation_step(evaluate_op, params, /, **given):
    """The evaluation step (scores and the gate's decision), wired by name; never cached."""
    task = wire(evaluate_op, params, **given)
    # The champion's answers can change (a rollback, a new deployment): never reuse a cached evaluation.
    task.set_caching_options(False)
    return task


def deploy_and_report(
    gate,
    params,
    /,
    *,
    pipeline_name: str,
    summary: dict,
    validation,
    evaluation,
    tuned_model,
    deploy: dict | None = None,
    report: dict | None = None,
):
    """How every pipeline ends: the gate's deploy step, and beside it the run report.

    ``gate`` (a :func:`gated_deploy` sub-graph) deploys ``tuned_model`` if the evaluation's gate passed; the report
    is written after the evaluation whether or not it passed, and shows ``summary`` and then the run's ``purpose``.

    Args:
        gate: The sub-graph; its inputs are wired by name from ``params``, then ``deploy``.
        params: The pipeline's parameters.
        pipeline_name: The report's pipeline name.
        summary: The parameters the report shows (label → value) before the ``purpose``.
        validation: The validation task (its ``report``).
        evaluation: The evaluation task (its ``Output`` decision and ``metrics``).
        tuned_model: The candidate model (deployed and reported).
        deploy: Further deploy inputs: task outputs such as ``train_dataset``, or overrides such as ``backend``
            (the tuning step's answer where it decides: an open model trained on Vertex is uploaded and deployed to
            an endpoint in the run's project and region, both wired by name).
        report: Further report artifacts (``baseline_model``, ``teacher_metrics``...).

    Returns:
        The report task.
    """
    metrics = evaluation.outputs["metrics"]
    wire(
        gate,
        params,
        gate_passed=evaluation.outputs["Output"],
        tuned_model=tuned_model,
        evaluation_metrics=metrics,
        **(deploy or {}),
    )
    return wire(
        make_run_report,
        {},
        pipeline_name=pipeline_name,
        parameters={**summary, "purpose": params.purpose},
        validation_report=validation.outputs["report"],
        tuned_model=tuned_model,
        evaluation_metrics=metrics,
        **(report or {}),
    ).set_display_name("run-report")


#: Generative models (supervised tuning, distilling step-by-step, preference tuning): ``deploy_model``.
gate_and_deploy = gated_deploy(deploy_model, name="gate-and-deploy")
#: Embedding models: ``deploy_embedding_model``.
gate_and_deploy_embedding = gated_deploy(deploy_embedding_model, name="gate-and-deploy-embedding")

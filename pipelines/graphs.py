"""Sub-graphs every pipeline shares: the deploy gate and the deploy step behind it.

Every method ends the same way: its evaluation step scores the candidate beside the base model and the champion
and returns the gate's decision as a single ``bool`` (``Output``); :func:`gated_deploy` builds the nested pipeline
that runs the method's deploy step only when that decision is ``True``::

    evaluation = evaluate_supervised(...)
    gate_and_deploy(gate_passed=evaluation.outputs["Output"], tuned_model=..., evaluation_metrics=...,
                    purpose=purpose, ...)

The sub-graph is a real nested ``@dsl.pipeline`` (a task named ``gate-and-deploy`` holding the ``gate-passed``
condition and the deploy task); KFP 2.17's local runner runs nested pipelines and conditions on their inputs, and
writes the deploy task's outputs under the run folder like any other task's. Its parameters are the deploy
component's own inputs (without ``pipeline_job_name``, which it fills in) plus ``gate_passed``, so a new deploy
option reaches it without editing this file.

No ``from __future__ import annotations`` here: KFP reads parameter types from real annotations.
"""

import inspect

from kfp import dsl

from tunekit.components.deployment.component import deploy_model
from tunekit.components.deployment.embedding_component import deploy_embedding_model

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
    fills_job_name = "pipeline_job_name" in signature.parameters

    def graph(*args, **kwargs):
        kwargs = dict(graph.__signature__.bind(*args, **kwargs).arguments)
        passed = kwargs.pop(GATE_PARAMETER)
        with dsl.If(passed == True, name=CONDITION_NAME):  # noqa: E712 - a KFP condition
            if fills_job_name:
                kwargs["pipeline_job_name"] = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
            task = deploy_op(**kwargs)
            if retries:
                task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0)

    graph.__signature__ = inspect.Signature(params)
    graph.__name__ = name.replace("-", "_")
    graph.__qualname__ = graph.__name__
    graph.__doc__ = f"Runs {deploy_op.name} when the evaluation's gate passed."
    return dsl.pipeline(name=name, description=graph.__doc__)(graph)


#: Generative models (supervised tuning, distilling step-by-step, preference tuning): ``deploy_model``.
gate_and_deploy = gated_deploy(deploy_model, name="gate-and-deploy")
#: Embedding models: ``deploy_embedding_model``.
gate_and_deploy_embedding = gated_deploy(deploy_embedding_model, name="gate-and-deploy-embedding")

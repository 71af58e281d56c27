"""Retraining only when it should: every pipeline starts by fingerprinting its data.

:func:`retrain_on_new_data` wraps a method's graph (its ``@dsl.pipeline`` function) in an outer pipeline with the
same parameters plus the config's ``force`` field. The outer pipeline runs ``check-data-fingerprint`` first and
nests the whole graph under ``dsl.If(data changed)``: when the data's fingerprint equals the one the champion of
the run's ``purpose`` was trained on, the run ends there, successfully, as "skipped: data unchanged". Otherwise the
graph runs and receives the fingerprint as its ``data_fingerprint`` parameter, which the deploy step records.

The graph is usually the method's pipeline body (``body(p)``, see :mod:`tunekit.pipelines.wiring`): the decorator
builds it as the nested pipeline ``NAME-graph`` whose parameters are the config's fields (but ``force``) and
``data_fingerprint``, so neither signature is written by hand.

No ``from __future__ import annotations`` here: KFP reads parameter types from real annotations.
"""

import dataclasses
import inspect
from collections.abc import Callable, Sequence

from kfp import dsl

from tunekit.components.retraining.component import check_data_fingerprint
from tunekit.pipelines.wiring import config_pipeline

#: The graph parameter that receives the fingerprint.
FINGERPRINT_PARAMETER = "data_fingerprint"
#: The config field (and outer pipeline parameter) that trains even on unchanged data.
FORCE_FIELD = "force"
#: The display name of the check; also the local runner's task folder.
CHECK_TASK = "check-data-fingerprint"
#: How a graph built from a config declares ``data_fingerprint`` (last; '' when the graph runs on its own).
FINGERPRINT_SIGNATURE_PARAMETER = inspect.Parameter(
    FINGERPRINT_PARAMETER, inspect.Parameter.POSITIONAL_OR_KEYWORD, default="", annotation=str
)


def _outer_signature(graph_params, config_cls) -> inspect.Signature:
    """The graph's parameters without ``data_fingerprint``, with ``force`` where the config puts it."""
    params = [p for name, p in graph_params.items() if name != FINGERPRINT_PARAMETER]
    fields = [f.name for f in dataclasses.fields(config_cls)]
    if FORCE_FIELD in fields and FORCE_FIELD not in graph_params:
        force = next(f for f in dataclasses.fields(config_cls) if f.name == FORCE_FIELD)
        index = fields.index(FORCE_FIELD)
        before = fields[index - 1] if index else None
        position = next((i + 1 for i, p in enumerate(params) if p.name == before), len(params))
        params.insert(
            position,
            inspect.Parameter(
                FORCE_FIELD, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=bool(force.default), annotation=bool
            ),
        )
    return inspect.Signature(params)


def retrain_on_new_data(
    config_cls: type,
    *,
    name: str,
    data: Sequence[str],
    backend: str = "backend",
    description: str | None = None,
) -> Callable:
    """A decorator for a method's graph: returns the method's pipeline, which retrains only on new data.

    The decorated function is either a ``@dsl.pipeline`` graph, or a pipeline body ``body(p)``: then the graph is
    built from it with :func:`~tunekit.pipelines.wiring.config_pipeline` (named ``NAME-graph``, with
    ``description``, its parameters the config's fields but ``force``, plus ``data_fingerprint``).

    Args:
        config_cls: The method's config dataclass (it places the ``force`` field).
        name: The pipeline's name (the compiled spec's name; the graph carries its own, e.g. ``NAME-graph``).
        data: The parameters naming the run's data, in a fixed order (their content is fingerprinted).
        backend: The parameter that says where the model is deployed ("local" or "vertex"), hence where the
            champion is looked up.
        description: The pipeline's description (default: the graph's).
    """

    def wrap(graph):
        if not hasattr(graph, "pipeline_func"):  # a pipeline body: the graph's signature comes from the config
            graph = config_pipeline(
                config_cls,
                name=f"{name}-graph",
                description=description,
                exclude=(FORCE_FIELD,),
                extra=(FINGERPRINT_SIGNATURE_PARAMETER,),
            )(graph)
        graph_params = inspect.signature(graph.pipeline_func).parameters
        signature = _outer_signature(graph_params, config_cls)
        missing = [p for p in (*data, backend, "purpose", "project", "location") if p not in signature.parameters]
        if missing:
            raise TypeError(f"{name}: the graph has no parameter(s) {', '.join(missing)}")
        passes_fingerprint = FINGERPRINT_PARAMETER in graph_params

        def pipeline(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            force = values.pop(FORCE_FIELD, False)
            check = check_data_fingerprint(
                data_uris=[values[p] for p in data],
                purpose=values["purpose"],
                backend=values[backend],
                local_registry=values.get("local_registry", ""),
                force=force,
                project=values["project"],
                location=values["location"],
            ).set_display_name(CHECK_TASK)
            # The URIs name data that can change under the same name: a cached answer would hide the change.
            check.set_caching_options(False)
            check.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
            with dsl.If(check.outputs["Output"] == True, name="data-changed"):  # noqa: E712 - a KFP condition
                if passes_fingerprint:
                    values[FINGERPRINT_PARAMETER] = check.outputs["fingerprint"]
                graph(**values)

        pipeline.__signature__ = signature
        pipeline.__name__ = graph.pipeline_func.__name__
        pipeline.__qualname__ = graph.pipeline_func.__qualname__
        pipeline.__module__ = graph.pipeline_func.__module__
        pipeline.__doc__ = graph.pipeline_func.__doc__
        pipeline.graph = graph
        return dsl.pipeline(name=name, description=description or graph.description)(pipeline)

    return wrap

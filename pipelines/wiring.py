"""Each pipeline parameter written once: signatures from the config dataclass, component inputs filled by name.

A method's config dataclass is the one list of its parameters. :func:`config_pipeline` turns it into the
``@dsl.pipeline`` function's signature (the fields' annotations and defaults, in their order), and calls the
pipeline's body with the parameters as one :class:`Parameters` object; :func:`wire` calls a component with every
input whose name is a pipeline parameter, so the body names only what differs::

    tuning = wire(tune_supervised, p, train_dataset=prepared.outputs["train_dataset"])
    validation = wire(validate_data, p, method="supervised", strict=p.strict_validation)

A new config field that a component also takes as an input therefore reaches it without a line in the pipeline.
An input that is neither given, nor a parameter, nor defaulted by the component fails when the pipeline is built
(at import and compile time), naming the component and the input.

No ``from __future__ import annotations`` here: KFP reads parameter types from real annotations.
"""

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kfp import dsl

#: Inputs that the pipeline fills from the run itself when no parameter has their name.
RUNTIME_INPUTS: dict[str, Any] = {"pipeline_job_name": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}


class _ComponentDefault:
    def __repr__(self) -> str:
        return "DEFAULT"


#: Given as an input's value: leave that input to the component's own default, even where a parameter has its name.
DEFAULT: Any = _ComponentDefault()


class WiringError(TypeError):
    """A component call that cannot be wired: an input with no value, or a value for no input."""


class Parameters(types.SimpleNamespace):
    """A pipeline's parameters by attribute (``p.lora_rank``); KFP channels while the pipeline is built."""


def component_inputs(component) -> dict[str, Any]:
    """The component's inputs (name → KFP ``InputSpec``, with ``optional`` and ``default``), in its order."""
    return dict(component.component_spec.inputs or {})


def component_name(component) -> str:
    """The component's Python name (``validate_data``), for messages."""
    func = getattr(component, "python_func", None) or getattr(component, "pipeline_func", None)
    return getattr(func, "__name__", None) or component.name


def arguments(component, params: "Parameters | Mapping[str, Any]", /, **given) -> dict[str, Any]:
    """The arguments :func:`wire` passes: ``given``, then parameters and run values by input name.

    Raises:
        WiringError: ``given`` names no input of the component, or ``DEFAULT`` an input without a default, or an
            input is neither given, nor a parameter, nor defaulted.
    """
    values = params if isinstance(params, Mapping) else vars(params)
    inputs = component_inputs(component)
    name = component_name(component)
    unknown = [key for key in given if key not in inputs]
    if unknown:
        raise WiringError(
            f"component {name!r} has no input(s) {', '.join(unknown)}; its inputs: {', '.join(inputs)}"
        )
    passed: dict[str, Any] = {}
    missing = []
    for key, spec in inputs.items():
        if key in given:
            if given[key] is not DEFAULT:
                passed[key] = given[key]
            elif not spec.optional:
                raise WiringError(f"component {name!r}: input {key!r} has no default to keep (DEFAULT)")
        elif key in values:
            passed[key] = values[key]
        elif key in RUNTIME_INPUTS:
            passed[key] = RUNTIME_INPUTS[key]
        elif not spec.optional:
            missing.append(key)
    if missing:
        raise WiringError(
            f"component {name!r}: required input(s) {', '.join(missing)} are not given and no pipeline parameter "
            "has their name; pass them (input=value) or add a config field of that name"
        )
    return passed


def wire(component, params: "Parameters | Mapping[str, Any]", /, **given):
    """Calls ``component`` inside a pipeline with its inputs filled by name.

    Each input takes, in this order: its value in ``given`` (a task output, a constant, or a parameter under
    another name such as ``strict=p.strict_validation``; ``DEFAULT`` keeps the component's default), the pipeline
    parameter of the same name, a run value (:data:`RUNTIME_INPUTS`), or the component's default.

    Returns:
        The task.

    Raises:
        WiringError: See :func:`arguments`; raised while the pipeline is built, so at compile time.
    """
    return component(**arguments(component, params, **given))


def _default(f: dataclasses.Field) -> Any:
    if f.metadata.get("required"):
        return inspect.Parameter.empty
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        return inspect.Parameter.empty
    return f.default


def config_signature(
    config_cls: type, *, exclude: Sequence[str] = (), extra: Sequence[inspect.Parameter] = ()
) -> inspect.Signature:
    """A pipeline signature from a config dataclass: every field (but ``exclude``), its type and default, in order.

    A field marked ``required`` (``config.field(..., required=True)``) is a parameter without a default; ``extra``
    parameters follow the fields.
    """
    hints = typing.get_type_hints(config_cls)
    params = [
        inspect.Parameter(
            f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_default(f), annotation=hints[f.name]
        )
        for f in dataclasses.fields(config_cls)
        if f.name not in exclude
    ]
    empty = inspect.Parameter.empty
    first_default = next((i for i, p in enumerate(params) if p.default is not empty), len(params))
    late = [p.name for p in params[first_default:] if p.default is empty]
    if late:
        raise TypeError(
            f"{config_cls.__name__}: required field(s) {', '.join(late)} must come before the fields with a default"
        )
    return inspect.Signature([*params, *extra])


def config_pipeline(
    config_cls: type,
    *,
    name: str,
    description: str | None = None,
    exclude: Sequence[str] = (),
    extra: Sequence[inspect.Parameter] = (),
) -> Callable:
    """A decorator: ``body(p)`` becomes a ``@dsl.pipeline`` whose parameters are ``config_cls``'s fields.

    The body receives the parameters as a :class:`Parameters` object (``p.base_model``) and calls components with
    :func:`wire`. The pipeline function keeps the body's name, module and docstring.
    """
    signature = config_signature(config_cls, exclude=exclude, extra=extra)

    def decorate(body: Callable[[Parameters], Any]):
        def pipeline(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return body(Parameters(**bound.arguments))

        pipeline.__signature__ = signature
        pipeline.__name__ = body.__name__
        pipeline.__qualname__ = body.__qualname__
        pipeline.__module__ = body.__module__
        pipeline.__doc__ = body.__doc__
        pipeline.body = body
        return dsl.pipeline(name=name, description=description)(pipeline)

    return decorate

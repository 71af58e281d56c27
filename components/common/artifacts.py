"""From a KFP wrapper's inputs to its step's arguments, by name (the wrappers' bodies call :func:`call`).

A component's signature is explicit (KFP reads it), and so is its step's (``steps.py``: plain paths and values).
Between the two, every value whose name is a parameter of the step is passed on by :func:`call`, so a new input
is written in the wrapper's signature and the step's, not a third time in the body::

    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.supervised.steps import run_tune

    call(run_tune, locals(), train_path=train_dataset.path, model_path=tuned_model.path)

Artifacts are handed over explicitly (``.path``, ``.uri``, ``.metadata``), since their names differ on the two
sides. Logic uses it the same way where a function hands a group of its parameters on under the same names
(``call(dedicated_resources, locals())``). This module does not import kfp: it only reads names and values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any


def arguments(step: Callable[..., Any], values: Mapping[str, Any], /, **given: Any) -> dict[str, Any]:
    """``given``, then each of ``values`` whose name is a parameter of ``step`` (and not given).

    Raises:
        TypeError: ``given`` names a parameter ``step`` does not have.
    """
    parameters = inspect.signature(step).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [name for name in given if name not in parameters and not takes_any]
    if unknown:
        raise TypeError(f"{step.__name__}() has no parameter(s) {', '.join(unknown)}")
    passed = dict(given)
    for name, value in values.items():
        if name in parameters and name not in passed:
            passed[name] = value
    return passed


def call(step: Callable[..., Any], values: Mapping[str, Any], /, **given: Any) -> Any:
    """Calls ``step`` with :func:`arguments` (``values`` is usually the wrapper's ``locals()``)."""
    return step(**arguments(step, values, **given))

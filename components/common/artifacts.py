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

**A user error inside a step fails once, in one line.** When the outermost :func:`call` of a KFP step (the
process is ``python -m kfp.dsl.executor_main``, locally and on Vertex AI alike) gets a
:class:`~tunekit.components.common.errors.UserError` (bad data, a missing file, a bad option), it prints
:data:`USER_ERROR_PREFIX` and the message as the step's last line and exits with :data:`EXIT_USER_ERROR`, without a
traceback (``TUNEKIT_DEBUG=1`` keeps it). It also records the error with a digest of the step's inputs in
:data:`RECORD_NAME` beside the step's output artifacts. KFP's retry policy cannot tell failures apart
(``PipelineTaskSpec.RetryPolicy`` has only ``max_retry_count``, ``backoff_duration``, ``backoff_factor`` and
``backoff_max_duration``: kfp/pipeline_spec/pipeline_spec_pb2; Vertex AI's "Configure retries for a pipeline task"
page documents the same four), so:

- the local runner (``tunekit.pipelines.local_run``) reads the line and does not start another attempt;
- on Vertex AI the retried attempt finds the record, and with the same inputs fails at once with the same line,
  before any work; only Vertex's back-off wait is left. A task's attempts get the same output URIs (KFP's driver
  provisions them once per task and every retry pod gets that ExecutorInput unchanged: kubeflow/pipelines#13175;
  the response cache of teacher labelling relies on the same). Were a retry given new URIs, it would find no
  record and only repeat the step's checks, failing the same way in one line.

Any other exception is left alone: a transient failure is still retried.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tunekit.components.common.errors import UserError

#: The start of a step's last line when it stopped on a user error (the local runner looks for it).
USER_ERROR_PREFIX = "tunekit: user error: "
#: The exit code of a step that stopped on a user error (the CLI's own for user errors).
EXIT_USER_ERROR = 2
#: The file, beside the step's output artifacts, that records a user error for a retried attempt.
RECORD_NAME = "tunekit_user_error.json"
#: Set (to anything but '' or '0') to get the traceback of a user error inside a step.
DEBUG_ENV = "TUNEKIT_DEBUG"
#: The module the KFP executor runs a lightweight component's function from (``python -m`` it).
_EXECUTOR_MAIN = "kfp.dsl.executor_main"
_depth = 0


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
    """Calls ``step`` with :func:`arguments` (``values`` is usually the wrapper's ``locals()``).

    In a KFP step, the outermost call stops the step on a user error (see the module's docstring).
    """
    global _depth
    if _depth or not in_step():
        return step(**arguments(step, values, **given))
    record = _record_path(values)
    digest = inputs_digest(values, given)
    earlier = _read_record(record)
    if earlier is not None and earlier.get("inputs") == digest:
        _stop(f"{earlier.get('message', '')} (recorded by an earlier attempt of this step, same inputs)")
    _depth += 1
    try:
        return step(**arguments(step, values, **given))
    except UserError as exc:
        _write_record(record, {"message": str(exc), "inputs": digest})
        if _debug():
            print(USER_ERROR_PREFIX + str(exc), file=sys.stderr, flush=True)
            raise
        _stop(str(exc))
    finally:
        _depth -= 1


def in_step() -> bool:
    """Whether this process runs a KFP lightweight component (``python -m kfp.dsl.executor_main ...``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", "") == _EXECUTOR_MAIN


def inputs_digest(values: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> str:
    """A digest of a step's inputs: plain values as JSON, artifacts by URI and path."""
    plain: dict[str, Any] = {}
    for name, value in {**values, **(given or {})}.items():
        if name.startswith("_"):
            continue
        if _is_artifact(value):
            plain[name] = ["artifact", getattr(value, "uri", ""), getattr(value, "path", "")]
        elif value is None or isinstance(value, (str, int, float, bool, list, dict, tuple)):
            plain[name] = value
    text = json.dumps(plain, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _is_artifact(value: Any) -> bool:
    # kfp.dsl artifacts (not imported here: logic never imports kfp) have a uri, a path and metadata.
    if isinstance(value, (str, bytes, int, float, bool, list, dict, tuple)) or value is None:
        return False
    try:
        return all(hasattr(value, name) for name in ("uri", "path", "metadata"))
    except Exception:  # noqa: BLE001 (a property that fails: not an artifact we can use)
        return False


def _output_names() -> list[str]:
    """The names of the step's output artifacts, from the executor input the KFP executor was started with."""
    argv = sys.argv
    flag = "--executor_input"
    try:
        given = next(arg[len(flag) + 1 :] for arg in argv if arg.startswith(flag + "="))
    except StopIteration:
        given = argv[argv.index(flag) + 1] if flag in argv[:-1] else ""
    try:
        executor_input = json.loads(given)
    except ValueError:
        return []
    if not isinstance(executor_input, dict):
        return []
    return list((executor_input.get("outputs") or {}).get("artifacts") or {})


def _record_path(values: Mapping[str, Any]) -> str:
    """Where the user-error record goes: the folder of the step's first output artifact ('' when it has none).

    Output artifacts only: an input artifact's folder is the step that wrote it.
    """
    for name in _output_names():
        value = values.get(name)
        if _is_artifact(value):
            try:
                path = value.path
            except Exception:  # noqa: BLE001 (an artifact without a local path: no record)
                continue
            if path:
                return os.path.join(os.path.dirname(os.path.abspath(path)), RECORD_NAME)
    return ""


def _read_record(path: str) -> dict | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _write_record(path: str, record: dict) -> None:
    if not path:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
    except OSError:
        pass  # the record only saves a retried attempt's work; the step fails the same without it


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _stop(message: str) -> None:
    """Ends the step: the one line, then exit code :data:`EXIT_USER_ERROR` (no traceback)."""
    print(USER_ERROR_PREFIX + " ".join(message.split()), file=sys.stderr, flush=True)
    sys.stdout.flush()
    raise SystemExit(EXIT_USER_ERROR)

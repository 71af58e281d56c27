"""Running a pipeline on this machine with the local KFP runner (no cloud account, no Docker).

Every step runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), with the installed tunekit;
outputs land under ``<output_root>/pipeline_root/<run>/<task>/``.

**What the run prints, and how a step fails.** The runner prints each step's output line by line on this process's
``sys.stdout`` (kfp/local/subprocess_task_handler.py ``run_local_subprocess``; its own log lines go to a
``StreamHandler(sys.stdout)``: kfp/local/logging_utils.py ``local_logger_context``), from the thread that runs the
step (the enhanced orchestrator runs a DAG's tasks on a thread pool). :func:`run_local` puts a :class:`_StepStream`
there for the run: every line goes to the run's log file (ANSI codes removed), and is told to a
:class:`RunDisplay` with the step it came from, as a progress update (:mod:`tunekit.components.common.progress`
lines) or a plain line. Without a display the lines are printed as the runner would.

The runner's retry loop (kfp/local/orchestrator/task_executor.py ``execute_single_task``: up to
``max_retry_count`` more attempts, ``backoff_duration * backoff_factor ** attempt`` seconds apart, whatever the
failure) is taken over for the run: each step's attempts are run one at a time with the same policy, and a step
whose attempt stopped on a user error (the line of :data:`~tunekit.components.common.artifacts.USER_ERROR_PREFIX`,
or a ``UserError`` traceback of a wrapper body) is not tried again: a typo fails once, in seconds, and its one
line is :attr:`LocalRunResult.user_error`. Transient failures are retried as compiled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from tunekit.components.common.artifacts import DEBUG_ENV, USER_ERROR_PREFIX
from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, parameter_values
from tunekit.pipelines.registry import Method

#: ``base_model`` values that make the CLI build a tiny randomly initialised model (no download), for demos.
TINY_PREFIX = "tiny-random:"


@dataclass
class StepRecord:
    """One step of a local run.

    Attributes:
        name: The task's name.
        attempts: Attempts run (1 unless a transient failure was retried).
        seconds: Wall-clock seconds, back-off waits included.
        succeeded: Whether its last attempt succeeded.
        user_error: The user error it stopped on ('' when none).
        error: The one-line error of its last failed attempt: the user error, or the last exception line of a
            traceback it printed ('' when it printed none).
    """

    name: str
    attempts: int = 0
    seconds: float = 0.0
    succeeded: bool = False
    user_error: str = ""
    error: str = ""


class RunDisplay:
    """What a local run tells as it goes (the CLI's summary); every method does nothing here."""

    def step_started(self, name: str) -> None:
        """A step's first attempt starts."""

    def step_retrying(self, name: str, attempt: int, attempts: int, delay_s: float) -> None:
        """A step's attempt failed (not on a user error); the next starts after ``delay_s``."""

    def step_finished(self, step: StepRecord) -> None:
        """A step is done (succeeded, or failed for good)."""

    def progress(self, name: str, label: str, done: int, total: int) -> None:
        """A progress line of step ``name``."""

    def line(self, name: str, text: str) -> None:
        """Any other output line (``name``: the step it came from, '' for the runner's own)."""

    def close(self) -> None:
        """The run is over."""


@dataclass
class LocalRunResult:
    """Where a local run's outputs are.

    Attributes:
        run_dir: The run's folder under the pipeline root.
        succeeded: Whether every step that ran succeeded.
        task_outputs: ``task name -> executor output`` (artifact metadata and parameters) for each step that ran.
        failure: The runner's message when a step failed.
        user_error: The failed step's one-line user error ('' when no step stopped on one).
        failed_step: The step that failed ('' when none did).
        steps: Each step that ran, in the order they finished.
        log_path: The run's full log (every step's output and the runner's lines).
    """

    run_dir: str
    succeeded: bool
    task_outputs: dict[str, dict] = field(default_factory=dict)
    failure: str = ""
    user_error: str = ""
    failed_step: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    log_path: str = ""

    def artifact_dir(self, task: str, artifact: str) -> str:
        """The path of one output artifact of one task."""
        return os.path.join(self.run_dir, task, artifact)

    def metadata(self, task: str, artifact: str = "metrics") -> dict:
        """The metadata of one output artifact of one task (``{}`` when the task did not run or wrote none)."""
        found = self.task_outputs.get(task, {}).get("artifacts", {}).get(artifact, {}).get("artifacts", [])
        return found[-1].get("metadata", {}) if found else {}


def resolve_base_model(base_model: str, output_root: str) -> str:
    """Builds the demo's tiny model for ``tiny-random:<kind>`` values; returns real model names unchanged."""
    if not base_model.startswith(TINY_PREFIX):
        return base_model
    kind = base_model[len(TINY_PREFIX) :] or "t5"
    from tunekit.components.tuning.tiny import ensure_tiny_model

    kinds = {"t5": "seq2seq", "seq2seq": "seq2seq", "causal": "causal", "llama": "causal"}
    if kind not in kinds:
        raise UserError(
            f"unknown tiny model kind '{kind}'; use {TINY_PREFIX}t5 or {TINY_PREFIX}causal", field="base_model"
        )
    target = os.path.join(os.path.abspath(output_root), "models", f"tiny-{kind}")
    # A folder a killed run left half-written (older versions wrote in place) is rebuilt, not trusted.
    return ensure_tiny_model(target, kind=kinds[kind])


#: Backend values that call Google Cloud (``vertex``, ``vertex_batch``, ``vertex_distillation``...).
CLOUD_BACKEND_PREFIX = "vertex"


def cloud_backends(values: dict) -> list[str]:
    """The parameters (``backend``, ``student_backend``, ``teacher_backend``...) whose backend calls Vertex AI."""
    return [
        name
        for name, value in values.items()
        if (name == "backend" or name.endswith("_backend"))
        and isinstance(value, str)
        and value.startswith(CLOUD_BACKEND_PREFIX)
    ]


def local_parameters(config, output_root: str) -> dict:
    """The pipeline parameters for a local run of ``config``.

    The project and location placeholders only mean something on Vertex AI Pipelines: a run whose backends are all
    local (``backend``, ``student_backend``, ``teacher_backend``... none of them ``vertex*``) gets '' for them; a run
    with a Vertex backend must name the project and the location.

    Raises:
        UserError: A Vertex backend with the project or location left as a placeholder.
    """
    values = parameter_values(config)
    if "base_model" in values:
        values["base_model"] = resolve_base_model(values["base_model"], output_root)
    placeholders = (PROJECT_PLACEHOLDER, LOCATION_PLACEHOLDER)
    cloud = cloud_backends(values)
    if not cloud:
        # The local runner cannot resolve the placeholders, and nothing here calls Google Cloud.
        for key in ("project", "location"):
            if values.get(key) in placeholders:
                values[key] = ""
    elif values.get("project") in placeholders or values.get("location") in placeholders:
        names = ", ".join(f"{name} '{values[name]}'" for name in cloud)
        raise UserError(
            f"a local run with {names} calls Vertex AI: set project and location "
            "(--set project=P --set location=R)",
            field="project",
        )
    if "local_registry" in values and not values["local_registry"]:
        values["local_registry"] = os.path.join(os.path.abspath(output_root), "registry.json")
    return values


def _newest_run(pipeline_root: str, name: str, before: set[str]) -> str:
    runs = [d for d in os.listdir(pipeline_root) if d.startswith(name + "-") and d not in before]
    if not runs:
        raise RuntimeError(f"the local runner left no run folder under {pipeline_root}")
    return os.path.join(pipeline_root, max(runs, key=lambda d: os.path.getmtime(os.path.join(pipeline_root, d))))


def run_local(method: Method, config, output_root: str) -> LocalRunResult:
    """Runs ``method``'s pipeline with the local KFP runner and returns where its outputs are.

    Raises:
        UserError: The config cannot run locally.
    """
    from kfp import local

    pipeline_func, _ = method.load()
    output_root = os.path.abspath(output_root)
    pipeline_root = os.path.join(output_root, "pipeline_root")
    try:
        os.makedirs(pipeline_root, exist_ok=True)
    except OSError as exc:  # --output-dir (or a folder above it) is a file, or not writable
        raise UserError(
            f"cannot make the output folder there ({exc.strerror}); give a folder path",
            path=output_root,
            field="--output-dir",
        ) from None
    values = local_parameters(config, output_root)
    before = set(os.listdir(pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    failure = ""
    with warnings.catch_warnings():
        # The local runner warns about base images without 'python' in their name; ours has Python.
        warnings.simplefilter("ignore", RuntimeWarning)
        logging.getLogger().setLevel(logging.INFO)
        try:
            pipeline_func(**values)
        except RuntimeError as exc:  # the runner's "Inner task failed: ..." after the step printed its error
            failure = str(exc)
    run_dir = _newest_run(pipeline_root, method.name, before)
    outputs: dict[str, dict] = {}
    for task_name in sorted(os.listdir(run_dir)):
        executor_output = os.path.join(run_dir, task_name, "executor_output.json")
        if os.path.exists(executor_output):
            with open(executor_output, encoding="utf-8") as handle:
                outputs[task_name] = json.load(handle)
    failed = next((step for step in steps if not step.succeeded), None)
    return LocalRunResult(
        run_dir=run_dir,
        succeeded=not failure,
        task_outputs=outputs,
        failure=failure,
        user_error=failed.user_error if failed else "",
        failed_step=failed.name if failed else "",
        steps=steps,
        log_path=log_path,
    )


def config_summary(config) -> dict:
    """The config as a dict, for printing."""
    return dataclasses.asdict(config)

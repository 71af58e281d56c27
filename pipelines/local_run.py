"""Running a pipeline on this machine with the local KFP runner (no cloud account, no Docker).

Every step runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), with the installed tunekit;
outputs land under ``<output_root>/pipeline_root/<run>/<task>/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass, field

from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, parameter_values
from tunekit.pipelines.registry import Method

#: ``base_model`` values that make the CLI build a tiny randomly initialised model (no download), for demos.
TINY_PREFIX = "tiny-random:"


@dataclass
class LocalRunResult:
    """Where a local run's outputs are.

    Attributes:
        run_dir: The run's folder under the pipeline root.
        succeeded: Whether every step that ran succeeded.
        task_outputs: ``task name -> executor output`` (artifact metadata and parameters) for each step that ran.
        failure: The runner's message when a step failed.
    """

    run_dir: str
    succeeded: bool
    task_outputs: dict[str, dict] = field(default_factory=dict)
    failure: str = ""

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
    os.makedirs(pipeline_root, exist_ok=True)
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
    return LocalRunResult(run_dir=run_dir, succeeded=not failure, task_outputs=outputs, failure=failure)


def config_summary(config) -> dict:
    """The config as a dict, for printing."""
    return dataclasses.asdict(config)

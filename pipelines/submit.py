"""Submitting a compiled pipeline to Vertex AI Pipelines as a ``PipelineJob``."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from tunekit.components.common.errors import UserError
from tunekit.pipelines.compile import compile_method
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, parameter_values
from tunekit.pipelines.registry import Method


@dataclass
class SubmitOptions:
    """How to submit a run.

    Attributes:
        project: Google Cloud project of the pipeline job.
        region: Region of the pipeline job.
        pipeline_root: gs:// folder for the run's artifacts.
        template_path: A compiled spec to submit ('' compiles the method now, with ``image``).
        image: Component image to compile with ('' for the package version's image).
        display_name: The run's display name ('' for the method's name).
        labels: Labels of the pipeline job.
        service_account: Service account the steps run as.
        network: VPC network to peer with.
        encryption_key: Cloud KMS key for the pipeline job's resources.
        enable_caching: Whether Vertex may reuse cached step results (None: the spec's settings).
    """

    project: str
    region: str
    pipeline_root: str
    template_path: str = ""
    image: str = ""
    display_name: str = ""
    labels: dict | None = None
    service_account: str = ""
    network: str = ""
    encryption_key: str = ""
    enable_caching: bool | None = None


def vertex_parameters(config) -> dict:
    """The parameter values of ``config`` for a Vertex run.

    Project and location left at their placeholders are not sent, so Vertex fills in the job's own.
    """
    values = parameter_values(config)
    for key, placeholder in (("project", PROJECT_PLACEHOLDER), ("location", LOCATION_PLACEHOLDER)):
        if values.get(key) in (placeholder, ""):
            values.pop(key, None)
    for key, value in values.items():
        if key.endswith("_uri") and isinstance(value, str) and value and not value.startswith("gs://"):
            raise UserError(
                f"'{value}' is a local path; a Vertex run reads data from Cloud Storage: upload it and give the gs:// URI",
                field=key,
            )
    return values


def build_pipeline_job(method: Method, config, options: SubmitOptions, *, credentials=None):
    """Builds (without submitting) the ``aiplatform.PipelineJob`` for ``config``."""
    from google.cloud import aiplatform

    if not options.pipeline_root.startswith("gs://"):
        raise UserError("--pipeline-root must be a gs:// folder", field="pipeline_root")
    template = options.template_path
    if not template:
        template = os.path.join(tempfile.mkdtemp(prefix="tunekit-"), method.compiled_name)
        compile_method(method, template, image=options.image or None)
    labels = {"tunekit-method": method.name, **(options.labels or {})}
    display_name = options.display_name or method.name
    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=template,
        job_id=None,
        pipeline_root=options.pipeline_root,
        parameter_values=vertex_parameters(config),
        enable_caching=options.enable_caching,
        encryption_spec_key_name=options.encryption_key or None,
        labels={
            re.sub(r"[^a-z0-9_-]", "-", k.lower()): re.sub(r"[^a-z0-9_-]", "-", str(v).lower())
            for k, v in labels.items()
        },
        credentials=credentials,
        project=options.project,
        location=options.region,
    )


def submit(method: Method, config, options: SubmitOptions):
    """Builds and submits the job; returns it (``job.resource_name``, ``job._dashboard_uri()``)."""
    job = build_pipeline_job(method, config, options)
    job.submit(service_account=options.service_account or None, network=options.network or None)
    return job

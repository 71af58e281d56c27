"""Deploying a tuned embedding model: a Vertex AI endpoint, or the champion entry of the local registry.

Vertex: Google's tuning template uploads the tuned model to the Model Registry but does not deploy it, so this step
creates an endpoint and deploys the model on dedicated resources (tuned embedding models are served on GPUs; the
defaults follow Google's tuning notebook: ``a2-highgpu-1g`` with one ``NVIDIA_TESLA_A100``). A retried step
re-attaches through a state file in its output directory: the endpoint is created once, and a model already
deployed there is not deployed again; a step killed while an operation runs waits for that same operation on retry
(:func:`~tunekit.components.common.vertex_jobs.run_operation`). The model then becomes its purpose's champion in the Model Registry: lineage
labels, the ``champion`` version alias (moved off the previous champion), the previous champion recorded for
``tunekit rollback``.

Local: the tuned model's directory is registered as the ``champion`` of its purpose in the local registry file.
"""

from __future__ import annotations

import datetime
import functools
import os
from typing import Any

from tunekit.components.common import vertex_jobs
from tunekit.components.common.artifacts import call
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state
from tunekit.components.deployment import champion
from tunekit.components.deployment.registry import make_endpoint_client, register_champion
from tunekit.components.deployment.rollout import create_endpoint, dedicated_resources, deploy_once
from tunekit.components.deployment.steps import STATE_FILE, record_deployment
from tunekit.components.model_clients.vertex import sanitize_labels

CHAMPION_STATE_FILE = "champion_state.json"


def deploy_to_endpoint(
    *,
    tuned_model: str,
    project: str,
    location: str,
    state_path: str,
    endpoint_display_name: str = "",
    machine_type: str = "a2-highgpu-1g",
    accelerator_type: str = "NVIDIA_TESLA_A100",
    accelerator_count: int = 1,
    min_replica_count: int = 1,
    max_replica_count: int = 1,
    labels: dict[str, Any] | None = None,
    client: Any = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Deploys a tuned embedding model to a new endpoint (once, even when retried).

    Args:
        tuned_model: ``projects/P/locations/L/models/M`` from the tuning template.
        project: The Google Cloud project.
        location: The Vertex AI region of the model.
        state_path: The state file (in the step's output directory) that makes a retry re-attach.
        endpoint_display_name: The endpoint's display name ('' for one made from the model id).
        machine_type: Serving machine type.
        accelerator_type: Serving accelerator ('' for none).
        accelerator_count: Accelerators per replica.
        min_replica_count: Fewest replicas.
        max_replica_count: Most replicas.
        labels: Labels of the endpoint (cleaned to Google Cloud's rules).
        client: An ``EndpointServiceClient``; by default one from :func:`make_endpoint_client`.
        timeout_s: How long to wait for each long-running operation.

    Returns:
        The record: ``model``, ``endpoint``, ``deployed_model_id``, ``project``, ``location``, ``labels``,
        ``deployed_at``.
    """
    if not tuned_model.startswith("projects/") or "/models/" not in tuned_model:
        raise UserError(f"'{tuned_model}' is not a Model Registry resource name", field="tuned_model")
    client = client if client is not None else make_endpoint_client(location)
    clean = sanitize_labels(labels)
    state = read_state(state_path)
    if state.get("model") not in (None, tuned_model):
        raise UserError(
            f"the state file belongs to model {state['model']}; delete it to start over", path=state_path
        )
    state["model"] = tuned_model
    lro = functools.partial(vertex_jobs.run_operation, state_path, state, timeout_s=timeout_s)
    if not state.get("endpoint"):
        model_id = tuned_model.rsplit("/", 1)[-1]
        state["endpoint"] = create_endpoint(
            client,
            lro,
            parent=f"projects/{project}/locations/{location}",
            display_name=endpoint_display_name or f"tuned-embedding-{model_id}",
            labels=clean,
        )
        write_state(state_path, state)
    endpoint = client.get_endpoint(name=state["endpoint"])
    resources = call(dedicated_resources, locals())
    deployed_model_id = deploy_once(
        client, lro, endpoint, tuned_model, resources=resources, traffic_split={"0": 100}
    )
    state["deployed_model_id"] = deployed_model_id
    write_state(state_path, state)
    return {
        "model": tuned_model,
        "endpoint": endpoint.name,
        "deployed_model_id": deployed_model_id,
        "project": project,
        "location": location,
        "labels": clean,
        "deployed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_deploy_embedding(
    *,
    backend: str,
    model_path: str,
    model_info: dict[str, Any],
    metrics: dict[str, float],
    gate_reason: str,
    purpose: str,
    pipeline_job_name: str,
    local_registry_path: str,
    deployment_path: str,
    project: str = "",
    location: str = "",
    machine_type: str = "a2-highgpu-1g",
    accelerator_type: str = "NVIDIA_TESLA_A100",
    accelerator_count: int = 1,
    client: Any = None,
    data_fingerprint: str = "",
    model_client: Any = None,
) -> dict[str, Any]:
    """Makes the tuned embedding model the one serving ``purpose`` and writes a deployment record.

    Args:
        backend: ``local`` or ``vertex``.
        model_path: The tuned-model artifact directory (the model itself for the local backend).
        model_info: The tuning step's summary (``tunekit_model.json``).
        metrics: The evaluation's metrics (``base_*``, ``tuned_*``).
        gate_reason: Why the gate passed.
        purpose: What the model serves (one champion per purpose).
        pipeline_job_name: The pipeline run, for lineage.
        local_registry_path: Local: the registry JSON file.
        deployment_path: Where the deployment record (JSON) is written; its folder holds the Vertex state file.
        project: Vertex: the Google Cloud project.
        location: Vertex: the region.
        machine_type: Vertex: serving machine type.
        accelerator_type: Vertex: serving accelerator ('' for none).
        accelerator_count: Vertex: accelerators per replica.
        client: Vertex: an ``EndpointServiceClient`` (tests).
        data_fingerprint: The fingerprint of the training data (local field ``data_fingerprint``, Vertex label
            ``tunekit-data-fp``).
        model_client: Vertex: a ``ModelServiceClient`` (tests); the deployed model gets the ``champion`` alias
            and lineage labels in the Model Registry (see :func:`.registry.register_champion`).
    """

    def deploy_vertex(lineage: dict[str, str]) -> dict[str, Any]:
        tuned_model = model_info.get("tuned_model", "")
        if not tuned_model:
            raise UserError(
                "the tuning result names no tuned model; did the tuning job succeed?", field="tuned_model"
            )
        deployment_dir = os.path.dirname(os.path.abspath(deployment_path))
        record = deploy_to_endpoint(
            tuned_model=tuned_model,
            project=project,
            location=location,
            state_path=os.path.join(deployment_dir, STATE_FILE),
            machine_type=machine_type,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            labels=lineage,
            client=client,
        )
        record.update(
            register_champion(
                tuned_model,
                purpose=purpose,
                labels={
                    **lineage,
                    champion.BASE_MODEL_LABEL: str(model_info.get("base_model", "")).rsplit("/")[-1],
                },
                metrics=metrics,
                state_path=os.path.join(deployment_dir, CHAMPION_STATE_FILE),
                client=model_client,
                base_model=str(model_info.get("base_model", "")),
            )
        )
        return record

    return record_deployment(
        locals(),
        kind="sentence-transformers",
        base_model=model_info.get("base_model", ""),
        deploy_vertex=deploy_vertex,
    )

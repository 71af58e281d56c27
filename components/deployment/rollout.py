"""Vertex AI rollout of open models: upload with a serving container, endpoint creation, canary deployment.

:func:`deploy_open_model` uploads the model to the Model Registry, deploys it on the champion's endpoint with a
canary traffic split and makes it the champion (:func:`~tunekit.components.deployment.registry.promote_champion`).
Each long-running operation (upload, endpoint creation, deployment) goes through
:func:`~tunekit.components.common.vertex_jobs.run_operation`: its name is recorded in the step's state file before
the step waits for it, so a retried step waits for the same operation instead of paying for a second deployment.
The endpoint helpers (:func:`create_endpoint`, :func:`deploy_model`, :func:`dedicated_resources`) serve
``deployment.embedding`` too.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Callable
from typing import Any

from tunekit.components.common import vertex_jobs
from tunekit.components.common.artifacts import call
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state
from tunekit.components.deployment.registry import (
    deployed_version,
    make_endpoint_client,
    make_model_service_client,
    previous_champion,
    promote_champion,
    undeploy,
    version_name,
)
from tunekit.components.model_clients.vertex import sanitize_labels

#: The default serving container for open models: Vertex Model Garden's prebuilt vLLM image. vLLM serves causal
#: language models; for a seq2seq (T5) model pass another image (e.g. Hugging Face's text-generation-inference
#: container for Vertex AI) through ``serving_image`` and ``serving_args``.
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"
#: Arguments of the default container; ``{model_uri}`` is replaced with the uploaded model's Cloud Storage folder.
DEFAULT_SERVING_ARGS = (
    "python",
    "-m",
    "vllm.entrypoints.api_server",
    "--host=0.0.0.0",
    "--port=8080",
    "--model={model_uri}",
    "--max-model-len=4096",
)
UPLOAD_LABEL = "tunekit-upload"


def dedicated_resources(
    *,
    machine_type: str,
    accelerator_type: str = "",
    accelerator_count: int = 1,
    min_replica_count: int = 1,
    max_replica_count: int = 1,
) -> Any:
    """The ``DedicatedResources`` a model is deployed on (no accelerator when ``accelerator_type`` is '')."""
    from google.cloud import aiplatform_v1

    machine = aiplatform_v1.MachineSpec(machine_type=machine_type)
    if accelerator_type:
        machine.accelerator_type = accelerator_type
        machine.accelerator_count = accelerator_count
    return aiplatform_v1.DedicatedResources(
        machine_spec=machine, min_replica_count=min_replica_count, max_replica_count=max_replica_count
    )


def create_endpoint(
    endpoints: Any, lro: Callable[..., Any], *, parent: str, display_name: str, labels: dict
) -> str:
    """Creates an endpoint once per step (a long-running operation, through ``lro``); returns its name.

    Args:
        endpoints: An ``EndpointServiceClient``.
        lro: :func:`~tunekit.components.common.vertex_jobs.run_operation` bound to the step's state file.
        parent: ``projects/P/locations/L``.
        display_name: The endpoint's display name (cut to 128 characters).
        labels: Its labels (already cleaned).
    """
    from google.cloud import aiplatform_v1

    return lro(
        "create_endpoint",
        start=lambda: endpoints.create_endpoint(
            parent=parent, endpoint=aiplatform_v1.Endpoint(display_name=display_name[:128], labels=labels)
        ),
        resume=vertex_jobs.operation_resumer(endpoints, aiplatform_v1.Endpoint),
        what=f"creation of endpoint {display_name[:128]}",
    ).name


def deploy_model(
    endpoints: Any,
    lro: Callable[..., Any],
    *,
    endpoint: str,
    model: str,
    resources: Any,
    traffic_split: dict,
    display_name: str = "",
) -> Any:
    """Deploys a model on ``endpoint`` once per step (a billed long-running operation); returns the deployed model.

    Args:
        endpoints: An ``EndpointServiceClient``.
        lro: :func:`~tunekit.components.common.vertex_jobs.run_operation` bound to the step's state file.
        endpoint: The endpoint's resource name.
        model: The model (version) to deploy.
        resources: The ``DedicatedResources`` it runs on (see :func:`dedicated_resources`).
        traffic_split: The endpoint's traffic split afterwards (``"0"`` is the model being deployed).
        display_name: The deployed model's display name (cut to 128 characters; '' for none).
    """
    from google.cloud import aiplatform_v1

    deployed_model = aiplatform_v1.DeployedModel(
        model=model, display_name=display_name[:128], dedicated_resources=resources
    )
    return lro(
        "deploy",
        start=lambda: endpoints.deploy_model(
            endpoint=endpoint, deployed_model=deployed_model, traffic_split=traffic_split
        ),
        resume=vertex_jobs.operation_resumer(endpoints, aiplatform_v1.DeployModelResponse),
        what=f"deployment of {model} to {endpoint}",
    ).deployed_model


def deploy_once(endpoints: Any, lro: Callable[..., Any], endpoint: Any, model: str, **options: Any) -> str:
    """The id of ``model``'s deployment on ``endpoint`` (an ``Endpoint``): deployed now unless it already is there.

    A retried step finds the model it deployed before and deploys nothing; ``options`` are :func:`deploy_model`'s
    (``resources``, ``traffic_split``, ``display_name``).
    """
    deployed = deployed_version(endpoint, model)
    if deployed is not None:
        return deployed.id
    return deploy_model(endpoints, lro, endpoint=endpoint.name, model=model, **options).id


def _upload_key(pipeline_job_name: str, artifact_uri: str) -> str:
    return hashlib.sha256(f"{pipeline_job_name}\n{artifact_uri}".encode()).hexdigest()[:16]


def deploy_open_model(
    *,
    artifact_uri: str,
    purpose: str,
    project: str,
    location: str,
    state_path: str,
    display_name: str = "",
    labels: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    pipeline_job_name: str = "",
    base_model: str = "",
    serving_image: str = DEFAULT_SERVING_IMAGE,
    serving_args: list[str] | tuple[str, ...] | None = None,
    serving_env: dict[str, str] | None = None,
    predict_route: str = "/generate",
    health_route: str = "/ping",
    serving_port: int = 8080,
    machine_type: str = "g2-standard-12",
    accelerator_type: str = "NVIDIA_L4",
    accelerator_count: int = 1,
    min_replica_count: int = 1,
    max_replica_count: int = 1,
    canary_traffic_percent: int = 100,
    model_client: Any = None,
    endpoint_client: Any = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Uploads an open model to the Model Registry, deploys it beside the champion with a canary split, promotes it.

    Steps, each done once even when the step is retried (a state file next to the record remembers them, and an
    upload whose reply was lost is found again by its ``tunekit-upload`` label):

    1. find the purpose's champion (the previous one);
    2. upload the model with its serving container, as a new version of the champion's model when there is one;
    3. deploy it on the champion's endpoint (or a new endpoint) with ``canary_traffic_percent`` of the traffic,
       the champion keeping the rest; at 100 the previous champion is undeployed once the new one serves;
    4. move the ``champion`` alias to it and label it with its lineage and the previous champion.

    Args:
        artifact_uri: The model folder in Cloud Storage (a merged model: weights, config, tokenizer).
        purpose: What the model serves.
        project: The Google Cloud project.
        location: The Vertex AI region.
        state_path: The state file that makes a retry resume.
        display_name: The model's display name ('' for ``tunekit-<purpose>``).
        labels: Lineage labels (see :func:`lineage_labels`), cleaned here.
        metrics: The evaluation metrics, recorded in the version description.
        pipeline_job_name: The pipeline run (part of the upload key).
        base_model: The model it was tuned from (recorded in the version description).
        serving_image: The serving container image.
        serving_args: The container's arguments (``{model_uri}`` is replaced); None for
            :data:`DEFAULT_SERVING_ARGS` with the default image, no arguments otherwise.
        serving_env: Environment variables of the container.
        predict_route: The container's prediction route.
        health_route: The container's health route.
        serving_port: The container's port.
        machine_type: Serving machine type.
        accelerator_type: Serving accelerator ('' for none).
        accelerator_count: Accelerators per replica.
        min_replica_count: Fewest replicas.
        max_replica_count: Most replicas.
        canary_traffic_percent: The new model's share of the endpoint's traffic, 1 to 100.
        model_client: A ``ModelServiceClient`` (tests); by default a REST client for ``location``.
        endpoint_client: An ``EndpointServiceClient`` (tests); by default a REST client for ``location``.
        timeout_s: How long to wait for each long-running operation.

    Returns:
        The record: ``model``, ``endpoint``, ``deployed_model_id``, ``traffic_split``, ``previous_champion``,
        ``canary_traffic_percent``, ``labels``, ``registry``, ``project``, ``location``, ``deployed_at``.
    """
    from google.cloud import aiplatform_v1

    if not artifact_uri.startswith("gs://"):
        raise UserError(
            f"'{artifact_uri}' is not a Cloud Storage folder; Vertex serves models from gs://",
            field="artifact_uri",
        )
    if not 1 <= int(canary_traffic_percent) <= 100:
        raise UserError(
            f"canary_traffic_percent must be 1 to 100, not {canary_traffic_percent}",
            field="canary_traffic_percent",
        )
    canary = int(canary_traffic_percent)
    models = model_client if model_client is not None else make_model_service_client(location)
    endpoints = endpoint_client if endpoint_client is not None else make_endpoint_client(location)
    clean = sanitize_labels(labels)
    name = display_name or f"tunekit-{clean.get('tunekit-purpose', 'model')}"
    key = _upload_key(pipeline_job_name, artifact_uri)
    state = read_state(state_path)
    if state.get("artifact_uri") not in (None, artifact_uri):
        raise UserError(
            f"the state file belongs to {state['artifact_uri']}; delete it to start over", path=state_path
        )
    state["artifact_uri"] = artifact_uri
    previous_champion(state, purpose, project, location, models)
    write_state(state_path, state)
    previous = state["previous"]
    lro = functools.partial(vertex_jobs.run_operation, state_path, state, timeout_s=timeout_s)

    if not state.get("model"):
        parent = f"projects/{project}/locations/{location}"
        found = list(models.list_models(request={"parent": parent, "filter": f'labels.{UPLOAD_LABEL}="{key}"'}))
        if found:
            state["model"] = version_name(found[0])
        else:
            if serving_args is None:
                serving_args = DEFAULT_SERVING_ARGS if serving_image == DEFAULT_SERVING_IMAGE else ()
            container = aiplatform_v1.ModelContainerSpec(
                image_uri=serving_image,
                args=[a.replace("{model_uri}", artifact_uri) for a in serving_args],
                env=[aiplatform_v1.EnvVar(name=k, value=str(v)) for k, v in (serving_env or {}).items()],
                ports=[aiplatform_v1.Port(container_port=serving_port)],
                predict_route=predict_route,
                health_route=health_route,
            )
            request = aiplatform_v1.UploadModelRequest(
                parent=parent,
                parent_model=previous.split("@", 1)[0] if previous else "",
                model=aiplatform_v1.Model(
                    display_name=name[:128],
                    artifact_uri=artifact_uri,
                    container_spec=container,
                    labels={**clean, UPLOAD_LABEL: key},
                ),
            )
            response = lro(
                "upload",
                start=lambda: models.upload_model(request=request),
                resume=vertex_jobs.operation_resumer(models, aiplatform_v1.UploadModelResponse),
                what=f"upload of {artifact_uri}",
            )
            state["model"] = f"{response.model}@{response.model_version_id}"
        write_state(state_path, state)
    model = state["model"]

    if not state.get("endpoint"):
        if state.get("previous_endpoint"):
            state["endpoint"] = state["previous_endpoint"]
        else:
            state["endpoint"] = create_endpoint(
                endpoints,
                lro,
                parent=f"projects/{project}/locations/{location}",
                display_name=name,
                labels={k: v for k, v in clean.items() if k != UPLOAD_LABEL},
            )
        write_state(state_path, state)
    endpoint = endpoints.get_endpoint(name=state["endpoint"])
    previous_deployed = deployed_version(endpoint, previous)
    split = {"0": 100}
    if previous_deployed is not None and canary < 100:
        split = {"0": canary, previous_deployed.id: 100 - canary}
    deployed_id = deploy_once(
        endpoints,
        lro,
        endpoint,
        model,
        resources=call(dedicated_resources, locals()),
        traffic_split=split,
        display_name=f"{clean.get('tunekit-purpose', 'model')}-{model.rsplit('/', 1)[-1]}",
    )
    state["deployed_model_id"] = deployed_id
    write_state(state_path, state)
    if canary == 100 and previous_deployed is not None:
        undeploy(endpoints, endpoint.name, previous_deployed.id, {deployed_id: 100}, timeout_s)
    registry = promote_champion(
        model,
        previous=previous,
        labels={**clean, UPLOAD_LABEL: key},
        metrics=metrics,
        client=models,
        base_model=base_model,
    )
    state["promoted"] = True
    write_state(state_path, state)
    traffic = dict(endpoints.get_endpoint(name=endpoint.name).traffic_split)
    return {
        "model": model,
        "endpoint": endpoint.name,
        "deployed_model_id": deployed_id,
        "traffic_split": traffic,
        "canary_traffic_percent": canary,
        "previous_champion": previous,
        "labels": clean,
        "registry": registry,
        "project": project,
        "location": location,
        "purpose": purpose,
        "deployed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

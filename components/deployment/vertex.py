"""What "deploy" means for a tuned Gemini model: record it, and label its Model Registry entry.

Vertex AI deploys a tuned Gemini model to an endpoint by itself when tuning succeeds, so there is nothing to
deploy. This step records which model and endpoint the pipeline produced and labels the Model Registry entry with
the pipeline run and the dataset's fingerprint, so that a model found in the registry leads back to its run.

The registry is reached with aiplatform's generated ``ModelServiceClient`` over REST (the same ``GetModel`` and
``UpdateModel`` calls ``aiplatform.Model(...).update(labels=...)`` makes, without ``aiplatform.init``'s global
state). When ``TUNEKIT_VERTEX_BASE_URL`` is set at run time, it talks to that URL with a static token.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.vertex import base_url_override, sanitize_labels, static_credentials

_RESOURCE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<kind>models|endpoints)/[^/]+$"
)


def make_model_service_client(location: str):
    """An aiplatform ``ModelServiceClient`` (REST) for ``location``, aimed at the fake when one is configured.

    Args:
        location: The Vertex AI region of the models.
    """
    from google.cloud import aiplatform_v1  # imported here: only this step needs it

    base_url = base_url_override()
    if base_url:
        return aiplatform_v1.ModelServiceClient(
            credentials=static_credentials(), transport="rest", client_options={"api_endpoint": base_url}
        )
    return aiplatform_v1.ModelServiceClient(
        transport="rest", client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"}
    )


def set_model_labels(model_name: str, labels: dict[str, str], client: Any = None) -> dict[str, str]:
    """Adds ``labels`` to a Model Registry entry, keeping the labels it already has.

    Args:
        model_name: ``projects/P/locations/L/models/M`` or ``...models/M@V``.
        labels: Labels to set (already cleaned); they win over existing ones with the same key.
        client: A ``ModelServiceClient``; by default one from :func:`make_model_service_client`.

    Returns:
        The entry's labels after the update.
    """
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    match = _RESOURCE.match(model_name)
    if not match or match["kind"] != "models":
        raise UserError(f"'{model_name}' is not a Model Registry resource name", field="tuned_model")
    client = client if client is not None else make_model_service_client(match["location"])
    current = client.get_model(name=model_name)
    # UpdateModel replaces the whole label map, so the existing labels are sent back with ours.
    merged = {**dict(current.labels), **labels}
    updated = client.update_model(
        model=aiplatform_v1.Model(name=model_name, labels=merged),
        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
    )
    return dict(updated.labels)


def record_gemini_deployment(
    tuned: dict[str, Any],
    *,
    labels: dict[str, Any],
    update_registry: bool = True,
    client: Any = None,
) -> dict[str, Any]:
    """Records a tuned Gemini model's deployment and labels its Model Registry entry.

    Args:
        tuned: A tuning result (``TunedGemini.to_dict()``): ``tuned_model`` and ``endpoint`` are required;
            ``job_name`` and ``base_model`` are copied when present.
        labels: Labels linking the model to its origin, e.g. ``{"pipeline-run": ..., "dataset-fingerprint": ...}``;
            cleaned to Google Cloud's label rules.
        update_registry: Whether to set the labels on the Model Registry entry too.
        client: A ``ModelServiceClient`` for the registry; by default one from :func:`make_model_service_client`.

    Returns:
        The deployment record: ``model``, ``endpoint``, ``job_name``, ``base_model``, ``project``, ``location``,
        ``labels``, ``registry_labels`` (the entry's labels after the update, or None when not updated),
        ``deployed_at`` (UTC, RFC 3339).

    Raises:
        UserError: ``tuned`` lacks a model or an endpoint.
    """
    model = tuned.get("tuned_model") or tuned.get("model")
    endpoint = tuned.get("endpoint")
    if not model:
        raise UserError("the tuning result names no tuned model; did the tuning job succeed?", field="tuned_model")
    if not endpoint:
        raise UserError(
            f"the tuning result for {model} names no endpoint; Vertex deploys tuned Gemini models itself, so the "
            "tuning job may not have finished",
            field="endpoint",
        )
    match = _RESOURCE.match(endpoint)
    if not match or match["kind"] != "endpoints":
        raise UserError(f"'{endpoint}' is not an endpoint resource name", field="endpoint")
    clean = sanitize_labels(labels)
    registry_labels = set_model_labels(model, clean, client) if update_registry and clean else None
    return {
        "model": model,
        "endpoint": endpoint,
        "job_name": tuned.get("job_name"),
        "base_model": tuned.get("base_model"),
        "project": match["project"],
        "location": match["location"],
        "labels": clean,
        "registry_labels": registry_labels,
        "deployed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }

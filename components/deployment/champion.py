"""Which model serves a purpose now: the ``champion``, locally or in the Vertex AI Model Registry.

Local: the registry JSON file (:mod:`~tunekit.components.deployment.local_registry`); the champion is the entry
of the purpose that holds the ``champion`` alias.

Vertex: Model Registry models labelled ``tunekit-purpose=<purpose label>`` (see :func:`purpose_label`); the
champion is the version that holds the version alias ``champion`` (read as ``MODEL@champion``). Its endpoint is
the first of the version's deployed models; its data fingerprint is the label ``tunekit-data-fp``; the metrics
the deploy step recorded are in the version description (``tunekit-metrics: {...}``), and so is the base model's
name as given (``tunekit-base-model: ...``; the label of that name holds a label-safe copy).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import RECORD_FILE, ModelRecord

CHAMPION = "champion"
PURPOSE_LABEL = "tunekit-purpose"
DATA_FP_LABEL = "tunekit-data-fp"
RUN_LABEL = "tunekit-pipeline-run"
PREVIOUS_LABEL = "tunekit-previous"
BASE_MODEL_LABEL = "tunekit-base-model"
METRICS_PREFIX = "tunekit-metrics: "
BASE_MODEL_PREFIX = "tunekit-base-model: "
#: Local registry ``kind`` values and what they are called in :attr:`Champion.extra` ``["kind"]``.
_KINDS = {"sentence-transformers": "embedding"}
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


@dataclass
class Champion:
    """The model serving a purpose.

    Attributes:
        purpose: What the model serves.
        model: Local: the model directory. Vertex: ``projects/../models/ID@VERSION``.
        endpoint: Vertex: the endpoint serving it ('' locally, or when it is not deployed).
        base_model: The model it was tuned from, when recorded.
        metrics: The evaluation metrics the deploy step recorded.
        data_fingerprint: The fingerprint of the data it was trained on ('' when not recorded).
        registry_id: Local: the registry entry's id. Vertex: the model resource name (without version).
        backend: ``local`` or ``vertex``.
        extra: Local: ``kind`` (``seq2seq``, ``causal``, ``embedding`` or ''), ``entry`` (the whole registry
            entry). Vertex: ``version_id``, ``labels``, ``deployed_model_id``, ``version_aliases``,
            ``display_name``, ``serving_image`` (an open model's serving container, '' for tuned Gemini) and
            ``artifact_uri`` (an open model's weights and ``tunekit_model.json`` in Cloud Storage).
    """

    purpose: str
    model: str
    endpoint: str = ""
    base_model: str = ""
    metrics: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    registry_id: str = ""
    backend: str = "local"
    extra: dict = field(default_factory=dict)


def purpose_label(purpose: str) -> str:
    """The value of the ``tunekit-purpose`` label for ``purpose``: lowercase ``[a-z0-9_-]``, at most 63 chars."""
    return _LABEL_BAD.sub("-", purpose.lower())[:63]


def fingerprint_label(fingerprint: str) -> str:
    """The value of the ``tunekit-data-fp`` label: the first 32 hex characters of the fingerprint."""
    return _LABEL_BAD.sub("-", fingerprint.lower())[:32]


def local_kind(entry: dict) -> str:
    """``seq2seq``, ``causal`` or ``embedding`` for a local registry entry ('' when unknown)."""
    kind = str(entry.get("kind") or "")
    if kind:
        return _KINDS.get(kind, kind)
    model_dir = str(entry.get("model_dir") or "")
    log = os.path.join(model_dir, "training_log.json")
    if os.path.isfile(log):
        try:
            with open(log, encoding="utf-8") as handle:
                encdec = json.load(handle).get("is_encoder_decoder")
        except (OSError, ValueError):
            encdec = None
        if encdec is not None:
            return "seq2seq" if encdec else "causal"
    if os.path.isfile(os.path.join(model_dir, "modules.json")):
        return "embedding"
    return ""


def champion_from_entry(entry: dict) -> Champion:
    """A :class:`Champion` from a local registry entry."""
    return Champion(
        purpose=str(entry.get("purpose") or ""),
        model=str(entry.get("model_dir") or ""),
        base_model=str(entry.get("base_model") or ""),
        metrics=dict(entry.get("metrics") or {}),
        data_fingerprint=str(entry.get("data_fingerprint") or ""),
        registry_id=str(entry.get("id") or ""),
        backend="local",
        extra={"kind": local_kind(entry), "entry": entry},
    )


def parse_metrics(description: str) -> dict:
    """The metrics in a version description written by the deploy step (``tunekit-metrics: {...}``)."""
    for line in (description or "").splitlines():
        if line.startswith(METRICS_PREFIX):
            try:
                value = json.loads(line[len(METRICS_PREFIX) :])
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def parse_base_model(description: str) -> str:
    """The base model in a version description written by the deploy step (``tunekit-base-model: NAME``)."""
    for line in (description or "").splitlines():
        if line.startswith(BASE_MODEL_PREFIX):
            return line[len(BASE_MODEL_PREFIX) :].strip()
    return ""


def champion_from_model(purpose: str, model: Any) -> Champion:
    """A :class:`Champion` from an aiplatform ``Model`` (a version that holds the ``champion`` alias)."""
    base = model.name.split("@", 1)[0]
    labels = dict(model.labels)
    deployed = list(model.deployed_models)
    return Champion(
        purpose=purpose,
        model=f"{base}@{model.version_id}" if model.version_id else base,
        endpoint=deployed[0].endpoint if deployed else "",
        base_model=parse_base_model(model.version_description) or labels.get(BASE_MODEL_LABEL, ""),
        metrics=parse_metrics(model.version_description),
        data_fingerprint=labels.get(DATA_FP_LABEL, ""),
        registry_id=base,
        backend="vertex",
        extra={
            "version_id": model.version_id,
            "labels": labels,
            "deployed_model_id": deployed[0].deployed_model_id if deployed else "",
            "version_aliases": list(model.version_aliases),
            "display_name": model.display_name,
            # An open model uploaded with a serving container (deployment.rollout); '' for a tuned Gemini model.
            "serving_image": model.container_spec.image_uri if "container_spec" in model else "",
            "artifact_uri": model.artifact_uri,
        },
    )


def is_open_model(found: Champion) -> bool:
    """Whether a Vertex champion is an open model on its own serving container (not a tuned Gemini model).

    Such a model was uploaded with its weights (``artifact_uri``) and a serving container image; a tuned Gemini
    model has neither.
    """
    return found.backend == "vertex" and bool(found.extra.get("serving_image") and found.extra.get("artifact_uri"))


def champion_record(found: Champion) -> ModelRecord:
    """What the champion's tuning step recorded (its serving prefix, mode, base model), as a :class:`ModelRecord`.

    Local: the ``tunekit_model.json`` in its folder. An open model on Vertex: the one in its Cloud Storage
    artifact (``extra["artifact_uri"]``, read through the ``/gcs`` mount on Vertex AI Pipelines), with its
    endpoint. A tuned Gemini model: its endpoint and base model, from the Model Registry.

    Raises:
        UserError: An open model's artifact holds no readable record.
    """
    if found.backend == "local":
        return ModelRecord.read(found.model, {"backend": "local"})
    if not is_open_model(found):
        return ModelRecord(backend="vertex", endpoint=found.endpoint, base_model=found.base_model)
    artifact = str(found.extra.get("artifact_uri") or "").rstrip("/")
    uri = f"{artifact}/{RECORD_FILE}"
    try:
        with uris.local_copy(uri) as path, open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UserError(f"the champion's model record cannot be read ({exc})", path=uri) from None
    if not isinstance(data, dict):
        raise UserError("the champion's model record is not a JSON object", path=uri)
    return ModelRecord.from_dict({**data, "endpoint": found.endpoint})


def find_vertex_champion(purpose: str, *, project: str, location: str, client: Any = None) -> Champion | None:
    """The Model Registry version with alias ``champion`` among the models labelled with ``purpose``.

    Args:
        purpose: What the model serves.
        project: The Google Cloud project.
        location: The Vertex AI region.
        client: A ``ModelServiceClient``; by default one from
            :func:`~tunekit.components.model_clients.vertex.make_rest_client` (``ModelServiceClient``).
    """
    from google.api_core import exceptions

    if not project or not location:
        raise UserError("finding a Vertex champion needs a project and a location", field="project")
    if client is None:
        from google.cloud import aiplatform_v1

        from tunekit.components.model_clients.vertex import make_rest_client

        client = make_rest_client(aiplatform_v1.ModelServiceClient, location)
    found = []
    request = {
        "parent": f"projects/{project}/locations/{location}",
        "filter": f'labels.{PURPOSE_LABEL}="{purpose_label(purpose)}"',
    }
    seen = set()
    for listed in client.list_models(request=request):
        base = listed.name.split("@", 1)[0]
        if base in seen:
            continue
        seen.add(base)
        if CHAMPION in listed.version_aliases:
            version = listed
        else:
            try:
                version = client.get_model(name=f"{base}@{CHAMPION}")
            except exceptions.NotFound:
                continue
        if CHAMPION in version.version_aliases:
            found.append(version)
    if not found:
        return None
    # One champion per purpose is kept by the deploy step; should two exist, the newest version wins.
    newest = max(found, key=lambda m: m.version_update_time or m.update_time)
    return champion_from_model(purpose, newest)


def find_champion(
    purpose: str,
    *,
    backend: str,
    local_registry: str = "",
    project: str = "",
    location: str = "",
    client: Any = None,
) -> Champion | None:
    """The model serving ``purpose`` now, or None when there is none.

    Args:
        purpose: What the model serves (the pipeline's ``purpose`` parameter).
        backend: ``local`` or ``vertex``.
        local_registry: Local: the registry JSON file (a missing file means no champion).
        project: Vertex: the Google Cloud project.
        location: Vertex: the region.
        client: Vertex: a ``ModelServiceClient`` (tests); by default a REST client for ``location``.

    Raises:
        UserError: Unknown backend; no registry path for ``local``; an unreadable registry file.
    """
    if backend == "local":
        from tunekit.components.deployment import local_registry as registry

        if not local_registry:
            raise UserError("finding a local champion needs the registry file", field="local_registry")
        entry = registry.champion(local_registry, purpose)
        return champion_from_entry(entry) if entry is not None else None
    if backend == "vertex":
        return find_vertex_champion(purpose, project=project, location=location, client=client)
    raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")

"""Vertex AI Model Registry: labels, the ``champion`` alias, promote, rollback, recording tuned Gemini models.

Tuned Gemini models: Vertex AI deploys a tuned Gemini model to an endpoint by itself when tuning succeeds, so there
is nothing to deploy. This step records which model and endpoint the pipeline produced and labels the Model
Registry entry with the pipeline run and the dataset's fingerprint, so that a model found in the registry leads
back to its run, then makes it its purpose's champion. Open models are uploaded and deployed by
:mod:`tunekit.components.deployment.rollout`, which promotes them here.

Rollback and promotion move the ``champion`` alias and, for models deployed on a shared endpoint, its traffic; the
endpoint reads and traffic changes they need (:func:`deployed_version`, :func:`undeploy`) are here, where the
rollout finds them too.

The registry is reached with aiplatform's generated ``ModelServiceClient`` over REST (the same ``GetModel`` and
``UpdateModel`` calls ``aiplatform.Model(...).update(labels=...)`` makes, without ``aiplatform.init``'s global
state). When ``TUNEKIT_VERTEX_BASE_URL`` is set at run time, it talks to that URL with a static token.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from tunekit.components.common import vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state
from tunekit.components.deployment import champion as champions
from tunekit.components.model_clients.vertex import make_rest_client, sanitize_labels

_RESOURCE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<kind>models|endpoints)/[^/]+$"
)


def make_model_service_client(location: str):
    """An aiplatform ``ModelServiceClient`` (REST) for ``location``, aimed at the fake when one is configured.

    Args:
        location: The Vertex AI region of the models.
    """
    from google.cloud import aiplatform_v1  # imported here: only this step needs it

    return make_rest_client(aiplatform_v1.ModelServiceClient, location)


def make_endpoint_client(location: str):
    """An aiplatform ``EndpointServiceClient`` (REST) for ``location``, aimed at the fake when one is configured."""
    from google.cloud import aiplatform_v1

    return make_rest_client(aiplatform_v1.EndpointServiceClient, location)


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


# --- the champion alias, promotion and rollback ------------------------------------------------------------------

ROLLED_BACK_LABEL = "tunekit-rolled-back"


def version_name(model: Any) -> str:
    """``projects/../models/ID@VERSION`` of an aiplatform ``Model`` (a version of it)."""
    base = model.name.split("@", 1)[0]
    return f"{base}@{model.version_id}" if model.version_id else base


def version_ref(name: str) -> str:
    """A label value naming a model version: ``ID_VERSION`` for ``projects/../models/ID@VERSION``."""
    base, _, version = name.partition("@")
    return f"{base.rsplit('/', 1)[-1]}_{version or '1'}".lower()


def _model_key(name: str, version_id: str = "") -> tuple[str, str]:
    """``(model id, version)`` of ``projects/P/locations/L/models/ID[@VERSION]``: the project-free identity.

    Vertex answers with the project NUMBER in resource names (``projects/123456789012/...``) even when the request
    named the project by its ID, so whole names built from the ID never equal the API's. A model's id is unique
    in its region, so the last path segment and the version identify it. Sources: issue 14, item C (the first
    real run: the names Vertex returned carried the project number and promote undeployed nothing); the REST
    reference names the segment only ``{project}``
    (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints, ``DeployedModel.model``),
    and aiplatform itself treats the project Vertex gives as a number it has to translate back to an ID
    (google/cloud/aiplatform/initializer.py: "Try to convert project number to project ID").
    """
    base, _, version = name.partition("@")
    return base.rsplit("/", 1)[-1], version or version_id


def _is_version(deployed: Any, name: str) -> bool:
    """Whether a ``DeployedModel`` serves the version ``name`` (``MODEL@VERSION``), compared by model id.

    The project part is ignored (:func:`_model_key`): ``name`` may be built from the project ID while
    ``deployed.model`` carries the project number.
    """
    if not name:
        return False
    want_id, want_version = _model_key(name)
    got_id, got_version = _model_key(deployed.model, deployed.model_version_id)
    return want_id == got_id and (not want_version or want_version == got_version)


def _ref_to_name(ref: str, project: str, location: str) -> str:
    model_id, _, version = ref.rpartition("_")
    return f"projects/{project}/locations/{location}/models/{model_id}@{version}"


def lineage_labels(
    *, purpose: str, pipeline_job_name: str = "", data_fingerprint: str = "", base_model: str = ""
) -> dict[str, str]:
    """The labels that link a deployed model to its purpose, pipeline run, data and base model."""
    labels = {champions.PURPOSE_LABEL: champions.purpose_label(purpose)}
    if pipeline_job_name:
        labels[champions.RUN_LABEL] = pipeline_job_name
    if data_fingerprint:
        labels[champions.DATA_FP_LABEL] = champions.fingerprint_label(data_fingerprint)
    if base_model:
        labels[champions.BASE_MODEL_LABEL] = base_model.rsplit("/", 1)[-1]
    return sanitize_labels(labels)


def promote_champion(
    model: str,
    *,
    previous: str,
    labels: dict[str, str],
    metrics: dict[str, Any] | None,
    client: Any,
    base_model: str = "",
) -> dict[str, Any]:
    """Makes the version ``model`` the champion: labels, metrics description, and the ``champion`` alias.

    The alias is removed from ``previous`` first (aliases are unique within a model, and a purpose has one
    champion across models), then merged onto ``model``; ``model`` records ``previous`` in the label
    ``tunekit-previous`` so that :func:`rollback_vertex` knows where to go back to. Safe to repeat.

    Args:
        model: ``projects/../models/ID@VERSION``.
        previous: The version that was champion ('' for none).
        labels: Labels to add (already cleaned).
        metrics: The evaluation metrics, written to the version description as ``tunekit-metrics: {...}``.
        client: A ``ModelServiceClient``.
        base_model: The base model's name as given, recorded in the version description.

    Returns:
        The version's labels and aliases after the update.
    """
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    current = client.get_model(name=model)
    merged = {**dict(current.labels), **labels}
    if previous and previous != model:
        merged[champions.PREVIOUS_LABEL] = version_ref(previous)
    merged.pop(ROLLED_BACK_LABEL, None)
    description = champions.METRICS_PREFIX + json.dumps(metrics or {}, sort_keys=True)
    if base_model:
        description += "\n" + champions.BASE_MODEL_PREFIX + base_model
    client.update_model(
        model=aiplatform_v1.Model(name=model, labels=merged, version_description=description),
        update_mask=field_mask_pb2.FieldMask(paths=["labels", "version_description"]),
    )
    if previous and previous != model:
        client.merge_version_aliases(name=previous, version_aliases=[f"-{champions.CHAMPION}"])
    updated = client.merge_version_aliases(name=model, version_aliases=[champions.CHAMPION])
    return {"labels": dict(updated.labels), "aliases": list(updated.version_aliases)}


def previous_champion(state: dict, purpose: str, project: str, location: str, client: Any) -> dict:
    """The champion before this deployment, found once and kept in ``state`` (a retry must not see itself)."""
    if "previous" not in state:
        found = champions.find_vertex_champion(purpose, project=project, location=location, client=client)
        state["previous"] = found.model if found else ""
        state["previous_endpoint"] = found.endpoint if found else ""
    return state


def register_champion(
    model: str,
    *,
    purpose: str,
    labels: dict[str, Any],
    metrics: dict[str, Any] | None,
    state_path: str,
    client: Any = None,
    base_model: str = "",
) -> dict[str, Any]:
    """Makes a model that already serves from its own endpoint the champion of ``purpose`` in the Model Registry.

    For tuned Gemini models (Vertex deploys them itself) and tuned embedding models (deployed to a new endpoint by
    their deploy step). The previous champion is found once and kept in ``state_path``, so a retried step neither
    sees itself as the previous champion nor loses it.

    Args:
        model: ``projects/P/locations/L/models/M`` (its default version is meant) or ``...models/M@VERSION``.
        purpose: What the model serves.
        labels: Lineage labels (see :func:`lineage_labels`), cleaned here.
        metrics: The evaluation metrics.
        state_path: The state file.
        client: A ``ModelServiceClient``; by default one for the model's region.
        base_model: The model it was tuned from (recorded in the version description).

    Returns:
        ``model`` (with its version), ``previous_champion`` ('' for none), ``registry`` (labels and aliases after
        the update).
    """
    match = _RESOURCE.match(model.split("@", 1)[0])
    if not match or match["kind"] != "models":
        raise UserError(f"'{model}' is not a Model Registry resource name", field="tuned_model")
    client = client if client is not None else make_model_service_client(match["location"])
    if "@" not in model:
        model = version_name(client.get_model(name=model))
    state = read_state(state_path)
    if state.get("model") not in (None, model):
        raise UserError(
            f"the state file belongs to model {state['model']}; delete it to start over", path=state_path
        )
    state["model"] = model
    previous_champion(state, purpose, match["project"], match["location"], client)
    write_state(state_path, state)
    registry = promote_champion(
        model,
        previous=state["previous"],
        labels=sanitize_labels(labels),
        metrics=metrics,
        client=client,
        base_model=base_model,
    )
    return {"model": model, "previous_champion": state["previous"], "registry": registry}


def deploy_gemini(
    tuned: dict[str, Any],
    *,
    purpose: str,
    labels: dict[str, Any],
    metrics: dict[str, Any] | None,
    state_path: str,
    client: Any = None,
) -> dict[str, Any]:
    """Records a tuned Gemini model (deployed by Vertex to its own endpoint) as the champion of ``purpose``.

    Args:
        tuned: The tuning result (``tuned_model``, ``endpoint``, ...).
        purpose: What the model serves.
        labels: Lineage labels (see :func:`lineage_labels`), cleaned here.
        metrics: The evaluation metrics.
        state_path: A state file that keeps the previous champion across retries.
        client: A ``ModelServiceClient``; by default one for the model's region.

    Returns:
        :func:`record_gemini_deployment`'s record plus ``previous_champion`` and ``registry`` (labels, aliases).
    """
    record = record_gemini_deployment(tuned, labels=labels, update_registry=False)
    promoted = register_champion(
        record["model"],
        purpose=purpose,
        labels=record["labels"],
        metrics=metrics,
        state_path=state_path,
        client=client,
        base_model=str(tuned.get("base_model") or ""),
    )
    record.update(promoted, purpose=purpose)
    record["registry_labels"] = promoted["registry"]["labels"]
    return record


# --- endpoint reads and traffic (shared with deployment.rollout) --------------------------------------------------


def deployed_version(endpoint: Any, name: str) -> Any:
    """The ``DeployedModel`` of ``endpoint`` serving the version ``name`` (``MODEL@VERSION``), or None."""
    return next((d for d in endpoint.deployed_models if _is_version(d, name)), None)


def _set_traffic(endpoints: Any, endpoint: str, split: dict[str, int]) -> None:
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    endpoints.update_endpoint(
        endpoint=aiplatform_v1.Endpoint(name=endpoint, traffic_split=split),
        update_mask=field_mask_pb2.FieldMask(paths=["traffic_split"]),
    )


def undeploy(endpoints: Any, endpoint: str, deployed_id: str, split: dict[str, int], timeout_s: float) -> bool:
    """Undeploys a deployed model; False when it was not deployed any more (an earlier attempt undeployed it)."""
    from google.api_core import exceptions

    try:
        operation = endpoints.undeploy_model(endpoint=endpoint, deployed_model_id=deployed_id, traffic_split=split)
        vertex_jobs.wait_for_operation(
            operation, what=f"undeployment of {deployed_id} from {endpoint}", timeout_s=timeout_s
        )
    except exceptions.NotFound:
        return False
    return True


def _current_champion(
    purpose: str, project: str, location: str, model_client: Any, nothing: str
) -> tuple[Any, Any]:
    """The model client and the champion of ``purpose``; a UserError ending with ``nothing`` when there is none."""
    models = model_client if model_client is not None else make_model_service_client(location)
    current = champions.find_vertex_champion(purpose, project=project, location=location, client=models)
    if current is None:
        raise UserError(
            f"purpose '{purpose}' has no champion in the Model Registry of {project}/{location}{nothing}"
        )
    return models, current


def _previous_of(current: Any, project: str, location: str) -> str:
    """The version the champion ``current`` replaced (its ``tunekit-previous`` label); '' for none."""
    ref = current.extra["labels"].get(champions.PREVIOUS_LABEL, "")
    return _ref_to_name(ref, project, location) if ref else ""


def _on_endpoint(current: Any, location: str, endpoint_client: Any) -> tuple[Any, Any, Any]:
    """The endpoint client, the champion ``current``'s endpoint, and its ``DeployedModel`` there (or None)."""
    endpoints = endpoint_client if endpoint_client is not None else make_endpoint_client(location)
    endpoint = endpoints.get_endpoint(name=current.endpoint)
    return endpoints, endpoint, deployed_version(endpoint, current.model)


def _all_traffic_to(endpoints: Any, endpoint: Any, winner: Any, loser: Any, timeout_s: float) -> tuple[bool, str]:
    """Gives ``winner`` all of ``endpoint``'s traffic, then undeploys ``loser`` (a ``DeployedModel`` or None).

    Returns:
        Whether anything changed, and the undeployed model's id ('' when none was undeployed).
    """
    changed = False
    if dict(endpoint.traffic_split) != {winner.id: 100}:
        _set_traffic(endpoints, endpoint.name, {winner.id: 100})
        changed = True
    if loser is not None and undeploy(endpoints, endpoint.name, loser.id, {winner.id: 100}, timeout_s):
        return True, loser.id
    return changed, ""


def rollback_vertex(
    purpose: str,
    *,
    project: str,
    location: str,
    model_client: Any = None,
    endpoint_client: Any = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Gives the ``champion`` alias (and the endpoint's traffic) back to the champion the current one replaced.

    The previous champion is the version named by the current champion's ``tunekit-previous`` label. When both
    are deployed on the same endpoint (a canary, or a full switch), the previous one gets 100% of the traffic and
    the current one is undeployed; when the previous one is not deployed any more it is deployed again on that
    endpoint with the current one's resources first. A previous champion served by an endpoint of its own (tuned
    Gemini models) keeps it, and only the alias moves.

    Args:
        purpose: The purpose to roll back.
        project: The Google Cloud project.
        location: The Vertex AI region.
        model_client: A ``ModelServiceClient`` (tests).
        endpoint_client: An ``EndpointServiceClient`` (tests).
        timeout_s: How long to wait for each long-running operation.

    Returns:
        ``restored``, ``rolled_back`` (version names), ``endpoint`` and its ``traffic_split`` afterwards ('' and
        {} when no endpoint changed).

    Raises:
        UserError: No champion, or no previous champion to go back to.
    """
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1
    from google.protobuf import field_mask_pb2

    models, current = _current_champion(
        purpose,
        project,
        location,
        model_client,
        f" (no model labelled {champions.PURPOSE_LABEL}={champions.purpose_label(purpose)} with the alias "
        f"'{champions.CHAMPION}')",
    )
    previous_name = _previous_of(current, project, location)
    if not previous_name:
        raise UserError(f"{current.model} is the first champion of '{purpose}': there is no previous champion")
    try:
        previous = models.get_model(name=previous_name)
    except exceptions.NotFound:
        raise UserError(f"the previous champion {previous_name} is no longer in the Model Registry") from None
    previous_name = version_name(previous)
    endpoint_name, traffic = "", {}
    if current.endpoint:
        endpoints, endpoint, mine = _on_endpoint(current, location, endpoint_client)
        theirs = deployed_version(endpoint, previous_name)
        elsewhere = any(r.endpoint != endpoint.name for r in previous.deployed_models)
        if theirs is None and not elsewhere and mine is not None:
            operation = endpoints.deploy_model(
                endpoint=endpoint.name,
                deployed_model=aiplatform_v1.DeployedModel(
                    model=previous_name,
                    display_name=f"{champions.purpose_label(purpose)}-{previous_name.rsplit('/', 1)[-1]}"[:128],
                    dedicated_resources=mine.dedicated_resources,
                ),
                traffic_split={"0": 0, mine.id: 100},
            )
            theirs = vertex_jobs.wait_for_operation(
                operation, what=f"deployment of {previous_name} to {endpoint.name}", timeout_s=timeout_s
            ).deployed_model
        if theirs is not None:
            _all_traffic_to(endpoints, endpoint, theirs, mine, timeout_s)
            endpoint_name = endpoint.name
            traffic = dict(endpoints.get_endpoint(name=endpoint.name).traffic_split)
    rolled = models.get_model(name=current.model)
    models.update_model(
        model=aiplatform_v1.Model(name=current.model, labels={**dict(rolled.labels), ROLLED_BACK_LABEL: "true"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
    )
    models.merge_version_aliases(name=current.model, version_aliases=[f"-{champions.CHAMPION}"])
    models.merge_version_aliases(name=previous_name, version_aliases=[champions.CHAMPION])
    return {
        "purpose": purpose,
        "restored": previous_name,
        "rolled_back": current.model,
        "endpoint": endpoint_name,
        "traffic_split": traffic,
    }


def promote_vertex(
    purpose: str,
    *,
    project: str,
    location: str,
    model_client: Any = None,
    endpoint_client: Any = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Gives a canary champion all of its endpoint's traffic and undeploys the champion it replaced.

    After a deploy with ``canary_traffic_percent`` below 100 the new version already holds the ``champion`` alias
    (the previous one keeps the rest of the traffic, so that :func:`rollback_vertex` can go back). Promoting
    ``PATCH``-es the endpoint's ``trafficSplit`` to 100% for the champion's deployed model, then undeploys the
    previous champion's deployed model (named by the ``tunekit-previous`` label) from that endpoint. The aliases
    do not move. Safe to repeat: when the champion already takes all the traffic and the previous one is not
    deployed there, nothing is sent and ``changed`` is False.

    Args:
        purpose: The purpose whose champion to promote.
        project: The Google Cloud project.
        location: The Vertex AI region.
        model_client: A ``ModelServiceClient`` (tests).
        endpoint_client: An ``EndpointServiceClient`` (tests).
        timeout_s: How long to wait for the undeploy operation.

    Returns:
        ``purpose``, ``champion`` (version name), ``endpoint``, ``traffic_split`` afterwards, ``undeployed`` (the
        previous champion's deployed model id, '' when none was undeployed) and ``changed``.

    Raises:
        UserError: No champion, a champion without an endpoint or served by an endpoint of its own (tuned Gemini
            models), or a champion not deployed on its endpoint.
    """
    _, current = _current_champion(purpose, project, location, model_client, ": nothing to promote")
    if not current.endpoint:
        raise UserError(f"the champion {current.model} of '{purpose}' is not deployed: nothing to promote")
    endpoints, endpoint, mine = _on_endpoint(current, location, endpoint_client)
    if mine is None:
        raise UserError(
            f"the champion {current.model} of '{purpose}' is not deployed on {endpoint.name}: nothing to promote"
        )
    theirs = deployed_version(endpoint, _previous_of(current, project, location))
    changed, undeployed = _all_traffic_to(endpoints, endpoint, mine, theirs, timeout_s)
    return {
        "purpose": purpose,
        "champion": current.model,
        "endpoint": endpoint.name,
        "traffic_split": dict(endpoints.get_endpoint(name=endpoint.name).traffic_split),
        "undeployed": undeployed,
        "changed": changed,
    }

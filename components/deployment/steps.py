"""The deploy step as a plain function of paths and values (the KFP wrapper calls it).

:func:`record_deployment` is the course every deploy step shares (this one and ``deployment.embedding``'s):
lineage labels, the local registry or the step's Vertex deployment, the deployment record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.deployment import champion, local_registry

STATE_FILE = "deployment_state.json"
#: The merged model's folder beside the record (export.MERGED_DIR).
SERVING_DIR = "serving_model"


def merged_serving_dir(model_path: str, output_dir: str) -> str:
    """A directory Vertex's serving containers can load: the model itself, or the adapter merged into its base.

    :func:`~tunekit.components.deployment.export.export_merged` (``output_dir/serving_model``, written once).
    """
    from tunekit.components.deployment.export import export_merged

    return export_merged(model_path, output_dir)


def record_deployment(
    step: Mapping[str, Any],
    *,
    kind: str,
    base_model: str,
    deploy_vertex: Callable[[dict[str, str]], dict[str, Any]],
    labels: dict[str, str] | None = None,
) -> dict:
    """Makes a deploy step's model the one serving its purpose (local registry, or ``deploy_vertex``); writes the record.

    The step's arguments pass on by name: ``backend`` (``local`` or ``vertex``), ``model_path`` (what the local
    registry serves), ``metrics``, ``gate_reason``, ``purpose``, ``pipeline_job_name``, ``local_registry_path``,
    ``deployment_path`` (where the record goes; its folder holds the Vertex state files) and ``data_fingerprint``
    (local field ``data_fingerprint``, label ``tunekit-data-fp``).

    Args:
        step: The deploy step's arguments (its ``locals()``).
        kind: Local: the entry's kind (``seq2seq``, ``causal``, ``sentence-transformers``).
        base_model: The model it was tuned from.
        deploy_vertex: Vertex: deploys the model given its lineage labels; returns the record.
        labels: More lineage labels (the step's own).

    Returns:
        The record: Vertex's with ``metrics``, ``gate`` and ``purpose``, or the local entry with ``registry``.
    """
    purpose, fingerprint, registry_path = step["purpose"], step["data_fingerprint"], step["local_registry_path"]
    lineage = {
        "tunekit-pipeline-run": step["pipeline_job_name"],
        **(labels or {}),
        "tunekit-purpose": champion.purpose_label(purpose),
    }
    if fingerprint:
        lineage[champion.DATA_FP_LABEL] = champion.fingerprint_label(fingerprint)
    if step["backend"] == "local":
        if not registry_path:
            raise UserError(
                "local deployments need a local registry path (the CLI sets one under the output root)",
                field="local_registry",
            )
        entry = {
            "model_dir": step["model_path"],
            "kind": kind,
            "base_model": base_model,
            "data_fingerprint": fingerprint,
            "pipeline_job_name": step["pipeline_job_name"],
            "metrics": step["metrics"],
            "gate": step["gate_reason"],
            "labels": lineage,
        }
        record = local_registry.register_model(registry_path, entry, purpose=purpose)
        record["registry"] = registry_path
    elif step["backend"] == "vertex":
        record = deploy_vertex(lineage)
        record.update(metrics=step["metrics"], gate=step["gate_reason"], purpose=purpose)
    else:
        raise UserError(f"unknown backend '{step['backend']}'; use 'vertex' or 'local'", field="backend")
    os.makedirs(os.path.dirname(os.path.abspath(step["deployment_path"])), exist_ok=True)
    with open(step["deployment_path"], "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return record


def _managed_open_model_weights(info: dict, output_dir: str, export_root: str) -> str:
    """The ``gs://`` folder to serve a managed open-model tuning from: its tuned weights, or them merged.

    A full model (``config.json``) is served from where the tuning job wrote it (``model_dir``). A LoRA adapter
    is merged into the base weights the job started from (``custom_base_model``; the adapter's own record names
    the service's copy of the base, which this worker cannot read) and served from ``export_root/serving_model``,
    as the adapters of our own open models are. Both folders are read through the ``/gcs`` mount.

    Raises:
        UserError: The weights are not there, or an adapter has no base weights to merge into.
    """
    from tunekit.components.common import uris
    from tunekit.components.model_clients.hf import ADAPTER_CONFIG

    weights_uri = str(info.get("model_dir") or "")
    weights_dir = uris.gcs_to_fuse(weights_uri)
    if not os.path.isfile(os.path.join(weights_dir, ADAPTER_CONFIG)):
        if not os.path.isfile(os.path.join(weights_dir, "config.json")):
            raise UserError(
                f"no tuned weights in {weights_uri} (read at {weights_dir}); the tuning job writes them there",
                path=weights_dir,
            )
        return weights_uri
    base_uri = str(info.get("custom_base_model") or "")
    if not base_uri or not export_root:
        raise UserError(
            f"the tuned LoRA adapter in {weights_uri} is merged into its base to serve it: set custom_base_model "
            "to the gs:// folder of the base weights",
            field="custom_base_model",
        )
    from tunekit.components.common.state import replace_directory
    from tunekit.components.deployment.export import MERGED_DIR
    from tunekit.components.model_clients.hf import load_model_and_tokenizer

    target = os.path.join(output_dir, MERGED_DIR)
    if not os.path.isfile(os.path.join(target, "config.json")):  # a retried step finds the merge it made
        model, tokenizer = load_model_and_tokenizer(uris.gcs_to_fuse(base_uri), weights_dir)
        with replace_directory(target) as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
    return export_root + "/" + SERVING_DIR


def run_deploy(
    *,
    backend: str,
    model_path: str,
    model_metadata: dict,
    dataset_fingerprint: str,
    metrics: dict,
    gate_reason: str,
    purpose: str,
    pipeline_job_name: str,
    local_registry_path: str,
    deployment_path: str,
    data_fingerprint: str = "",
    model_uri: str = "",
    deployment_uri: str = "",
    project: str = "",
    location: str = "",
    canary_traffic_percent: int = 100,
    serving_image: str = "",
    machine_type: str = "",
    accelerator_type: str = "",
    accelerator_count: int = 0,
    model_client: Any = None,
    endpoint_client: Any = None,
) -> dict:
    """Makes the tuned model the one serving ``purpose`` and writes a deployment record.

    Vertex, tuned Gemini (the tuning result names an endpoint): the model already serves from its own endpoint;
    its Model Registry version is labelled with its lineage and gets the ``champion`` alias (see
    :func:`~tunekit.components.deployment.registry.deploy_gemini`). Vertex, open model (no endpoint): the model is
    uploaded with a serving container and deployed beside the champion with a canary traffic split (see
    :func:`~tunekit.components.deployment.rollout.deploy_open_model`). Local: the model directory is registered as
    ``champion`` in the local registry file, with its metrics and data fingerprint.

    Args:
        backend: ``local`` or ``vertex``.
        model_path: The tuned-model artifact's local path.
        model_metadata: The artifact's metadata (``tunekit_model.json`` in the folder wins).
        dataset_fingerprint: The prepared training set's fingerprint (legacy label).
        metrics: The evaluation metrics.
        gate_reason: Why the gate passed.
        purpose: What the model serves.
        pipeline_job_name: The pipeline run.
        local_registry_path: Local: the registry JSON file.
        deployment_path: Where the record (JSON) is written; its folder holds the Vertex state file.
        data_fingerprint: The raw data's fingerprint (local field ``data_fingerprint``, label ``tunekit-data-fp``).
        model_uri: Vertex, open model: the tuned-model artifact's ``gs://`` URI.
        deployment_uri: Vertex, open model: the record's ``gs://`` URI (a merged model is written next to it).
        project: Vertex, open model: the project ('' for the tuning result's).
        location: Vertex, open model: the region ('' for the tuning result's).
        canary_traffic_percent: Vertex, open model: the new model's share of the endpoint's traffic.
        serving_image: Vertex, open model: the serving container ('' for the default vLLM image).
        machine_type: Vertex, open model: serving machine type ('' for the default).
        accelerator_type: Vertex, open model: serving accelerator ('' for the default).
        accelerator_count: Vertex, open model: accelerators per replica (0 for the default).
        model_client: Vertex: a ``ModelServiceClient`` (tests).
        endpoint_client: Vertex: an ``EndpointServiceClient`` (tests).
    """
    info = ModelRecord.read(model_path, model_metadata).to_dict()
    output_dir = os.path.dirname(os.path.abspath(deployment_path))

    def deploy_vertex(lineage: dict[str, str]) -> dict[str, Any]:
        from tunekit.components.deployment import registry as vertex
        from tunekit.components.deployment import rollout

        labels = {**lineage, **vertex.lineage_labels(purpose=purpose, base_model=str(info.get("base_model", "")))}
        state_path = os.path.join(output_dir, STATE_FILE)
        if (info.get("endpoint") or info.get("tuned_model")) and not info.get("open_model"):
            return vertex.deploy_gemini(
                info, purpose=purpose, labels=labels, metrics=metrics, state_path=state_path, client=model_client
            )
        if not project or not location:
            raise UserError("deploying an open model to Vertex needs the project and location", field="project")
        from tunekit.components.deployment.export import LORA_DIR, export_for_serving

        export_root = deployment_uri.rsplit("/", 1)[0] if deployment_uri else ""
        if info.get("open_model"):
            # Vertex AI's managed open-model tuning registers the tuned model but deploys nothing (its record has
            # no endpoint); its weights in Cloud Storage are uploaded with the serving container and deployed as
            # our own open models are, so the champion lookup finds them as one of those next run.
            exported = {"adapter": None}
            artifact_uri = _managed_open_model_weights(info, output_dir, export_root)
        else:
            # The merged model is what the vLLM container serves; an adapter is also exported in vLLM's
            # multi-LoRA layout beside it (lora/<name>/), for a server of many adapters on one base.
            exported = export_for_serving(model_path, output_dir, name=champion.purpose_label(purpose))
            serving = exported["merged"]
            if serving == model_path:
                artifact_uri = model_uri
            else:
                artifact_uri = export_root + "/" + SERVING_DIR if export_root else ""
        adapter = exported["adapter"]
        if adapter is not None and export_root:
            adapter["uri"] = f"{export_root}/{LORA_DIR}/{adapter['name']}"
        options: dict[str, Any] = {}
        if serving_image:
            options["serving_image"] = serving_image
        if machine_type:
            options["machine_type"] = machine_type
        if accelerator_type:
            options["accelerator_type"] = accelerator_type
        if accelerator_count:
            options["accelerator_count"] = accelerator_count
        deployed = rollout.deploy_open_model(
            artifact_uri=artifact_uri,
            purpose=purpose,
            project=project,
            location=location,
            state_path=state_path,
            labels=labels,
            metrics=metrics,
            pipeline_job_name=pipeline_job_name,
            base_model=str(info.get("base_model", "")),
            canary_traffic_percent=canary_traffic_percent,
            model_client=model_client,
            endpoint_client=endpoint_client,
            **options,
        )
        deployed["lora_adapter"] = adapter
        if "adapter_error" in exported:
            deployed["lora_adapter_error"] = exported["adapter_error"]
        return deployed

    return record_deployment(
        locals(),
        kind=champion.local_kind({"model_dir": model_path}),
        base_model=info.get("base_model", ""),
        deploy_vertex=deploy_vertex,
        labels={"tunekit-dataset-fingerprint": dataset_fingerprint[:16]},
    )

"""The deploy step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import json
import os

from tunekit.components.deployment import champion, local_registry


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
) -> dict:
    """Makes the tuned model the one serving ``purpose`` and writes a deployment record.

    Vertex: a tuned Gemini model already has its endpoint; the record links model, endpoint, pipeline run and
    dataset fingerprint. Local: the model directory is registered as ``champion`` in the local registry file.
    """
    info = dict(model_metadata)
    info_file = os.path.join(model_path, "tunekit_model.json")
    if os.path.exists(info_file):
        with open(info_file, encoding="utf-8") as handle:
            info.update(json.load(handle))
    lineage = {
        "tunekit-pipeline-run": pipeline_job_name,
        "tunekit-dataset-fingerprint": dataset_fingerprint[:16],
        "tunekit-purpose": champion.purpose_label(purpose),
    }
    if data_fingerprint:
        lineage[champion.DATA_FP_LABEL] = champion.fingerprint_label(data_fingerprint)
    if backend == "local":
        if not local_registry_path:
            raise ValueError(
                "local deployments need a local registry path (the CLI sets one under the output root)"
            )
        record = local_registry.register_model(
            local_registry_path,
            {
                "model_dir": model_path,
                "kind": champion.local_kind({"model_dir": model_path}),
                "base_model": info.get("base_model", ""),
                "data_fingerprint": data_fingerprint,
                "pipeline_job_name": pipeline_job_name,
                "metrics": metrics,
                "gate": gate_reason,
                "labels": lineage,
            },
            purpose=purpose,
        )
        record["registry"] = local_registry_path
    elif backend == "vertex":
        from tunekit.components.deployment.vertex import record_gemini_deployment

        record = record_gemini_deployment(info, labels=lineage)
        record.update(metrics=metrics, gate=gate_reason)
    else:
        raise ValueError(f"unknown backend '{backend}'")
    os.makedirs(os.path.dirname(os.path.abspath(deployment_path)), exist_ok=True)
    with open(deployment_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return record

"""KFP wrapper of the embedding deploy step (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy_embedding_model(
    backend: str,
    tuned_model: dsl.Input[dsl.Model],
    evaluation_metrics: dsl.Input[dsl.Metrics],
    purpose: str,
    local_registry: str,
    machine_type: str,
    accelerator_type: str,
    accelerator_count: int,
    project: str,
    location: str,
    pipeline_job_name: str,
    deployment: dsl.Output[dsl.Artifact],
    data_fingerprint: str = "",
):
    """Deploys the tuned embedding model: a new Vertex endpoint, or the champion entry of the local registry."""
    import json
    import os

    from tunekit.components.deployment.embedding import run_deploy_embedding

    info_file = os.path.join(tuned_model.path, "tunekit_model.json")
    info = dict(tuned_model.metadata)
    if os.path.exists(info_file):
        with open(info_file, encoding="utf-8") as handle:
            info.update(json.load(handle))
    record = run_deploy_embedding(
        backend=backend,
        model_path=tuned_model.path,
        model_info=info,
        metrics={
            k: v
            for k, v in evaluation_metrics.metadata.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        },
        gate_reason=str(evaluation_metrics.metadata.get("gate_reason", "")),
        purpose=purpose,
        pipeline_job_name=pipeline_job_name,
        local_registry_path=local_registry,
        deployment_path=deployment.path,
        project=project,
        location=location,
        machine_type=machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        data_fingerprint=data_fingerprint,
    )
    deployment.metadata.update({k: v for k, v in record.items() if isinstance(v, (str, int, float, bool))})

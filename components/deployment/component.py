"""KFP wrappers of the deploy steps: generative models and embedding models (bodies import the installed package)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy_model(
    backend: str,
    tuned_model: dsl.Input[dsl.Model],
    train_dataset: dsl.Input[dsl.Dataset],
    evaluation_metrics: dsl.Input[dsl.Metrics],
    purpose: str,
    local_registry: str,
    pipeline_job_name: str,
    deployment: dsl.Output[dsl.Artifact],
    data_fingerprint: str = "",
    project: str = "",
    location: str = "",
    canary_traffic_percent: int = 100,
    serving_image: str = "",
    machine_type: str = "",
    accelerator_type: str = "",
    accelerator_count: int = 0,
):
    """Makes the tuned model the champion of ``purpose``: Vertex Model Registry alias and endpoint, or local registry.

    Tuned Gemini models serve from their own endpoint; open models on Vertex are uploaded with a serving container
    and deployed with ``canary_traffic_percent`` of the champion's endpoint traffic (``tunekit rollback`` undoes it).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.deployment.steps import run_deploy

    record = call(
        run_deploy,
        locals(),
        model_path=tuned_model.path,
        model_metadata=dict(tuned_model.metadata),
        dataset_fingerprint=str(train_dataset.metadata.get("fingerprint", "")),
        metrics={k: v for k, v in evaluation_metrics.metadata.items() if isinstance(v, (int, float))},
        gate_reason=str(evaluation_metrics.metadata.get("gate_reason", "")),
        local_registry_path=local_registry,
        deployment_path=deployment.path,
        model_uri=tuned_model.uri,
        deployment_uri=deployment.uri,
    )
    deployment.metadata.update({k: v for k, v in record.items() if isinstance(v, (str, int, float, bool))})


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
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import ModelRecord
    from tunekit.components.deployment.embedding import run_deploy_embedding

    record = call(
        run_deploy_embedding,
        locals(),
        model_path=tuned_model.path,
        model_info=ModelRecord.read(tuned_model.path, dict(tuned_model.metadata)).to_dict(),
        metrics={
            k: v
            for k, v in evaluation_metrics.metadata.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        },
        gate_reason=str(evaluation_metrics.metadata.get("gate_reason", "")),
        local_registry_path=local_registry,
        deployment_path=deployment.path,
    )
    deployment.metadata.update({k: v for k, v in record.items() if isinstance(v, (str, int, float, bool))})

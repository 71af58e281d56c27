"""KFP wrapper of the embedding-tuning step (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_embedding(
    backend: str,
    base_model: str,
    corpus_uri: str,
    queries_uri: str,
    train_labels_uri: str,
    test_labels_uri: str,
    validation_labels_uri: str,
    train_steps: int,
    batch_size: int,
    learning_rate: float,
    hard_negatives: int,
    learning_rate_multiplier: float,
    output_dimensionality: int,
    task_type: str,
    labels: dict,
    encryption_key: str,
    project: str,
    location: str,
    pipeline_job_name: str,
    tuned_model: dsl.Output[dsl.Model],
):
    """Tunes an embedding model: sentence-transformers locally, or Google's template on Vertex (re-attaching)."""
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.embedding.local import run_tune_embedding

    call(
        run_tune_embedding,
        locals(),
        model_path=tuned_model.path,
        model_uri=tuned_model.uri,
        model_metadata=tuned_model.metadata,
    )

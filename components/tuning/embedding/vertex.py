"""Tuning a Google text-embedding model on Vertex AI: Google's ``tune-text-embedding-model`` pipeline template.

google-genai has no embedding-tuning call; Google publishes the tuning as a KFP template in Artifact Registry
(SPEC): v1.1.4 for text-embedding-005, v1.1.3 for text-embedding-004 and text-multilingual-embedding-002. This
module submits it as a Vertex AI ``PipelineJob`` (``template_uri``: Vertex fetches the spec itself, so nothing is
downloaded here), waits with backoff, and returns the Model Registry entry the template uploads. The template does
not deploy the tuned model; :mod:`tunekit.components.deployment.embedding` does.

A tuning run costs money and the step waiting for it can be retried, so a retry never creates a second job (the
protocol of :func:`~tunekit.components.common.vertex_jobs.create_or_attach`):

1. a request id is written to ``state_path`` first; the job is created with the id derived from it
   (``pipeline_job_id``), so a repeated create call for the same request is refused by Vertex (409) instead of
   starting a second job, and the job is fetched instead;
2. right after creation, the job's resource name is written to ``state_path``, before any waiting;
3. on start, a ``state_path`` naming a job re-attaches to it; one holding only a request id gets the job by its
   derived id, and creates it only if Vertex does not know it.

``state_path`` lives in the step's output artifact directory, which survives a retry of the step.

The PipelineService is reached with aiplatform's generated client over REST; when ``TUNEKIT_VERTEX_BASE_URL`` is set
at run time (tests), it talks to that URL (plain ``http://`` is kept as given) with a static token.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common import vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_state
from tunekit.components.common.uris import is_gcs
from tunekit.components.model_clients.vertex import make_rest_client, sanitize_labels

TEMPLATE_REPOSITORY = "https://us-kfp.pkg.dev/ml-pipeline/llm-text-embedding/tune-text-embedding-model"
#: The template version per tunable base model (SPEC).
TEMPLATE_VERSIONS = {
    "text-embedding-005": "v1.1.4",
    "text-embedding-004": "v1.1.3",
    "text-multilingual-embedding-002": "v1.1.3",
}
#: ``task_type`` values the tuned model can be optimised for.
TASK_TYPES = (
    "DEFAULT",
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
)
#: The template's data parameters, by the name of the argument that gives each.
DATA_PARAMETERS = {
    "corpus_uri": "corpus_path",
    "queries_uri": "queries_path",
    "train_labels_uri": "train_label_path",
    "test_labels_uri": "test_label_path",
    "validation_labels_uri": "validation_label_path",
}
#: The parameters Google's ``tune-text-embedding-model`` template (v1.1.3+) declares; nothing else is sent, since
#: aiplatform refuses a parameter the template does not declare ("The pipeline parameter {} is not found in the
#: pipeline job input definitions.", google/cloud/aiplatform/utils/pipeline_utils.py ``_get_vertex_value``).
#: Sources: aiplatform 1.165.1's own embedding tuning, vertexai/language_models/_language_models.py
#: (``_TunableModelMixin.tune_model``: ``batch_size``, ``train_steps``, ``output_dimensionality``,
#: ``learning_rate_multiplier``, ``task_type``, ``machine_type``, ``accelerator_type``, ``accelerator_count``,
#: ``corpus_path``, ``queries_path``, ``test_label_path``, ``validation_label_path``; ``base_model_version_id`` for
#: this template, where ``project``/``location`` are sent only to the other templates; ``encryption_spec_key_name``
#: from the CMEK key), and Google's sample EmbeddingModelTuningSample.java (GoogleCloudPlatform/java-docs-samples,
#: region tag ``generativeaionvertexai_sdk_embedding_model_tuning``: template v1.1.3 with ``base_model_version_id``,
#: ``task_type``, ``queries_path``, ``corpus_path``, ``train_label_path``, ``test_label_path``,
#: ``learning_rate_multiplier``, ``output_dimensionality``, ``batch_size``, ``train_steps``).
DECLARED_PARAMETERS = frozenset(
    {
        "base_model_version_id",
        "task_type",
        "queries_path",
        "corpus_path",
        "train_label_path",
        "test_label_path",
        "validation_label_path",
        "learning_rate_multiplier",
        "output_dimensionality",
        "batch_size",
        "train_steps",
        "encryption_spec_key_name",
        "machine_type",
        "accelerator_type",
        "accelerator_count",
    }
)
#: The fewest tuning steps the template takes: aiplatform's ``tune_model`` refuses fewer ("train_steps must be
#: greater than or equal to 30", vertexai/language_models/_language_models.py).
MIN_TRAIN_STEPS = 30
#: The data every run needs.
REQUIRED_DATA = ("corpus_uri", "queries_uri", "train_labels_uri")
#: The largest ``output_dimensionality`` of the tunable models.
MAX_OUTPUT_DIMENSIONALITY = 768

#: The label tying a pipeline job to the request (and state file) that created it.
REQUEST_LABEL = "tunekit-request-id"
#: The execution metadata key under which the template's uploader task records the tuned model.
MODEL_METADATA_KEY = "output:model_resource_name"
UPLOADER_TASK = "text-embedding-model-uploader"
EVALUATOR_TASK = "text-embedding-evaluator"

SUCCEEDED = vertex_jobs.PIPELINE_SUCCEEDED
FAILED_STATES = vertex_jobs.PIPELINE_FAILED_STATES

_VERSION_SUFFIX = re.compile(r"@\d+$")


class EmbeddingTuningFailed(vertex_jobs.JobFailed):
    """The template's pipeline job ended without a tuned model; the message carries the job's own error."""


PIPELINE_JOB = vertex_jobs.JobKind("Pipeline job", frozenset({SUCCEEDED}), FAILED_STATES, EmbeddingTuningFailed)


@dataclass
class TunedEmbedding:
    """The outcome of a ``tune-text-embedding-model`` run.

    Attributes:
        job_name: ``projects/P/locations/L/pipelineJobs/J``.
        state: The job's final state.
        tuned_model: The Model Registry entry the template uploaded, ``projects/P/locations/L/models/M``.
        base_model: The model that was tuned (``text-embedding-005``...).
        template_uri: The template (with its version) that ran.
        project: The Google Cloud project.
        location: The Vertex AI region.
        metrics: The template evaluator's metrics (its own names and values), if it reported any.
        resumed: Whether this call re-attached to a job an earlier attempt created.
        console_url: The job's page in the Google Cloud console.
    """

    job_name: str
    state: str
    tuned_model: str
    base_model: str
    template_uri: str
    project: str
    location: str
    metrics: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    console_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def normalize_base_model(base_model: str) -> str:
    """``publishers/google/models/text-embedding-005@001`` and ``text-embedding-005`` both give the bare id."""
    name = base_model.strip().removeprefix("publishers/google/models/").removeprefix("models/")
    return _VERSION_SUFFIX.sub("", name)


def template_uri(base_model: str) -> str:
    """The template URI, version included, for ``base_model``.

    Raises:
        UserError: The model cannot be tuned with the template.
    """
    name = normalize_base_model(base_model)
    version = TEMPLATE_VERSIONS.get(name)
    if version is None:
        raise UserError(
            f"'{base_model}' cannot be tuned with tune-text-embedding-model; choose one of: "
            f"{', '.join(TEMPLATE_VERSIONS)}",
            field="base_model",
        )
    return f"{TEMPLATE_REPOSITORY}/{version}"


def build_parameter_values(
    *,
    base_model: str,
    corpus_uri: str,
    queries_uri: str,
    train_labels_uri: str,
    test_labels_uri: str = "",
    validation_labels_uri: str = "",
    batch_size: int = 128,
    train_steps: int | None = None,
    iterations: int | None = None,
    learning_rate_multiplier: float = 1.0,
    output_dimensionality: int = 0,
    task_type: str = "DEFAULT",
    encryption_key: str = "",
    project: str = "",
    location: str = "",
) -> dict[str, Any]:
    """The template's parameter values (only names it declares: :data:`DECLARED_PARAMETERS`), checked first.

    Everything is checked before any paid call. Optional inputs left empty (test and validation labels, ``output_dimensionality`` 0, the CMEK key) are not
    sent, so the template's own defaults apply.

    Args:
        base_model: ``text-embedding-005``, ``text-embedding-004`` or ``text-multilingual-embedding-002``.
        corpus_uri: ``gs://`` corpus JSONL.
        queries_uri: ``gs://`` queries JSONL.
        train_labels_uri: ``gs://`` train label TSV.
        test_labels_uri: ``gs://`` test label TSV ('' for none).
        validation_labels_uri: ``gs://`` validation label TSV ('' for none).
        batch_size: Tuning batch size.
        train_steps: Tuning steps (the template's ``train_steps``; at least :data:`MIN_TRAIN_STEPS`); 1,000 when
            neither it nor ``iterations`` is given.
        iterations: The former name of ``train_steps`` (the template has no ``iterations`` parameter).
        learning_rate_multiplier: Multiplier of the template's learning rate.
        output_dimensionality: Embedding size of the tuned model (0 for the model's own).
        task_type: The downstream task the tuned model is optimised for (see :data:`TASK_TYPES`).
        encryption_key: Cloud KMS key, sent as the template's ``encryption_spec_key_name`` so that the resources
            its steps create are encrypted with it too (not only the pipeline job).
        project: Unused: the template declares no ``project`` parameter (aiplatform sends none to it).
        location: Unused, likewise.

    Raises:
        UserError: Naming the argument and what to do.
    """
    name = normalize_base_model(base_model)
    template_uri(name)
    data = {
        "corpus_uri": corpus_uri,
        "queries_uri": queries_uri,
        "train_labels_uri": train_labels_uri,
        "test_labels_uri": test_labels_uri,
        "validation_labels_uri": validation_labels_uri,
    }
    for key in REQUIRED_DATA:
        if not data[key]:
            raise UserError("required for tuning on Vertex AI", field=key)
    for key, uri in data.items():
        if uri and not is_gcs(uri):
            raise UserError(
                f"the template reads its data from Cloud Storage: '{uri}' must be a gs:// URI; upload it first",
                field=key,
            )
    if batch_size < 1:
        raise UserError(f"batch size must be positive, not {batch_size}", field="batch_size")
    steps = train_steps if train_steps is not None else iterations if iterations is not None else 1000
    if steps < MIN_TRAIN_STEPS:
        raise UserError(
            f"train steps must be at least {MIN_TRAIN_STEPS} for Vertex AI embedding tuning, not {steps}",
            field="train_steps",
        )
    if not learning_rate_multiplier > 0:
        raise UserError(
            f"learning rate multiplier must be positive, not {learning_rate_multiplier}",
            field="learning_rate_multiplier",
        )
    if not 0 <= output_dimensionality <= MAX_OUTPUT_DIMENSIONALITY:
        raise UserError(
            f"output dimensionality must be between 1 and {MAX_OUTPUT_DIMENSIONALITY} (0 for the model's own)",
            field="output_dimensionality",
        )
    if task_type not in TASK_TYPES:
        raise UserError(f"unknown task type '{task_type}'; use one of {', '.join(TASK_TYPES)}", field="task_type")
    optional = {"output_dimensionality": int(output_dimensionality), "encryption_spec_key_name": encryption_key}
    values = {
        "base_model_version_id": name,
        **{DATA_PARAMETERS[key]: uri for key, uri in data.items() if uri},
        "batch_size": int(batch_size),
        "train_steps": int(steps),
        "learning_rate_multiplier": float(learning_rate_multiplier),
        "task_type": task_type,
        **{key: value for key, value in optional.items() if value},
    }
    undeclared = sorted(set(values) - DECLARED_PARAMETERS)
    if undeclared:  # a bug here, not the user's: the template would refuse the job
        raise AssertionError(f"not parameters of the embedding tuning template: {', '.join(undeclared)}")
    return values


def make_pipeline_client(location: str):
    """An aiplatform ``PipelineServiceClient`` (REST) for ``location``, aimed at the fake when one is configured."""
    from google.cloud import aiplatform_v1

    return make_rest_client(aiplatform_v1.PipelineServiceClient, location)


def job_id_for(request_id: str) -> str:
    """The pipeline job id derived from a request id (Vertex: ``[a-z][-a-z0-9]{0,127}``)."""
    return f"tunekit-embedding-{request_id}"[:128]


def _console_url(job_name: str) -> str:
    parts = job_name.split("/")
    if len(parts) == 6:
        return (
            f"https://console.cloud.google.com/vertex-ai/locations/{parts[3]}/pipelines/runs/{parts[5]}"
            f"?project={parts[1]}"
        )
    return ""


def _metadata(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    if message is None:
        return {}
    pb = getattr(message, "_pb", message)
    return MessageToDict(pb).get("metadata", {}) if pb is not None else {}


def extract_results(job: Any) -> tuple[str, dict[str, float]]:
    """The tuned model's resource name and the evaluator's metrics from a finished job's task details.

    The uploader task records the model under ``output:model_resource_name`` in its execution metadata (as
    Google's own notebooks read it); any task recording that key is accepted, in case the task is renamed.

    Raises:
        EmbeddingTuningFailed: No task recorded a model.
    """
    model = ""
    metrics: dict[str, float] = {}
    for task in job.job_detail.task_details:
        execution = _metadata(task.execution)
        if MODEL_METADATA_KEY in execution and (task.task_name == UPLOADER_TASK or not model):
            model = str(execution[MODEL_METADATA_KEY])
        if task.task_name == EVALUATOR_TASK and "metrics" in task.outputs:
            for artifact in task.outputs["metrics"].artifacts:
                for key, value in _metadata(artifact).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        metrics[key] = float(value)
    if not model:
        raise EmbeddingTuningFailed(
            f"pipeline job {job.name} succeeded but no task recorded '{MODEL_METADATA_KEY}'; find the tuned model "
            "in the Model Registry",
            job_name=job.name,
            state=PIPELINE_JOB.state_of(job),
            job=job,
        )
    return model, metrics


def tune_text_embedding(
    *,
    project: str,
    location: str,
    base_model: str,
    pipeline_root: str,
    state_path: str,
    display_name: str = "",
    labels: dict[str, str] | None = None,
    encryption_key: str = "",
    service_account: str = "",
    client: Any = None,
    poll_interval_s: float = 60.0,
    max_poll_interval_s: float = 600.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[Any], None] | None = None,
    **parameters: Any,
) -> TunedEmbedding:
    """Runs ``tune-text-embedding-model`` for ``base_model`` and waits for the tuned model, creating at most one job.

    Args:
        project: The Google Cloud project.
        location: The Vertex AI region of the job.
        base_model: ``text-embedding-005``, ``text-embedding-004`` or ``text-multilingual-embedding-002``.
        pipeline_root: ``gs://`` folder for the template run's artifacts.
        state_path: The state file (in the step's output directory) that makes a retry re-attach.
        display_name: The job's display name ('' for one made from the base model).
        labels: Labels of the job (cleaned to Google Cloud's rules).
        encryption_key: Cloud KMS key for the job's resources ('' for Google-managed keys).
        service_account: Service account the template's steps run as ('' for the default).
        client: A ``PipelineServiceClient``; by default one from :func:`make_pipeline_client`.
        poll_interval_s: First wait between polls; it grows by half each poll.
        max_poll_interval_s: Cap on the wait between polls.
        timeout_s: Give up waiting after this many seconds (the job keeps running; a retry re-attaches).
        sleep: The sleep function (tests pass a no-op).
        progress: Called with the job after each poll.
        parameters: The template's data and settings, :func:`build_parameter_values`'s arguments
            (``corpus_uri``, ``queries_uri``, ``train_labels_uri``, ``test_labels_uri``,
            ``validation_labels_uri``, ``batch_size``, ``train_steps``, ``learning_rate_multiplier``,
            ``output_dimensionality``, ``task_type``).

    Returns:
        The tuned model's resource name, the job and the template's metrics.

    Raises:
        UserError: Bad arguments (checked before any call), or a state file from another request.
        EmbeddingTuningFailed: The job failed or was cancelled; the message is the job's own error.
        TimeoutError: ``timeout_s`` passed before the job ended.
    """
    from google.api_core import exceptions as core_exceptions
    from google.cloud import aiplatform_v1

    values = build_parameter_values(base_model=base_model, encryption_key=encryption_key, **parameters)
    if not is_gcs(pipeline_root):
        raise UserError("the template run needs a gs:// pipeline root for its artifacts", field="pipeline_root")
    name = normalize_base_model(base_model)
    uri = template_uri(name)
    client = client if client is not None else make_pipeline_client(location)
    parent = f"projects/{project}/locations/{location}"

    def find(request_id: str) -> Any:
        try:
            return client.get_pipeline_job(name=f"{parent}/pipelineJobs/{job_id_for(request_id)}")
        except core_exceptions.NotFound:
            return None

    def create(request_id: str) -> Any:
        pipeline_job = aiplatform_v1.PipelineJob(
            display_name=display_name or f"tune-{name}",
            template_uri=uri,
            runtime_config=aiplatform_v1.PipelineJob.RuntimeConfig(
                gcs_output_directory=pipeline_root, parameter_values=values
            ),
            labels={**sanitize_labels(labels), REQUEST_LABEL: request_id},
            service_account=service_account or "",
        )
        if encryption_key:
            pipeline_job.encryption_spec = aiplatform_v1.EncryptionSpec(kms_key_name=encryption_key)
        return client.create_pipeline_job(
            parent=parent, pipeline_job=pipeline_job, pipeline_job_id=job_id_for(request_id)
        )

    started = vertex_jobs.run_job(
        state_path,
        PIPELINE_JOB,
        get=lambda job_name: client.get_pipeline_job(name=job_name),
        create=create,
        find=find,
        names_job=True,  # the job id is the request's: a repeated create is refused (409), never a second job
        inputs={"template_uri": uri, "corpus_uri": values["corpus_path"]},
        fields={"project": project, "location": location},
        named=lambda job_name: {"console_url": _console_url(job_name)},
        request_id=lambda: uuid.uuid4().hex[:24],
        retry_delay_s=5.0,
        max_retry_delay_s=60.0,
        poll_interval_s=poll_interval_s,
        max_poll_interval_s=max_poll_interval_s,
        timeout_s=timeout_s,
        progress=progress,
        sleep=sleep,
    )
    job = started.job
    tuned_model, metrics = extract_results(job)
    result = TunedEmbedding(
        job_name=job.name,
        state=PIPELINE_JOB.state_of(job),
        tuned_model=tuned_model,
        base_model=name,
        template_uri=uri,
        project=project,
        location=location,
        metrics=metrics,
        resumed=started.resumed,
        console_url=_console_url(job.name),
    )
    write_state(state_path, {**started.state, "tuned_model": tuned_model})
    return result

"""The Vertex path of embedding tuning against an offline fake: template submission, re-attach, deploy, base eval."""

import json
import os
from urllib.parse import urlparse

import numpy as np
import pytest
from fake_vertex_pipelines import LOCATION, PROJECT, serve_fake_pipelines
from google.cloud.aiplatform_v1 import AcceleratorType

from tunekit.components.common.errors import UserError
from tunekit.components.deployment.embedding import deploy_to_endpoint
from tunekit.components.deployment.registry import make_endpoint_client
from tunekit.components.evaluation.embedding.steps import template_metrics
from tunekit.components.model_clients.embeddings import VertexEmbeddingEncoder
from tunekit.components.tuning.embedding import vertex as ev

DATA = {
    "corpus_uri": "gs://bucket/data/corpus.jsonl",
    "queries_uri": "gs://bucket/data/queries.jsonl",
    "train_labels_uri": "gs://bucket/data/train.tsv",
}


@pytest.fixture
def fake(monkeypatch):
    yield from serve_fake_pipelines(monkeypatch, polls_to_finish=2)


def tune(tmp_path, **overrides):
    kwargs = dict(
        project=PROJECT,
        location=LOCATION,
        base_model="text-embedding-005",
        pipeline_root="gs://bucket/root",
        state_path=str(tmp_path / "tuning_state.json"),
        sleep=lambda s: None,
        **DATA,
    )
    kwargs.update(overrides)
    return ev.tune_text_embedding(**kwargs)


@pytest.mark.parametrize(
    ("model", "version"),
    [
        ("text-embedding-005", "v1.1.4"),
        ("text-embedding-004", "v1.1.3"),
        ("text-multilingual-embedding-002", "v1.1.3"),
        ("publishers/google/models/text-embedding-005@001", "v1.1.4"),
    ],
)
def test_template_version_per_base_model(model, version):
    assert ev.template_uri(model) == (
        f"https://us-kfp.pkg.dev/ml-pipeline/llm-text-embedding/tune-text-embedding-model/{version}"
    )


def test_unknown_model_and_local_paths_fail_before_any_call():
    with pytest.raises(UserError, match="cannot be tuned"):
        ev.template_uri("textembedding-gecko@003")
    with pytest.raises(UserError, match="gs://"):
        ev.build_parameter_values(base_model="text-embedding-005", **{**DATA, "corpus_uri": "/tmp/corpus.jsonl"})
    with pytest.raises(UserError, match="task type"):
        ev.build_parameter_values(base_model="text-embedding-005", task_type="SEARCH", **DATA)


def test_submission_sends_template_and_parameters(fake, tmp_path):
    result = tune(
        tmp_path,
        base_model="text-embedding-004",
        test_labels_uri="gs://bucket/data/test.tsv",
        batch_size=64,
        iterations=300,
        learning_rate_multiplier=0.5,
        output_dimensionality=256,
        task_type="RETRIEVAL_QUERY",
        labels={"Team": "Search"},
    )
    (create,) = fake.creates()
    body = create[2]
    assert body["templateUri"].endswith("/tune-text-embedding-model/v1.1.3")
    assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert body["runtimeConfig"]["parameterValues"] == {
        "base_model_version_id": "text-embedding-004",
        "corpus_path": DATA["corpus_uri"],
        "queries_path": DATA["queries_uri"],
        "train_label_path": DATA["train_labels_uri"],
        "test_label_path": "gs://bucket/data/test.tsv",
        "batch_size": 64,
        # The template declares train_steps, not iterations, and no project/location (issue 14, item B).
        "train_steps": 300,
        "learning_rate_multiplier": 0.5,
        "output_dimensionality": 256,
        "task_type": "RETRIEVAL_QUERY",
    }
    assert body["labels"]["team"] == "search" and ev.REQUEST_LABEL in body["labels"]
    assert "pipelineJobId=tunekit-embedding-" in create[1]
    assert result.state == ev.SUCCEEDED and not result.resumed
    assert result.tuned_model.startswith(f"projects/{PROJECT}/locations/{LOCATION}/models/")
    assert result.metrics == {"test/ndcg@10": 0.81}
    assert template_metrics(result.metrics) == {"ndcg_at_10": 0.81}
    state = json.load(open(tmp_path / "tuning_state.json"))
    assert state["job_name"] == result.job_name and state["tuned_model"] == result.tuned_model


def test_retry_reattaches_and_creates_one_job(fake, tmp_path):
    with pytest.raises(TimeoutError):
        tune(tmp_path, timeout_s=-1)  # the step "dies" while the job runs
    second = tune(tmp_path)
    assert second.resumed
    assert len(fake.creates()) == 1 and len(fake.jobs) == 1


def test_lost_create_reply_does_not_start_a_second_job(fake, tmp_path):
    fake.lose_next_create_reply()
    result = tune(tmp_path)
    assert len(fake.jobs) == 1
    assert len(fake.creates()) == 2  # the retried create is refused (409) and the job is fetched instead
    assert result.state == ev.SUCCEEDED


def test_failed_job_reports_its_error(fake, tmp_path):
    fake.fail_job("tunekit-embedding-", "train_label_path: query-id q9 is not in the queries file")
    with pytest.raises(ev.EmbeddingTuningFailed, match="q9 is not in the queries file"):
        tune(tmp_path)


def test_deploy_creates_one_endpoint_even_when_retried(fake, tmp_path):
    model = f"projects/{PROJECT}/locations/{LOCATION}/models/77"
    state = str(tmp_path / "deployment_state.json")
    client = make_endpoint_client(LOCATION)
    first = deploy_to_endpoint(
        tuned_model=model,
        project=PROJECT,
        location=LOCATION,
        state_path=state,
        labels={"run": "R1"},
        client=client,
    )
    second = deploy_to_endpoint(
        tuned_model=model, project=PROJECT, location=LOCATION, state_path=state, client=client
    )
    assert first["endpoint"] == second["endpoint"] and len(fake.endpoints) == 1
    (endpoint,) = fake.endpoints.values()
    (deployed,) = endpoint["deployedModels"]
    assert deployed["model"] == model
    spec = deployed["dedicatedResources"]["machineSpec"]
    assert spec["machineType"] == "a2-highgpu-1g" and spec["acceleratorCount"] == 1
    # aiplatform's REST transport sends enums as numbers ($alt=json;enum-encoding=int).
    assert AcceleratorType(spec["acceleratorType"]).name == "NVIDIA_TESLA_A100"
    assert endpoint["labels"] == {"run": "r1"}
    assert first["deployed_model_id"] == second["deployed_model_id"]


def test_base_model_embeddings_through_the_prediction_api(fake):
    encoder = VertexEmbeddingEncoder("text-embedding-005", PROJECT, LOCATION, output_dimensionality=32)
    vectors = encoder.encode_queries(["printer jams", "router reboots"])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    method, path, body = fake.requests[-1]
    assert urlparse(path).path.endswith("/publishers/google/models/text-embedding-005:predict")
    assert body["instances"][0] == {"content": "printer jams", "task_type": "RETRIEVAL_QUERY"}
    assert body["parameters"] == {"outputDimensionality": 32}


def test_run_tune_embedding_vertex_writes_model_info(fake, tmp_path):
    from tunekit.components.tuning.embedding.local import run_tune_embedding

    metadata: dict = {}
    summary = run_tune_embedding(
        backend="vertex",
        base_model="text-embedding-005",
        test_labels_uri="",
        validation_labels_uri="gs://bucket/data/validation.tsv",
        model_path=str(tmp_path / "model"),
        model_uri="gs://bucket/root/run/tune-embedding/tuned_model",
        model_metadata=metadata,
        train_steps=50,
        batch_size=32,
        project=PROJECT,
        location=LOCATION,
        pipeline_job_name="embedding-tuning-20260101",
        vertex_options={"sleep": lambda s: None},
        **DATA,
    )
    body = fake.creates()[0][2]
    assert (
        body["runtimeConfig"]["gcsOutputDirectory"]
        == "gs://bucket/root/run/tune-embedding/tuned_model/template_run"
    )
    assert body["runtimeConfig"]["parameterValues"]["validation_label_path"] == "gs://bucket/data/validation.tsv"
    assert body["labels"]["tunekit-pipeline-run"] == "embedding-tuning-20260101"
    assert metadata["tuned_model"] == summary["tuned_model"]
    assert os.path.exists(tmp_path / "model" / "tunekit_model.json")


def test_fewer_than_30_train_steps_fail_before_any_call(fake, tmp_path):
    # aiplatform's tune_model: "train_steps must be greater than or equal to 30".
    with pytest.raises(UserError, match="at least 30") as caught:
        tune(tmp_path, base_model="text-embedding-005", train_steps=29)
    assert len(str(caught.value).splitlines()) == 1
    with pytest.raises(UserError, match="at least 30"):
        tune(tmp_path, base_model="text-embedding-005", iterations=10)
    assert not fake.creates()


def test_only_declared_parameters_and_the_cmek_key_as_a_template_parameter(fake, tmp_path):
    key = f"projects/{PROJECT}/locations/{LOCATION}/keyRings/r/cryptoKeys/k"
    tune(tmp_path, base_model="text-embedding-005", train_steps=100, encryption_key=key)
    (create,) = fake.creates()
    body = create[2]
    values = body["runtimeConfig"]["parameterValues"]
    assert set(values) <= ev.DECLARED_PARAMETERS
    assert values["train_steps"] == 100 and values["encryption_spec_key_name"] == key
    assert body["encryptionSpec"] == {"kmsKeyName": key}


def test_the_fake_refuses_parameters_the_template_does_not_declare(fake):
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    client = ev.make_pipeline_client(LOCATION)
    job = aiplatform_v1.PipelineJob(
        template_uri=ev.template_uri("text-embedding-005"),
        runtime_config=aiplatform_v1.PipelineJob.RuntimeConfig(
            gcs_output_directory="gs://bucket/root", parameter_values={"iterations": 300}
        ),
    )
    with pytest.raises(exceptions.BadRequest, match="iterations is not found"):
        client.create_pipeline_job(parent=f"projects/{PROJECT}/locations/{LOCATION}", pipeline_job=job)

"""The embedding-tuning pipeline: its config, its compiled shape, and local runs with the real MiniLM."""

import json
import os

import pytest
from pipeline_helpers import EXAMPLES, ROOT, compile_spec, spec_tasks
from test_embedding_tuning import QUERIES, write_set

from tunekit.components.deployment import local_registry
from tunekit.pipelines.config import load_config
from tunekit.pipelines.embedding_tuning import EmbeddingTuningConfig, embedding_tuning_pipeline
from tunekit.pipelines.registry import METHODS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
EXAMPLE = os.path.join(EXAMPLES, "embedding_tuning.yaml")


def tiny_config(tmp_path, **overrides) -> EmbeddingTuningConfig:
    paths = write_set(tmp_path / "data")
    test = tmp_path / "data" / "test.tsv"
    # The test labels reuse training queries: enough to check the mechanics, not the quality.
    test.write_text("query-id\tcorpus-id\tscore\nq1\td-brn\t1\nq3\td-asf\t1\nq5\td-ttr\t1\n")
    values = dict(
        corpus_uri=paths["corpus.jsonl"],
        queries_uri=paths["queries.jsonl"],
        train_labels_uri=paths["train.tsv"],
        test_labels_uri=str(test),
        backend="local",
        base_model="bundled:all-minilm-l6-v2",
        train_steps=2,
        batch_size=4,
        learning_rate=1e-4,
        min_improvement=-1.0,  # any result passes: the test is about the wiring
    )
    values.update(overrides)
    return EmbeddingTuningConfig(**values)


def test_registry_names_the_pipeline_and_its_config():
    # That its fields are the pipeline's parameters is test_config's, for every method.
    assert METHODS["embedding-tuning"].load() == (embedding_tuning_pipeline, EmbeddingTuningConfig)


def test_example_config_loads_with_paths_next_to_it():
    config = load_config(EmbeddingTuningConfig, EXAMPLE)
    assert config.backend == "local" and config.base_model == "bundled:all-minilm-l6-v2"
    for uri in (config.corpus_uri, config.queries_uri, config.train_labels_uri, config.test_labels_uri):
        assert os.path.exists(uri), uri


def test_compiled_spec_validates_first_and_gates_deployment(tmp_path):
    path = tmp_path / "e.yaml"
    spec = compile_spec("embedding-tuning", path)
    components = spec["components"]
    tasks = spec_tasks(spec)
    assert spec["pipelineInfo"]["name"] == "embedding-tuning"
    assert tasks["tune-embedding"]["dependentTasks"] == ["validate-embedding-data"]
    assert "evaluate-embedding" in tasks["gate-and-deploy-embedding"]["dependentTasks"]
    gate = components["comp-gate-and-deploy-embedding"]["dag"]["tasks"]
    [condition] = [t for name, t in gate.items() if name.startswith("condition")]
    assert condition["taskInfo"]["name"] == "gate-passed"
    assert "gate_passed" in condition["triggerPolicy"]["condition"]
    deploy = components[condition["componentRef"]["name"]]["dag"]["tasks"]
    assert list(deploy) == ["deploy-embedding-model"]
    assert tasks["tune-embedding"]["retryPolicy"]["maxRetryCount"] == 2
    text = path.read_text()
    assert "{{$.pipeline_google_cloud_project_id}}" in text and ROOT not in text


def _run_local(config, tmp_path):
    from tunekit.pipelines.local_run import run_local

    return run_local(METHODS["embedding-tuning"], config, str(tmp_path / "out"))


def test_local_runner_end_to_end_on_tiny_data(tmp_path):
    result = _run_local(tiny_config(tmp_path), tmp_path)
    assert result.succeeded, result.failure
    assert {"validate-embedding-data", "tune-embedding", "evaluate-embedding", "deploy-embedding-model"} <= set(
        result.task_outputs
    )
    champion = local_registry.champion(str(tmp_path / "out" / "registry.json"), "embedding-tuning")
    assert champion["model_dir"] == result.artifact_dir("tune-embedding", "tuned_model")
    assert champion["kind"] == "sentence-transformers"
    training = json.load(open(os.path.join(champion["model_dir"], "tunekit_model.json")))["training"]
    assert training["steps"] == 2 and training["queries"] == len(QUERIES)
    metrics = result.metadata("evaluate-embedding")
    assert metrics["tuned_queries"] == 3 and 0 <= metrics["tuned_ndcg_at_10"] <= 1
    assert "ndcg_at_10 (gate)" in open(result.artifact_dir("evaluate-embedding", "summary")).read()


@pytest.mark.slow
def test_local_runner_example_meets_the_gate(tmp_path):
    """The demo config as shipped: tuned nDCG@10 must beat the base by more than 5 points and deploy."""
    config = load_config(EmbeddingTuningConfig, EXAMPLE)
    result = _run_local(config, tmp_path)
    assert result.succeeded, result.failure
    metrics = result.metadata("evaluate-embedding")
    assert metrics["tuned_ndcg_at_10"] >= metrics["base_ndcg_at_10"] + 0.05
    assert "deploy-embedding-model" in result.task_outputs
    deployment = json.load(open(result.artifact_dir("deploy-embedding-model", "deployment")))
    assert deployment["purpose"] == "embedding-tuning"

"""The supervised pipeline's steps on the Vertex backend, end to end against the fake Vertex API."""

import json

import pytest
from fake_vertex import serve_fake_vertex
from tuning_helpers import ON_FAKE_VERTEX, created_jobs

from tunekit.components.deployment.champion import find_champion
from tunekit.components.deployment.steps import run_deploy
from tunekit.components.evaluation.supervised.steps import run_evaluate
from tunekit.components.tuning.supervised.steps import run_prepare, run_tune

ROWS = [{"input_text": f"Route this ticket: my invoice {i} is wrong", "output_text": "billing"} for i in range(12)]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    # A Cloud Storage stand-in too: the tuning step copies each dataset to a .jsonl name there.
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=str(tmp_path / "gcs"))


def tune_args(tmp_path, **overrides):
    """``run_tune``'s arguments on the Vertex backend, for the files :func:`run_prepare` writes under ``tmp_path``."""
    return dict(
        backend="vertex",
        base_model="gemini-2.5-flash",
        task="classification",
        train_path=str(tmp_path / "prepared_train.jsonl"),
        # On Vertex, artifacts live under the pipeline root in Cloud Storage, mounted at /gcs.
        train_uri="/gcs/bucket/root/prepare/train_dataset",
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        validation_uri="gs://bucket/root/prepare/validation_dataset",
        model_path=str(tmp_path / "tuned_model"),
        epoch_count=3,
        adapter_size=4,
        labels={"Team": "Support Automation"},
        pipeline_job_name="supervised-tuning-20261123",
        **ON_FAKE_VERTEX,
        **overrides,
    )


def test_prepare_tune_evaluate_deploy_on_vertex(tmp_path, fake):
    normalised = tmp_path / "normalised"
    normalised.mkdir()
    (normalised / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    train_meta, val_meta, model_meta = {}, {}, {}
    run_prepare(
        backend="vertex",
        normalised_dir=str(normalised),
        validation_split=0.25,
        train_path=str(tmp_path / "prepared_train.jsonl"),
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        train_metadata=train_meta,
        validation_metadata=val_meta,
    )
    assert (train_meta["rows"], val_meta["rows"], train_meta["layout"]) == (9, 3, "gemini")
    model_dir = tmp_path / "tuned_model"
    kwargs = tune_args(tmp_path, model_metadata=model_meta)
    summary = run_tune(**kwargs)
    [body] = created_jobs(fake)
    spec = body["supervisedTuningSpec"]
    # The artifacts have no .jsonl name, which Vertex requires: each was copied beside itself under one.
    assert spec["trainingDatasetUri"] == "gs://bucket/root/prepare/train_dataset.jsonl"
    assert spec["validationDatasetUri"] == "gs://bucket/root/prepare/validation_dataset.jsonl"
    for uri, local in (
        (spec["trainingDatasetUri"], "prepared_train.jsonl"),
        (spec["validationDatasetUri"], "prepared_val.jsonl"),
    ):
        assert open(fake.gcs_path(uri), "rb").read() == (tmp_path / local).read_bytes()
    assert spec["hyperParameters"]["epochCount"] == 3
    assert spec["hyperParameters"]["adapterSize"] == "ADAPTER_SIZE_FOUR"
    assert "learningRateMultiplier" not in spec["hyperParameters"]  # unset: Vertex chooses
    assert body["labels"]["team"] == "support-automation"
    assert body["labels"]["tunekit-pipeline-run"] == "supervised-tuning-20261123"
    assert summary["endpoint"] and model_meta["endpoint"] == summary["endpoint"]

    # The step is retried (say, the pod was preempted after the job finished): no second job is created.
    run_tune(**{**kwargs, "model_metadata": {}})
    assert len(created_jobs(fake)) == 1

    fake.set_responder(lambda text: "billing", model=summary["endpoint"])
    fake.set_responder(lambda text: "I cannot tell", model="gemini-2.5-flash")
    result = run_evaluate(
        backend="vertex",
        task="classification",
        base_model="gemini-2.5-flash",
        model_path=str(model_dir),
        model_metadata=model_meta,
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        predictions_path=str(tmp_path / "pred.jsonl"),
        summary_path=str(tmp_path / "summary.md"),
        project="test-project",
        location="us-central1",
    )
    assert result.metrics["tuned"]["accuracy"] == 1.0 and result.metrics["base"]["accuracy"] == 0.0
    assert result.decision.passed
    record = run_deploy(
        backend="vertex",
        model_path=str(model_dir),
        model_metadata=model_meta,
        dataset_fingerprint=train_meta["fingerprint"],
        metrics=result.metrics["tuned"],
        gate_reason=result.decision.reason,
        purpose="support-routing",
        pipeline_job_name="supervised-tuning-20261123",
        local_registry_path="",
        deployment_path=str(tmp_path / "deployment.json"),
    )
    assert record["endpoint"] == summary["endpoint"]
    assert record["labels"]["tunekit-dataset-fingerprint"] == train_meta["fingerprint"][:16]
    # The deployed model is now its purpose's champion in the Model Registry, as the next run's gate will see it.
    found = find_champion("support-routing", backend="vertex", project="test-project", location="us-central1")
    assert found is not None and found.model == record["model"] and found.endpoint == summary["endpoint"]


def _prepared_files(tmp_path):
    for name in ("prepared_train.jsonl", "prepared_val.jsonl"):
        (tmp_path / name).write_text(
            json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) + "\n"
        )


def test_fake_refuses_a_dataset_uri_without_a_jsonl_name(tmp_path, fake):
    """What the step sent before it copied its datasets to .jsonl names: Vertex wants "a JSONL file"."""
    from tunekit.components.common.errors import UserError
    from tunekit.components.tuning.gemini import tune_gemini

    with pytest.raises(UserError, match="must be a GCS object of type JSONL"):
        tune_gemini(
            base_model="gemini-2.5-flash",
            training_dataset_uri="gs://bucket/root/prepare/train_dataset",
            state_path=str(tmp_path / "state.json"),
            **ON_FAKE_VERTEX,
        )


def test_failed_tuning_job_surfaces_its_own_message(tmp_path, fake):
    _prepared_files(tmp_path)
    fake.fail_next_job("Dataset row 7 exceeds the token limit", code=3)
    with pytest.raises(RuntimeError, match="row 7 exceeds the token limit"):
        run_tune(**tune_args(tmp_path, model_metadata={}))

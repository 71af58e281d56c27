"""record_gemini_deployment: the record, and labels on the Model Registry entry through the fake."""

from __future__ import annotations

import datetime

import pytest
from fake_vertex import serve_fake_vertex

from tunekit.components.common.errors import UserError
from tunekit.components.deployment.registry import record_gemini_deployment
from tunekit.components.tuning.gemini import tune_gemini

PROJECT, LOCATION = "test-project", "us-central1"


@pytest.fixture
def fake(monkeypatch):
    """The fake with tuning jobs (FakeVertex), in place of conftest's endpoints-and-registry fake."""
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1)


@pytest.fixture
def tuned(fake, tmp_path):
    result = tune_gemini(
        project=PROJECT,
        location=LOCATION,
        base_model="gemini-2.5-flash",
        training_dataset_uri="gs://bucket/train.jsonl",
        labels={"team": "support"},
        state_path=str(tmp_path / "state.json"),
        poll_interval_s=0.001,
    )
    return result.to_dict()


def test_record_links_model_endpoint_run_and_dataset(fake, tuned):
    record = record_gemini_deployment(
        tuned, labels={"pipeline-run": "Tune-Run-20260101-120000", "dataset-fingerprint": "9f86d081884c7d65"}
    )
    assert record["model"] == tuned["tuned_model"]
    assert record["endpoint"] == tuned["endpoint"]
    assert record["job_name"] == tuned["job_name"]
    assert record["base_model"] == "gemini-2.5-flash"
    assert (record["project"], record["location"]) == (PROJECT, LOCATION)
    assert record["labels"] == {
        "pipeline-run": "tune-run-20260101-120000",
        "dataset-fingerprint": "9f86d081884c7d65",
    }
    deployed_at = datetime.datetime.fromisoformat(record["deployed_at"])
    assert deployed_at.tzinfo is not None


def test_registry_entry_gets_the_labels_and_keeps_its_own(fake, tuned):
    record = record_gemini_deployment(tuned, labels={"pipeline-run": "r1", "dataset-fingerprint": "abc"})
    entry = fake.models[tuned["tuned_model"].split("@")[0]]
    assert entry["labels"]["pipeline-run"] == "r1"
    assert entry["labels"]["dataset-fingerprint"] == "abc"
    assert entry["labels"]["team"] == "support"  # set at tuning time, kept
    assert record["registry_labels"] == entry["labels"]
    (patch,) = fake.requests_to(r"^/v1/.*/models/", method="PATCH")
    assert "updateMask=labels" in patch[1]


def test_registry_update_can_be_skipped(fake, tuned):
    before = len(fake.requests)
    record = record_gemini_deployment(tuned, labels={"pipeline-run": "r1"}, update_registry=False)
    assert record["registry_labels"] is None
    assert len(fake.requests) == before


@pytest.mark.parametrize(
    ("tuned", "field"),
    [
        ({"endpoint": "projects/p/locations/l/endpoints/1"}, "tuned_model"),
        ({"tuned_model": "projects/p/locations/l/models/1@1"}, "endpoint"),
        ({"tuned_model": "projects/p/locations/l/models/1@1", "endpoint": "my-endpoint"}, "endpoint"),
    ],
)
def test_incomplete_tuning_results_are_refused(tuned, field):
    with pytest.raises(UserError) as caught:
        record_gemini_deployment(tuned, labels={}, update_registry=False)
    assert caught.value.field == field

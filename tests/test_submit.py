import json

import pytest
from google.auth.credentials import AnonymousCredentials

from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import load_config
from tunekit.pipelines.registry import get_method
from tunekit.pipelines.submit import SubmitOptions, build_pipeline_job, vertex_parameters


def make_config(**overrides):
    _, cls = get_method("supervised-tuning").load()
    items = {
        "train_dataset_uri": "gs://bucket/train.jsonl",
        "task": "classification",
        "epoch_count": 4,
        **overrides,
    }
    return load_config(cls, None, [f"{k}={json.dumps(v)}" for k, v in items.items()])


def test_pipeline_job_carries_the_config_as_parameter_values(tmp_path):
    method = get_method("supervised-tuning")
    options = SubmitOptions(
        project="my-project",
        region="europe-west4",
        pipeline_root="gs://bucket/root",
        labels={"Team": "NLP"},
        image="europe-docker.pkg.dev/p/r/components:abc",
    )
    job = build_pipeline_job(
        method, make_config(labels={"use-case": "routing"}), options, credentials=AnonymousCredentials()
    )
    runtime = job._gca_resource.runtime_config
    values = {k: v for k, v in runtime.parameter_values.items()}
    assert values["train_dataset_uri"] == "gs://bucket/train.jsonl"
    assert values["task"] == "classification"
    assert values["epoch_count"] == 4
    assert values["backend"] == "vertex"
    assert dict(values["labels"]) == {"use-case": "routing"}
    # Left at their placeholders, project and location are not sent: Vertex fills in the job's own.
    assert "project" not in values and "location" not in values
    assert runtime.gcs_output_directory == "gs://bucket/root"
    assert job._gca_resource.labels["tunekit-method"] == "supervised-tuning"
    assert job._gca_resource.labels["team"] == "nlp"
    spec = job._gca_resource.pipeline_spec
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-docker.pkg.dev/p/r/components:abc"}
    assert job.project == "my-project" and job.location == "europe-west4"


def test_explicit_project_is_sent():
    values = vertex_parameters(make_config(project="other", location="us-central1"))
    assert values["project"] == "other" and values["location"] == "us-central1"


def test_pipeline_root_must_be_gcs():
    with pytest.raises(UserError, match="gs://"):
        build_pipeline_job(
            get_method("supervised-tuning"),
            make_config(),
            SubmitOptions(project="p", region="r", pipeline_root="/tmp/root"),
            credentials=AnonymousCredentials(),
        )

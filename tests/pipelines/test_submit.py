import os

import pytest
from google.auth.credentials import AnonymousCredentials
from pipeline_helpers import ROOT, fake_options, supervised_config

from tunekit.components.common.errors import UserError
from tunekit.pipelines.registry import get_method
from tunekit.pipelines.submit import (
    FINAL_STATES,
    SubmitOptions,
    build_pipeline_job,
    submit,
    vertex_parameters,
    wait_for_job,
)


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
        method,
        supervised_config(epoch_count=4, labels={"use-case": "routing"}),
        options,
        credentials=AnonymousCredentials(),
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
    values = vertex_parameters(supervised_config(project="other", location="us-central1"))
    assert values["project"] == "other" and values["location"] == "us-central1"


def test_an_unknown_region_is_one_user_error_not_aiplatforms_value_error():
    with pytest.raises(UserError, match="'us-centrall1' is not a Vertex AI region") as refused:
        build_pipeline_job(
            get_method("supervised-tuning"),
            supervised_config(),
            SubmitOptions(project="p", region="us-centrall1", pipeline_root="gs://b/r", image="r/p/components:1"),
            credentials=AnonymousCredentials(),
        )
    assert refused.value.field == "--region"


def test_pipeline_root_must_be_gcs():
    with pytest.raises(UserError, match="gs://"):
        build_pipeline_job(
            get_method("supervised-tuning"),
            supervised_config(),
            SubmitOptions(project="p", region="r", pipeline_root="/tmp/root"),
            credentials=AnonymousCredentials(),
        )


# --- the component image: the default is not published (issue 14 item 3) ----------------------------------------


def build_supervised(**options):
    values = dict(project="my-project", region="europe-west4", pipeline_root="gs://bucket/root")
    return build_pipeline_job(
        get_method("supervised-tuning"),
        supervised_config(),
        SubmitOptions(**{**values, **options}),
        credentials=AnonymousCredentials(),
    )


def test_without_an_image_the_unpublished_default_is_refused_with_the_command_that_builds_one(monkeypatch):
    monkeypatch.delenv("TUNEKIT_IMAGE", raising=False)
    with pytest.raises(UserError) as refused:
        build_supervised()
    message = str(refused.value)
    assert "make publish-image PROJECT=my-project REGION=europe-west4" in message
    assert "--image europe-west4-docker.pkg.dev/my-project/tunekit/components:" in message
    with pytest.raises(UserError, match="make publish-image"):
        build_supervised(image="us-docker.pkg.dev/tunekit-oss/tunekit/components:0.1.0")


def test_a_compiled_spec_naming_the_default_image_is_refused_before_any_call():
    # compiled/ is compiled with the default image: submitting it as is would fail on image pull.
    with pytest.raises(UserError) as refused:
        build_supervised(template_path=os.path.join(ROOT, "compiled", "supervised_tuning.yaml"))
    assert "compiled/supervised_tuning.yaml" in str(refused.value) and "make publish-image" in str(refused.value)


def test_tunekit_image_from_the_environment_names_both_images(monkeypatch, tmp_path):
    from tunekit.components.common.image import GPU_IMAGE, chosen_images, gpu_image_of
    from tunekit.pipelines.compile import compile_method

    monkeypatch.setenv("TUNEKIT_IMAGE", "europe-west4-docker.pkg.dev/my-project/tunekit/components:0.1.0")
    job = build_supervised()
    images = {
        e["container"]["image"] for e in job._gca_resource.pipeline_spec["deploymentSpec"]["executors"].values()
    }
    assert images == {"europe-west4-docker.pkg.dev/my-project/tunekit/components:0.1.0"}
    cpu, gpu = chosen_images()
    assert gpu == "europe-west4-docker.pkg.dev/my-project/tunekit/components-gpu:0.1.0" == gpu_image_of(cpu)
    monkeypatch.setenv("TUNEKIT_GPU_IMAGE", "r.example/p/gpu:1")
    assert chosen_images("r.example/p/cpu:1") == ("r.example/p/cpu:1", "r.example/p/gpu:1")
    # A spec whose only default image is the GPU one is refused too.
    spec = compile_method(get_method("supervised-tuning"), str(tmp_path / "s.yaml"), image=cpu)
    with open(spec, "a", encoding="utf-8") as handle:
        handle.write(f"# image: {GPU_IMAGE}\n")
    with pytest.raises(UserError, match="not published"):
        build_supervised(template_path=spec)


# --- submission against the fake Vertex server (conftest's `vertex`): --wait, re-attach, the request body ----------


def submit_supervised(vertex, **options):
    """Submits the supervised pipeline to the fake server with ``options`` (``job_id``...)."""
    return submit(
        get_method("supervised-tuning"),
        supervised_config(),
        fake_options(vertex, **options),
        credentials=AnonymousCredentials(),
    )


def test_submit_sends_options_and_waits_to_success(vertex):
    job = submit_supervised(
        vertex,
        job_id="nightly-1",
        labels={"team": "nlp"},
        service_account="runner@test-project.iam.gserviceaccount.com",
        network="projects/123/global/networks/vpc",
        encryption_key="projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
        enable_caching=False,
    )
    assert job.resource_name.endswith("/pipelineJobs/nightly-1")
    (create,) = vertex.creates()
    assert "pipelineJobId=nightly-1" in create[1]
    body = create[2]
    assert body["serviceAccount"] == "runner@test-project.iam.gserviceaccount.com"
    assert body["network"] == "projects/123/global/networks/vpc"
    assert body["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/k")
    assert body["labels"] == {"tunekit-method": "supervised-tuning", "team": "nlp"}
    assert body["pipelineSpec"]["pipelineInfo"]["name"] == "supervised-tuning"
    values = body["runtimeConfig"]["parameterValues"]
    assert values["train_dataset_uri"] == "gs://bucket/train.jsonl" and values["force"] is False
    tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["check-data-fingerprint"]["cachingOptions"] == {"enableCache": False}  # --no-cache
    lines = []
    state = wait_for_job(job, poll_seconds=0, echo=lines.append, sleep=lambda s: None)
    assert state == "PIPELINE_STATE_SUCCEEDED"
    states = [line.split(": ", 1)[1] for line in lines if "nightly-1:" in line]
    assert states == ["RUNNING", "SUCCEEDED"]
    assert any("text-embedding-trainer: SUCCEEDED" in line for line in lines)  # task progress


def test_wait_reports_failure(vertex):
    vertex.fail_job("broken", "The replica workerpool0-0 exited with a non-zero status of 1.")
    job = submit_supervised(vertex, job_id="broken-1")
    lines = []
    assert wait_for_job(job, poll_seconds=0, echo=lines.append, sleep=lambda s: None) == "PIPELINE_STATE_FAILED"
    assert FINAL_STATES["PIPELINE_STATE_FAILED"] == 1
    assert lines[-1] == "error: The replica workerpool0-0 exited with a non-zero status of 1."


def test_lost_create_reply_reattaches_instead_of_starting_a_second_job(vertex):
    vertex.lose_next_create_reply()
    job = submit_supervised(vertex, job_id="retry-1")
    assert job.resource_name.endswith("/pipelineJobs/retry-1")
    assert len(vertex.jobs) == 1  # one job exists, one will be billed
    # Submitting the same id again re-attaches too.
    again = submit_supervised(vertex, job_id="retry-1")
    assert again.resource_name == job.resource_name and len(vertex.jobs) == 1


def test_wait_gives_up_after_its_timeout_without_cancelling(vertex):
    job = submit_supervised(vertex, job_id="slow-1")
    vertex.polls_to_finish = 100
    ticks = iter(range(0, 1000, 10))
    lines = []
    state = wait_for_job(
        job, poll_seconds=0, timeout_seconds=25, echo=lines.append, sleep=lambda s: None, clock=lambda: next(ticks)
    )
    assert state == "TIMEOUT" and "the job goes on" in lines[-1]
    assert not any(r[1].endswith(":cancel") for r in vertex.requests)


def test_cli_submit_wait_exit_codes(vertex, monkeypatch, capsys):
    from tunekit.pipelines.cli import main

    monkeypatch.setenv("TUNEKIT_VERTEX_BASE_URL", vertex.url)
    base = [
        "submit",
        "supervised-tuning",
        "--set",
        "train_dataset_uri=gs://bucket/train.jsonl",
        "--project",
        "test-project",
        "--region",
        "us-central1",
        "--pipeline-root",
        "gs://bucket/root",
        "--template",
        vertex.template,
        "--wait",
        "--poll-seconds",
        "0",
    ]
    assert main([*base, "--job-id", "cli-ok-1", "--label", "team=nlp"]) == 0
    assert "SUCCEEDED" in capsys.readouterr().out
    body = vertex.creates()[-1][2]
    assert body["labels"]["team"] == "nlp"
    vertex.fail_job("cli-bad", "boom")
    assert main([*base, "--job-id", "cli-bad-1", "--no-cache"]) == 1
    assert "error: boom" in capsys.readouterr().out
    tasks = vertex.creates()[-1][2]["pipelineSpec"]["root"]["dag"]["tasks"]
    assert all(t["cachingOptions"] == {"enableCache": False} for t in tasks.values())

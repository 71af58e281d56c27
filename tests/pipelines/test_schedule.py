"""Scheduled retraining against the fake Vertex server: the request bodies aiplatform sends, and the CLI."""

import pytest
from google.auth.credentials import AnonymousCredentials
from pipeline_helpers import fake_options, supervised_config

from tunekit.components.common.errors import UserError
from tunekit.pipelines import schedule as sched
from tunekit.pipelines.cli import main
from tunekit.pipelines.registry import get_method
from tunekit.pipelines.submit import SubmitOptions

SA = "retrain@test-project.iam.gserviceaccount.com"


def options(fake):
    """The schedules' submit options against the fake server (conftest's ``vertex``): a service account, a label."""
    return fake_options(fake, service_account=SA, labels={"team": "nlp"})


def schedule_creates(fake):
    return [r for r in fake.requests if r[0] == "POST" and r[1].split("?")[0].endswith("/schedules")]


def test_create_sends_template_parameters_cron_and_service_account(vertex):
    method = get_method("supervised-tuning")
    created = sched.create_schedule(
        method,
        supervised_config(epoch_count=2),
        options(vertex),
        sched.ScheduleOptions(
            cron="TZ=Europe/Paris 0 3 * * 1",
            max_concurrent_runs=2,
            max_runs=10,
            allow_queueing=True,
            start_time="2027-01-01T00:00:00Z",
            end_time="2027-06-30T00:00:00+02:00",
        ),
        credentials=AnonymousCredentials(),
    )
    assert created.resource_name.startswith("projects/test-project/locations/us-central1/schedules/")
    (create,) = schedule_creates(vertex)
    body = create[2]
    assert body["displayName"] == "tunekit-supervised-tuning"
    assert body["cron"] == "TZ=Europe/Paris 0 3 * * 1"
    assert int(body["maxConcurrentRunCount"]) == 2 and int(body["maxRunCount"]) == 10
    assert body["allowQueueing"] is True
    assert body["startTime"] == "2027-01-01T00:00:00Z"
    assert body["endTime"] == "2027-06-29T22:00:00Z"  # normalised to UTC
    job = body["createPipelineJobRequest"]["pipelineJob"]
    assert job["serviceAccount"] == SA
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "supervised-tuning"
    assert "check-data-fingerprint" in job["pipelineSpec"]["root"]["dag"]["tasks"]
    values = job["runtimeConfig"]["parameterValues"]
    assert values["train_dataset_uri"] == "gs://bucket/train.jsonl"
    assert values["task"] == "classification" and values["epoch_count"] == 2 and values["force"] is False
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert job["labels"] == {
        "tunekit-method": "supervised-tuning",
        "tunekit-schedule": "tunekit-supervised-tuning",
        "team": "nlp",
    }


def test_list_pause_resume_delete(vertex):
    method = get_method("supervised-tuning")
    opts = options(vertex)
    sched.create_schedule(method, supervised_config(), opts, sched.ScheduleOptions(cron="0 3 * * *"))
    sched.create_schedule(
        method, supervised_config(), opts, sched.ScheduleOptions(cron="0 4 * * *", name="hourly-check")
    )
    listed = sched.list_schedules(method, opts)
    assert sorted(s.display_name for s in listed) == ["hourly-check", "tunekit-supervised-tuning"]
    assert sched.list_schedules(get_method("embedding-tuning"), opts) == []
    info = sched.describe(sched.find_schedule(method, opts))
    assert info["state"] == "ACTIVE" and info["cron"] == "0 3 * * *" and info["method"] == "supervised-tuning"

    paused = sched.pause_schedule(method, opts)
    stored = vertex.schedules[paused.resource_name]
    assert stored["state"] == "PAUSED" and stored["displayName"] == "tunekit-supervised-tuning"
    sched.resume_schedule(method, opts)
    assert vertex.schedules[paused.resource_name]["state"] == "ACTIVE"
    assert sched.delete_schedule(method, opts) == paused.resource_name
    assert paused.resource_name not in vertex.schedules
    assert [s["displayName"] for s in vertex.schedules.values()] == ["hourly-check"]
    verbs = [(r[0], r[1].split("?")[0].rsplit("/", 1)[-1]) for r in vertex.requests if "/schedules/" in r[1]]
    assert ("POST", paused.resource_name.rsplit("/", 1)[-1] + ":pause") in verbs
    assert ("DELETE", paused.resource_name.rsplit("/", 1)[-1]) in verbs
    with pytest.raises(UserError, match="no schedule named"):
        sched.pause_schedule(method, opts)


def test_existing_name_needs_replace(vertex):
    method = get_method("supervised-tuning")
    opts = options(vertex)
    first = sched.create_schedule(method, supervised_config(), opts, sched.ScheduleOptions(cron="0 3 * * *"))
    with pytest.raises(UserError, match="--replace"):
        sched.create_schedule(method, supervised_config(), opts, sched.ScheduleOptions(cron="0 5 * * *"))
    second = sched.create_schedule(
        method, supervised_config(), opts, sched.ScheduleOptions(cron="0 5 * * *"), replace=True
    )
    assert list(vertex.schedules) == [second.resource_name] != [first.resource_name]
    assert vertex.schedules[second.resource_name]["cron"] == "0 5 * * *"


@pytest.mark.parametrize(
    ("schedule_options", "message"),
    [
        (dict(cron="every day"), "not a cron expression"),
        (dict(cron="0 3 * *"), "not a cron expression"),
        (dict(cron="0 3 * * *", max_concurrent_runs=0), "at least 1"),
        (dict(cron="0 3 * * *", start_time="tomorrow"), "not a time"),
        (dict(cron="0 3 * * *", start_time="2027-02-01T00:00:00Z", end_time="2027-01-01T00:00:00Z"), "not after"),
    ],
)
def test_bad_schedule_options_are_user_errors(schedule_options, message):
    method = get_method("supervised-tuning")
    opts = SubmitOptions(project="p", region="r", pipeline_root="gs://b/r")
    with pytest.raises(UserError, match=message):
        sched.create_schedule(method, supervised_config(), opts, sched.ScheduleOptions(**schedule_options))


def test_cli_schedule_commands(vertex, template, monkeypatch, capsys):
    monkeypatch.setenv("TUNEKIT_VERTEX_BASE_URL", vertex.url)
    # `schedule create` runs tunekit doctor first: the fake project has the runs' service account.
    vertex.service_accounts[SA] = {"disabled": False}
    where = ["--project", "test-project", "--region", "us-central1"]
    create = [
        "schedule",
        "create",
        "supervised-tuning",
        "--set",
        "train_dataset_uri=gs://bucket/train.jsonl",
        *where,
        "--pipeline-root",
        "gs://bucket/root",
        "--template",
        template,
        "--cron",
        "0 3 * * 1",
        "--service-account",
        SA,
        "--max-concurrent-runs",
        "1",
        "--allow-queueing",
    ]
    assert main(create) == 0
    assert "created projects/test-project/locations/us-central1/schedules/" in capsys.readouterr().out
    body = schedule_creates(vertex)[-1][2]
    assert body["cron"] == "0 3 * * 1" and body["allowQueueing"] is True
    assert body["createPipelineJobRequest"]["pipelineJob"]["serviceAccount"] == SA
    assert main(["schedule", "list", "supervised-tuning", *where]) == 0
    assert "tunekit-supervised-tuning  ACTIVE  cron '0 3 * * 1'" in capsys.readouterr().out
    assert main(["schedule", "pause", "supervised-tuning", *where]) == 0
    assert "paused projects/" in capsys.readouterr().out
    assert main(["schedule", "resume", "supervised-tuning", *where]) == 0
    assert main(["schedule", "delete", "supervised-tuning", *where]) == 0
    assert vertex.schedules == {}
    assert main(["schedule", "pause", "supervised-tuning", *where]) == 2  # nothing left: a user error
    vertex.service_accounts.clear()
    assert main(create) == 2  # doctor: the service account does not exist; nothing was created
    captured = capsys.readouterr()
    assert "FAIL  service account" in captured.out and "--skip-doctor" in captured.err
    assert vertex.schedules == {}
    bad = [("not a cron" if arg == "0 3 * * 1" else arg) for arg in create]
    assert main(bad) == 2
    assert "not a cron expression" in capsys.readouterr().err

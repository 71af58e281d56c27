"""tune_gemini against the fake Vertex API: request shape, polling, failures, and one job per request."""

from __future__ import annotations

import json

import pytest
from fake_vertex import serve_fake_vertex
from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state
from tunekit.components.tuning.gemini import REQUEST_LABEL, TunedGemini, TuningJobFailed, tune_gemini

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
TRAIN = "gs://bucket/data/train.jsonl"


class Crash(Exception):
    """Stands for the step's pod dying while it waits."""


@pytest.fixture
def fake(monkeypatch):
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=3)


@pytest.fixture
def state_path(tmp_path):
    return str(tmp_path / "outputs" / "tuning_state.json")


def _tune(fake, state_path, **kwargs):
    kwargs.setdefault("base_model", "gemini-2.5-flash")
    kwargs.setdefault("training_dataset_uri", TRAIN)
    kwargs.setdefault("poll_interval_s", 0.001)
    kwargs.setdefault("max_poll_interval_s", 0.005)
    kwargs.setdefault("client", fake.genai_client())
    return tune_gemini(project=PROJECT, location=LOCATION, state_path=state_path, **kwargs)


def _creates(fake):
    return fake.requests_to(r"/tuningJobs$", method="POST")


def test_request_carries_what_vertex_documents(fake, state_path):
    _tune(
        fake,
        state_path,
        validation_dataset_uri="gs://bucket/data/validation.jsonl",
        epoch_count=4,
        learning_rate_multiplier=0.5,
        adapter_size=8,
        tuned_model_display_name="support-bot-v2",
        labels={"team": "support", "Pipeline-Run": "Run_42"},
        encryption_key="projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
        output_uri="gs://bucket/outputs",
    )
    (create,) = _creates(fake)
    method, path, body = create
    assert path == f"/v1beta1/{PARENT}/tuningJobs"
    assert body["baseModel"] == "gemini-2.5-flash"
    assert body["supervisedTuningSpec"] == {
        "trainingDatasetUri": TRAIN,
        "validationDatasetUri": "gs://bucket/data/validation.jsonl",
        "hyperParameters": {"epochCount": 4, "learningRateMultiplier": 0.5, "adapterSize": "ADAPTER_SIZE_EIGHT"},
    }
    assert body["tunedModelDisplayName"] == "support-bot-v2"
    assert body["labels"]["team"] == "support"
    assert body["labels"]["pipeline-run"] == "run_42"  # cleaned to label rules
    assert len(body["labels"][REQUEST_LABEL]) == 32
    # google-genai 2.34 sends the proto field name, which Vertex's JSON parser accepts as well as camelCase.
    encryption = body["encryptionSpec"]
    assert (encryption.get("kmsKeyName") or encryption.get("kms_key_name")).endswith("cryptoKeys/k")
    assert body["outputUri"] == "gs://bucket/outputs"


def test_unset_hyperparameters_are_left_to_vertex(fake, state_path):
    _tune(fake, state_path)
    (_, _, body) = _creates(fake)[0]
    assert body["supervisedTuningSpec"] == {"trainingDatasetUri": TRAIN}
    assert set(body) == {"baseModel", "supervisedTuningSpec", "labels"}


def test_polls_to_success(fake, state_path):
    seen = []
    tuned = _tune(fake, state_path, progress=lambda job: seen.append(job.state.value))
    assert isinstance(tuned, TunedGemini)
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert tuned.job_name.startswith(f"{PARENT}/tuningJobs/")
    assert tuned.tuned_model.startswith(f"{PARENT}/models/") and tuned.tuned_model.endswith("@1")
    assert tuned.endpoint.startswith(f"{PARENT}/endpoints/")
    assert tuned.base_model == "gemini-2.5-flash" and tuned.resumed is False
    assert seen == ["JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    state = read_state(state_path)
    assert state["job_name"] == tuned.job_name and state["state"] == "JOB_STATE_SUCCEEDED"
    assert json.loads(json.dumps(tuned.to_dict()))["endpoint"] == tuned.endpoint


def test_failed_job_raises_its_own_message(fake, state_path):
    fake.fail_next_job("The training dataset has 2 examples; at least 10 are required.", code=3)
    with pytest.raises(TuningJobFailed) as caught:
        _tune(fake, state_path)
    assert "The training dataset has 2 examples; at least 10 are required." in str(caught.value)
    assert caught.value.state == "JOB_STATE_FAILED" and caught.value.code == 3


def test_second_call_reattaches_instead_of_creating(fake, state_path):
    first = _tune(fake, state_path)
    second = _tune(fake, state_path)
    assert len(_creates(fake)) == 1 and len(fake.jobs) == 1
    assert second.job_name == first.job_name and second.tuned_model == first.tuned_model
    assert second.resumed is True


def test_crash_while_waiting_then_retry_makes_one_job(fake, state_path):
    def crash(job):
        raise Crash()

    with pytest.raises(Crash):
        _tune(fake, state_path, progress=crash)
    # The job's name was on disk before the first poll.
    assert read_state(state_path)["job_name"] in fake.jobs

    tuned = _tune(fake, state_path)
    assert tuned.state == "JOB_STATE_SUCCEEDED" and tuned.resumed
    assert len(_creates(fake)) == 1 and len(fake.jobs) == 1


def test_crash_between_create_and_state_write_finds_the_job_by_label(fake, state_path):
    # What an attempt leaves behind when it dies after the create call went through but before it wrote the
    # job's name: a state file holding only the request id, and a job carrying that id as a label.
    request_id = "0123456789abcdef0123456789abcdef"
    write_state(
        state_path, {"request_id": request_id, "base_model": "gemini-2.5-flash", "training_dataset_uri": TRAIN}
    )
    client = fake.genai_client()
    orphan = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri=TRAIN),
        config=types.CreateTuningJobConfig(labels={REQUEST_LABEL: request_id}),
    )
    tuned = _tune(fake, state_path, client=client)
    assert tuned.job_name == orphan.name and tuned.resumed
    assert len(fake.jobs) == 1


@pytest.mark.parametrize("created", [True, False])
def test_create_answered_503_makes_one_job(fake, state_path, created):
    # A 503 on the create call leaves it unknown whether the job exists: the job is looked up before retrying.
    fake.fail_next(1, 503, path_contains="/tuningJobs", after_processing=created)
    tuned = _tune(fake, state_path)
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert len(fake.jobs) == 1


def test_create_refused_by_quota_is_retried(fake, state_path):
    fake.fail_next(2, 429, "Quota exceeded: global concurrent tuning jobs", path_contains="/tuningJobs")
    tuned = _tune(fake, state_path)
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert len(_creates(fake)) == 3 and len(fake.jobs) == 1


def test_transient_errors_while_polling_are_retried(fake, state_path):
    fake.fail_next(2, 503, path_contains="/tuningJobs/")
    assert _tune(fake, state_path).state == "JOB_STATE_SUCCEEDED"


def test_reattaching_to_a_failed_job_raises_and_creates_nothing(fake, state_path):
    fake.fail_next_job("Internal error; please retry.", code=13)
    with pytest.raises(TuningJobFailed):
        _tune(fake, state_path)
    with pytest.raises(TuningJobFailed) as caught:
        _tune(fake, state_path)
    message = str(caught.value)
    assert "Internal error; please retry." in message
    assert state_path in message and "delete" in message  # says how to start over
    assert len(_creates(fake)) == 1


def test_cancelled_job_raises(fake, state_path):
    client = fake.genai_client()
    with pytest.raises(Crash):
        _tune(fake, state_path, client=client, progress=lambda job: (_ for _ in ()).throw(Crash()))
    client.tunings.cancel(name=read_state(state_path)["job_name"])
    with pytest.raises(TuningJobFailed) as caught:
        _tune(fake, state_path, client=client)
    assert caught.value.state == "JOB_STATE_CANCELLED"


def test_timeout_leaves_the_job_to_a_retry(fake, state_path):
    with pytest.raises(TimeoutError) as caught:
        _tune(fake, state_path, timeout_s=0.0)
    assert state_path in str(caught.value)
    assert _tune(fake, state_path).state == "JOB_STATE_SUCCEEDED"
    assert len(fake.jobs) == 1


def test_state_file_of_another_request_is_refused(fake, state_path):
    _tune(fake, state_path)
    with pytest.raises(UserError, match="delete"):
        _tune(fake, state_path, training_dataset_uri="gs://bucket/other.jsonl")


def test_state_file_naming_an_unknown_job(fake, state_path):
    write_state(state_path, {"job_name": f"{PARENT}/tuningJobs/999"})
    with pytest.raises(UserError, match="does not know"):
        _tune(fake, state_path)


def test_env_var_aims_the_default_client_at_the_fake(fake, state_path, monkeypatch):
    for key, value in fake.env().items():
        monkeypatch.setenv(key, value)
    tuned = _tune(fake, state_path, client=None)
    assert tuned.state == "JOB_STATE_SUCCEEDED"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"adapter_size": 3}, "adapter_size"),
        ({"adapter_size": 16, "base_model": "gemini-2.5-pro"}, "adapter_size"),
        ({"base_model": "text-bison@002"}, "base_model"),
        ({"base_model": "gemini-1.5-pro"}, "base_model"),
        ({"training_dataset_uri": "/tmp/train.jsonl"}, "training_dataset_uri"),
        ({"validation_dataset_uri": "data/val.jsonl"}, "validation_dataset_uri"),
        ({"output_uri": "/tmp/out"}, "output_uri"),
        ({"epoch_count": 0}, "epoch_count"),
        ({"learning_rate_multiplier": -1.0}, "learning_rate_multiplier"),
    ],
)
def test_bad_arguments_fail_before_any_call(fake, state_path, kwargs, field):
    with pytest.raises(UserError) as caught:
        _tune(fake, state_path, **kwargs)
    assert caught.value.field == field
    assert fake.requests == []


@pytest.mark.parametrize(
    "base_model",
    [
        "gemini-2.5-pro",
        "gemini-2.5-flash-lite",
        "gemini-3.5-flash",
        "publishers/google/models/gemini-2.5-flash-001",
    ],
)
def test_tunable_models_are_accepted(fake, state_path, base_model):
    tuned = _tune(fake, state_path, base_model=base_model, adapter_size=8)
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert _creates(fake)[0][2]["baseModel"] == base_model.removeprefix("publishers/google/models/")


@pytest.mark.parametrize(
    "base_model", ["gemini-3.5-flash-lite", "gemini-4-flash-001", "gemini-3.5-pro-preview-06-2026"]
)
def test_a_gemini_model_added_after_the_list_is_sent_with_a_warning(fake, state_path, base_model, caplog):
    """The known list is advisory: a newer Gemini id goes to Vertex, which decides (issue 14 item 12)."""
    with caplog.at_level("WARNING", logger="tunekit"):
        tuned = _tune(fake, state_path, base_model=base_model)
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert _creates(fake)[0][2]["baseModel"] == base_model
    assert f"'{base_model}' is not among the models tunekit knows to be tunable" in caplog.text


@pytest.mark.parametrize(
    ("base_model", "hint"),
    [
        ("gemni-2.5-flash", "did you mean gemini-2.5-flash?"),
        ("Gemini-3.5-Flash", "did you mean gemini-3.5-flash?"),
        ("gemini-2.0-flash", "generation 2.5 or later"),
        ("gpt-4o", "choose a Gemini model"),
    ],
)
def test_a_clearly_wrong_model_id_still_fails_statically(fake, state_path, base_model, hint):
    with pytest.raises(UserError, match="cannot be tuned on Vertex AI") as caught:
        _tune(fake, state_path, base_model=base_model)
    assert hint in caught.value.message and caught.value.field == "base_model"
    assert fake.requests == []


def test_a_retired_base_model_is_sent_with_a_warning_inside_a_step(fake, state_path, caplog):
    """Inside a step Vertex is the authority: a retired id is sent, with a warning naming its date and replacement
    (static preflight refuses it: tests/pipelines/test_preflight.py)."""
    with caplog.at_level("WARNING", logger="tunekit"):
        tuned = _tune(fake, state_path, base_model="gemini-2.5-flash")
    assert tuned.state == "JOB_STATE_SUCCEEDED"
    assert "'gemini-2.5-flash' was retired on October 16, 2026" in caplog.text
    assert "use gemini-3.5-flash-lite or gemini-3.1-flash-lite instead" in caplog.text


def test_retirement_reads_the_lifecycle_table_by_date_and_model_family():
    import datetime

    from tunekit.components.tuning.gemini import check_not_retired, retirement

    day_before, day_of = datetime.date(2026, 10, 15), datetime.date(2026, 10, 16)
    assert retirement("gemini-2.5-pro", today=day_before) is None
    assert (
        retirement("publishers/google/models/gemini-2.5-pro-001", today=day_of).replacement == "gemini-3.5-flash"
    )
    # Not in the table (a tuned endpoint, an open model, a newer Gemini): not retired here.
    for name in ("projects/p/locations/l/endpoints/1", "google/gemma-3-1b-it", "gemini-4-flash"):
        assert retirement(name, today=day_of) is None
        check_not_retired(name)
    with pytest.raises(UserError, match="retired on October 16, 2026.*use gemini-3.1-flash-lite or Gemma 4"):
        check_not_retired("gemini-2.5-flash-lite", today=day_of)


def test_the_default_models_are_current_in_the_lifecycle_table():
    from tunekit.components.model_clients.vertex import thinking_for
    from tunekit.components.tuning.distillation.vertex import DEFAULT_GEMINI_STUDENT
    from tunekit.components.tuning.gemini import (
        DEFAULT_BASE_MODEL,
        MODEL_LIFECYCLE,
        TUNABLE_MODELS,
        check_base_model,
        retirement,
    )

    for default in (DEFAULT_BASE_MODEL, DEFAULT_GEMINI_STUDENT):
        assert default in TUNABLE_MODELS and default in MODEL_LIFECYCLE and retirement(default) is None
    assert check_base_model(DEFAULT_BASE_MODEL) == DEFAULT_BASE_MODEL
    thinking, extra = thinking_for(DEFAULT_BASE_MODEL)  # a Gemini 3 model: a thinking level, not a budget
    assert (
        thinking.thinking_level == types.ThinkingLevel.MINIMAL and thinking.thinking_budget is None and extra == 0
    )

"""The fake Vertex REST API answers google-genai and aiplatform the way Vertex does."""

from __future__ import annotations

import pytest
from fake_vertex import FakeAnswer, FakeVertex, allow_loopback_only, serve_fake
from google.genai import errors, types

PARENT = "projects/test-project/locations/us-central1"


@pytest.fixture
def fake(monkeypatch):
    yield from serve_fake(monkeypatch, FakeVertex(polls_to_finish=2))


def _create(client, **config):
    return client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
        config=types.CreateTuningJobConfig(**config),
    )


def test_tuning_job_goes_pending_running_succeeded(fake):
    client = fake.genai_client()
    job = _create(client, tuned_model_display_name="mine")
    assert job.name.startswith(f"{PARENT}/tuningJobs/")
    assert job.state == types.JobState.JOB_STATE_PENDING

    states = [client.tunings.get(name=job.name).state for _ in range(3)]
    assert states == [
        types.JobState.JOB_STATE_RUNNING,
        types.JobState.JOB_STATE_SUCCEEDED,
        types.JobState.JOB_STATE_SUCCEEDED,
    ]
    done = client.tunings.get(name=job.name)
    assert done.tuned_model.model.startswith(f"{PARENT}/models/") and done.tuned_model.model.endswith("@1")
    assert done.tuned_model.endpoint.startswith(f"{PARENT}/endpoints/")
    # genai uses v1beta1 on Vertex, under the project and location.
    assert fake.requests[0][:2] == ("POST", f"/v1beta1/{PARENT}/tuningJobs")


def test_list_filters_by_label(fake):
    client = fake.genai_client()
    first = _create(client, labels={"run": "a"})
    _create(client, labels={"run": "b"})
    everything = [j.name for j in client.tunings.list()]
    assert len(everything) == 2
    only_a = list(client.tunings.list(config=types.ListTuningJobsConfig(filter='labels.run="a"')))
    assert [j.name for j in only_a] == [first.name]


def test_failed_job_carries_its_error(fake):
    client = fake.genai_client()
    fake.fail_next_job("Dataset has 3 examples; at least 10 are required.", code=3)
    job = _create(client)
    client.tunings.get(name=job.name)
    failed = client.tunings.get(name=job.name)
    assert failed.state == types.JobState.JOB_STATE_FAILED
    assert failed.error.code == 3
    assert failed.error.message == "Dataset has 3 examples; at least 10 are required."
    assert failed.tuned_model is None


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_errors_are_vertex_shaped(fake, status):
    client = fake.genai_client()
    fake.fail_next(1, status, "Quota exceeded for aiplatform.googleapis.com")
    with pytest.raises(errors.APIError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == status
    assert caught.value.message == "Quota exceeded for aiplatform.googleapis.com"
    # Only the next request failed.
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hi").text == "echo: hi"


def test_fail_after_processing_still_creates(fake):
    client = fake.genai_client()
    fake.fail_next(1, 503, path_contains="tuningJobs", after_processing=True)
    with pytest.raises(errors.APIError):
        _create(client)
    assert len(fake.jobs) == 1


def test_generate_content_on_publisher_model(fake):
    fake.set_responder(lambda text: f"answer to {text}")
    client = fake.genai_client()
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents=[types.Content(role="user", parts=[types.Part(text="two words")])],
        config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=50),
    )
    assert response.text == "answer to two words"
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    # Tokens are words: "be brief" + "two words" in, "answer to two words" out.
    assert response.usage_metadata.prompt_token_count == 4
    assert response.usage_metadata.candidates_token_count == 4
    method, path, body = fake.requests[-1]
    assert path == f"/v1beta1/{PARENT}/publishers/google/models/gemini-2.5-flash:generateContent"
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert body["generationConfig"]["maxOutputTokens"] == 50


def test_generate_content_on_tuned_endpoint_with_its_own_responder(fake):
    client = fake.genai_client()
    job = _create(client)
    client.tunings.get(name=job.name)
    endpoint = client.tunings.get(name=job.name).tuned_model.endpoint
    fake.set_responder(lambda text: "tuned", model=endpoint)
    assert client.models.generate_content(model=endpoint, contents="q").text == "tuned"
    assert client.models.generate_content(model="gemini-2.5-flash", contents="q").text == "echo: q"
    with pytest.raises(errors.APIError) as caught:
        client.models.generate_content(model=f"{PARENT}/endpoints/424242", contents="q")
    assert caught.value.code == 404


def test_finish_reasons_and_blocked_prompts(fake):
    answers = {
        "safe": "fine",
        "unsafe": FakeAnswer("", finish_reason="SAFETY"),
        "blocked": FakeAnswer(block_reason="PROHIBITED_CONTENT"),
        "long": "one two three four five six",
    }
    fake.set_responder(lambda text: answers[text])
    client = fake.genai_client()
    config = types.GenerateContentConfig(max_output_tokens=3)
    unsafe = client.models.generate_content(model="gemini-2.5-flash", contents="unsafe", config=config)
    assert unsafe.candidates[0].finish_reason == types.FinishReason.SAFETY
    blocked = client.models.generate_content(model="gemini-2.5-flash", contents="blocked", config=config)
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT
    assert not blocked.candidates
    long = client.models.generate_content(model="gemini-2.5-flash", contents="long", config=config)
    assert long.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert long.text == "one two three"


def test_count_tokens(fake):
    client = fake.genai_client()
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="a b c").total_tokens == 3


def test_model_registry_get_and_patch_over_rest(fake):
    from google.cloud import aiplatform_v1
    from google.oauth2.credentials import Credentials
    from google.protobuf import field_mask_pb2

    client = fake.genai_client()
    job = _create(client, labels={"team": "nlp"})
    client.tunings.get(name=job.name)
    model_name = client.tunings.get(name=job.name).tuned_model.model
    registry = aiplatform_v1.ModelServiceClient(
        credentials=Credentials(token="fake"), transport="rest", client_options={"api_endpoint": fake.url}
    )
    assert dict(registry.get_model(name=model_name).labels) == {"team": "nlp"}
    updated = registry.update_model(
        model=aiplatform_v1.Model(name=model_name, labels={"team": "nlp", "run": "r1"}),
        update_mask=field_mask_pb2.FieldMask(paths=["labels"]),
    )
    assert dict(updated.labels) == {"team": "nlp", "run": "r1"}
    assert fake.requests_to(r"^/v1/.*/models/", method="PATCH")


def test_unknown_path_is_404_and_recorded(fake):
    import httpx

    response = httpx.get(f"{fake.url}/v1beta1/{PARENT}/somethingElse")
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    assert fake.requests[-1][:2] == ("GET", f"/v1beta1/{PARENT}/somethingElse")


def test_loopback_guard_refuses_other_hosts(monkeypatch):
    import socket

    refused = allow_loopback_only(monkeypatch)
    with pytest.raises(OSError):
        socket.create_connection(("10.255.255.1", 80), timeout=0.1)
    assert refused and refused[0][0] == "10.255.255.1"

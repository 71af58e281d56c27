"""VertexGeminiClient against the fake Vertex API: order, statuses, tokens, retries, concurrency."""

from __future__ import annotations

import threading
import time

import pytest
from fake_vertex import FakeAnswer, serve_fake_vertex

from tunekit.components.model_clients.base import (
    BLOCKED,
    EMPTY,
    FAILED,
    OK,
    TRUNCATED,
    GenerationConfig,
    Prompt,
)
from tunekit.components.model_clients.vertex import (
    BASE_URL_ENV,
    VertexGeminiClient,
    make_genai_client,
    sanitize_labels,
)

PROJECT, LOCATION = "test-project", "us-central1"


@pytest.fixture
def fake(monkeypatch):
    yield from serve_fake_vertex(monkeypatch)


def _client(fake, **kwargs) -> VertexGeminiClient:
    kwargs.setdefault("initial_backoff_s", 0.01)
    kwargs.setdefault("max_backoff_s", 0.05)
    return VertexGeminiClient(
        kwargs.pop("model", "gemini-2.5-flash"), PROJECT, LOCATION, client=fake.genai_client(), **kwargs
    )


def _generate_calls(fake):
    return fake.requests_to(r":generateContent$", method="POST")


def test_make_genai_client_reads_the_env_var_at_run_time(fake):
    # The variable was set after the module was imported: it must still be honoured.
    client = make_genai_client(PROJECT, LOCATION)
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hi").text == "echo: hi"
    assert fake.requests[-1][1] == (
        f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent"
    )


def test_client_built_from_env_without_explicit_client(fake):
    vertex = VertexGeminiClient("gemini-2.5-flash", PROJECT, LOCATION)
    try:
        assert vertex.generate_texts(["x"]) == ["echo: x"]
    finally:
        vertex.close()


def test_ordered_results_with_statuses_and_tokens(fake):
    answers = {
        "plain": "a short answer",
        "unsafe": FakeAnswer("", finish_reason="SAFETY"),
        "prompt-blocked": FakeAnswer(block_reason="PROHIBITED_CONTENT"),
        "long": "w " * 40,
        "silent": "",
        "recited": FakeAnswer("partial", finish_reason="RECITATION"),
    }
    fake.set_responder(lambda text: answers[text])
    order = ["plain", "unsafe", "prompt-blocked", "long", "silent", "recited", "plain"]
    results = _client(fake, concurrency=4).generate(
        [Prompt(text) for text in order], GenerationConfig(max_output_tokens=10)
    )

    assert [r.status for r in results] == [OK, BLOCKED, BLOCKED, TRUNCATED, EMPTY, BLOCKED, OK]
    assert results[0].text == "a short answer" and results[-1].text == "a short answer"
    assert results[0].input_tokens == 1 and results[0].output_tokens == 3
    assert results[3].text == " ".join(["w"] * 10) and results[3].output_tokens == 10
    assert "SAFETY" in results[1].error and "PROHIBITED_CONTENT" in results[2].error
    assert results[4].text == "" and results[4].output_tokens == 0
    assert len(_generate_calls(fake)) == len(order)


def test_request_carries_system_history_and_config(fake):
    prompt = Prompt("and now?", system="You are terse.", history=(("user", "hello"), ("model", "hi")))
    config = GenerationConfig(max_output_tokens=64, temperature=0.7, top_p=0.9, seed=11)
    (result,) = _client(fake).generate([prompt], config)
    assert result.status == OK and result.text == "echo: and now?"
    _, _, body = _generate_calls(fake)[-1]
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse."}]
    assert [(c["role"], c["parts"][0]["text"]) for c in body["contents"]] == [
        ("user", "hello"),
        ("model", "hi"),
        ("user", "and now?"),
    ]
    assert body["generationConfig"] == {
        "maxOutputTokens": 64,
        "temperature": 0.7,
        "topP": 0.9,
        "seed": 11,
        "candidateCount": 1,
        # gemini-2.5-flash: thinking off (google-genai sends ThinkingConfig's fields unrenamed).
        "thinkingConfig": {"thinking_budget": 0},
    }
    # Input tokens: system (3) + history (2) + prompt (2).
    assert result.input_tokens == 7


def test_greedy_decoding_leaves_top_p_out(fake):
    _client(fake).generate([Prompt("x")], GenerationConfig(temperature=0.0, top_p=0.5))
    assert "topP" not in _generate_calls(fake)[-1][2]["generationConfig"]


def test_several_candidates(fake):
    counter = iter(range(100))
    fake.set_responder(lambda text: f"sample {next(counter)}")
    (result,) = _client(fake).generate([Prompt("x")], GenerationConfig(candidate_count=3, temperature=1.0))
    assert result.status == OK
    assert result.candidates == ["sample 0", "sample 1", "sample 2"]
    assert result.text == "sample 0"


def test_recovers_from_429_and_503(fake):
    fake.fail_next(3, 429, "Resource exhausted. Please try again later.")
    fake.fail_next(2, 503, "The service is currently unavailable.")
    client = _client(fake, concurrency=3)
    prompts = [Prompt(f"p{i}") for i in range(6)]
    results = client.generate(prompts)
    assert [r.text for r in results] == [f"echo: p{i}" for i in range(6)]
    assert all(r.status == OK for r in results)
    assert client.retries == 5
    assert len(_generate_calls(fake)) == 6 + 5


def test_exhausted_retries_fail_that_prompt_only(fake):
    fake.fail_next(2, 500, "Internal error encountered.")
    client = _client(fake, concurrency=1, max_attempts=2)
    results = client.generate([Prompt("first"), Prompt("second")])
    assert results[0].status == FAILED and results[0].text == ""
    assert "500" in results[0].error and "Internal error encountered." in results[0].error
    assert results[1].status == OK and results[1].text == "echo: second"


def test_client_errors_are_not_retried(fake):
    fake.fail_next(1, 400, "Request contains an invalid argument.")
    client = _client(fake, concurrency=1)
    (result,) = client.generate([Prompt("x")])
    assert result.status == FAILED and "invalid argument" in result.error
    assert client.retries == 0 and len(_generate_calls(fake)) == 1


def test_timeouts_are_retried(fake):
    fake.stall_next(1, 1.5, path_contains=":generateContent")
    client = _client(fake, timeout_s=0.3, concurrency=1)
    (result,) = client.generate([Prompt("slow")])
    assert result.status == OK and result.text == "echo: slow"
    assert client.retries == 1


def test_concurrency_is_bounded(fake):
    lock = threading.Lock()
    in_flight, peak = [0], [0]

    def responder(text):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return text

    fake.set_responder(responder)
    results = _client(fake, concurrency=3).generate([Prompt(str(i)) for i in range(12)])
    assert [r.text for r in results] == [str(i) for i in range(12)]
    assert 1 < peak[0] <= 3


def test_tuned_endpoint_as_model(fake):
    client = fake.genai_client()
    from google.genai import types

    job = client.tunings.tune(
        base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri="gs://b/t.jsonl")
    )
    client.tunings.get(name=job.name)
    endpoint = client.tunings.get(name=job.name).tuned_model.endpoint
    fake.set_responder(lambda text: "from the tuned model", model=endpoint)
    results = _client(fake, model=endpoint).generate([Prompt("q")])
    assert results[0].text == "from the tuned model"
    assert _generate_calls(fake)[-1][1] == f"/v1beta1/{endpoint}:generateContent"


def test_empty_prompt_list(fake):
    assert _client(fake).generate([]) == []
    assert fake.requests == []


def test_env_var_name_is_stable():
    assert BASE_URL_ENV == "TUNEKIT_VERTEX_BASE_URL"


def test_sanitize_labels():
    assert sanitize_labels({"Pipeline Run": "Run/2026-01-01T10:00", "1st": "X" * 70, "": "dropped"}) == {
        "pipeline-run": "run-2026-01-01t10-00",
        "k-1st": "x" * 63,
    }

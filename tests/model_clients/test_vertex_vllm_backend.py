"""The engine's vertex_vllm backend: an open model on Model Garden's vLLM container, through ``:predict``."""

import pytest
from fake_vertex import LOCATION, serve_fake_vertex

from tunekit.components.model_clients.backends import make_engine, vllm_text
from tunekit.components.model_clients.base import FAILED, OK, GenerationConfig, Prompt


@pytest.fixture
def vertex(monkeypatch):
    yield from serve_fake_vertex(monkeypatch)


def test_answers_retries_and_failures_against_a_vllm_endpoint(vertex):
    _, endpoint = vertex.add_open_model("tunekit-x")
    vertex.set_responder(lambda p: f"answer to {p}", model=endpoint)
    engine = make_engine(
        "vertex_vllm", endpoint, options={"location": LOCATION}, engine_options={"initial_backoff_s": 0}
    )
    vertex.fail_next(1, 503, path_contains=":predict")  # a transient error is retried by the engine
    prompt = Prompt(text="hello", system="Be brief.", history=(("user", "hi"), ("model", "hey")))
    (one,) = engine.generate([prompt], GenerationConfig(max_output_tokens=3, candidate_count=2))
    engine.close()
    calls = vertex.requests_to(rf"{endpoint}:predict", "POST")
    assert len(calls) == 2
    instances = calls[-1][2]["instances"]
    # The open model's training-time layout, two samples as two instances, the raw answer asked for.
    assert instances[0]["prompt"] == "system: Be brief.\nuser: hi\nmodel: hey\nuser: hello\nmodel:"
    assert len(instances) == 2 and instances[0]["max_tokens"] == 3 and instances[0]["raw_response"] is True
    assert one.status == OK and one.text == "answer to system:" and len(one.candidates) == 2
    gone = make_engine(
        "vertex_vllm", endpoint.replace("/endpoints/", "/endpoints/9"), options={"location": LOCATION}
    )
    (failed,) = gone.generate([Prompt(text="hello")])
    gone.close()
    assert failed.status == FAILED and "404" in failed.error


def test_the_container_layout_is_taken_off_when_it_comes_back():
    assert vllm_text("Prompt:\nWhat is a car?\nOutput:\nA vehicle.", "What is a car? ") == "A vehicle."
    assert vllm_text("A vehicle.", "What is a car?") == "A vehicle."

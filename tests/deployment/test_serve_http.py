"""``tunekit serve`` at the HTTP level: malformed framing, body limits, timeouts, unknown models, streaming,
concurrency. Raw sockets where the bytes on the wire matter; httpx elsewhere. Every server is on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import pytest

from tunekit.components.deployment.serve import Answer, ModelSpec, load_model, make_server, resolve_model
from tunekit.components.model_clients.base import GenerationConfig, Prompt
from tunekit.components.model_clients.hf import HFLocalClient
from tunekit.components.tuning.tiny import make_tiny_model

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    # A causal model: the tiny seq2seq one answers only tokens that decode to "" (nothing to compare).
    path = make_tiny_model(
        str(tmp_path_factory.mktemp("models") / "causal"),
        "causal",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
    )
    return load_model(resolve_model(path, name="tiny"))


class Serving:
    """``model`` served on a free port of 127.0.0.1 from a background thread."""

    def __init__(self, model, **options):
        self.server = make_server(model, "127.0.0.1", 0, **{"quiet": True, **options})
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        with httpx.Client(timeout=10) as client:  # ready once it answers
            for _ in range(200):
                try:
                    client.get(self.url + "/health")
                    break
                except httpx.TransportError:
                    threading.Event().wait(0.05)
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def served(tiny_model):
    with Serving(tiny_model) as serving:
        yield serving


def exchange(port: int, data: bytes, *, wait: float = 10.0, shut_write: bool = False) -> tuple[bytes, bool]:
    """Sends ``data`` and reads what comes back: ``(bytes, closed)``; closed is False when the server kept the
    connection open ``wait`` seconds after its last byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(data)
        if shut_write:
            conn.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def first_response(raw: bytes) -> tuple[int, dict]:
    """The status and JSON body of the first HTTP response in ``raw``."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    body = rest[: int(headers["content-length"])]
    return status, json.loads(body)


def post_head(path: str, length: str | int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


CHAT_BODY = json.dumps({"messages": [{"role": "user", "content": "route this"}], "max_tokens": 4}).encode()


def test_negative_content_length_is_refused_not_read_to_the_end(served):
    # The old server read a -1 length to the end of the stream, past the 8 MiB limit, and answered 200.
    raw, closed = exchange(served.port, post_head(CHAT, -1) + CHAT_BODY, shut_write=True)
    status, body = first_response(raw)
    assert status == 400 and "Content-Length" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error" and closed


def test_non_numeric_content_length_is_a_one_line_400(served):
    # The old server answered 500 with Python's "ValueError: invalid literal for int()".
    raw, closed = exchange(served.port, post_head(CHAT, "12abc") + CHAT_BODY)
    status, body = first_response(raw)
    assert status == 400 and closed
    assert "ValueError" not in body["error"]["message"] and "\n" not in body["error"]["message"]


def test_after_a_413_the_unread_body_is_not_a_next_request(served):
    # A declared 9 MiB body whose first bytes are a request: the old server answered 413, kept the connection
    # and answered the smuggled GET as well.
    smuggled = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw, closed = exchange(served.port, post_head(CHAT, 9 * 1024 * 1024) + smuggled)
    status, body = first_response(raw)
    assert status == 413 and "8388608 bytes" in body["error"]["message"]
    assert raw.count(b"HTTP/1.1 ") == 1 and closed


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(tiny_model):
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * 256
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(8)) + b"0\r\n\r\n"
    with Serving(tiny_model, max_body_bytes=1024) as serving:
        raw, closed = exchange(serving.port, head + chunks)
    status, body = first_response(raw)
    assert status == 413 and closed and raw.count(b"HTTP/1.1 ") == 1


def test_idle_and_slow_connections_are_closed(tiny_model):
    # The old server kept every one of these open for ever.
    with Serving(tiny_model, timeout_keep_alive=1.0, request_timeout=2.0) as serving:
        never_spoke, closed_idle = exchange(serving.port, b"", wait=8)
        half_head, closed_half = exchange(serving.port, b"POST /v1/chat/completions HTTP/1.1\r\nHo", wait=8)
        slow_body, closed_slow = exchange(serving.port, post_head(CHAT, 100) + b'{"messages"', wait=8)
        after_answer, closed_after = exchange(
            serving.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", wait=8
        )
    assert (never_spoke, half_head) == (b"", b"") and closed_idle and closed_half
    status, body = first_response(slow_body)
    assert status == 408 and "did not arrive" in body["error"]["message"] and closed_slow
    assert first_response(after_answer)[0] == 200 and closed_after  # keep-alive ends after timeout_keep_alive


def test_an_unknown_model_is_a_404(served):
    # The old server answered 200 whatever the model was called.
    chat = httpx.post(served.url + CHAT, json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    retrieve = httpx.get(served.url + "/v1/models/gpt-4o")
    known = httpx.get(served.url + "/v1/models/tiny")
    for response in (chat, retrieve):
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (
            "model_not_found",
            "model",
            "invalid_request_error",
        )
        assert "'gpt-4o' does not exist" in error["message"] and "'tiny'" in error["message"]
    assert known.status_code == 200 and known.json()["id"] == "tiny"


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b'{"messages": [', 400, "not valid JSON: Expecting value at line 1 column 15"),
        (b"", 400, "the request body is empty"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b"\xff\xfe{}", 400, "not UTF-8 JSON"),
        (b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}', 400, "tools"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokns": 4}', 400, "unknown field 'max_tokns'"),
    ],
)
def test_bad_bodies_are_one_line_errors(served, content, status, message):
    response = httpx.post(served.url + CHAT, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and "\n" not in error["message"]


def test_wrong_routes_and_methods_are_openai_errors(served):
    missing = httpx.get(served.url + "/v1/nothing")
    method = httpx.put(served.url + CHAT, json={})
    assert (missing.status_code, method.status_code) == (404, 405)
    assert missing.json()["error"]["message"] == "no route GET /v1/nothing"
    assert method.json()["error"]["message"] == "PUT is not allowed on /v1/chat/completions"


def events(response: httpx.Response) -> list:
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: ") :]) for line in lines[:-1]]


def test_streaming_sends_openai_chunks_with_the_same_answer(served):
    messages = [{"role": "user", "content": "printer offline"}]
    plain = httpx.post(served.url + CHAT, json={"messages": messages, "max_tokens": 6}).json()
    stream = httpx.post(
        served.url + CHAT,
        json={"messages": messages, "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    chunks = events(stream)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert text and text == plain["choices"][0]["message"]["content"]
    assert finish[-1] == plain["choices"][0]["finish_reason"] and finish[:-1] == [None]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_completions_answer_as_chat_does_for_one_user_message(served):
    chat = httpx.post(
        served.url + CHAT, json={"messages": [{"role": "user", "content": "reset password"}], "max_tokens": 6}
    ).json()
    completion = httpx.post(
        served.url + "/v1/completions", json={"model": "tiny", "prompt": "reset password", "max_tokens": 6}
    ).json()
    streamed = httpx.post(
        served.url + "/v1/completions", json={"prompt": "reset password", "max_tokens": 6, "stream": True}
    )
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == chat["choices"][0]["message"]["content"]
    assert completion["usage"] == chat["usage"]
    assert "".join(c["choices"][0]["text"] for c in events(streamed)) == completion["choices"][0]["text"]


def test_stop_sequences_cut_the_answer(served):
    plain = httpx.post(
        served.url + CHAT, json={"messages": [{"role": "user", "content": "reset password"}], "max_tokens": 8}
    ).json()
    text = plain["choices"][0]["message"]["content"]
    assert len(text) >= 2, text
    stop = text[1:]
    cut = httpx.post(
        served.url + CHAT,
        json={"messages": [{"role": "user", "content": "reset password"}], "max_tokens": 8, "stop": [stop]},
    ).json()
    assert cut["choices"][0]["message"]["content"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_fifty_requests_ten_in_flight_all_answered_as_the_model_alone(served, tiny_model):
    prompts = ["a b c", "printer offline", "reset password", "ticket 1: printer offline", "invoice wrong"]
    expected = HFLocalClient(tiny_model.spec.path, device="cpu").generate(
        [Prompt(p) for p in prompts], GenerationConfig(max_output_tokens=4)
    )
    assert len({e.text for e in expected}) > 1  # answers that tell the prompts apart

    async def main():
        limit = asyncio.Semaphore(10)
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:

            async def one(i):
                async with limit:
                    body = {"messages": [{"role": "user", "content": prompts[i % 5]}], "max_tokens": 4}
                    return i, await client.post(CHAT, json=body)

            return await asyncio.gather(*(one(i) for i in range(50)))

    answers = asyncio.run(main())
    assert [r.status_code for _, r in answers] == [200] * 50
    for i, response in answers:
        assert response.json()["choices"][0]["message"]["content"] == expected[i % 5].text


class BlockedModel:
    """A generative model whose every generation waits for ``release`` (a test double for a slow model)."""

    kind = "generate"

    def __init__(self):
        self.spec = ModelSpec(path="", kind="generate", name="blocked")
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def generate(self, prompts, sampling):
        self.calls += 1
        self.started.set()
        self.release.wait(30)
        return [Answer("done", "stop")], {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_the_event_loop_answers_while_the_model_works():
    model = BlockedModel()
    with Serving(model) as serving, httpx.Client(base_url=serving.url, timeout=30) as client:
        result = {}
        body = {"messages": [{"role": "user", "content": "x"}]}
        worker = threading.Thread(target=lambda: result.update(chat=client.post(CHAT, json=body)))
        worker.start()
        assert model.started.wait(10)
        health = client.get("/health", timeout=5)  # answered while the generation holds the model
        models = client.get("/v1/models", timeout=5)
        model.release.set()
        worker.join(30)
    assert health.status_code == 200 and models.status_code == 200
    assert result["chat"].json()["choices"][0]["message"]["content"] == "done"


def test_generation_timeout_is_a_504_and_drops_the_queued_request():
    model = BlockedModel()
    with (
        Serving(model, generation_timeout=1.0) as serving,
        httpx.Client(base_url=serving.url, timeout=30) as client,
    ):
        body = {"messages": [{"role": "user", "content": "x"}]}
        responses = []
        threads = [
            threading.Thread(target=lambda: responses.append(client.post(CHAT, json=body))) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        model.release.set()
        after = client.post(CHAT, json=body)
    assert [r.status_code for r in responses] == [504, 504]
    assert all("generation timeout" in r.json()["error"]["message"] for r in responses)
    assert after.status_code == 200
    assert model.calls == 2  # the first timed-out request ran; the one waiting behind it never started

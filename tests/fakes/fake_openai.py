"""An offline fake of an OpenAI-compatible chat-completions server (what vLLM, Ollama and llama.cpp serve).

It serves on ``127.0.0.1`` (a random port) and implements ``POST /v1/chat/completions`` (``messages``,
``max_tokens``, ``n``, ``temperature``...; answers with ``choices``, ``finish_reason`` and ``usage``, tokens being
whitespace-separated words) and ``GET /v1/models``. Like :class:`fake_vertex.FakeVertex` it has load features for
benchmarks: a per-request latency, a QPM quota answering 429 (with ``Retry-After`` when asked), injected 5xx errors
and dropped connections, none of which is billed; :attr:`FakeOpenAI.billed` counts answered calls per prompt, and
``GET /_fake/stats`` serves the counters to other processes.

Usage::

    with FakeOpenAI(responder=lambda text: text.upper()) as fake:
        httpx.post(fake.url + "/v1/chat/completions", json={"model": "m", "messages": [...]})
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from fake_vertex import LoadFeatures, read_body

#: A responder returns the answer's text, or ``(text, finish_reason)`` (``stop``, ``length``, ``content_filter``).
Responder = Callable[[str], "str | tuple[str, str]"]


def _count(text: str) -> int:
    return len(text.split())


class FakeOpenAI(LoadFeatures):
    """A local fake of an OpenAI-compatible ``/v1/chat/completions`` server.

    Args:
        responder: ``last user message -> answer``; defaults to ``"echo: " + text``.
        api_key: When set, requests must carry ``Authorization: Bearer <api_key>`` (401 otherwise).
        **load: :class:`~fake_vertex.LoadFeatures` of the completions (``latency_s``, ``quota_qpm``, ``seed``...).

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started (the OpenAI base URL is ``url + "/v1"``).
        requests: ``(method, path, json body)`` of every request.
        billed: Answered completions per prompt fingerprint.
        counters: ``requests``, ``generate``, ``billed``, ``quota_429``, ``faults``, ``drops``.
    """

    thread_name = "fake-openai"

    def __init__(self, responder: Responder | None = None, *, api_key: str | None = None, **load):
        super().__init__(**load)
        self.responder: Responder = responder or (lambda text: f"echo: {text}")
        self.api_key = api_key
        self._failures: list[int] = []

    def fail_next(self, n: int, status: int = 503) -> None:
        """Makes the next ``n`` completions answer ``status``."""
        with self._lock:
            self._failures.extend([status] * n)

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = read_body(handler)
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self._send(handler, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        path = handler.path.split("?")[0]
        if path == "/_fake/stats":
            self._send(handler, 200, self.stats())
            return
        with self._lock:
            self.requests.append((method, handler.path, body))
            self.counters["requests"] += 1
        if self.api_key and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._send(handler, 401, {"error": {"message": "Invalid API key", "type": "invalid_request_error"}})
            return
        if method == "GET" and path == "/v1/models":
            self._send(handler, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            return
        if method != "POST" or path != "/v1/chat/completions":
            self._send(handler, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
            return
        with self._lock:
            # Nothing injected here is billed.
            self.counters["generate"] += 1
            injected = str(self._failures.pop(0)) if self._failures else self._load_fault()
        if injected == "drop":
            self._drop(handler)
            return
        if injected is not None:
            status = 429 if injected == "quota" else int(injected)
            headers = {"Retry-After": f"{self.retry_after_s:g}"} if status == 429 and self.retry_after_s else None
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            self._send(handler, status, {"error": {"message": f"injected {status}", "type": kind}}, headers)
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        self._send(handler, *self._complete(body or {}))

    def _complete(self, body: dict) -> tuple[int, dict]:
        messages = body.get("messages") or []
        if not messages:
            return 400, {"error": {"message": "messages is required", "type": "invalid_request_error"}}
        users = [m for m in messages if m.get("role") == "user"]
        prompt = str(users[-1].get("content", "")) if users else ""
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        choices = []
        for index in range(int(body.get("n") or 1)):
            answer = self.responder(prompt)
            text, reason = (answer, "stop") if isinstance(answer, str) else answer
            if max_tokens is not None and _count(text) > int(max_tokens):
                text, reason = " ".join(text.split()[: int(max_tokens)]), "length"
            choices.append(
                {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            )
        usage_in = sum(_count(str(m.get("content", ""))) for m in messages)
        usage_out = sum(_count(c["message"]["content"]) for c in choices)
        self._bill(messages)
        return 200, {
            "id": f"chatcmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": usage_in,
                "completion_tokens": usage_out,
                "total_tokens": usage_in + usage_out,
            },
        }

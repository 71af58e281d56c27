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

import collections
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A responder returns the answer's text, or ``(text, finish_reason)`` (``stop``, ``length``, ``content_filter``).
Responder = Callable[[str], "str | tuple[str, str]"]


def _count(text: str) -> int:
    return len(text.split())


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that was killed or timed out resets its connection: expected, not worth a traceback.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """A local fake of an OpenAI-compatible ``/v1/chat/completions`` server.

    Args:
        responder: ``last user message -> answer``; defaults to ``"echo: " + text``.
        api_key: When set, requests must carry ``Authorization: Bearer <api_key>`` (401 otherwise).
        latency_s: Seconds every completion takes before it answers.
        quota_qpm: Queries per minute allowed (a token bucket holding ``quota_burst_s`` seconds); None for none.
        quota_burst_s: Seconds of quota the bucket holds.
        retry_after_s: When set, 429 answers carry ``Retry-After``.
        fault_rate: Share of completions answering 500 or 503 at random.
        drop_rate: Share of completions whose connection is closed without an answer.
        seed: Seed of the random faults.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started (the OpenAI base URL is ``url + "/v1"``).
        requests: ``(method, path, json body)`` of every request.
        billed: Answered completions per prompt fingerprint.
        counters: ``requests``, ``generate``, ``billed``, ``quota_429``, ``faults``, ``drops``.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        api_key: str | None = None,
        latency_s: float = 0.0,
        quota_qpm: float | None = None,
        quota_burst_s: float = 1.0,
        retry_after_s: float | None = None,
        fault_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
    ):
        self.responder: Responder = responder or (lambda text: f"echo: {text}")
        self.api_key = api_key
        self.latency_s = latency_s
        self.quota_qpm = quota_qpm
        self.quota_burst_s = quota_burst_s
        self.retry_after_s = retry_after_s
        self.fault_rate = fault_rate
        self.drop_rate = drop_rate
        self.url = ""
        self.requests: list[tuple[str, str, Any]] = []
        self.billed: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self._failures: list[int] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._bucket = 0.0
        self._bucket_time = 0.0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FakeOpenAI:
        """Starts serving on a random loopback port; returns self."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802
                fake._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                fake._handle(self, "POST")

            def log_message(self, format, *args):  # noqa: A002
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        if self.quota_qpm:
            self._bucket, self._bucket_time = self._capacity(), time.monotonic()
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stops serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next(self, n: int, status: int = 503) -> None:
        """Makes the next ``n`` completions answer ``status``."""
        with self._lock:
            self._failures.extend([status] * n)

    def stats(self) -> dict[str, Any]:
        """Counters plus ``billed_calls``, ``billed_prompts`` and ``duplicate_billed``."""
        with self._lock:
            billed = dict(self.billed)
            counters = dict(self.counters)
        return {
            **counters,
            "billed_calls": sum(billed.values()),
            "billed_prompts": len(billed),
            "duplicate_billed": sum(n - 1 for n in billed.values() if n > 1),
        }

    def _capacity(self) -> float:
        return max(1.0, (self.quota_qpm or 0) / 60.0 * self.quota_burst_s)

    def _inject(self) -> str | None:
        # Called with the lock held; nothing injected here is billed.
        self.counters["generate"] += 1
        if self._failures:
            return str(self._failures.pop(0))
        if self.drop_rate and self._random.random() < self.drop_rate:
            self.counters["drops"] += 1
            return "drop"
        if self.quota_qpm:
            now = time.monotonic()
            self._bucket = min(self._capacity(), self._bucket + (now - self._bucket_time) * self.quota_qpm / 60.0)
            self._bucket_time = now
            if self._bucket < 1.0:
                self.counters["quota_429"] += 1
                return "429"
            self._bucket -= 1.0
        if self.fault_rate and self._random.random() < self.fault_rate:
            self.counters["faults"] += 1
            return str(self._random.choice((500, 503)))
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
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
            injected = self._inject()
        if injected == "drop":
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if injected is not None:
            status = int(injected)
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
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        with self._lock:
            self.billed[key] += 1
            self.counters["billed"] += 1
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

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            handler.send_response(status)
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

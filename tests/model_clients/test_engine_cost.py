"""Honest cost: a call that may have been billed without an answer (timed out, dropped after sending) is counted."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fake_vertex import FakeVertex, loopback_only

from tunekit.components.model_clients import pricing
from tunekit.components.model_clients.backends import VertexOnlineBackend
from tunekit.components.model_clients.base import OK, Generation, GenerationConfig, Prompt
from tunekit.components.model_clients.engine import (
    Backend,
    Engine,
    EngineConfig,
    RetryableError,
    may_have_been_billed,
)

FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.02}


@pytest.fixture
def loopback(monkeypatch):
    yield from loopback_only(monkeypatch)


def test_a_timed_out_call_the_server_billed_is_counted_as_billed(loopback):
    # The fake answers (and bills) the stalled call after the client gave up on it: two calls billed, one answer.
    with FakeVertex() as fake:
        backend = VertexOnlineBackend("gemini-2.5-flash", "p", "us-central1", client=fake.genai_client())
        engine = Engine(backend, EngineConfig(timeout_s=0.3, **FAST), seed=0)
        fake.stall_next(1, 1.0)
        assert engine.generate_texts(["slow question"]) == ["echo: slow question"]
        engine.close()
        time.sleep(1.0)  # the stalled request finishes (and is billed) on the fake's side
        billed = fake.stats()["billed_calls"]
    report = engine.report
    assert billed == 2
    assert report.calls == 1 and report.unanswered_billed == 1 and report.billed_calls == billed
    assert report.unanswered_input_tokens > 0
    # The unanswered call is priced like the answered one: the run's mean answer length.
    answered_output = report.output_tokens - report.unanswered_output_tokens
    assert report.unanswered_output_tokens == answered_output
    price = pricing.price_for("gemini-2.5-flash", pricing.DEFAULT_PRICES)
    assert report.cost == pytest.approx(price.cost(report.input_tokens, report.output_tokens))
    assert report.to_metrics()["billed_calls"] == 2.0


class _Transport(Backend):
    """Fails each prompt's first call with ``first_error``, then answers ``ok`` (10 input, 4 output tokens)."""

    name = "scripted"
    model = "gemini-2.5-flash"

    def __init__(self, first_error: BaseException):
        self.first_error = first_error
        self.seen: set[str] = set()

    async def agenerate(self, prompts, config, timeout_s):
        (prompt,) = prompts
        if prompt.text not in self.seen:
            self.seen.add(prompt.text)
            raise self.first_error
        return [Generation(text="ok", status=OK, input_tokens=10, output_tokens=4)]


def _retryable(cause: BaseException, status: int | None = None) -> RetryableError:
    try:
        raise RetryableError(f"{type(cause).__name__}", status=status) from cause
    except RetryableError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "billed"),
    [
        # The request went out and the connection dropped before the answer: the provider may have billed it.
        (_retryable(httpx.RemoteProtocolError("Server disconnected without sending a response.")), True),
        (_retryable(httpx.ReadTimeout("timed out")), True),
        (asyncio.TimeoutError(), True),
        # Never sent, or answered with an error: nothing billed.
        (_retryable(httpx.ConnectError("refused")), False),
        (_retryable(httpx.PoolTimeout("no connection")), False),
        (_retryable(RuntimeError("503"), status=503), False),
        (_retryable(RuntimeError("429"), status=429), False),
    ],
)
def test_which_failures_count_as_billed(error, billed):
    assert may_have_been_billed(error) is billed
    engine = Engine(_Transport(error), EngineConfig(**FAST), seed=0)
    engine.generate([Prompt("a"), Prompt("b")], GenerationConfig(max_output_tokens=50))
    engine.close()
    report = engine.report
    assert report.calls == 2
    assert report.billed_calls == (4 if billed else 2)
    assert report.output_tokens == (16 if billed else 8)  # unanswered calls at the mean answer length (4)
    price = pricing.price_for("gemini-2.5-flash", pricing.DEFAULT_PRICES)
    assert report.cost == pytest.approx(price.cost(report.input_tokens, report.output_tokens))


def test_the_engine_reports_answered_requests_as_progress(capsys, monkeypatch):
    monkeypatch.setenv("TUNEKIT_PROGRESS", "lines")
    engine = Engine(_Transport(asyncio.TimeoutError()), EngineConfig(**FAST), seed=0)
    engine.generate([Prompt(f"q{i}") for i in range(20)])
    engine.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert lines[-1] == "progress: calls to gemini-2.5-flash 20/20 (100%)" and len(lines) == 10

"""The engine every backend shares: concurrency, rate limits, retries, timeouts, the response cache, cost.

A :class:`Backend` only knows how to send one request (or one batch, for local models and batch prediction) and
how to read the answer; it raises :class:`RetryableError` for what is worth another try. :class:`Engine` does the
rest, the same way for every backend, and is itself a :class:`ModelClient`:

- the prompts' cache keys are computed first; answers already in the cache are not asked again, and a prompt that
  appears twice is asked once;
- the rest go out through at most ``concurrency`` workers, each request paced by a :class:`RateLimiter` in
  requests and tokens per minute;
- what a backend reports as a :class:`RetryableError` (for Vertex, what ``vertex_jobs.is_transient`` calls
  transient: 408, 429, 500, 502, 503, 504, timeouts and dropped connections) is retried with exponential backoff
  and jitter; a ``Retry-After`` from the server is honoured, and on a 429 it holds every worker, not only the one
  told;
- every answer is appended to the cache the moment it arrives, so a killed run loses at most what was in flight;
- tokens, calls, retries, statuses and an estimated cost are counted in a :class:`RunReport`; a call that may
  have been billed without an answer (it timed out, or its connection dropped, after it was sent) is counted as
  billed, with estimated tokens (:func:`may_have_been_billed`);
- progress (answered requests) is reported through :mod:`tunekit.components.common.progress`.

:func:`dry_run` estimates tokens and cost without a single call.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tunekit.components.common import progress
from tunekit.components.common.vertex_jobs import backoff_delay
from tunekit.components.model_clients import pricing
from tunekit.components.model_clients.base import (
    FAILED,
    OK,
    STATUSES,
    Generation,
    GenerationConfig,
    ModelClient,
    Prompt,
)
from tunekit.components.model_clients.cache import ResponseCache, cache_key
from tunekit.components.model_clients.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryableError(Exception):
    """A failure worth another try: quota (429), a server error, a timeout, a dropped connection.

    Vertex backends raise it for what :func:`~tunekit.components.common.vertex_jobs.is_transient` calls
    transient.

    Args:
        message: What happened, for the row's error when the tries run out.
        status: The HTTP status, when there was one.
        retry_after_s: The server's ``Retry-After``, in seconds, when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds, or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Backend(abc.ABC):
    """One way to get answers from a model. The :class:`Engine` adds everything else.

    Attributes:
        name: The backend's name in reports (``vertex``, ``vertex_batch``, ``openai``, ``hf``, ``fake``).
        cache_namespace: The backend part of cache keys; backends that give the same answers share it.
        model: The model (or endpoint) name, part of cache keys and the key to the price table.
        max_batch: The most prompts one call takes (1 for online APIs).
        billing_multiplier: The share of the list price a call costs (0.5 for batch prediction).
        call_timeout_s: Overrides the engine's per-request timeout (None: the engine's; batch jobs take hours).
    """

    name: str = "abstract"
    cache_namespace: str = ""
    model: str = ""
    max_batch: int = 1
    billing_multiplier: float = 1.0
    call_timeout_s: float | None = None

    @abc.abstractmethod
    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Answers up to :attr:`max_batch` prompts, in order.

        Raises:
            RetryableError: When the whole call is worth another try. Anything else fails the prompts for good.
        """

    async def aclose(self) -> None:
        """Releases connections; called on the engine's loop."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the report says about the backend."""
        return {"backend": self.name, "model": self.model}


@dataclass
class EngineConfig:
    """How an :class:`Engine` sends requests.

    Attributes:
        concurrency: The most requests in flight at once.
        requests_per_minute: A client-side request budget (set it at or just under the quota); 0 for none.
        tokens_per_minute: A client-side token budget (input plus ``max_output_tokens``); 0 for none.
        burst_s: Seconds of unused budget that may be spent at once after an idle spell.
        timeout_s: Per-request timeout in seconds.
        max_attempts: Tries per request, the first included.
        initial_backoff_s: The first retry's nominal delay; it doubles each retry.
        max_backoff_s: The cap on one retry's delay.
    """

    concurrency: int = 16
    requests_per_minute: float = 0
    tokens_per_minute: float = 0
    burst_s: float = 1.0
    timeout_s: float = 120.0
    max_attempts: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def __post_init__(self):
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> EngineConfig:
        """Builds a config from plain data, rejecting unknown keys."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            from tunekit.components.common.errors import UserError

            raise UserError(f"unknown engine option(s) {unknown}; known: {sorted(known)}", field="engine")
        return cls(**values)


@dataclass
class RunReport:
    """Counts and costs of one :meth:`Engine.agenerate` run.

    Attributes:
        backend: The backend that answered.
        model: The model.
        prompts: Prompts asked.
        unique_prompts: Distinct requests among them.
        cache_hits: Distinct requests answered from the cache (nothing paid).
        calls: Calls sent that got an answer (billed), retries excluded.
        unanswered_billed: Calls that may have been billed without an answer: they timed out or their
            connection dropped after the request was sent (:func:`may_have_been_billed`); counted as billed.
        billed_calls: ``calls`` plus ``unanswered_billed``: the calls the provider may bill.
        attempts: Every call sent, retries included.
        retries: Calls sent again after a retryable failure.
        rate_limited: 429 answers received.
        timeouts: Calls that ran out of time.
        statuses: Prompts per generation status.
        input_tokens: Input tokens paid for in this run: the answers' and the ``unanswered_input_tokens``.
        output_tokens: Output tokens paid for in this run: the answers' and the ``unanswered_output_tokens``.
        unanswered_input_tokens: Estimated input tokens of the unanswered billed calls (about four characters a
            token).
        unanswered_output_tokens: Estimated output tokens of the unanswered billed calls: the run's mean answer
            length, or ``max_output_tokens`` when no answer came.
        cached_input_tokens: Input tokens of the answers taken from the cache (not paid again).
        cached_output_tokens: Output tokens of the answers taken from the cache.
        cost: Estimated dollars of this run's calls; None when the model has no price.
        elapsed_s: Wall-clock seconds.
        rate_wait_s: Seconds workers waited for the rate limiter.
    """

    backend: str = ""
    model: str = ""
    prompts: int = 0
    unique_prompts: int = 0
    cache_hits: int = 0
    calls: int = 0
    unanswered_billed: int = 0
    billed_calls: int = 0
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STATUSES})
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cached_output_tokens: int = 0
    unanswered_input_tokens: int = 0
    unanswered_output_tokens: int = 0
    cost: float | None = None
    elapsed_s: float = 0.0
    rate_wait_s: float = 0.0

    @property
    def requests_per_minute(self) -> float:
        """Calls answered per minute of wall-clock time."""
        return 60.0 * self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_metrics(self, prefix: str = "") -> dict[str, float]:
        """Flat numeric metrics for a KFP ``Metrics`` artifact."""
        out: dict[str, float] = {
            "prompts": self.prompts,
            "unique_prompts": self.unique_prompts,
            "cache_hits": self.cache_hits,
            "calls": self.calls,
            "unanswered_billed": self.unanswered_billed,
            "billed_calls": self.billed_calls,
            "attempts": self.attempts,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "timeouts": self.timeouts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cached_output_tokens": self.cached_output_tokens,
            "unanswered_input_tokens": self.unanswered_input_tokens,
            "unanswered_output_tokens": self.unanswered_output_tokens,
            "elapsed_s": round(self.elapsed_s, 3),
        }
        out.update({f"status_{k}": v for k, v in self.statuses.items()})
        if self.cost is not None:
            out["estimated_cost_usd"] = round(self.cost, 6)
        return {prefix + k: float(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """Everything, as JSON-ready data."""
        return {**dataclasses.asdict(self), "requests_per_minute": round(self.requests_per_minute, 2)}


@dataclass
class EngineResult:
    """One prompt's outcome with how it was obtained.

    Attributes:
        generation: The answer.
        key: The cache key.
        cached: Whether it came from the cache (of an earlier run, or a duplicate in this one).
        attempts: Calls made for it in this run.
    """

    generation: Generation
    key: str
    cached: bool = False
    attempts: int = 0


class _LoopThread:
    """An event loop on its own thread, so async clients (httpx pools) live across synchronous calls."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tunekit-engine", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class Engine(ModelClient):
    """Any :class:`Backend` behind the :class:`ModelClient` interface, with the shared machinery.

    Args:
        backend: Sends the requests.
        config: Concurrency, rate limits, retries and timeouts.
        cache: Where answers are kept across runs; None keeps nothing (duplicates in one run are still asked
            once).
        prices: Prices by model for the cost estimate (:func:`pricing.parse_price_table`); None for the defaults.
        batch_backend: A backend used instead when at least ``batch_threshold`` prompts miss the cache (Vertex
            batch prediction: cheaper, slower). It must share ``backend``'s cache namespace and model.
        batch_threshold: See ``batch_backend``.
        seed: Seed of the backoff jitter.

    Attributes:
        report: The :class:`RunReport` of the last run.
    """

    def __init__(
        self,
        backend: Backend,
        config: EngineConfig | None = None,
        cache: ResponseCache | None = None,
        prices: Mapping[str, pricing.Price] | None = None,
        *,
        batch_backend: Backend | None = None,
        batch_threshold: int = 0,
        seed: int | None = None,
    ):
        self.primary = backend
        self.batch_backend = batch_backend
        self.batch_threshold = batch_threshold
        self.config = config or EngineConfig()
        self.cache = cache
        self.prices = dict(prices) if prices is not None else dict(pricing.DEFAULT_PRICES)
        self.backend = backend.name
        self.limiter = RateLimiter(
            self.config.requests_per_minute, self.config.tokens_per_minute, burst_s=self.config.burst_s
        )
        self.report = RunReport(backend=backend.name, model=backend.model)
        self._rng = random.Random(seed)
        self._loop: _LoopThread | None = None

    # --- the ModelClient interface ---------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Generates one :class:`Generation` per prompt, in order (see :meth:`agenerate`)."""
        return [r.generation for r in self.run(prompts, config)]

    def run(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig | None = None,
        extras: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[EngineResult]:
        """Synchronous :meth:`agenerate`, on the engine's own event loop thread."""
        if self._loop is None:
            self._loop = _LoopThread()
        return self._loop.run(self.agenerate(prompts, config, extras))

    def close(self) -> None:
        """Closes the backends' connections, the loop and the cache segment."""
        if self._loop is not None:
            self._loop.run(self._aclose())
            self._loop.stop()
            self._loop = None
        if self.cache is not None:
            self.cache.close()

    async def _aclose(self) -> None:
        await self.primary.aclose()
        if self.batch_backend is not None:
            await self.batch_backend.aclose()

    # --- the run ---------------------------------------------------------------------------------------------

    async def agenerate(
        self,
        prompts: Sequence[Prompt],
        config: GenerationConfig | None = None,
        extras: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[EngineResult]:
        """Answers every prompt: from the cache, or through the backend with limits and retries.

        Args:
            prompts: What to ask.
            config: Decoding settings; :class:`GenerationConfig`'s defaults when None.
            extras: Per prompt, extra cache-key fields (a sample index), or None.

        Returns:
            One :class:`EngineResult` per prompt, in order; :attr:`report` holds the run's counts.
        """
        config = config or GenerationConfig()
        started = time.monotonic()
        extras = list(extras) if extras is not None else [None] * len(prompts)
        if len(extras) != len(prompts):
            raise ValueError("extras must have one entry per prompt")
        keys = [
            cache_key(self.primary.cache_namespace or self.primary.name, self.primary.model, config, p, e)
            for p, e in zip(prompts, extras, strict=True)
        ]
        report = RunReport(backend=self.primary.name, model=self.primary.model, prompts=len(prompts))
        self.report = report
        answers: dict[str, Generation] = {}
        from_cache: set[str] = set()
        todo: dict[str, Prompt] = {}
        for key, prompt in zip(keys, prompts, strict=True):
            if key in answers or key in todo:
                continue
            cached = self.cache.get(key) if self.cache is not None else None
            if cached is not None:
                answers[key] = cached
                from_cache.add(key)
            else:
                todo[key] = prompt
        report.unique_prompts = len(answers) + len(todo)
        report.cache_hits = len(from_cache)
        for key in from_cache:
            report.cached_input_tokens += answers[key].input_tokens
            report.cached_output_tokens += answers[key].output_tokens

        backend = self.primary
        if self.batch_backend is not None and self.batch_threshold and len(todo) >= self.batch_threshold:
            backend = self.batch_backend
            report.backend = backend.name
        attempts: collections.Counter[str] = collections.Counter()
        usage = _Usage()
        if todo:
            await self._dispatch(backend, todo, config, answers, attempts, report, usage)
        usage.settle(report)

        cost = 0.0
        priced = pricing.price_for(backend.model, self.prices)
        if priced is not None:
            cost = priced.cost(report.input_tokens, report.output_tokens) * backend.billing_multiplier
        report.cost = cost if priced is not None else None
        results = []
        seen: set[str] = set()
        for key in keys:
            generation = answers[key]
            duplicate = key in seen
            seen.add(key)
            results.append(
                EngineResult(
                    generation=dataclasses.replace(generation, candidates=list(generation.candidates)),
                    key=key,
                    cached=key in from_cache or duplicate,
                    attempts=0 if duplicate else attempts[key],
                )
            )
            report.statuses[generation.status] = report.statuses.get(generation.status, 0) + 1
        report.elapsed_s = time.monotonic() - started
        report.rate_wait_s = self.limiter.waited_s
        return results

    async def _dispatch(
        self,
        backend: Backend,
        todo: dict[str, Prompt],
        config: GenerationConfig,
        answers: dict[str, Generation],
        attempts: collections.Counter[str],
        report: RunReport,
        usage: _Usage,
    ) -> None:
        items = list(todo.items())
        size = max(1, backend.max_batch)
        groups: asyncio.Queue[list[tuple[str, Prompt]]] = asyncio.Queue()
        for start in range(0, len(items), size):
            groups.put_nowait(items[start : start + size])
        workers = min(self.config.concurrency, groups.qsize())
        label = f"calls to {backend.model or backend.name}"
        done = 0

        async def worker() -> None:
            nonlocal done
            while True:
                try:
                    group = groups.get_nowait()
                except asyncio.QueueEmpty:
                    return
                generations = await self._call_with_retries(backend, group, config, attempts, report, usage)
                for (key, _), generation in zip(group, generations, strict=True):
                    answers[key] = generation
                    if self.cache is not None:
                        self.cache.put(key, generation, {"backend": backend.name, "model": backend.model})
                done += len(group)
                progress.report(label, done, len(items))

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _call_with_retries(
        self,
        backend: Backend,
        group: list[tuple[str, Prompt]],
        config: GenerationConfig,
        attempts: collections.Counter[str],
        report: RunReport,
        usage: _Usage,
    ) -> list[Generation]:
        prompts = [p for _, p in group]
        input_estimate = sum(pricing.estimate_tokens(_prompt_chars(p)) for p in prompts)
        output_bound = config.max_output_tokens * config.candidate_count * len(prompts)
        # The token budget is charged with the worst case up front, then corrected from the real usage.
        estimate = input_estimate + output_bound
        timeout = backend.call_timeout_s if backend.call_timeout_s is not None else self.config.timeout_s
        error = ""
        for attempt in range(1, self.config.max_attempts + 1):
            await self.limiter.acquire(estimate if self.limiter.tokens_per_minute else 0)
            report.attempts += 1
            for key, _ in group:
                attempts[key] += 1
            try:
                if timeout:
                    generations = await asyncio.wait_for(backend.agenerate(prompts, config, timeout), timeout)
                else:
                    generations = await backend.agenerate(prompts, config, None)
            except asyncio.TimeoutError:
                report.timeouts += 1
                error = f"timed out after {timeout:g} s"
                wait = None
                usage.unanswered(len(prompts), input_estimate, output_bound)
            except RetryableError as exc:
                error = str(exc)
                wait = exc.retry_after_s
                if may_have_been_billed(exc):
                    usage.unanswered(len(prompts), input_estimate, output_bound)
                if exc.status == 429:
                    report.rate_limited += 1
                    if wait:
                        self.limiter.hold(wait)
            except Exception as exc:  # noqa: BLE001 (a backend's own failure: the prompts fail, the run goes on)
                logger.warning("%s call failed: %s", backend.name, exc)
                return [Generation(text="", status=FAILED, error=f"{type(exc).__name__}: {exc}") for _ in prompts]
            else:
                if len(generations) != len(prompts):
                    raise RuntimeError(f"{backend.name} returned {len(generations)} answers for {len(prompts)}")
                report.calls += 1
                used = 0
                for generation in generations:
                    if generation.status != FAILED:
                        report.input_tokens += generation.input_tokens
                        report.output_tokens += generation.output_tokens
                        used += generation.input_tokens + generation.output_tokens
                        usage.answered += 1
                if self.limiter.tokens_per_minute:
                    self.limiter.adjust(used - estimate)
                return generations
            if attempt < self.config.max_attempts:
                report.retries += 1
                delay = backoff_delay(attempt, self.config.initial_backoff_s, self.config.max_backoff_s, self._rng)
                await asyncio.sleep(max(delay, wait or 0.0))
        tries = f" after {self.config.max_attempts} attempts" if self.config.max_attempts > 1 else ""
        return [Generation(text="", status=FAILED, error=error + tries) for _ in prompts]


#: Transport errors raised before a request left this machine (nothing can have been billed): httpx's (and
#: httpx2's, google-genai's async client's when installed) failures to connect or to get a pooled connection.
_NOT_SENT = ("ConnectError", "ConnectTimeout", "PoolTimeout")


def may_have_been_billed(exc: BaseException) -> bool:
    """Whether a failed call may still be billed: it was sent, and no error answer came back.

    A timeout or a dropped connection after the request went out may have been processed (and billed) by the
    provider; an error answer (429, 5xx) or a failure to connect was not. A :class:`RetryableError` is judged by
    its status and by the transport error it was raised from.
    """
    if isinstance(exc, asyncio.TimeoutError):
        return True
    if getattr(exc, "status", None) is not None:
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        module = type(cause).__module__.split(".")[0]
        if module in ("httpx", "httpx2") and type(cause).__name__ in _NOT_SENT:
            return False
        cause = cause.__cause__ or cause.__context__
    return True


@dataclass
class _Usage:
    """One run's billed calls without an answer, settled into the :class:`RunReport` at the end."""

    answered: int = 0
    calls: int = 0
    prompts: int = 0
    input_tokens: int = 0
    output_bound: int = 0

    def unanswered(self, prompts: int, input_tokens: int, output_bound: int) -> None:
        self.calls += 1
        self.prompts += prompts
        self.input_tokens += input_tokens
        self.output_bound += output_bound

    def settle(self, report: RunReport) -> None:
        """Adds the unanswered billed calls to ``report`` (output tokens at the run's mean answer length)."""
        answered_output = report.output_tokens
        if self.answered:
            output = round(answered_output / self.answered * self.prompts)
        else:
            output = self.output_bound
        report.unanswered_billed = self.calls
        report.unanswered_input_tokens = self.input_tokens
        report.unanswered_output_tokens = output
        report.input_tokens += self.input_tokens
        report.output_tokens += output
        report.billed_calls = report.calls + self.calls


def _prompt_chars(prompt: Prompt) -> str:
    return "\n".join(part for part in (prompt.system, *(text for _, text in prompt.history), prompt.text) if part)


@dataclass
class DryRunEstimate:
    """What a run would send and cost, estimated without a call.

    Attributes:
        backend: The backend that would answer.
        model: The model.
        prompts: Prompts given.
        unique_prompts: Distinct requests among them.
        cached: Distinct requests the cache already answers (free).
        to_send: Requests that would be sent.
        input_tokens: Estimated input tokens of the requests to send (about four characters a token).
        max_output_tokens: Output tokens if every answer used ``max_output_tokens`` (an upper bound).
        expected_output_tokens: Output tokens at ``expected_output_tokens`` per answer, when given.
        cost_upper_bound: Dollars at the upper bound; None when the model has no price.
        cost_expected: Dollars at the expected output length; None when unknown.
    """

    backend: str
    model: str
    prompts: int
    unique_prompts: int
    cached: int
    to_send: int
    input_tokens: int
    max_output_tokens: int
    expected_output_tokens: int | None
    cost_upper_bound: float | None
    cost_expected: float | None

    def to_metrics(self, prefix: str = "dry_run_") -> dict[str, float]:
        """Flat numeric metrics (unknown values left out)."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if isinstance(v, (int, float))}
        return {prefix + k: float(v) for k, v in values.items() if v is not None}


def dry_run(
    engine: Engine,
    prompts: Sequence[Prompt],
    config: GenerationConfig | None = None,
    *,
    expected_output_tokens: int | None = None,
    extras: Sequence[Mapping[str, Any] | None] | None = None,
) -> DryRunEstimate:
    """Estimates the tokens and cost of ``engine.generate(prompts, config)`` without calling the model.

    Answers already in the cache count as free; the batch backend (and its discount) is assumed when the run
    would pick it.

    Args:
        engine: The engine that would run.
        prompts: What would be asked.
        config: Decoding settings.
        expected_output_tokens: A typical answer's length, for a likelier cost than the upper bound.
        extras: Per prompt, extra cache-key fields, as for :meth:`Engine.agenerate`.
    """
    config = config or GenerationConfig()
    extras = list(extras) if extras is not None else [None] * len(prompts)
    primary = engine.primary
    unique: dict[str, Prompt] = {}
    for prompt, extra in zip(prompts, extras, strict=True):
        unique.setdefault(
            cache_key(primary.cache_namespace or primary.name, primary.model, config, prompt, extra), prompt
        )
    cached = {k for k in unique if engine.cache is not None and k in engine.cache}
    send = [p for k, p in unique.items() if k not in cached]
    backend = primary
    if engine.batch_backend is not None and engine.batch_threshold and len(send) >= engine.batch_threshold:
        backend = engine.batch_backend
    input_tokens = sum(pricing.estimate_tokens(_prompt_chars(p)) for p in send)
    upper = len(send) * config.max_output_tokens * config.candidate_count
    expected = (
        len(send) * min(expected_output_tokens, config.max_output_tokens) * config.candidate_count
        if expected_output_tokens is not None
        else None
    )
    price = pricing.price_for(backend.model, engine.prices)

    def cost(output_tokens: int | None) -> float | None:
        if price is None or output_tokens is None:
            return None
        return price.cost(input_tokens, output_tokens) * backend.billing_multiplier

    return DryRunEstimate(
        backend=backend.name,
        model=backend.model,
        prompts=len(prompts),
        unique_prompts=len(unique),
        cached=len(cached),
        to_send=len(send),
        input_tokens=input_tokens,
        max_output_tokens=upper,
        expected_output_tokens=expected,
        cost_upper_bound=cost(upper),
        cost_expected=cost(expected),
    )


# Re-exported so callers import the engine's vocabulary from one module.
__all__ = [
    "OK",
    "Backend",
    "DryRunEstimate",
    "Engine",
    "EngineConfig",
    "EngineResult",
    "RetryableError",
    "RunReport",
    "backoff_delay",
    "dry_run",
    "may_have_been_billed",
    "parse_retry_after",
]

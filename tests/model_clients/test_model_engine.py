"""The model engine: rate limiter, cache, retries, timeouts, cost, dry run; every backend against its fake."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from fake_openai import FakeOpenAI
from fake_vertex import FakeAnswer, FakeVertex, loopback_only

from tunekit.components.model_clients import pricing
from tunekit.components.model_clients.backends import ClientBackend, VertexOnlineBackend, make_engine
from tunekit.components.model_clients.base import (
    BLOCKED,
    EMPTY,
    FAILED,
    OK,
    TRUNCATED,
    FakeClient,
    Generation,
    GenerationConfig,
    Prompt,
)
from tunekit.components.model_clients.batch import LocalGcsIO, VertexBatchBackend
from tunekit.components.model_clients.cache import ResponseCache, cache_key
from tunekit.components.model_clients.engine import Engine, EngineConfig, dry_run, parse_retry_after
from tunekit.components.model_clients.openai_compat import OpenAICompatBackend
from tunekit.components.model_clients.ratelimit import RateLimiter

PROJECT, LOCATION = "test-project", "us-central1"
FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture
def loopback(monkeypatch):
    yield from loopback_only(monkeypatch)


def _vertex_engine(fake, tmp_path=None, **config) -> Engine:
    backend = VertexOnlineBackend("gemini-2.5-flash", PROJECT, LOCATION, client=fake.genai_client())
    cache = ResponseCache(str(tmp_path / "cache")) if tmp_path is not None else None
    return Engine(backend, EngineConfig(**{**FAST, **config}), cache, seed=0)


# --- rate limiter --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rate_limiter_paces_requests_and_tokens():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=600, clock=clock, burst_s=0)
    assert [round(limiter.reserve(), 3) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]

    tokens = RateLimiter(tokens_per_minute=6000, clock=clock, burst_s=0)  # 100 tokens a second
    assert tokens.reserve(50) == 0.0
    assert round(tokens.reserve(50), 3) == 0.5
    tokens.adjust(-50)  # the first request used less than reserved: the budget comes back
    assert round(tokens.reserve(10), 3) == 0.5


def test_rate_limiter_burst_after_idle_and_hold():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock, burst_s=2)
    assert limiter.reserve() == 0.0
    clock.now += 10  # idle: at most two seconds of budget saved
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == pytest.approx(1.0)
    limiter.hold(5)
    assert limiter.reserve() >= 5.0


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_default_prices_are_dated_and_batch_is_half_the_online_price():
    assert pricing.DEFAULT_PRICES_AS_OF and "pricing page" in pricing.__doc__
    assert pricing.BATCH_DISCOUNT == 0.5 and VertexBatchBackend.billing_multiplier == pricing.BATCH_DISCOUNT
    prices = pricing.parse_price_table({})
    for model in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"):
        online = pricing.estimate_cost(model, 1_000_000, 100_000, prices)
        assert online > 0
        assert pricing.estimate_cost(model, 1_000_000, 100_000, prices, batch=True) == pytest.approx(online / 2)
    assert pricing.estimate_cost("gemini-2.5-flash", 1_000_000, 1_000_000, prices) == pytest.approx(0.30 + 2.50)


# --- cache ---------------------------------------------------------------------------------------------------


def test_cache_key_covers_backend_model_config_and_prompt():
    base = cache_key("vertex", "m", GenerationConfig(), Prompt("hi"))
    assert base == cache_key("vertex", "m", GenerationConfig(), Prompt("hi"))
    others = {
        cache_key("openai", "m", GenerationConfig(), Prompt("hi")),
        cache_key("vertex", "m2", GenerationConfig(), Prompt("hi")),
        cache_key("vertex", "m", GenerationConfig(temperature=0.5), Prompt("hi")),
        cache_key("vertex", "m", GenerationConfig(), Prompt("hi", system="s")),
        cache_key("vertex", "m", GenerationConfig(), Prompt("hi", history=(("user", "a"),))),
        cache_key("vertex", "m", GenerationConfig(), Prompt("hi"), {"sample": 1}),
    }
    assert base not in others and len(others) == 6


def test_cache_survives_reopen_skips_torn_lines_and_never_stores_failures(tmp_path):
    directory = str(tmp_path / "c")
    with ResponseCache(directory) as cache:
        assert cache.put("k1", Generation("one", input_tokens=3, output_tokens=1))
        assert cache.put("k2", Generation("", status=BLOCKED, error="safety"))
        assert not cache.put("k3", Generation("", status=FAILED, error="503"))
    # A killed writer leaves half a line at the end of its own segment.
    with open(os.path.join(directory, "responses-torn.jsonl"), "w") as handle:
        handle.write('{"key": "k4", "text": "fine"}\n{"key": "k5", "te')
    cache = ResponseCache(directory)
    assert cache.get("k1") == Generation("one", input_tokens=3, output_tokens=1)
    assert cache.get("k2").status == BLOCKED
    assert cache.get("k3") is None and cache.get("k5") is None
    assert cache.get("k4").text == "fine"
    assert cache.skipped_lines == 1 and len(cache) == 3
    cache.put("k6", Generation("six"))
    cache.close()
    assert len(os.listdir(directory)) == 3  # each open writes its own segment
    assert ResponseCache(directory).get("k6").text == "six"


def test_cache_rotates_segments(tmp_path):
    cache = ResponseCache(str(tmp_path), segment_records=2)
    for i in range(5):
        cache.put(f"k{i}", Generation(str(i)))
    cache.close()
    assert len(os.listdir(tmp_path)) == 3
    assert len(ResponseCache(str(tmp_path))) == 5


def test_gcs_cache_without_the_mount_goes_through_the_storage_client(loopback, tmp_path, monkeypatch):
    from tunekit.components.common import uris

    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "no-gcs-mount"))  # as off Vertex: no /gcs
    root = tmp_path / "gcs"
    with FakeVertex(gcs_root=str(root)) as fake:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
        uri = "gs://bucket/run/step/response_cache"
        config = GenerationConfig()
        keys = [cache_key("fake", "m", config, Prompt(t)) for t in "abc"]
        cache = ResponseCache(uri, segment_records=2)
        assert cache.segment_records == 2 and not cache.directory.startswith(str(root))
        for key, text in zip(keys, "ABC", strict=True):
            cache.put(key, Generation(text=text))
        # Two answers filled a segment: it was uploaded. The third is only on local disk until close: a
        # container that disappears now loses it (at most segment_records answers plus those in flight).
        objects = sorted((root / "bucket" / "run" / "step" / "response_cache").glob("responses-*.jsonl"))
        assert [len(o.read_text().splitlines()) for o in objects] == [2]
        crashed = ResponseCache(uri)
        assert crashed.loaded == 2 and crashed.get(keys[2]) is None
        cache.close()
        assert len(list((root / "bucket" / "run" / "step" / "response_cache").glob("responses-*.jsonl"))) == 2
        reopened = ResponseCache(uri)
        assert reopened.loaded == 3 and [reopened.get(k).text for k in keys] == ["A", "B", "C"]
        assert reopened.segment_records == 100  # the Cloud Storage default
        # The engine on top: a re-run answers everything from the gs:// cache and pays for nothing.
        answers = {"x": "ex", "y": "why"}
        first = make_engine("fake", "m", options={"answers": answers}, cache_dir="gs://bucket/shared")
        assert first.generate_texts(["x", "y"]) == ["ex", "why"]
        first.close()
        again = make_engine("fake", "m", options={"answers": {}}, cache_dir="gs://bucket/shared")
        assert again.generate_texts(["x", "y"]) == ["ex", "why"]
        assert again.report.cache_hits == 2 and again.report.calls == 0
        again.close()
        assert fake.counters["gcs_requests"] > 0


# --- engine on the scripted fake -------------------------------------------------------------------------------


def test_engine_dedupes_caches_and_counts(tmp_path):
    fake = FakeClient({"a": "A", "b": "B"})
    engine = Engine(ClientBackend(fake, "fake", "scripted"), cache=ResponseCache(str(tmp_path)))
    prompts = [Prompt("a"), Prompt("b"), Prompt("a"), Prompt("nothing")]
    results = engine.run(prompts)
    assert [r.generation.text for r in results] == ["A", "B", "A", ""]
    assert [r.generation.status for r in results] == [OK, OK, OK, EMPTY]
    assert [r.cached for r in results] == [False, False, True, False]
    assert len(fake.calls) == 3  # the duplicate was asked once
    assert engine.report.unique_prompts == 3 and engine.report.statuses[OK] == 3
    engine.close()

    again = Engine(ClientBackend(fake, "fake", "scripted"), cache=ResponseCache(str(tmp_path)))
    assert again.generate_texts(["a", "b", "nothing"]) == ["A", "B", ""]
    assert len(fake.calls) == 3 and again.report.calls == 0 and again.report.cache_hits == 3
    again.close()


def test_engine_batches_for_local_backends():
    fake = FakeClient(lambda p: p.text.upper())
    batches = []
    original = fake.generate
    fake.generate = lambda prompts, config=None: batches.append(len(prompts)) or original(prompts, config)
    engine = Engine(ClientBackend(fake, "hf", "tiny", max_batch=4), EngineConfig(concurrency=1))
    assert engine.generate_texts([f"p{i}" for i in range(10)]) == [f"P{i}" for i in range(10)]
    assert batches == [4, 4, 2]
    engine.close()


# --- Vertex online ---------------------------------------------------------------------------------------------


def test_vertex_statuses_tokens_and_cost(loopback, tmp_path):
    answers = {
        "plain": "a short answer",
        "unsafe": FakeAnswer("", finish_reason="SAFETY"),
        "long": "w " * 40,
        "silent": "",
    }
    with FakeVertex(responder=lambda text: answers[text]) as fake:
        engine = _vertex_engine(fake, tmp_path, concurrency=4)
        results = engine.generate([Prompt(t) for t in answers], GenerationConfig(max_output_tokens=10))
        assert [r.status for r in results] == [OK, BLOCKED, TRUNCATED, EMPTY]
        report = engine.report
        assert report.calls == 4 and report.input_tokens == 4 and report.output_tokens == 3 + 10
        price = pricing.DEFAULT_PRICES["gemini-2.5-flash"]
        assert report.cost == pytest.approx(price.cost(4, 13))
        assert report.to_metrics()["estimated_cost_usd"] > 0
        engine.close()


def test_vertex_retries_honour_retry_after_and_fail_only_the_stubborn_prompt(loopback):
    with FakeVertex(retry_after_s=0.3, quota_qpm=60, quota_burst_s=1) as fake:
        engine = _vertex_engine(fake, concurrency=1)
        started = time.monotonic()
        assert engine.generate_texts(["x", "y"]) == ["echo: x", "echo: y"]
        # One request a second: the second one got a 429 and waited at least the Retry-After.
        assert engine.report.rate_limited >= 1 and time.monotonic() - started >= 0.3
        engine.close()
    with FakeVertex() as fake:
        fake.fail_next(2, status=503)
        fake.fail_next(1, status=500)
        engine = _vertex_engine(fake, concurrency=1, max_attempts=3)
        results = engine.generate([Prompt("first"), Prompt("second")])
        assert results[0].status == FAILED and "after 3 attempts" in results[0].error
        assert results[1].text == "echo: second"
        assert engine.report.retries == 2 and engine.report.attempts == 4
        engine.close()
    with FakeVertex() as fake:
        fake.fail_next(1, status=400, message="bad request")
        engine = _vertex_engine(fake)
        (result,) = engine.generate([Prompt("x")])
        assert result.status == FAILED and "400" in result.error and engine.report.retries == 0
        engine.close()


def test_vertex_timeout_and_dropped_connections_are_retried(loopback):
    with FakeVertex() as fake:
        fake.stall_next(1, 2.0)
        engine = _vertex_engine(fake, timeout_s=0.3)
        assert engine.generate_texts(["slow"]) == ["echo: slow"]
        assert engine.report.timeouts == 1 and engine.report.retries == 1
        engine.close()
    with FakeVertex(drop_rate=0.3, seed=1) as fake:
        engine = _vertex_engine(fake, concurrency=4, max_attempts=10)
        results = engine.generate([Prompt(f"p{i}") for i in range(30)])
        assert all(r.status == OK for r in results)
        stats = fake.stats()
        assert stats["drops"] > 0 and stats["duplicate_billed"] == 0 and stats["billed_calls"] == 30
        engine.close()


def test_rate_limit_keeps_a_run_under_the_quota(loopback):
    with FakeVertex(quota_qpm=1200, quota_burst_s=0.25) as fake:
        engine = _vertex_engine(fake, concurrency=8, requests_per_minute=1200, burst_s=0)
        started = time.monotonic()
        assert len(engine.generate([Prompt(f"p{i}") for i in range(40)])) == 40
        elapsed = time.monotonic() - started
        assert fake.stats().get("quota_429", 0) == 0
        assert 1.8 <= elapsed < 4.0  # 40 requests at 20 a second
        engine.close()


def test_dry_run_sends_nothing_and_counts_the_cache(loopback, tmp_path):
    with FakeVertex() as fake:
        engine = _vertex_engine(fake, tmp_path)
        config = GenerationConfig(max_output_tokens=100)
        engine.generate([Prompt("already asked")], config)
        before = len(fake.requests)
        prompts = [Prompt("already asked"), Prompt("a new question here"), Prompt("a new question here")]
        estimate = dry_run(engine, prompts, config, expected_output_tokens=10)
        assert len(fake.requests) == before
        assert (estimate.unique_prompts, estimate.cached, estimate.to_send) == (2, 1, 1)
        assert estimate.max_output_tokens == 100 and estimate.expected_output_tokens == 10
        assert estimate.input_tokens == pricing.estimate_tokens("a new question here")
        assert 0 < estimate.cost_expected < estimate.cost_upper_bound
        engine.close()


# --- OpenAI-compatible -----------------------------------------------------------------------------------------


def test_openai_backend_statuses_retries_and_api_key(loopback, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sekret")
    answers = {"hi": "hello there", "long": "w " * 50, "bad": ("", "content_filter")}
    with FakeOpenAI(responder=lambda t: answers.get(t, ""), api_key="sekret", retry_after_s=0.2) as fake:
        fake.fail_next(1, status=429)
        backend = OpenAICompatBackend("m", fake.url + "/v1", api_key_env="TEST_OPENAI_KEY")
        engine = Engine(backend, EngineConfig(concurrency=1, **FAST))
        results = engine.generate(
            [Prompt("hi", system="be brief"), Prompt("long"), Prompt("bad"), Prompt("none")],
            GenerationConfig(max_output_tokens=8),
        )
        assert [r.status for r in results] == [OK, TRUNCATED, BLOCKED, EMPTY]
        assert results[0].text == "hello there" and results[0].input_tokens == 3
        assert engine.report.rate_limited == 1
        first = fake.requests[0][2]
        assert first["messages"][0] == {"role": "system", "content": "be brief"} and first["max_tokens"] == 8
        engine.close()

        unauthorised = Engine(OpenAICompatBackend("m", fake.url + "/v1", api_key_env=""), EngineConfig(**FAST))
        (result,) = unauthorised.generate([Prompt("hi")])
        assert result.status == FAILED and "401" in result.error
        unauthorised.close()


def test_openai_backend_with_faults_completes_without_duplicate_billing(loopback):
    with FakeOpenAI(fault_rate=0.2, drop_rate=0.1, seed=3) as fake:
        engine = make_engine(
            "openai",
            "m",
            options={"base_url": fake.url + "/v1", "api_key_env": ""},
            engine_options={"concurrency": 8, "max_attempts": 12, **FAST},
        )
        results = engine.generate([Prompt(f"q{i}") for i in range(60)])
        assert all(r.status == OK for r in results)
        stats = fake.stats()
        assert stats["faults"] + stats["drops"] > 0
        assert stats["billed_calls"] == 60 and stats["duplicate_billed"] == 0
        engine.close()


# --- Vertex batch prediction -----------------------------------------------------------------------------------


def test_batch_backend_runs_a_job_and_reattaches_after_a_restart(loopback, tmp_path):
    root = str(tmp_path / "gcs")
    state = str(tmp_path / "out" / "batch_state.json")
    answers = {"x": "ex", "y": FakeAnswer("", finish_reason="SAFETY"), "z": "zed"}
    with FakeVertex(responder=lambda t: answers[t], gcs_root=root, polls_to_finish=3) as fake:

        def backend(**kwargs):
            return VertexBatchBackend(
                "gemini-2.5-flash",
                PROJECT,
                LOCATION,
                staging_uri="gs://bucket/stage",
                state_path=state,
                client=fake.genai_client(),
                io=LocalGcsIO(root),
                poll_interval_s=0.01,
                **kwargs,
            )

        prompts = [Prompt("x"), Prompt("y", system="sys"), Prompt("z")]
        # The first attempt gives up waiting (a step killed while the job runs); its job name is kept.
        first = backend(max_wait_s=0)
        with pytest.raises(TimeoutError):
            first.run_job(prompts, GenerationConfig())
        (state_file,) = glob.glob(str(tmp_path / "out" / "batch_state-*.json"))  # one file per job
        assert len(first.created_jobs) == 1

        second = backend()
        engine = Engine(second, cache=ResponseCache(str(tmp_path / "out")))
        results = engine.generate(prompts)
        assert [r.status for r in results] == [OK, BLOCKED, OK]
        assert [r.text for r in results] == ["ex", "", "zed"]
        assert second.created_jobs == [] and len(fake.batch_jobs) == 1  # re-attached, not paid twice
        assert not os.path.exists(state_file)
        (job,) = fake.batch_jobs.values()
        assert job["model"].endswith("publishers/google/models/gemini-2.5-flash")
        price = pricing.DEFAULT_PRICES["gemini-2.5-flash"]
        report = engine.report
        assert report.backend == "vertex_batch"
        assert report.cost == pytest.approx(price.cost(report.input_tokens, report.output_tokens) * 0.5)
        engine.close()


def test_make_engine_switches_to_batch_above_the_threshold(loopback, tmp_path, monkeypatch):
    root = str(tmp_path / "gcs")
    with FakeVertex(gcs_root=root, polls_to_finish=1) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        engine = make_engine(
            "vertex",
            "gemini-2.5-flash",
            options={
                "project": PROJECT,
                "location": LOCATION,
                "staging_uri": "gs://bucket/stage",
                "batch_threshold": 3,
                "poll_interval_s": 0.01,
            },
            cache_dir=str(tmp_path / "cache"),
        )
        engine.batch_backend.io = LocalGcsIO(root)
        assert engine.generate_texts(["a"]) == ["echo: a"]
        assert engine.report.backend == "vertex" and not fake.batch_jobs
        assert engine.generate_texts(["a", "b", "c", "d"]) == ["echo: a", "echo: b", "echo: c", "echo: d"]
        # "a" came from the cache; the three others were one batch job.
        assert engine.report.backend == "vertex_batch" and engine.report.cache_hits == 1
        assert len(fake.batch_jobs) == 1
        engine.close()


def test_batch_state_next_to_a_gs_cache_lets_a_retried_step_reattach(loopback, tmp_path, monkeypatch):
    """A gs:// cache without the /gcs mount: the job's state is a Cloud Storage object, so a new container finds it."""
    root = str(tmp_path / "gcs")
    cache = "gs://bucket/run/step/response_cache"
    folder = os.path.join(root, "bucket/run/step/response_cache")
    with FakeVertex(gcs_root=root, polls_to_finish=3) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)

        def engine():
            return make_engine(
                "vertex_batch",
                "gemini-2.5-flash",
                options={
                    "project": PROJECT,
                    "location": LOCATION,
                    "staging_uri": "gs://bucket/stage",
                    "poll_interval_s": 0.01,
                },
                engine_options={"max_attempts": 2, **FAST},
                cache_dir=cache,
            )

        texts = ["a", "b", "c"]
        # The first step is "killed" while the job runs: it gives up waiting (both attempts); the state stays.
        first = engine()
        assert first.primary.state_path == cache + "/batch_state.json"
        first.primary.max_wait_s = 0
        assert [r.status for r in first.generate([Prompt(t) for t in texts])] == [FAILED] * 3
        first.close()
        assert len(first.primary.created_jobs) == 1  # the second attempt re-attached already
        (state_file,) = glob.glob(os.path.join(folder, "batch_state-*.json"))
        with open(state_file, encoding="utf-8") as handle:
            state = json.load(handle)
        assert state_file.endswith(f"batch_state-{state['fingerprint']}.json")
        assert state["job_name"] == first.primary.created_jobs[0]
        uploads = [r for r in fake.requests if r[0] == "POST" and "/upload/storage/v1/b/bucket/o" in r[1]]
        assert uploads, "the state went through the storage client"

        # The retried step (a fresh process would have no local files either) re-attaches and gets the rows.
        second = engine()
        assert second.generate_texts(texts) == ["echo: a", "echo: b", "echo: c"]
        second.close()
        assert second.primary.created_jobs == [] and len(fake.batch_jobs) == 1
        creates = [
            r for r in fake.requests if r[0] == "POST" and r[1].split("?")[0].endswith("/batchPredictionJobs")
        ]
        assert len(creates) == 1
        assert not os.path.exists(state_file)  # the finished job's state is deleted
        # A third run pays nothing: the answers are in the gs:// cache.
        third = engine()
        assert third.generate_texts(texts) == ["echo: a", "echo: b", "echo: c"]
        assert third.report.cache_hits == 3 and len(fake.batch_jobs) == 1
        third.close()


# --- a run killed with SIGKILL pays again for at most what was in flight -----------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from tunekit.components.model_clients.backends import make_engine
    from tunekit.components.model_clients.base import Prompt
    url, cache, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = make_engine("openai", "m", options={"base_url": url + "/v1", "api_key_env": ""},
                         engine_options={"concurrency": concurrency}, cache_dir=cache)
    results = engine.generate([Prompt(f"row {i}") for i in range(n)])
    print(sum(r.status == "ok" for r in results), engine.report.calls, flush=True)
    engine.close()
    """
)


def test_sigkill_midway_then_restart_pays_at_most_prompts_plus_concurrency(loopback, tmp_path):
    n, concurrency = 80, 4
    cache = str(tmp_path / "cache")
    with FakeOpenAI(latency_s=0.05) as fake:
        args = [sys.executable, "-c", _CHILD, fake.url, cache, str(n), str(concurrency)]
        child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while fake.stats().get("billed_calls", 0) < n // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_at = fake.stats()["billed_calls"]
        assert 0 < killed_at < n
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
        ok, calls = map(int, done.stdout.split())
        assert ok == n
        billed = fake.stats()["billed_calls"]
        assert billed <= n + concurrency
        assert calls <= n - killed_at + concurrency
        rows = [
            json.loads(line) for f in os.listdir(cache) for line in open(os.path.join(cache, f)) if line.strip()
        ]
        assert len({r["key"] for r in rows}) == n


def test_batch_output_with_fields_the_sdk_does_not_model_is_read(loopback, tmp_path):
    # Issue 14, item 6: the batch job is paid for before its output is read; a field google-genai does not model
    # (a newer service version) must not fail the read. The SDK strips such fields from online answers.
    root = str(tmp_path / "gcs")
    with FakeVertex(
        responder=lambda text: text.upper(), gcs_root=root, polls_to_finish=1, unmodelled_fields=True
    ) as fake:
        backend = VertexBatchBackend(
            "gemini-2.5-flash",
            PROJECT,
            LOCATION,
            staging_uri="gs://bucket/stage",
            state_path=str(tmp_path / "out" / "batch_state.json"),
            client=fake.genai_client(),
            io=LocalGcsIO(root),
            poll_interval_s=0.01,
        )
        results = backend.run_job([Prompt("a"), Prompt("b")], GenerationConfig())
    assert [(r.status, r.text) for r in results] == [(OK, "A"), (OK, "B")]

"""vertex_jobs: one transient error, create once, re-attach after a kill, bounded poll errors, clear failures.

The protocol is tested on a scripted in-memory service first (so that every branch is reached deterministically),
then against the offline fakes of the REST APIs through the real SDK clients (batch jobs through google-genai,
long-running operations through aiplatform's REST transport).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest
import requests
from fake_vertex import FakeVertex, loopback_only
from fake_vertex_pipelines import LOCATION, PROJECT, serve_fake_pipelines
from google.api_core import exceptions as core
from google.genai import errors as genai_errors

from tunekit.components.common import vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state

KIND = vertex_jobs.JobKind("Test job", frozenset({"DONE"}), frozenset({"FAILED", "CANCELLED"}))
NO_WAIT = {"sleep": lambda s: None}


class Crash(Exception):
    """Stands for the step's pod dying."""


def genai_error(code: int) -> genai_errors.APIError:
    return genai_errors.APIError(code, {"error": {"code": code, "message": f"injected {code}", "status": "X"}})


class Service:
    """A scripted job service: a job goes through ``states`` one poll at a time; errors are injected per call."""

    def __init__(self, states=("RUNNING", "DONE")):
        self.states = list(states)
        self.jobs: dict[str, SimpleNamespace] = {}
        self.calls: list[str] = []
        self.errors: dict[str, list[BaseException]] = {"create": [], "get": [], "find": []}
        self.created_but_lost = 0  # create calls that go through but answer an error

    def _raise(self, call: str) -> None:
        self.calls.append(call)
        if self.errors[call]:
            raise self.errors[call].pop(0)

    def create(self, request_id: str) -> SimpleNamespace:
        self.calls.append("create")
        name = f"jobs/{len(self.jobs) + 1}"
        job = SimpleNamespace(name=name, state="PENDING", error=None, request_id=request_id, polls=0)
        job.states = list(self.states)  # this job's script: later changes to ``states`` are for new jobs
        if self.errors["create"]:
            error = self.errors["create"].pop(0)
            if self.created_but_lost:
                self.created_but_lost -= 1
                self.jobs[name] = job
            raise error
        self.jobs[name] = job
        return SimpleNamespace(**vars(job))

    def get(self, name: str) -> SimpleNamespace:
        self._raise("get")
        if name not in self.jobs:
            raise core.NotFound(f"{name} not found")
        job = self.jobs[name]
        job.state = job.states[min(job.polls, len(job.states) - 1)]
        job.polls += 1
        return SimpleNamespace(**vars(job))

    def find(self, request_id: str) -> SimpleNamespace | None:
        self._raise("find")
        return next((SimpleNamespace(**vars(j)) for j in self.jobs.values() if j.request_id == request_id), None)

    def start(self, state_path, **kwargs):
        kwargs.setdefault("find", self.find)
        return vertex_jobs.create_or_attach(
            state_path, kwargs.pop("kind", KIND), get=self.get, create=self.create, **kwargs, **NO_WAIT
        )

    def wait(self, started, state_path="", **kwargs):
        return vertex_jobs.wait_for(
            started.job,
            lambda: self.get(started.job.name),
            kwargs.pop("kind", KIND),
            poll_interval_s=0.0,
            state_path=state_path,
            resumed=started.resumed,
            **kwargs,
            **NO_WAIT,
        )


@pytest.fixture
def state_path(tmp_path):
    return str(tmp_path / "out" / "state.json")


# --- one transient error -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (genai_error(429), True),
        (genai_error(500), True),
        (genai_error(503), True),
        (genai_error(504), True),
        (genai_error(400), False),
        (genai_error(404), False),
        (genai_error(409), False),
        (core.TooManyRequests("quota"), True),
        (core.ResourceExhausted("quota"), True),
        (core.InternalServerError("boom"), True),
        (core.BadGateway("bad gateway"), True),
        (core.ServiceUnavailable("unavailable"), True),
        (core.DeadlineExceeded("deadline"), True),
        (core.from_http_status(408, "request timeout"), True),
        (core.NotFound("missing"), False),
        (core.Conflict("exists"), False),
        (core.InvalidArgument("bad"), False),
        (core.PermissionDenied("no"), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (requests.ConnectionError("reset"), True),
        (requests.exceptions.ChunkedEncodingError("cut"), True),
        (requests.Timeout("slow"), True),
        (ValueError("a bug"), False),
        (TimeoutError("our own timeout"), False),
    ],
)
def test_is_transient_is_one_definition_for_both_sdks(error, transient):
    assert vertex_jobs.is_transient(error) is transient


def test_backoff_grows_with_jitter_and_a_cap():
    delays = [vertex_jobs.backoff_delay(attempt, 1.0, 8.0) for attempt in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(8.0, 2 ** (attempt - 1))
        assert nominal / 2 <= delay <= nominal


def test_state_names_of_both_sdks():
    from google.cloud.aiplatform_v1 import PipelineState
    from google.genai import types

    assert vertex_jobs.state_name(types.JobState.JOB_STATE_RUNNING) == "JOB_STATE_RUNNING"
    assert vertex_jobs.state_name(PipelineState.PIPELINE_STATE_FAILED) == "PIPELINE_STATE_FAILED"
    assert vertex_jobs.state_name(None) == "STATE_UNSPECIFIED"


# --- create once -----------------------------------------------------------------------------------------------


def test_create_once_then_a_second_call_reattaches(state_path):
    service = Service()
    first = service.start(state_path, inputs={"data": "gs://b/d"}, fields={"project": "p"})
    assert not first.resumed and service.calls == ["create"]
    state = read_state(state_path)
    assert state == {"data": "gs://b/d", "project": "p", "request_id": first.job.request_id, "job_name": "jobs/1"}
    assert service.wait(first, state_path).state == "DONE"

    second = service.start(state_path, inputs={"data": "gs://b/d"})
    assert second.resumed and second.job.name == "jobs/1"
    assert service.calls.count("create") == 1 and len(service.jobs) == 1


def test_the_request_id_is_on_disk_before_the_create_call(state_path):
    service = Service()

    def create(request_id):
        assert read_state(state_path)["request_id"] == request_id  # written first
        return service.create(request_id)

    vertex_jobs.create_or_attach(state_path, KIND, get=service.get, create=create, find=service.find, **NO_WAIT)


def test_kill_between_create_and_writing_the_name_finds_the_job(state_path):
    service = Service()

    def create_then_die(request_id):
        service.create(request_id)
        raise Crash()  # the create call got through; the pod died before the job's name was written

    with pytest.raises(Crash):
        vertex_jobs.create_or_attach(
            state_path, KIND, get=service.get, create=create_then_die, find=service.find, **NO_WAIT
        )
    assert "job_name" not in read_state(state_path)

    again = service.start(state_path)
    assert again.resumed and again.job.name == "jobs/1"
    assert service.calls.count("create") == 1
    assert read_state(state_path)["job_name"] == "jobs/1"


def test_kill_between_create_and_wait_reattaches_by_name(state_path):
    service = Service(states=("RUNNING", "RUNNING", "DONE"))
    service.start(state_path)  # ... and the step dies before it waits
    again = service.start(state_path)
    assert again.resumed and service.calls.count("create") == 1 and "find" not in service.calls
    assert service.wait(again, state_path).state == "DONE"


@pytest.mark.parametrize("got_through", [True, False])
def test_a_5xx_on_create_looks_before_creating_again(state_path, got_through):
    service = Service()
    service.errors["create"] = [genai_error(503)]
    service.created_but_lost = int(got_through)
    started = service.start(state_path)
    assert len(service.jobs) == 1 and started.job.name == "jobs/1"
    assert service.calls[:2] == ["create", "find"]
    assert service.calls.count("create") == (1 if got_through else 2)


def test_a_429_on_create_is_retried_without_looking(state_path):
    service = Service()
    service.errors["create"] = [genai_error(429), core.TooManyRequests("quota")]
    service.start(state_path)
    assert service.calls == ["create", "create", "create"] and len(service.jobs) == 1


def test_a_named_create_repeats_and_takes_a_409_as_the_job(state_path):
    service = Service()
    service.errors["create"] = [core.ServiceUnavailable("lost reply"), core.Conflict("exists")]
    service.created_but_lost = 1
    started = service.start(state_path, names_job=True)
    assert started.job.name == "jobs/1" and len(service.jobs) == 1
    assert service.calls == ["create", "create", "find"]  # no look-up after the 503: the id makes it safe


def test_create_gives_up_after_its_attempts_and_refusals_are_user_errors(state_path):
    service = Service()
    service.errors["create"] = [genai_error(503)] * vertex_jobs.CREATE_ATTEMPTS
    with pytest.raises(genai_errors.APIError):
        service.start(state_path)
    assert service.calls.count("create") == vertex_jobs.CREATE_ATTEMPTS and not service.jobs

    service = Service()
    service.errors["create"] = [core.InvalidArgument("trainingDatasetUri is required")]
    with pytest.raises(vertex_jobs.JobRefused, match="refused the test job: .*trainingDatasetUri"):
        service.start(state_path + ".2")
    assert service.calls == ["create"]


def test_a_state_file_of_other_inputs_or_an_unknown_job_is_refused(state_path):
    service = Service()
    service.start(state_path, inputs={"data": "gs://b/d"})
    with pytest.raises(UserError, match="records a job for data 'gs://b/d'.*delete"):
        service.start(state_path, inputs={"data": "gs://b/other"})
    write_state(state_path, {"job_name": "jobs/999"})
    with pytest.raises(UserError, match="names test job jobs/999, which Vertex AI does not know"):
        service.start(state_path)


def test_no_state_path_keeps_no_state(tmp_path):
    service = Service()
    assert not service.start(None).resumed
    assert not service.start(None).resumed
    assert service.calls.count("create") == 2 and list(tmp_path.iterdir()) == []


# --- polling ---------------------------------------------------------------------------------------------------


def test_transient_poll_errors_are_tolerated_up_to_the_bound(state_path):
    service = Service(states=("RUNNING", "DONE"))
    started = service.start(state_path)
    service.errors["get"] = [core.ServiceUnavailable("blip")] * (vertex_jobs.MAX_POLL_ERRORS - 1)
    seen = []
    job = service.wait(started, on_poll_error=seen.append)
    assert job.state == "DONE" and len(seen) == vertex_jobs.MAX_POLL_ERRORS - 1

    service = Service(states=("RUNNING", "DONE"))
    started = service.start(state_path + ".2")
    service.errors["get"] = [genai_error(503)] * vertex_jobs.MAX_POLL_ERRORS
    with pytest.raises(genai_errors.APIError):
        service.wait(started)
    assert service.calls.count("get") == vertex_jobs.MAX_POLL_ERRORS


def test_errors_in_a_row_count_per_poll_and_other_errors_are_raised_at_once(state_path):
    service = Service(states=("RUNNING", "RUNNING", "DONE"))
    started = service.start(state_path)
    bound = vertex_jobs.MAX_POLL_ERRORS
    # bound - 1 errors, a good poll, bound - 1 errors again: never bound in a row.
    service.errors["get"] = [core.ServiceUnavailable("blip")] * (bound - 1)
    original = service.get

    def get(name):
        job = original(name)
        if job.polls == 1:
            service.errors["get"] = [core.ServiceUnavailable("blip")] * (bound - 1)
        return job

    service.get = get
    assert service.wait(started).state == "DONE"

    service = Service()
    started = service.start(state_path + ".2")
    service.errors["get"] = [core.PermissionDenied("no")]
    with pytest.raises(core.PermissionDenied):
        service.wait(started)


def test_the_wait_between_polls_grows_by_half_to_its_cap(state_path):
    service = Service(states=("RUNNING",) * 6 + ("DONE",))
    started = service.start(state_path)
    waits = []
    vertex_jobs.wait_for(
        started.job,
        lambda: service.get(started.job.name),
        KIND,
        poll_interval_s=2.0,
        max_poll_interval_s=5.0,
        sleep=waits.append,
    )
    assert waits == [2.0, 3.0, 4.5, 5.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize("resumed", [False, True])
def test_a_failed_state_raises_the_jobs_own_message(state_path, resumed):
    service = Service(states=("RUNNING", "FAILED"))
    started = service.start(state_path)
    service.jobs["jobs/1"].error = SimpleNamespace(code=3, message="dataset has 2 rows; at least 10 are needed")
    started.resumed = resumed
    with pytest.raises(vertex_jobs.JobFailed) as caught:
        service.wait(started, state_path)
    failed = caught.value
    assert (failed.job_name, failed.state, failed.code) == ("jobs/1", "FAILED", 3)
    assert failed.job_message == "dataset has 2 rows; at least 10 are needed"
    message = str(failed)
    assert message.startswith(
        "Test job jobs/1 ended in FAILED: dataset has 2 rows; at least 10 are needed (code 3)."
    )
    assert (state_path in message and "delete" in message) is resumed


def test_a_failed_job_is_raised_again_on_retry_or_replaced_when_the_kind_says_so(state_path):
    service = Service(states=("FAILED",))
    started = service.start(state_path)
    with pytest.raises(vertex_jobs.JobFailed):
        service.wait(started, state_path)
    with pytest.raises(vertex_jobs.JobFailed):
        service.wait(service.start(state_path), state_path)  # re-attached: the same failed job
    assert service.calls.count("create") == 1

    replacing = vertex_jobs.JobKind("Batch job", KIND.succeeded, KIND.failed, replace_failed=True)
    service = Service(states=("FAILED",))
    first = service.start(state_path + ".2", kind=replacing)
    with pytest.raises(vertex_jobs.JobFailed, match="A retry of this step starts a new job"):
        service.wait(first, kind=replacing)
    service.states = ["DONE"]
    second = service.start(state_path + ".2", kind=replacing)
    assert not second.resumed and second.job.name == "jobs/2"
    assert second.job.request_id != first.job.request_id


def test_a_timeout_leaves_the_job_to_a_retry(state_path):
    service = Service(states=("RUNNING",))
    started = service.start(state_path)
    with pytest.raises(TimeoutError) as caught:
        service.wait(started, state_path, timeout_s=0.0)
    assert isinstance(caught.value, vertex_jobs.JobTimeout)
    assert "jobs/1 is still PENDING" in str(caught.value) and state_path in str(caught.value)


# --- against the fakes, through the SDKs -------------------------------------------------------------------------


@pytest.fixture
def loopback(monkeypatch):
    yield from loopback_only(monkeypatch)


def test_batch_job_killed_before_its_name_was_written_is_found_by_display_name(loopback, tmp_path, monkeypatch):
    from tunekit.components.model_clients.base import GenerationConfig, Prompt
    from tunekit.components.model_clients.batch import LocalGcsIO, VertexBatchBackend

    root = str(tmp_path / "gcs")
    with FakeVertex(gcs_root=root, polls_to_finish=2) as fake:

        def backend():
            return VertexBatchBackend(
                "gemini-2.5-flash",
                PROJECT,
                LOCATION,
                staging_uri="gs://bucket/stage",
                state_path=str(tmp_path / "out" / "batch_state.json"),
                client=fake.genai_client(),
                io=LocalGcsIO(root),
                poll_interval_s=0.001,
            )

        first = backend()
        written = []
        real_write = vertex_jobs.write_state

        def write_then_die(path, state):
            real_write(path, state)
            written.append(state)
            if "job_name" in state:
                raise Crash()  # dies as it would record the job's name: only the request id is on disk

        monkeypatch.setattr(vertex_jobs, "write_state", write_then_die)
        with pytest.raises(Crash):
            first.run_job([Prompt("a"), Prompt("b")], GenerationConfig())
        monkeypatch.setattr(vertex_jobs, "write_state", real_write)
        assert len(fake.batch_jobs) == 1

        second = backend()
        texts = [g.text for g in second.run_job([Prompt("a"), Prompt("b")], GenerationConfig())]
        assert texts == ["echo: a", "echo: b"]
        assert second.created_jobs == [] and len(fake.batch_jobs) == 1
        (job,) = fake.batch_jobs.values()
        assert job["displayName"].endswith(written[0]["request_id"][:8])


@pytest.fixture
def pipelines(monkeypatch):
    yield from serve_fake_pipelines(monkeypatch, operation_polls=3)


def _deploy(state_path, state, endpoint_name):
    from tunekit.components.deployment import rollout
    from tunekit.components.deployment.registry import make_endpoint_client

    client = make_endpoint_client(LOCATION)
    lro = lambda key, **kw: vertex_jobs.run_operation(state_path, state, key, timeout_s=30, **kw, **NO_WAIT)  # noqa: E731
    return rollout.deploy_model(
        client,
        lro,
        endpoint=endpoint_name,
        model=f"projects/{PROJECT}/locations/{LOCATION}/models/1@1",
        resources=rollout.dedicated_resources(machine_type="g2-standard-12"),
        traffic_split={"0": 100},
    )


def test_an_operation_is_polled_through_the_operations_client(pipelines, state_path):
    endpoint = _endpoint(pipelines)
    state: dict = {}
    deployed = _deploy(state_path, state, endpoint)
    assert deployed.id and len(pipelines.requests_to(r":deployModel")) == 1
    polls = pipelines.requests_to(r"/operations/\d+$", method="GET")
    assert len(polls) == 3  # not done, not done, done
    # On disk until the caller records the result with its next write (a kill in between re-attaches).
    assert read_state(state_path)["operations"]["deploy"] == polls[0][1].split("/", 2)[2]
    assert "operations" not in state


def test_an_operation_killed_while_waiting_is_reattached_by_name(pipelines, state_path, monkeypatch):
    endpoint = _endpoint(pipelines)
    real_wait = vertex_jobs.wait_for_operation

    def die(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(vertex_jobs, "wait_for_operation", die)
    with pytest.raises(Crash):
        _deploy(state_path, {}, endpoint)
    recorded = read_state(state_path)["operations"]["deploy"]
    assert recorded.startswith(endpoint + "/operations/")

    monkeypatch.setattr(vertex_jobs, "wait_for_operation", real_wait)
    state = read_state(state_path)
    deployed = _deploy(state_path, state, endpoint)
    assert len(pipelines.requests_to(r":deployModel")) == 1  # one deployment, one bill
    assert deployed.id == pipelines.endpoints[endpoint]["deployedModels"][0]["id"]
    assert "operations" not in state


def test_an_operation_vertex_no_longer_knows_is_started_again(pipelines, state_path):
    endpoint = _endpoint(pipelines)
    state = {"operations": {"deploy": f"{endpoint}/operations/424242"}}
    _deploy(state_path, state, endpoint)
    assert len(pipelines.requests_to(r":deployModel")) == 1


def test_an_operation_that_outlasts_the_timeout(pipelines, state_path):
    from google.cloud import aiplatform_v1

    from tunekit.components.deployment.registry import make_endpoint_client

    client = make_endpoint_client(LOCATION)
    operation = client.create_endpoint(
        parent=f"projects/{PROJECT}/locations/{LOCATION}", endpoint=aiplatform_v1.Endpoint(display_name="e")
    )
    with pytest.raises(vertex_jobs.JobTimeout, match="is still running after 0 s"):
        vertex_jobs.wait_for_operation(operation, what="creation of endpoint e", timeout_s=0.0)
    assert vertex_jobs.wait_for_operation(operation, what="creation", timeout_s=30, **NO_WAIT).name


def _endpoint(fake) -> str:
    name = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/777"
    fake.endpoints[name] = {"name": name, "displayName": "e", "deployedModels": []}
    return name


def test_state_files_round_trip_with_their_operations(state_path):
    write_state(state_path, {"operations": {"deploy": "x/operations/1"}, "model": "m"})
    assert json.loads(open(state_path).read())["operations"] == {"deploy": "x/operations/1"}

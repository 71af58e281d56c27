"""An offline fake of the Vertex AI REST API, enough for google-genai (``vertexai=True``) and aiplatform's REST
transport.

It serves on ``127.0.0.1`` (a random port) with :class:`http.server.ThreadingHTTPServer` and implements:

- tuning jobs (google-genai ``client.tunings``): ``POST {parent}/tuningJobs``, ``GET {parent}/tuningJobs``,
  ``GET {parent}/tuningJobs/{id}`` and ``POST .../tuningJobs/{id}:cancel`` (supervised, preference and
  reinforcement jobs, the latter with their reward config checked), and ``POST
  {parent}/tuningJobs:validateReinforcementTuningReward`` (:meth:`FakeVertex._validate_reward`). A job is
  ``JOB_STATE_PENDING`` when
  created, ``JOB_STATE_RUNNING`` while it is polled, and ``JOB_STATE_SUCCEEDED`` (with ``tunedModel.model`` and
  ``tunedModel.endpoint``) on its ``polls_to_finish``-th GET, or ``JOB_STATE_FAILED`` with ``error`` when told to;
- ``{model}:generateContent`` and ``{model}:countTokens`` on publisher models
  (``.../publishers/google/models/{m}``) and on endpoints (``.../endpoints/{id}``), answering with a scripted
  responder, ``finishReason`` and ``usageMetadata`` (tokens are whitespace-separated words);
- Model Registry ``GET``/``PATCH`` of ``.../models/{id}[@version-or-alias]``, ``:mergeVersionAliases`` and
  ``GET .../models?filter=labels.K="V"`` (aiplatform ``ModelServiceClient`` over REST), for the models that
  succeeded tuning jobs created;
- batch prediction jobs (google-genai ``client.batches``): ``POST {parent}/batchPredictionJobs``, ``GET`` one or
  the list, ``:cancel``. ``gs://`` URIs are files under ``gcs_root``; a job reads its JSONL input and writes
  ``predictions.jsonl`` when it succeeds (on its ``polls_to_finish``-th GET);
- ``{endpoint}:predict`` on an endpoint serving an open model on Model Garden's vLLM container (seeded with
  :meth:`FakeVertex.add_open_model`): ``instances`` of ``prompt``/``max_tokens``/``raw_response``, one text per
  instance in ``predictions``; such an endpoint refuses ``generateContent``;
- the Gen AI evaluation service's pairwise ``{parent}:evaluateInstances`` (``pairwiseMetricInput`` with a
  ``jsonInstance``), answered by :attr:`FakeVertex.judge`;
- a small part of the Cloud Storage JSON API over the same ``gcs_root`` (multipart and media uploads, downloads,
  object metadata, listing by prefix, deletes), for google-cloud-storage clients aimed here with
  ``STORAGE_EMULATOR_HOST`` (:meth:`FakeVertex.env` sets it when there is a ``gcs_root``);
- load features for benchmarks: a per-request ``latency_s``, a ``quota_qpm`` token bucket answering 429
  ``RESOURCE_EXHAUSTED``, injected 5xx errors at ``fault_rate`` and dropped connections at ``drop_rate``. Injected
  errors and drops happen before the request is processed, so they are never billed; :attr:`FakeVertex.billed`
  counts the generateContent calls that were (``GET /_fake/stats`` serves the counts to other processes).

Paths are accepted under both ``/v1beta1/`` (google-genai's Vertex version) and ``/v1/`` (aiplatform's). Every
request is recorded in :attr:`FakeVertex.requests`. Errors are injected with :meth:`FakeVertex.fail_next`,
slow answers with :meth:`FakeVertex.stall_next`, failing jobs with :meth:`FakeVertex.fail_next_job`.

Usage::

    with FakeVertex(responder=lambda text: text.upper()) as fake:
        client = fake.genai_client()
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
"""

from __future__ import annotations

import base64
import collections
import datetime
import hashlib
import json
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlparse

PROJECT = "test-project"
LOCATION = "us-central1"

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_PREFIX = re.compile(r"^/(v1|v1beta1)/(.*)$")
_GCS_PATHS = ("/storage/v1/b/", "/upload/storage/v1/b/", "/download/storage/v1/b/")
_GCS_OBJECT = re.compile(r"^/(?:upload/|download/)?storage/v1/b/(?P<bucket>[^/]+)/o(?:/(?P<name>.+))?$")
_PARENT = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_JOBS = re.compile(rf"^{_PARENT}/tuningJobs$")
_JOB = re.compile(rf"^{_PARENT}/tuningJobs/(?P<id>[^/:]+)$")
_JOB_CANCEL = re.compile(rf"^{_PARENT}/tuningJobs/(?P<id>[^/:]+):cancel$")
_VALIDATE_REWARD = re.compile(rf"^{_PARENT}/tuningJobs:validateReinforcementTuningReward$")
_MODEL_CALL = re.compile(
    rf"^(?P<model>{_PARENT}/(?:publishers/[^/]+/models|endpoints|models)/[^/:]+):(?P<verb>generateContent|countTokens)$"
)
_BATCHES = re.compile(rf"^{_PARENT}/batchPredictionJobs$")
_BATCH = re.compile(rf"^{_PARENT}/batchPredictionJobs/(?P<id>[^/:]+)$")
_BATCH_CANCEL = re.compile(rf"^{_PARENT}/batchPredictionJobs/(?P<id>[^/:]+):cancel$")
_REGISTRY_MODEL = re.compile(
    rf"^{_PARENT}/models/(?P<id>[^/:@]+)(?:@(?P<version>[^/:]+))?(?::(?P<verb>mergeVersionAliases))?$"
)
_REGISTRY_MODELS = re.compile(rf"^{_PARENT}/models$")
_EVALUATE = re.compile(rf"^{_PARENT}:evaluateInstances$")
_ENDPOINT_PREDICT = re.compile(rf"^(?P<endpoint>{_PARENT}/endpoints/[^/:]+):predict$")
_TUNED_ENDPOINT = re.compile(rf"^(?P<endpoint>{_PARENT}/endpoints/[^/:]+)(?P<verb>:undeployModel)?$")
#: Model Garden's vLLM serving image, the one tunekit's rollout uploads open models with.
VLLM_IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:latest"


@dataclass
class FakeAnswer:
    """A scripted answer with more than text.

    Attributes:
        text: The answer's text ('' for a candidate with no parts).
        finish_reason: Vertex ``finishReason`` (``STOP``, ``MAX_TOKENS``, ``SAFETY``, ``RECITATION``...).
        block_reason: When set, the prompt itself is blocked: no candidates, ``promptFeedback.blockReason``.
    """

    text: str = ""
    finish_reason: str = "STOP"
    block_reason: str | None = None


Responder = Callable[[str], "str | FakeAnswer"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _count(text: str) -> int:
    return len(text.split())


def _echo(text: str) -> str:
    return f"echo: {text}"


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    payload: dict,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """Answers ``payload`` as JSON; a client that gave up (a timeout test) is not an error."""
    data = json.dumps(payload).encode("utf-8")
    try:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body (``Content-Length`` bytes)."""
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def label_filter(query: dict[str, list[str]]) -> dict[str, str]:
    """The label equalities of a list call's ``filter`` (aiplatform sends ``labels.tunekit-purpose="x"``)."""
    return dict(re.findall(r'labels\.([\w-]+)\s*=\s*"?([\w-]*)"?', (query.get("filter") or [""])[0]))


class LoopbackFake:
    """What every fake server shares: :meth:`_handle` served on a random loopback port, ``with`` or start/stop.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started.
        requests: ``(method, path, json body or None)`` for every request, in arrival order; ``path`` is the
            URL path with query string.
    """

    #: The serving thread's name.
    thread_name = "fake"
    #: The ``Content-Type`` of the answers.
    content_type = "application/json"

    def __init__(self):
        self.url = ""
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Starts serving on a random loopback port; returns self."""
        self._server, _ = serve_http(self._handle, self.thread_name)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        """Stops serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment that aims tunekit's Vertex clients at this fake (``monkeypatch.setenv`` each)."""
        return {"TUNEKIT_VERTEX_BASE_URL": self.url}

    def requests_to(self, pattern: str, method: str | None = None) -> list[tuple[str, str, Any]]:
        """Recorded requests whose path matches the regular expression ``pattern`` (and ``method``, if given)."""
        return [r for r in list(self.requests) if re.search(pattern, r[1]) and (method is None or r[0] == method)]

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None
    ) -> None:
        send_json(handler, status, payload, headers, self.content_type)


class LoadFeatures(LoopbackFake):
    """A fake that answers generation calls, with load features for benchmarks (nothing injected is billed).

    Args:
        latency_s: Seconds every generation call takes before it answers (errors answer at once).
        quota_qpm: A generation quota in queries per minute, as a token bucket holding ``quota_burst_s`` seconds
            of quota; a call over it answers 429. None for no quota.
        quota_burst_s: How many seconds of quota the bucket holds (and starts with).
        retry_after_s: When set, 429 answers carry a ``Retry-After`` header with this many seconds.
        fault_rate: The share of generation calls that answer 500 or 503 at random.
        drop_rate: The share of generation calls whose connection is closed without an answer.
        seed: Seed of the random faults and drops.

    Attributes:
        billed: Billed (answered, not injected-error) generation calls per prompt fingerprint.
        counters: ``requests``, ``generate``, ``billed``, ``quota_429``, ``faults``, ``drops``.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        quota_qpm: float | None = None,
        quota_burst_s: float = 1.0,
        retry_after_s: float | None = None,
        fault_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.latency_s = latency_s
        self.quota_qpm = quota_qpm
        self.quota_burst_s = quota_burst_s
        self.retry_after_s = retry_after_s
        self.fault_rate = fault_rate
        self.drop_rate = drop_rate
        self.billed: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self._random = random.Random(seed)
        self._bucket = 0.0
        self._bucket_time = 0.0

    def start(self) -> Self:
        """Starts serving on a random loopback port, with a full quota bucket; returns self."""
        super().start()
        if self.quota_qpm:
            self._bucket, self._bucket_time = self._quota_capacity(), time.monotonic()
        return self

    def stats(self) -> dict[str, Any]:
        """Counters and billed calls.

        Returns:
            ``counters`` plus ``billed_calls``, ``billed_prompts`` and ``duplicate_billed`` (calls beyond the first
            for the same prompt).
        """
        with self._lock:
            billed = dict(self.billed)
            counters = dict(self.counters)
        return {
            **counters,
            "billed_calls": sum(billed.values()),
            "billed_prompts": len(billed),
            "duplicate_billed": sum(n - 1 for n in billed.values() if n > 1),
        }

    def _quota_capacity(self) -> float:
        return max(1.0, (self.quota_qpm or 0) / 60.0 * self.quota_burst_s)

    def _load_fault(self) -> str | None:
        """``drop``, ``quota``, ``500`` or ``503`` for a generation call that fails, else None (lock held).

        Order: drops, then quota, then faults.
        """
        if self.drop_rate and self._random.random() < self.drop_rate:
            self.counters["drops"] += 1
            return "drop"
        if self.quota_qpm:
            now = time.monotonic()
            self._bucket = min(
                self._quota_capacity(), self._bucket + (now - self._bucket_time) * self.quota_qpm / 60.0
            )
            self._bucket_time = now
            if self._bucket < 1.0:
                self.counters["quota_429"] += 1
                return "quota"
            self._bucket -= 1.0
        if self.fault_rate and self._random.random() < self.fault_rate:
            self.counters["faults"] += 1
            return str(self._random.choice((500, 503)))
        return None

    def _bill(self, prompt: Any) -> None:
        """Counts an answered call for ``prompt`` (JSON-able: what makes two calls the same)."""
        key = hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]
        with self._lock:
            self.billed[key] += 1
            self.counters["billed"] += 1

    @staticmethod
    def _drop(handler: BaseHTTPRequestHandler) -> None:
        # The connection goes away without an answer, as when a load balancer resets it.
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeVertex(LoadFeatures):
    """A local fake of the Vertex AI REST API.

    Args:
        responder: ``prompt text -> answer`` (a string or a :class:`FakeAnswer`) for generateContent; the prompt
            text is the text of the last user turn. Defaults to ``"echo: " + text``.
        polls_to_finish: The GET of a tuning job on which it reaches its final state (1 = the first GET).
        project: The project in the resource names the fake makes.
        location: The location in the resource names the fake makes.
        gcs_root: A local directory standing for Cloud Storage: ``gs://b/o`` is ``gcs_root/b/o`` (batch jobs).
        thinking: Whether Gemini 2.5+ models think as Vertex's do (:meth:`FakeVertex._thoughts`): thinking tokens
            are spent out of ``maxOutputTokens`` unless the request's ``thinkingConfig`` turns thinking off.
        **load: :class:`LoadFeatures` of the generateContent calls (``latency_s``, ``quota_qpm``, ...; over the
            quota a call answers 429 ``RESOURCE_EXHAUSTED``).

    Attributes:
        jobs: Tuning jobs by resource name, as the fake stores them (Vertex JSON).
        models: Model Registry entries by resource name (without version), as Vertex JSON.
        batch_jobs: Batch prediction jobs by resource name, as Vertex JSON.
    """

    thread_name = "fake-vertex"
    content_type = "application/json; charset=UTF-8"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        polls_to_finish: int = 2,
        project: str = PROJECT,
        location: str = LOCATION,
        gcs_root: str | None = None,
        thinking: bool = False,
        unmodelled_fields: bool = False,
        **load: Any,
    ):
        super().__init__(**load)
        self.thinking = thinking
        #: Batch output responses carry fields google-genai 2.34 does not model, as a newer service version may
        #: (the SDK strips those before validating online answers: google/genai/_common.py _from_response).
        self.unmodelled_fields = unmodelled_fields
        self.responder: Responder = responder or _echo
        self.responders: dict[str, Responder] = {}
        #: Gen AI evaluation service: ``json instance (prompt, response, baseline_model_response) -> choice``
        #: (``CANDIDATE``, ``BASELINE`` or ``TIE``) for ``:evaluateInstances`` pairwise requests.
        self.judge: Callable[[dict], str] = lambda instance: "TIE"
        self.polls_to_finish = polls_to_finish
        self.project = project
        self.location = location
        self.jobs: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self._polls: dict[str, int] = {}
        self._job_failures: dict[str, dict] = {}
        self._next_job_failure: dict | None = None
        self._failures: list[tuple[int, str, str | None, bool]] = []
        self._stalls: list[tuple[float, str | None]] = []
        self._counter = 0
        self.gcs_root = gcs_root
        self.batch_jobs: dict[str, dict] = {}
        self._batch_counter = 0
        #: Bodies of the validateReinforcementTuningReward calls, in order.
        self.validated: list[dict] = []
        #: Tuning jobs' endpoints whose model was undeployed (``:undeployModel``).
        self.undeployed: set[str] = set()
        #: Writes an open model's tuned weights when its tuning job succeeds: called with the local folder standing
        #: for ``OUTPUT/postprocess/node-0/checkpoints/final`` under ``gcs_root`` (tests build tiny weights there,
        #: as the service writes Hugging Face weights); None writes nothing.
        self.open_model_weights: Callable[[str], None] | None = None

    # --- scripting ---------------------------------------------------------------------------------------------

    def set_responder(self, responder: Responder, model: str | None = None) -> None:
        """Sets the responder for every model, or for one model.

        Args:
            responder: ``prompt text -> answer``.
            model: A publisher model id (``gemini-2.5-flash``) or an endpoint/model resource name; None sets
                the default responder.
        """
        if model is None:
            self.responder = responder
        else:
            self.responders[model] = responder

    def fail_next(
        self,
        n: int,
        status: int = 503,
        message: str | None = None,
        path_contains: str | None = None,
        *,
        after_processing: bool = False,
    ) -> None:
        """Makes the next ``n`` requests (whose path contains ``path_contains``, if given) answer an error.

        Args:
            n: How many requests fail.
            status: The HTTP status (429, 500, 503...).
            message: The error message; a Vertex-like one by default.
            path_contains: Only requests whose path contains this fail.
            after_processing: Carry the request out, then answer the error anyway (a create whose answer was
                lost: the client cannot tell whether it happened).
        """
        with self._lock:
            for _ in range(n):
                self._failures.append(
                    (status, message or f"Injected error {status}", path_contains, after_processing)
                )

    def stall_next(self, n: int, seconds: float, path_contains: str | None = None) -> None:
        """Makes the next ``n`` matching requests wait ``seconds`` before answering (to provoke timeouts)."""
        with self._lock:
            for _ in range(n):
                self._stalls.append((seconds, path_contains))

    def fail_next_job(self, message: str = "Tuning failed: dataset is invalid.", code: int = 3) -> None:
        """Makes the next created tuning job end ``JOB_STATE_FAILED`` with ``error: {code, message}``."""
        self._next_job_failure = {"code": code, "message": message}

    def fail_job(self, name: str, message: str = "Tuning failed.", code: int = 13) -> None:
        """Makes an existing tuning job end ``JOB_STATE_FAILED`` with ``error: {code, message}``."""
        self._job_failures[name] = {"code": code, "message": message}

    def add_open_model(
        self,
        display_name: str,
        *,
        labels: dict[str, str] | None = None,
        artifact_uri: str = "gs://bucket/models/open",
        image: str = VLLM_IMAGE,
        aliases: tuple[str, ...] = ("champion",),
        description: str = "",
    ) -> tuple[str, str]:
        """Seeds an open model as tunekit's rollout leaves it (uploaded with a serving container, deployed on an
        endpoint of its own); returns ``(MODEL@1, endpoint)``."""
        with self._lock:
            self._counter += 1
            parent = f"projects/{self.project}/locations/{self.location}"
            model = f"{parent}/models/{8000 + self._counter}"
            endpoint = f"{parent}/endpoints/{6000 + self._counter}"
            self.models[model] = {
                "name": model,
                "versionId": "1",
                "displayName": display_name,
                "labels": dict(labels or {}),
                "versionAliases": list(aliases),
                "versionDescription": description,
                "artifactUri": artifact_uri,
                "containerSpec": {"imageUri": image, "predictRoute": "/generate", "healthRoute": "/ping"},
                "deployedModels": [{"endpoint": endpoint, "deployedModelId": str(self._counter)}],
                "createTime": _now(),
                "updateTime": _now(),
            }
        return f"{model}@1", endpoint

    def _served_model(self, endpoint: str) -> dict | None:
        """The registry model deployed on ``endpoint`` (lock held), or None."""
        return next(
            (
                m
                for m in self.models.values()
                if any(d["endpoint"] == endpoint for d in m.get("deployedModels", []))
            ),
            None,
        )

    # --- conveniences for tests --------------------------------------------------------------------------------

    def genai_client(self, project: str | None = None, location: str | None = None):
        """A google-genai client (``vertexai=True``) that talks to this fake with a static token."""
        from google import genai
        from google.genai import types
        from google.oauth2.credentials import Credentials

        return genai.Client(
            vertexai=True,
            project=project or self.project,
            location=location or self.location,
            credentials=Credentials(token="fake-token"),
            http_options=types.HttpOptions(base_url=self.url),
        )

    def env(self) -> dict[str, str]:
        """The environment that aims tunekit's Vertex clients at this fake (``monkeypatch.setenv`` each).

        With a ``gcs_root``, ``STORAGE_EMULATOR_HOST`` too: google-cloud-storage clients then talk to this fake's
        Cloud Storage routes, anonymously.
        """
        env = {**super().env(), "TUNEKIT_VERTEX_TOKEN": "fake-token"}
        if self.gcs_root:
            env["STORAGE_EMULATOR_HOST"] = self.url
        return env

    def gcs_path(self, uri: str) -> str:
        """The local file standing for ``gs://bucket/object`` under ``gcs_root``."""
        if not self.gcs_root:
            raise ValueError("this fake has no gcs_root")
        if not uri.startswith("gs://"):
            raise ValueError(f"not a gs:// URI: {uri}")
        return os.path.join(self.gcs_root, uri[len("gs://") :])

    # --- Cloud Storage (JSON API subset) -------------------------------------------------------------------------

    def _gcs_object(self, bucket: str, name: str) -> dict:
        path = os.path.join(self.gcs_root, bucket, name)
        data = open(path, "rb").read()
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}",
            "bucket": bucket,
            "name": name,
            "size": str(len(data)),
            "generation": str(int(os.path.getmtime(path) * 1e6)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
            "contentType": "application/octet-stream",
        }

    def _gcs(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes) -> None:
        url = urlparse(handler.path)
        query = parse_qs(url.query)
        match = _GCS_OBJECT.match(url.path)
        if not match:
            self._send(handler, 404, self._error(404, f"Unknown storage path {url.path}"))
            return
        bucket, name = match["bucket"], unquote(match["name"] or "")
        if method == "POST" and url.path.startswith("/upload/"):
            if "multipart" in (handler.headers.get("Content-Type") or ""):
                boundary = handler.headers.get_param("boundary", header="Content-Type").encode()
                parts = [p for p in raw.split(b"--" + boundary) if p.strip(b"\r\n-")]
                meta_part, media_part = parts[0], parts[1]
                name = json.loads(meta_part.split(b"\r\n\r\n", 1)[1].strip())["name"]
                data = media_part.split(b"\r\n\r\n", 1)[1]
                data = data[:-2] if data.endswith(b"\r\n") else data
            else:
                name, data = query["name"][0], raw
            path = os.path.join(self.gcs_root, bucket, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(data)
            self._send(handler, 200, self._gcs_object(bucket, name))
            return
        if method == "GET" and match["name"] is None:
            prefix = (query.get("prefix") or [""])[0]
            root = os.path.join(self.gcs_root, bucket)
            names = sorted(
                os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
            )
            items = [self._gcs_object(bucket, n) for n in names if n.startswith(prefix)]
            self._send(handler, 200, {"kind": "storage#objects", **({"items": items} if items else {})})
            return
        path = os.path.join(self.gcs_root, bucket, name)
        if not os.path.isfile(path):
            self._send(handler, 404, self._error(404, f"No such object: {bucket}/{name}"))
            return
        if method == "DELETE":
            os.remove(path)
            handler.send_response(204)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if (query.get("alt") or [""])[0] == "media" or url.path.startswith("/download/"):
            data = open(path, "rb").read()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/octet-stream")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        self._send(handler, 200, self._gcs_object(bucket, name))

    # --- serving -----------------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = read_body(handler)
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        if handler.path.startswith("/_fake/stats"):
            self._send(handler, 200, self.stats())
            return
        if self.gcs_root and urlparse(handler.path).path.startswith(_GCS_PATHS):
            with self._lock:
                self.requests.append((method, handler.path, None))
                self.counters["gcs_requests"] += 1
            self._gcs(handler, method, raw)
            return
        generate = method == "POST" and handler.path.endswith(":generateContent")
        with self._lock:
            self.requests.append((method, handler.path, body))
            self.counters["requests"] += 1
            failure = self._take(self._failures, handler.path, lambda f: f[2])
            stall = self._take(self._stalls, handler.path, lambda s: s[1])
            injected = self._inject(generate) if failure is None else None
        if injected == "drop":
            self._drop(handler)
            return
        if injected == "quota":
            headers = {"Retry-After": f"{self.retry_after_s:g}"} if self.retry_after_s is not None else None
            self._send(
                handler,
                429,
                self._error(
                    429, "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute."
                ),
                headers,
            )
            return
        if injected is not None:
            status = int(injected)
            self._send(handler, status, self._error(status, f"Injected fault {status}"))
            return
        if generate and self.latency_s and failure is None:
            time.sleep(self.latency_s)
        if stall is not None:
            time.sleep(stall[0])
        if failure is not None and not failure[3]:
            self._send(handler, failure[0], self._error(failure[0], failure[1]))
            return
        path = unquote(urlparse(handler.path).path)  # aiplatform's REST transport escapes '@'
        match = _PREFIX.match(path)
        if not match:
            self._send(handler, 404, self._error(404, f"Unknown path {path}"))
            return
        try:
            query = parse_qs(urlparse(handler.path).query)
            status, payload = self._route(method, match.group(2), body, query)
        except Exception as exc:  # a bug in the fake should read as a server error, not a hang
            status, payload = 500, self._error(500, f"fake error: {exc!r}")
        if failure is not None:
            status, payload = failure[0], self._error(failure[0], failure[1])
        self._send(handler, status, payload)

    def _inject(self, generate: bool) -> str | None:
        # Called with the lock held; only generateContent calls get load faults.
        if not generate:
            return None
        self.counters["generate"] += 1
        return self._load_fault()

    @staticmethod
    def _take(queue: list, path: str, key: Callable[[Any], str | None]):
        for i, item in enumerate(queue):
            wanted = key(item)
            if wanted is None or wanted in path:
                return queue.pop(i)
        return None

    @staticmethod
    def _error(status: int, message: str) -> dict:
        return {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}

    def _route(self, method: str, path: str, body: Any, query: dict[str, list[str]]) -> tuple[int, dict]:
        if method == "POST" and (m := _JOBS.match(path)):
            return self._create_job(m, body or {})
        if method == "POST" and _VALIDATE_REWARD.match(path):
            return self._validate_reward(body or {})
        if method == "GET" and (m := _JOBS.match(path)):
            return self._list_jobs(path, query)
        if method == "GET" and (m := _JOB.match(path)):
            return self._get_job(path)
        if method == "POST" and (m := _JOB_CANCEL.match(path)):
            name = path[: -len(":cancel")]
            with self._lock:
                job = self.jobs.get(name)
                if job is None:
                    return 404, self._error(404, f"TuningJob {name} not found.")
                if job["state"] not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
                    job["state"] = "JOB_STATE_CANCELLED"
                    job["endTime"] = _now()
            return 200, {}
        if method == "POST" and (m := _MODEL_CALL.match(path)):
            if m.group("verb") == "countTokens":
                return 200, {"totalTokens": self._count_request(body or {})}
            return self._generate(m.group("model"), body or {})
        if method == "POST" and (m := _ENDPOINT_PREDICT.match(path)):
            return self._predict_open_model(m["endpoint"], body or {})
        if (
            method in ("GET", "POST")
            and (m := _TUNED_ENDPOINT.match(path))
            and (method == "GET") != bool(m["verb"])
        ):
            return self._tuned_endpoint(m["endpoint"], bool(m["verb"]), body or {})
        if method == "POST" and (m := _BATCHES.match(path)):
            return self._create_batch(m, body or {})
        if method == "GET" and (m := _BATCHES.match(path)):
            with self._lock:
                jobs = [json.loads(json.dumps(j)) for n, j in self.batch_jobs.items() if n.startswith(path + "/")]
            return 200, {"batchPredictionJobs": jobs} if jobs else {}
        if method == "GET" and (m := _BATCH.match(path)):
            return self._get_batch(path)
        if method == "POST" and (m := _BATCH_CANCEL.match(path)):
            with self._lock:
                job = self.batch_jobs.get(path[: -len(":cancel")])
                if job is None:
                    return 404, self._error(404, "BatchPredictionJob not found.")
                if job["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED"):
                    job.update(state="JOB_STATE_CANCELLED", endTime=_now())
            return 200, {}
        if m := _REGISTRY_MODEL.match(path):
            return self._registry(method, m, body or {})
        if method == "GET" and (m := _REGISTRY_MODELS.match(path)):
            return self._list_models(path, query)
        if method == "POST" and _EVALUATE.match(path):
            metric_input = (body or {}).get("pairwiseMetricInput")
            if not metric_input or "jsonInstance" not in metric_input.get("instance", {}):
                return 400, self._error(400, "The fake serves pairwiseMetricInput with a jsonInstance only.")
            if not metric_input.get("metricSpec", {}).get("metricPromptTemplate"):
                return 400, self._error(400, "metric_spec.metric_prompt_template is required.")
            choice = self.judge(json.loads(metric_input["instance"]["jsonInstance"]))
            return 200, {
                "pairwiseMetricResult": {"pairwiseChoice": choice, "explanation": f"fake judge: {choice}"}
            }
        return 404, self._error(404, f"The fake does not serve {method} {path}")

    # --- tuning jobs -------------------------------------------------------------------------------------------

    def _create_job(self, m: re.Match, body: dict) -> tuple[int, dict]:
        if "baseModel" not in body and "preTunedModel" not in body:
            return 400, self._error(400, "baseModel is required.")
        # PREFERENCE_TUNING jobs carry their data in preferenceOptimizationSpec, REINFORCEMENT_TUNING jobs in
        # reinforcementTuningSpec (google-genai 2.34 tunings.py _TuningDataset_to_vertex), SFT jobs in
        # supervisedTuningSpec.
        spec_name = next(
            (n for n in ("preferenceOptimizationSpec", "reinforcementTuningSpec") if n in body),
            "supervisedTuningSpec",
        )
        spec = body.get(spec_name) or {}
        if "trainingDatasetUri" not in spec:
            return 400, self._error(400, f"{spec_name}.trainingDatasetUri is required.")
        if spec_name == "reinforcementTuningSpec" and (problem := _reward_config_problem(camel_keys(spec))):
            return 400, self._error(400, f"reinforcementTuningSpec: {problem}")
        # Vertex reads tuning data as "a GCS object of type JSONL": "TRAINING_DATASET_URI: Cloud Storage URI of your
        # training dataset. The dataset must be formatted as a JSONL file" (Vertex AI, "Tune Gemini models by using
        # supervised fine-tuning", https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-supervised-tuning);
        # every Google sample names the object *.jsonl, so the fake refuses any other name.
        for key in ("trainingDatasetUri", "validationDatasetUri"):
            uri = spec.get(key)
            if uri is not None and not str(uri).endswith(".jsonl"):
                return 400, self._error(
                    400, f"{spec_name}.{key} must be a GCS object of type JSONL (a .jsonl file), not {uri}."
                )
        with self._lock:
            problem = self._open_or_continuous_problem(body)
        if problem:
            return 400, self._error(400, problem)
        with self._lock:
            self._counter += 1
            job_id = str(1000 + self._counter)
            name = f"projects/{m['project']}/locations/{m['location']}/tuningJobs/{job_id}"
            job = dict(body)
            job.update(name=name, state="JOB_STATE_PENDING", createTime=_now(), updateTime=_now())
            return self._new_job(self.jobs, name, job)

    def _validate_reward(self, body: dict) -> tuple[int, dict]:
        """``tuningJobs:validateReinforcementTuningReward``: the rewards of ``sampleResponse`` on ``example``.

        The request as Vertex's REST reference gives it ("Method: tuningJobs.validateReinforcementTuningReward",
        https://docs.cloud.google.com/gemini-enterprise-agent-platform/reference/rest/v1beta1/projects.locations.tuningJobs/validateReinforcementTuningReward):
        ``sampleResponse`` and ``example`` required, one of ``singleRewardConfig`` / ``compositeRewardConfig``. The
        answer is google-genai's ``ValidateRewardResponse`` (``overallReward``, ``rewardInfoDetails`` by reward
        name; types.py): string and JSON matches after ``REGEX_EXTRACT`` (the last match), code snippets run as
        ``evaluate(example, response)``, autoraters answered by the fake's responder; every reward clipped to
        [-1, 1] and a composite the weighted mean (types.py, CompositeReinforcementTuningRewardConfig).
        """
        body = camel_keys(body)
        self.validated.append(json.loads(json.dumps(body)))
        if "sampleResponse" not in body or "example" not in body:
            return 400, self._error(400, "sampleResponse and example are required.")
        problem = _reward_config_problem(body)
        if problem:
            return 400, self._error(400, problem)
        example, response = body["example"], body["sampleResponse"]
        if "singleRewardConfig" in body:
            weighted = [(body["singleRewardConfig"], 1.0)]
        else:
            weighted = [
                (w["rewardConfig"], float(w.get("weight", 1.0)))
                for w in body["compositeRewardConfig"]["weightedRewardConfigs"]
            ]
        details, total = {}, 0.0
        for config, weight in weighted:
            try:
                value = max(-1.0, min(1.0, float(self._reward(config, example, response))))
            except Exception as exc:  # the service reports a reward's failure in its errorStatus
                details[config.get("rewardName", "")] = {"errorStatus": {"code": 3, "message": str(exc)}}
                continue
            details[config.get("rewardName", "")] = {"reward": value}
            total += weight * value
        overall = total / sum(w for _, w in weighted)
        return 200, {"overallReward": overall, "rewardInfoDetails": details}

    def _reward(self, config: dict, example: dict, response: dict) -> float:
        text = "".join(p.get("text", "") for p in response.get("parts", []))
        parse = config.get("parseResponseConfig") or {}
        if parse.get("parseType") == "REGEX_EXTRACT":
            found = list(re.finditer(parse["regexExtractExpression"], text))
            text = "" if not found else ((found[-1].group(1) or "") if found[-1].re.groups else found[-1].group(0))
        refs = example.get("references") or {}

        def fill(expression: str) -> str:
            return re.sub(
                r"\{\{\s*references\.([\w-]+)\s*\}\}", lambda m: str(refs.get(m.group(1), "")), expression
            )

        if "stringMatchRewardScorer" in config:
            scorer = config["stringMatchRewardScorer"]
            if "jsonMatchExpression" in scorer:
                expression = scorer["jsonMatchExpression"]
                try:
                    value = json.loads(text).get(expression["keyName"])
                except (ValueError, AttributeError):
                    value = None
                target = value if isinstance(value, str) else json.dumps(value)
                match = expression["valueStringMatchExpression"]
            else:
                target, match = text, scorer["stringMatchExpression"]
            wanted, operation = fill(match["expression"]), match["matchOperation"]
            hit = {
                "EXACT_MATCH": lambda: target == wanted,
                "PARTIAL_MATCH": lambda: wanted in target,
                "REGEX_CONTAINS": lambda: re.search(wanted, target) is not None,
            }[operation]()
            return scorer.get("correctAnswerReward", 0.0) if hit else scorer.get("wrongAnswerReward", 0.0)
        if "codeExecutionRewardScorer" in config:
            scope: dict[str, Any] = {}
            exec(config["codeExecutionRewardScorer"]["pythonCodeSnippet"], scope)  # noqa: S102 - test fake
            return scope["evaluate"](example, response)
        scorer = config["autoraterScorer"]
        prompt = scorer["autoraterPrompt"].replace("{{response}}", text)
        answer = self._responder_for(scorer["autoraterConfig"]["autoraterModel"].rsplit("/", 1)[-1])(fill(prompt))
        answer = answer.text if isinstance(answer, FakeAnswer) else str(answer)
        found = re.findall(scorer["autoraterResponseParseConfig"]["regexExtractExpression"], answer)
        return float(found[-1]) if found else -1.0

    def _new_job(self, store: dict[str, dict], name: str, job: dict) -> tuple[int, dict]:
        """Stores a pending job, failing as :meth:`fail_next_job` asked (lock held); the create call's answer."""
        store[name] = job
        self._polls[name] = 0
        if self._next_job_failure is not None:
            self._job_failures[name] = self._next_job_failure
            self._next_job_failure = None
        return 200, json.loads(json.dumps(job))

    def _list_jobs(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        parent = path.rsplit("/", 1)[0] + "/"
        wanted: dict[str, str] = {}
        for expression in query.get("filter", []):
            # Only the label filters Vertex documents: labels.KEY="VALUE" joined by AND.
            for key, value in re.findall(r'labels\.([\w-]+)\s*=\s*"([^"]*)"', expression):
                wanted[key] = value
        with self._lock:
            jobs = [
                json.loads(json.dumps(job))
                for name, job in self.jobs.items()
                if name.startswith(parent)
                and all((job.get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]
        return 200, {"tuningJobs": jobs} if jobs else {}

    def _get_job(self, name: str) -> tuple[int, dict]:
        with self._lock:
            job = self.jobs.get(name)
            if job is None:
                return 404, self._error(404, f"TuningJob {name} not found.")
            if self._poll(name, job):
                self._succeed(name, job)
                self._succeed_open_or_continuous(job)
            return 200, json.loads(json.dumps(job))

    def _poll(self, name: str, job: dict) -> bool:
        """Advances a pending or running job by one GET (lock held); True when it is due to succeed now."""
        if job["state"] not in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
            return False
        self._polls[name] += 1
        job["updateTime"] = _now()
        if self._polls[name] < self.polls_to_finish:
            job["state"] = "JOB_STATE_RUNNING"
            job.setdefault("startTime", _now())
            return False
        if name in self._job_failures:
            job.update(state="JOB_STATE_FAILED", endTime=_now(), error=self._job_failures[name])
            return False
        return True

    def _succeed(self, name: str, job: dict) -> None:
        parent = name.split("/tuningJobs/")[0]
        number = name.rsplit("/", 1)[1]
        model = f"{parent}/models/{7000 + int(number)}"
        endpoint = f"{parent}/endpoints/{9000 + int(number)}"
        job.update(
            state="JOB_STATE_SUCCEEDED",
            endTime=_now(),
            tunedModel={"model": f"{model}@1", "endpoint": endpoint},
        )
        checkpoints = self._checkpoints(job, parent, number, endpoint)
        if checkpoints:
            job["tunedModel"]["checkpoints"] = checkpoints
        if (stats := self._data_stats(job)) is not None:
            job["tuningDataStats"] = stats
        self.models[model] = {
            "name": model,
            "versionId": "1",
            "displayName": job.get("tunedModelDisplayName") or f"tuned-{number}",
            "labels": dict(job.get("labels") or {}),
            "versionAliases": ["default"],
            # Vertex deploys a tuned Gemini model to an endpoint of its own.
            "deployedModels": [{"endpoint": endpoint, "deployedModelId": str(number)}],
            "createTime": _now(),
            "updateTime": _now(),
        }
        if checkpoints:
            # Model.checkpoints / defaultCheckpointId (google-genai 2.34 types.Model; models.py _Model_from_vertex).
            self.models[model]["checkpoints"] = [
                {k: c[k] for k in ("checkpointId", "epoch", "step")} for c in checkpoints
            ]
            self.models[model]["defaultCheckpointId"] = checkpoints[-1]["checkpointId"]

    #: Optimizer steps per epoch of the fake's tuning jobs.
    STEPS_PER_EPOCH = 10

    def _checkpoints(self, job: dict, parent: str, number: str, endpoint: str) -> list[dict]:
        """A supervised job's checkpoints: one per epoch below 10 epochs, else 10 evenly spread, the last at the end,
        each on an endpoint of its own, the last on the tuned model's (Vertex AI, "Use checkpoints in supervised
        fine-tuning for Gemini models", https://cloud.google.com/vertex-ai/generative-ai/docs/models/tuning-checkpoints);
        only the final one with ``exportLastCheckpointOnly`` (google-genai 2.34 CreateTuningJobConfig)."""
        spec = job.get("supervisedTuningSpec")
        if spec is None:
            return []
        epochs = int((spec.get("hyperParameters") or {}).get("epochCount") or 1)
        count = 1 if spec.get("exportLastCheckpointOnly") else min(epochs, 10)
        out = []
        for i in range(1, count + 1):
            epoch = round(i * epochs / count)
            out.append(
                {
                    "checkpointId": str(i),
                    # int64 fields are JSON strings in proto3's JSON mapping (https://protobuf.dev/programming-guides/json/).
                    "epoch": str(epoch),
                    "step": str(epoch * self.STEPS_PER_EPOCH),
                    "endpoint": endpoint if i == count else f"{parent}/endpoints/{(9000 + int(number)) * 100 + i}",
                }
            )
        return out

    def _data_stats(self, job: dict) -> dict | None:
        """``tuningDataStats.supervisedTuningDataStats`` of a supervised job whose training file is under ``gcs_root``:
        examples, billable tokens (the fake's whitespace tokens of every text part, one pass over the data) and steps
        (google-genai 2.34 types.SupervisedTuningDataStats)."""
        spec = job.get("supervisedTuningSpec")
        uri = (spec or {}).get("trainingDatasetUri", "")
        if not self.gcs_root or not uri.startswith("gs://") or not os.path.isfile(self.gcs_path(uri)):
            return None
        rows = [json.loads(line) for line in open(self.gcs_path(uri), encoding="utf-8") if line.strip()]
        tokens = sum(
            _count(self._texts(c))
            for row in rows
            for c in [*row.get("contents", []), row.get("systemInstruction")]
            if c
        )
        epochs = int((spec.get("hyperParameters") or {}).get("epochCount") or 1)
        return {
            "supervisedTuningDataStats": {
                "tuningDatasetExampleCount": str(len(rows)),
                "totalBillableTokenCount": str(tokens),
                "tuningStepCount": str(epochs * self.STEPS_PER_EPOCH),
            }
        }

    def _checkpoint_endpoint(self, endpoint: str) -> str:
        """The endpoint whose answers ``endpoint`` gives (lock held): a tuned model's main endpoint serves its default
        checkpoint (the tuning-checkpoints page above); any other endpoint answers for itself."""
        for job in self.jobs.values():
            tuned = job.get("tunedModel") or {}
            if tuned.get("endpoint") == endpoint and tuned.get("checkpoints"):
                model = self.models.get(tuned["model"].split("@")[0]) or {}
                default = model.get("defaultCheckpointId")
                found = next((c for c in tuned["checkpoints"] if c["checkpointId"] == default), None)
                return found["endpoint"] if found else endpoint
        return endpoint

    def _known_endpoint(self, endpoint: str) -> bool:
        """Whether a tuning job deployed a model or a checkpoint on ``endpoint`` (lock held)."""
        for job in self.jobs.values():
            tuned = job.get("tunedModel") or {}
            if tuned.get("endpoint") == endpoint or any(
                c["endpoint"] == endpoint for c in tuned.get("checkpoints", [])
            ):
                return True
        return False

    def _tuned_endpoint(self, endpoint: str, undeploy: bool, body: dict) -> tuple[int, dict]:
        """``GET`` of an endpoint a tuning job deployed a model or checkpoint on, and its ``:undeployModel``
        (aiplatform ``EndpointServiceClient``; an undeployment is a long-running operation, answered done). One
        deployed model per such endpoint, with all the traffic; once undeployed the endpoint answers no
        generateContent (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints)."""
        with self._lock:
            if not self._known_endpoint(endpoint):
                return 404, self._error(404, f"Endpoint {endpoint} not found.")
            deployed_id = endpoint.rsplit("/", 1)[1]
            deployed = [] if endpoint in self.undeployed else [{"id": deployed_id, "displayName": "tuned"}]
            if not undeploy:
                split = {deployed_id: 100} if deployed else {}
                return 200, {"name": endpoint, "deployedModels": deployed, "trafficSplit": split}
            if not deployed or body.get("deployedModelId") != deployed_id:
                return 404, self._error(
                    404, f"DeployedModel {body.get('deployedModelId')} not found on {endpoint}."
                )
            self.undeployed.add(endpoint)
            return 200, {
                "name": f"{endpoint}/operations/{time.monotonic_ns()}",
                "done": True,
                "response": {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse"},
            }

    # --- managed open-model tuning and continuous tuning ---------------------------------------------------------

    #: The open model ids Vertex AI's "Tune an open model" page lists
    #: (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning): all of the form
    #: ``{publisher}/{family}@{version}`` but Gemma 3 27B IT's.
    OPEN_MODEL_IDS = (
        "google/gemma-3-27b-it",
        "meta/llama3_1@llama-3.1-8b",
        "meta/llama3_1@llama-3.1-8b-instruct",
        "meta/llama3-2@llama-3.2-1b-instruct",
        "meta/llama3-2@llama-3.2-3b-instruct",
        "meta/llama3-3@llama-3.3-70b-instruct",
        "qwen/qwen3@qwen3-32b",
        "meta/llama4@llama-4-scout-17b-16e-instruct",
    )

    def _registry_version(self, name: str) -> dict | None:
        """The registry model ``M``, ``M@VERSION`` or ``M@ALIAS`` names (lock held), or None."""
        base, _, version = name.partition("@")
        model = self.models.get(base)
        if model is None or version not in ("", model["versionId"], *model.get("versionAliases", [])):
            return None
        return model

    def _open_or_continuous_problem(self, body: dict) -> str:
        """What Vertex refuses of an open-model or continuous-tuning job (lock held), '' for nothing."""
        base = str(body.get("baseModel") or "")
        spec = body.get("supervisedTuningSpec") or {}
        hyper = spec.get("hyperParameters") or {}
        open_model = "/" in base and not base.startswith(("projects/", "publishers/"))
        if open_model:
            # "{publisher}/{family}@{version}": an id without its version is refused (INVALID_ARGUMENT).
            if base not in self.OPEN_MODEL_IDS and not re.fullmatch(r"[a-z0-9-]+/[a-z0-9._-]+@[a-z0-9._-]+", base):
                return f"INVALID_ARGUMENT: base model {base} is not supported; open models are publisher/family@version."
            # types.py TuningJob.output_uri: "This field is only available and required for open source models."
            if not body.get("outputUri"):
                return "outputUri is required to tune an open model."
            # types.py SupervisedHyperParameters: learning_rate is "Mutually exclusive with learning_rate_multiplier".
            if "learningRateMultiplier" in hyper:
                return "learningRateMultiplier is not supported for open models; set learningRate."
        else:
            # types.py: custom_base_model, batch_size, learning_rate "only available for open source models".
            for key, where in (("customBaseModel", body), ("batchSize", hyper), ("learningRate", hyper)):
                if key in where:
                    return f"{key} is only available for open source models."
        pre = body.get("preTunedModel")
        if pre:
            pre = camel_keys(pre)
            model = self._registry_version(str(pre.get("tunedModelName", "")))
            if model is None:
                return f"NOT_FOUND: pre-tuned model {pre.get('tunedModelName')} not found."
            # "Use continuous tuning for Gemini models" (https://docs.cloud.google.com/gemini-enterprise-agent-platform/
            # models/tuning/continuous-tuning.md.txt): only models tuned on or after 2025-07-11, and a CMEK model
            # continues with the same key.
            if str(model.get("createTime", ""))[:10] < "2025-07-11":
                return "The pre-tuned model must have been tuned on or after 2025-07-11."
            # google-genai sends the proto field name (kms_key_name), which Vertex's JSON parser reads as camelCase.
            model_key = camel_keys(model.get("encryptionSpec") or {}).get("kmsKeyName", "")
            job_key = camel_keys(body.get("encryptionSpec") or {}).get("kmsKeyName", "")
            if model_key != job_key:
                return "A continuous tuning job must use the pre-tuned model's encryption key."
            checkpoint = pre.get("checkpointId")
            known = [c["checkpointId"] for c in model.get("checkpoints", [])]
            if checkpoint and known and checkpoint not in known:
                return f"Checkpoint {checkpoint} not found in {pre.get('tunedModelName')}."
        return ""

    def _succeed_open_or_continuous(self, job: dict) -> None:
        """After :meth:`_succeed` (lock held): an open model's weights and no endpoint; CMEK on the tuned model.

        An open model's tuned weights are written under the job's ``outputUri`` (at ``postprocess/node-0/
        checkpoints/final``, where Google's agent-platform-tuning skill deploys them from, google/skills
        skills/cloud/agent-platform-tuning/SKILL.md "Phase 5") and are not deployed by the service; a job's
        ``encryptionSpec`` covers "all resources created by the TuningJob" (types.py TuningJob.encryption_spec).
        """
        model = self.models[job["tunedModel"]["model"].split("@")[0]]
        if job.get("encryptionSpec"):
            model["encryptionSpec"] = camel_keys(job["encryptionSpec"])
        base = str(job.get("baseModel") or "")
        if "/" in base and not base.startswith(("projects/", "publishers/")):
            job["tunedModel"].pop("endpoint", None)
            model["deployedModels"] = []
            model["artifactUri"] = job["outputUri"].rstrip("/") + "/postprocess/node-0/checkpoints/final"
            if self.open_model_weights is not None and self.gcs_root:
                self.open_model_weights(self.gcs_path(model["artifactUri"]))

    # --- batch prediction jobs ---------------------------------------------------------------------------------

    def _create_batch(self, m: re.Match, body: dict) -> tuple[int, dict]:
        uris = ((body.get("inputConfig") or {}).get("gcsSource") or {}).get("uris") or []
        prefix = ((body.get("outputConfig") or {}).get("gcsDestination") or {}).get("outputUriPrefix")
        if not body.get("model") or not uris or not prefix:
            return 400, self._error(400, "model, inputConfig.gcsSource.uris and outputConfig are required.")
        with self._lock:
            self._batch_counter += 1
            name = f"projects/{m['project']}/locations/{m['location']}/batchPredictionJobs/{5000 + self._batch_counter}"
            job = dict(body, name=name, state="JOB_STATE_PENDING", createTime=_now(), updateTime=_now())
            return self._new_job(self.batch_jobs, name, job)

    def _get_batch(self, name: str) -> tuple[int, dict]:
        with self._lock:
            job = self.batch_jobs.get(name)
            if job is None:
                return 404, self._error(404, f"BatchPredictionJob {name} not found.")
            finish = self._poll(name, job)
            snapshot = json.loads(json.dumps(job))
        if finish:
            self._run_batch(name, snapshot)
            with self._lock:
                snapshot = json.loads(json.dumps(self.batch_jobs[name]))
        return 200, snapshot

    def _run_batch(self, name: str, job: dict) -> None:
        model = job["model"]
        if not model.startswith("projects/"):
            model = f"projects/{self.project}/locations/{self.location}/{model}"
        lines = []
        for uri in job["inputConfig"]["gcsSource"]["uris"]:
            with open(self.gcs_path(uri), encoding="utf-8") as handle:
                lines.extend(json.loads(line) for line in handle if line.strip())
        out = []
        for line in lines:
            status, response = self._generate(model, dict(line.get("request") or {}))
            record = dict(line)
            if status == 200:
                if self.unmodelled_fields:
                    response = {**response, "fieldAddedLater": {"x": 1}}
                    for candidate in response.get("candidates") or []:
                        candidate["anotherNewField"] = True
                record.update(response=response, status="")
            else:
                record["status"] = (response.get("error") or {}).get("message", f"error {status}")
            out.append(record)
        directory = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        directory += f"/prediction-model-{name.rsplit('/', 1)[1]}"
        path = self.gcs_path(directory + "/predictions.jsonl")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in out)
        with self._lock:
            self.batch_jobs[name].update(
                state="JOB_STATE_SUCCEEDED",
                endTime=_now(),
                outputInfo={"gcsOutputDirectory": directory},
                completionStats={
                    "successfulCount": str(sum(1 for r in out if "response" in r)),
                    "failedCount": str(sum(1 for r in out if "response" not in r)),
                },
            )

    # --- generation --------------------------------------------------------------------------------------------

    @staticmethod
    def _texts(content: dict | None) -> str:
        return " ".join(p.get("text", "") for p in (content or {}).get("parts", []) if "text" in p)

    def _count_request(self, body: dict) -> int:
        total = sum(_count(self._texts(c)) for c in body.get("contents", []))
        return total + _count(self._texts(body.get("systemInstruction")))

    def _responder_for(self, model: str) -> Responder:
        short = model.rsplit("/", 1)[-1]
        return self.responders.get(model) or self.responders.get(short) or self.responder

    #: Thinking tokens a Gemini 2.5+ model spends when thinking is dynamic (no ``thinkingConfig``, or a budget of
    #: -1) or at a level above ``LOW``; ``LOW`` spends :data:`FAKE_LOW_THOUGHTS`.
    FAKE_DYNAMIC_THOUGHTS = 200
    FAKE_LOW_THOUGHTS = 40

    def _family(self, model: str) -> tuple[tuple[int, int], bool] | None:
        """``((major, minor), is_pro)`` of a Gemini model id, or of an endpoint's tuning base model; None if not Gemini."""
        name = model
        if "/endpoints/" in model:
            with self._lock:
                job = next(
                    (j for j in self.jobs.values() if (j.get("tunedModel") or {}).get("endpoint") == model), {}
                )
            name = job.get("baseModel") or ""
        found = re.search(r"gemini-(\d+)(?:\.(\d+))?-([a-z-]+)", name.rsplit("/", 1)[-1].lower())
        if not found:
            return None
        return (int(found.group(1)), int(found.group(2) or 0)), found.group(3).startswith("pro")

    def _thoughts(self, model: str, config: dict) -> tuple[int, str | None]:
        """Thinking tokens spent on one answer, or an error as Vertex gives it for a setting the model refuses.

        As on Vertex (https://cloud.google.com/vertex-ai/generative-ai/docs/thinking): Gemini 2.5+ models think
        by default, dynamically; thinking tokens count against ``maxOutputTokens``; ``thinkingBudget`` 0 turns it
        off on 2.5 Flash / Flash-Lite, while 2.5 Pro cannot turn it off (budgets 128-32,768); Gemini 3 takes
        ``thinkingLevel`` (https://cloud.google.com/vertex-ai/generative-ai/docs/start/get-started-with-gemini-3;
        Gemini 3 Pro: ``LOW`` or ``HIGH`` only). Older models (1.5, 2.0) do not think.
        """
        family = self._family(model) if self.thinking else None
        if family is None or family[0] < (2, 5):
            return 0, None
        version, pro = family
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        # google-genai 2.34 copies ThinkingConfig's fields unrenamed (models.py: ``setv(to_object,
        # ['thinkingConfig'], getv(from_object, ['thinking_config']))``), so the wire has ``thinking_budget``;
        # Vertex's proto JSON parser accepts a field's original name and its lowerCamelCase name alike.
        budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
        level = thinking.get("thinkingLevel", thinking.get("thinking_level"))
        if level is not None:
            if version < (3, 0):
                return 0, "thinking_level is not supported by this model; use thinking_budget."
            if pro and level in ("MINIMAL", "MEDIUM"):
                return 0, f"thinking_level {level} is not supported by this model."
            return {"MINIMAL": 0, "LOW": self.FAKE_LOW_THOUGHTS}.get(level, self.FAKE_DYNAMIC_THOUGHTS), None
        if budget is None or int(budget) == -1:
            return self.FAKE_DYNAMIC_THOUGHTS, None
        budget = int(budget)
        if version < (3, 0) and pro and budget < 128:
            return 0, "The thinking budget must be between 128 and 32768 for this model (it cannot be disabled)."
        return min(budget, self.FAKE_DYNAMIC_THOUGHTS), None

    def _predict_open_model(self, endpoint: str, body: dict) -> tuple[int, dict]:
        """``:predict`` on an endpoint serving an open model with Model Garden's vLLM container.

        As Google's Model Garden vLLM notebook calls it (GoogleCloudPlatform/vertex-ai-samples,
        notebooks/community/model_garden/model_garden_pytorch_llama3_1_deployment.ipynb, "Raw predict"): instances
        of ``prompt``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k`` and ``raw_response``; one text per
        instance in ``predictions``, laid out ``"Prompt:\\n{prompt}\\nOutput:\\n{output}"`` unless ``raw_response``.
        The answer is the endpoint's responder's (:meth:`set_responder`), cut at ``max_tokens`` words.
        """
        with self._lock:
            served = self._served_model(endpoint)
        if served is None or "containerSpec" not in served:
            return 404, self._error(404, f"Endpoint {endpoint} serves no custom-container model.")
        instances = body.get("instances") or []
        if not instances or any(not isinstance(i, dict) or "prompt" not in i for i in instances):
            return 400, self._error(400, "Each instance needs a 'prompt' (the vLLM container's request).")
        responder = self._responder_for(endpoint)
        predictions = []
        for instance in instances:
            answer = responder(str(instance["prompt"]))
            text = answer.text if isinstance(answer, FakeAnswer) else str(answer)
            if instance.get("max_tokens") is not None:
                text = " ".join(text.split()[: int(instance["max_tokens"])])
            if not instance.get("raw_response"):
                text = f"Prompt:\n{str(instance['prompt']).strip()}\nOutput:\n{text}"
            predictions.append(text)
        self._bill(instances)
        return 200, {"predictions": predictions, "deployedModelId": served["deployedModels"][0]["deployedModelId"]}

    def _generate(self, model: str, body: dict) -> tuple[int, dict]:
        if "/endpoints/" in model:
            with self._lock:
                served = self._served_model(model)
            if served is not None and "containerSpec" in served:
                # generateContent is Gemini's method; an open model's own container answers :predict/:rawPredict.
                return 400, self._error(
                    400,
                    f"Endpoint {model} serves a custom container: generateContent is not supported; use predict.",
                )
            with self._lock:
                known = self._known_endpoint(model)
                if model in self.undeployed:
                    return 400, self._error(400, f"Endpoint {model} has no deployed model.")
            if not known and model not in self.responders:
                return 404, self._error(404, f"Endpoint {model} not found.")
        contents = body.get("contents") or []
        if not contents:
            return 400, self._error(400, "contents is required.")
        user_turns = [c for c in contents if c.get("role", "user") == "user"]
        prompt = self._texts(user_turns[-1]) if user_turns else ""
        config = body.get("generationConfig") or {}
        max_tokens = config.get("maxOutputTokens")
        thoughts, refused = self._thoughts(model, config)
        if refused:
            return 400, self._error(400, refused)
        if max_tokens is not None and thoughts:
            # Thinking is spent first, out of the same maxOutputTokens; what is left is the answer's.
            thoughts = min(thoughts, int(max_tokens))
            max_tokens = int(max_tokens) - thoughts
        usage_in = self._count_request(body)
        with self._lock:
            answering = self._checkpoint_endpoint(model) if "/endpoints/" in model else model
        responder = self._responder_for(answering)
        candidates = []
        for index in range(int(config.get("candidateCount") or 1)):
            answer = responder(prompt)
            if not isinstance(answer, FakeAnswer):
                answer = FakeAnswer(text=str(answer))
            if answer.block_reason:
                self._bill(body.get("contents"))
                return 200, {
                    "promptFeedback": {"blockReason": answer.block_reason},
                    "usageMetadata": {"promptTokenCount": usage_in, "totalTokenCount": usage_in},
                    "modelVersion": model,
                }
            text, reason = answer.text, answer.finish_reason
            if max_tokens is not None and _count(text) > int(max_tokens):
                # Vertex cuts the answer where the budget ends and says so (an empty text when thinking took it all).
                text, reason = " ".join(text.split()[: int(max_tokens)]), "MAX_TOKENS"
            candidate: dict[str, Any] = {"index": index, "finishReason": reason}
            candidate["content"] = {"role": "model", "parts": [{"text": text}] if text else []}
            if reason == "SAFETY":
                candidate["safetyRatings"] = [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
                ]
            candidates.append(candidate)
        usage_out = sum(_count(self._texts(c["content"])) for c in candidates)
        self._bill(body.get("contents"))
        return 200, {
            "candidates": candidates,
            "usageMetadata": {
                "promptTokenCount": usage_in,
                "candidatesTokenCount": usage_out,
                **({"thoughtsTokenCount": thoughts * len(candidates)} if thoughts else {}),
                "totalTokenCount": usage_in + usage_out + thoughts * len(candidates),
            },
            "modelVersion": model,
            "createTime": _now(),
            "responseId": f"fake-{time.monotonic_ns()}",
        }

    # --- model registry ----------------------------------------------------------------------------------------

    def _list_models(self, parent: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        # aiplatform sends filters such as labels.tunekit-purpose="x"; only label equality is understood.
        wanted = label_filter(query)
        with self._lock:
            found = [
                json.loads(json.dumps(model))
                for name, model in self.models.items()
                if name.startswith(parent + "/") and all(model["labels"].get(k) == v for k, v in wanted.items())
            ]
        return 200, {"models": found}

    def _registry(self, method: str, m: re.Match, body: dict) -> tuple[int, dict]:
        name = f"projects/{m['project']}/locations/{m['location']}/models/{m['id']}"
        with self._lock:
            model = self.models.get(name)
            # One version per tuned model here: its id or one of its aliases names it.
            if model is None or m["version"] not in (None, model["versionId"], *model.get("versionAliases", [])):
                return 404, self._error(404, f"Model {name}@{m['version'] or ''} not found.")
            if m["verb"] == "mergeVersionAliases":
                aliases = list(model.get("versionAliases", []))
                for alias in body.get("versionAliases") or []:
                    if alias.startswith("-"):
                        aliases = [a for a in aliases if a != alias[1:]]
                    elif alias not in aliases:
                        aliases.append(alias)
                model["versionAliases"] = aliases
                model["updateTime"] = _now()
            elif method == "PATCH":
                # aiplatform sends the field mask as ?updateMask=labels; only labels are supported here.
                if "labels" in body:
                    model["labels"] = dict(body["labels"])
                for key in ("displayName", "versionDescription"):
                    if key in body:
                        model[key] = body[key]
                if "defaultCheckpointId" in body:
                    # google-genai's models.update sends defaultCheckpointId (models.py _UpdateModelConfig_to_vertex).
                    ids = [c["checkpointId"] for c in model.get("checkpoints", [])]
                    if body["defaultCheckpointId"] not in ids:
                        return 400, self._error(
                            400, f"Checkpoint {body['defaultCheckpointId']} not found in {name}."
                        )
                    model["defaultCheckpointId"] = body["defaultCheckpointId"]
                model["updateTime"] = _now()
            elif method != "GET":
                return 405, self._error(400, f"{method} is not supported on models.")
            return 200, json.loads(json.dumps(model))


class _Server(ThreadingHTTPServer):
    # Many clients connect at once in the benchmarks; the default backlog of 5 drops their SYNs.
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that was killed or timed out resets its connection: expected, not worth a traceback.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def camel_keys(value: Any) -> Any:
    """``value`` with every key in lowerCamelCase.

    google-genai 2.34 puts a nested model into the request as is and dumps it with its Python field names
    (``stringMatchRewardScorer: {"match_operation": ...}``, as ``preTunedModel`` gets ``tuned_model_name``);
    Vertex reads either spelling, as proto3's JSON mapping requires of parsers ("accept both the lowerCamelCase
    name and the original proto field name", https://protobuf.dev/programming-guides/json/).
    """
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def _single_reward_problem(config: dict, where: str) -> str:
    """What Vertex would refuse of one ``SingleReinforcementTuningRewardConfig`` ('' for nothing)."""
    scorers = [
        k
        for k in (
            "stringMatchRewardScorer",
            "codeExecutionRewardScorer",
            "autoraterScorer",
            "cloudRunRewardScorer",
        )
        if k in config
    ]
    if len(scorers) != 1:
        return f"{where} must set exactly one reward scorer, not {scorers or 'none'}."
    scorer = config.get("stringMatchRewardScorer")
    if scorer is not None:
        match = scorer.get("stringMatchExpression") or (scorer.get("jsonMatchExpression") or {}).get(
            "valueStringMatchExpression"
        )
        # "MATCH_OPERATION_UNSPECIFIED: Default value. A user error will be returned if not set." (types.py)
        if not match or match.get("matchOperation") in (None, "MATCH_OPERATION_UNSPECIFIED"):
            return f"{where}.stringMatchRewardScorer needs a matchOperation."
    code = config.get("codeExecutionRewardScorer")
    if (
        code is not None
        and "def evaluate(" not in code.get("pythonCodeSnippet", "")
        and "evaluate =" not in code.get("pythonCodeSnippet", "")
    ):
        # types.py ReinforcementTuningCodeExecutionRewardScorer: "def evaluate(example, response) -> float".
        return f"{where}.codeExecutionRewardScorer.pythonCodeSnippet must define evaluate(example, response)."
    return ""


def _reward_config_problem(spec: dict) -> str:
    """What Vertex would refuse of a reward config: both or neither of single and composite (mutually exclusive,
    types.py _ValidateRewardParameters), a composite without weighted configs, a bad single config."""
    if ("singleRewardConfig" in spec) == ("compositeRewardConfig" in spec):
        return "set exactly one of singleRewardConfig and compositeRewardConfig."
    if "singleRewardConfig" in spec:
        return _single_reward_problem(spec["singleRewardConfig"], "singleRewardConfig")
    weighted = spec["compositeRewardConfig"].get("weightedRewardConfigs") or []
    if not weighted:
        return "compositeRewardConfig.weightedRewardConfigs is empty."
    for index, item in enumerate(weighted):
        problem = _single_reward_problem(item.get("rewardConfig") or {}, f"weightedRewardConfigs[{index}]")
        if problem:
            return problem
    return ""


def serve_http(
    handle: Callable[[BaseHTTPRequestHandler, str], None], name: str
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serves ``handle(handler, method)`` for GET, POST, PATCH and DELETE on a random loopback port, on a thread.

    Shared by the fakes; ``server.server_address[1]`` is the port, ``server.shutdown()`` stops it.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle on, keep-alive requests wait ~40 ms each.
        disable_nagle_algorithm = True

        def do_GET(self):  # noqa: N802 (http.server's naming)
            handle(self, "GET")

        def do_POST(self):  # noqa: N802
            handle(self, "POST")

        def do_PATCH(self):  # noqa: N802
            handle(self, "PATCH")

        def do_DELETE(self):  # noqa: N802
            handle(self, "DELETE")

        def log_message(self, format, *args):  # noqa: A002 (quiet: tests read results, not logs)
            return None

    server = _Server(("127.0.0.1", 0), Handler)
    # A short poll interval keeps shutdown() quick (serve_forever checks for it at this pace).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True)
    thread.start()
    return server, thread


def allow_loopback_only(monkeypatch) -> list[tuple[str, Any]]:
    """Makes any socket connection to a non-loopback address fail, for the rest of the test.

    Proves that nothing (an ADC lookup, the GCE metadata server, a real Google endpoint) leaves the machine.

    Args:
        monkeypatch: pytest's ``monkeypatch`` fixture.

    Returns:
        The refused ``(host, address)`` attempts, for the test to assert empty.
    """
    import socket

    refused: list[tuple[str, Any]] = []
    original = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            refused.append((str(host), address))
            raise OSError(f"test guard: connection to {address} refused (only loopback is allowed)")
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused


def serve_fake_vertex(monkeypatch, fake_class: type[FakeVertex] | None = None, **options) -> Iterator[FakeVertex]:
    """A pytest fixture body: a started :class:`FakeVertex` that tunekit's clients are aimed at.

    Only loopback connections are allowed while it runs (anything else fails the test afterwards), and its
    :meth:`FakeVertex.env` is set in the environment. Use as ``yield from serve_fake_vertex(monkeypatch, ...)``.

    Args:
        monkeypatch: pytest's fixture.
        fake_class: A subclass of :class:`FakeVertex` to serve instead (one that accepts more requests).
        **options: :class:`FakeVertex` arguments (``polls_to_finish``, ...).
    """
    yield from serve_fake(monkeypatch, (fake_class or FakeVertex)(**options))


def loopback_only(monkeypatch) -> Iterator[None]:
    """A pytest fixture body: only loopback connections while the test runs (any other fails it afterwards).

    Use as ``yield from loopback_only(monkeypatch)``.
    """
    refused = allow_loopback_only(monkeypatch)
    yield
    assert refused == [], f"connections to other hosts than loopback: {refused}"


def serve_fake(monkeypatch, fake: LoopbackFake) -> Iterator[Any]:
    """A pytest fixture body: ``fake`` started, with tunekit's clients aimed at it (its :meth:`LoopbackFake.env`).

    Only loopback connections are allowed while it runs (anything else fails the test afterwards). Use as
    ``yield from serve_fake(monkeypatch, fake)``.
    """
    refused = allow_loopback_only(monkeypatch)
    with fake as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield server
    assert refused == [], f"connections to other hosts than loopback: {refused}"

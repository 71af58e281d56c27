"""An offline fake of the Vertex AI REST endpoints the embedding pipeline uses through aiplatform's REST transport.

Serves on ``127.0.0.1`` (random port), paths under ``/v1/``:

- PipelineService: ``POST {parent}/pipelineJobs?pipelineJobId=ID`` (409 when the id exists), ``GET
  {parent}/pipelineJobs/ID``. A job is ``PIPELINE_STATE_PENDING`` when created, ``RUNNING`` while polled, and
  ``SUCCEEDED`` on its ``polls_to_finish``-th GET, with the task details Google's template leaves: the uploader's
  ``output:model_resource_name`` and the evaluator's metrics; or ``FAILED`` with ``error`` when told to;
- EndpointService: ``POST {parent}/endpoints`` and ``POST {endpoint}:deployModel`` (long-running operations that
  are done at once, or, with ``operation_polls``, reported done on that GET of the operation), ``GET {endpoint}``;
- long-running operations: ``GET {resource}/operations/ID`` (aiplatform's ``get_operation`` and the operations
  client that polls an ``Operation``), for every operation the fake answered; stored in
  :attr:`FakeVertexPipelines.operations`;
- EndpointService, for canaries and rollbacks: ``deployModel`` honours the request's ``trafficSplit`` (``"0"`` is
  the model being deployed; the split must add up to 100), ``POST {endpoint}:undeployModel`` (refused while the
  model still gets traffic, unless the request's ``trafficSplit`` takes it away), ``PATCH {endpoint}`` of
  ``trafficSplit``; deployments are mirrored in the model version's ``deployedModels``;
- ModelService (Model Registry): ``POST {parent}/models:upload`` (a new model, or a new version of
  ``parentModel``), ``GET {model}``, ``GET {model}@VERSION_OR_ALIAS``, ``GET {parent}/models?filter=labels.K="V"``
  (one entry per model: its newest version), ``GET {model}:listVersions``, ``PATCH {model}[@V]`` (``labels``,
  ``versionDescription``), ``POST {model}@V:mergeVersionAliases`` (an alias held by another version of the same
  model is refused: move it by removing it there first); :meth:`FakeVertexPipelines.add_model` seeds one, e.g. a
  tuned Gemini model with its own endpoint;
- ScheduleService: ``POST {parent}/schedules`` (``ACTIVE``), ``GET {parent}/schedules`` (``filter`` of the form
  ``display_name="NAME"`` honoured), ``GET {schedule}``, ``POST {schedule}:pause`` / ``:resume``, ``DELETE
  {schedule}`` (a long-running operation that is done at once); stored in :attr:`FakeVertexPipelines.schedules`;
- Cloud Storage: ``PipelineJob.submit`` checks (and would create) the pipeline root's bucket; with
  ``STORAGE_EMULATOR_HOST`` set to :attr:`url` those calls get a quick 404, which aiplatform logs and ignores;
- ``DELETE {endpoint}`` (refused while models are deployed) and ``DELETE {model}`` (refused while deployed), for
  the cloud suite's clean-up (tests/cloud);
- PredictionService: ``POST {model or endpoint}:predict`` for text embeddings: a deterministic bag-of-words hash
  embedding (``predictions[i].embeddings.values``).

- what ``tunekit doctor`` asks (pipelines/doctor.py: ``https://HOST/PATH`` is asked of ``{url}/HOST/PATH``):
  the OAuth token endpoint (``POST /oauth2.googleapis.com/token``, a refresh-token grant), Service Usage
  ``services.get``, Artifact Registry ``packages.tags.get`` / ``versions.get`` of Docker images, the KFP template
  download (``GET /LOCATION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG``: the spec as YAML), IAM
  ``serviceAccounts.get``, Cloud Storage ``buckets.testIamPermissions`` (``/storage/v1/b/BUCKET/iam/...``) and
  ``{publisher model}:countTokens``, Model Garden's ``publishers.models.get`` of an open model (v1beta1, on the
  region's endpoint) and ``tuningJobs:validateReinforcementTuningReward`` (the reward dry run, as
  fake_vertex.py answers it); each is scripted by an attribute (:attr:`FakeVertexPipelines.disabled_services`,
  ``images``, ``templates``, ``service_accounts``, ``buckets``, ``served_models``, ``publisher_models``,
  ``reward_service``, ``revoked``).

aiplatform's REST clients reach it with ``client_options={"api_endpoint": fake.url}``: the transport keeps an
explicit ``http://`` scheme. Every request is recorded in :attr:`FakeVertexPipelines.requests`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from fake_vertex import FakeVertex, LoopbackFake, label_filter, read_body, serve_fake

PROJECT = "test-project"
LOCATION = "us-central1"
_PARENT = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
_JOBS = re.compile(rf"^/v1/{_PARENT}/pipelineJobs$")
_JOB = re.compile(rf"^/v1/(?P<name>{_PARENT}/pipelineJobs/[^/:]+)$")
_ENDPOINTS = re.compile(rf"^/v1/{_PARENT}/endpoints$")
_ENDPOINT = re.compile(rf"^/v1/(?P<name>{_PARENT}/endpoints/[^/:]+)$")
_DEPLOY = re.compile(rf"^/v1/(?P<name>{_PARENT}/endpoints/[^/:]+):deployModel$")
_UNDEPLOY = re.compile(rf"^/v1/(?P<name>{_PARENT}/endpoints/[^/:]+):undeployModel$")
_MODELS = re.compile(rf"^/v1/{_PARENT}/models$")
_UPLOAD = re.compile(rf"^/v1/{_PARENT}/models:upload$")
_MODEL = re.compile(rf"^/v1/(?P<name>{_PARENT}/models/[^/:@]+)(?:@(?P<version>[^/:]+))?(?::(?P<verb>\w+))?$")
_PREDICT = re.compile(rf"^/v1/(?P<name>{_PARENT}/(?:publishers/[^/]+/models|endpoints)/[^/:]+):predict$")
_SCHEDULES = re.compile(rf"^/v1/{_PARENT}/schedules$")
_SCHEDULE = re.compile(rf"^/v1/(?P<name>{_PARENT}/schedules/[^/:]+)(?::(?P<verb>pause|resume))?$")
_OPERATION = re.compile(rf"^/(?:v1|ui)/(?P<name>{_PARENT}/.+/operations/[^/:]+)$")
_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1."
_TOKEN = re.compile(r"^/oauth2\.googleapis\.com/token$")
_SERVICE = re.compile(
    r"^/serviceusage\.googleapis\.com/v1/projects/(?P<project>[^/]+)/services/(?P<service>[^/]+)$"
)
_AR_TAG = re.compile(
    r"^/artifactregistry\.googleapis\.com/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/"
    r"repositories/(?P<repository>[^/]+)/packages/(?P<package>[^/]+)/(?:tags|versions)/(?P<ref>[^/]+)$"
)
_KFP_DOWNLOAD = re.compile(r"^/(?P<url>[a-z0-9-]+-kfp\.pkg\.dev/[^/]+/[^/]+/[^/]+/[^/]+)$")
_SERVICE_ACCOUNT = re.compile(
    r"^/iam\.googleapis\.com/v1/projects/[^/]+/serviceAccounts/(?P<email>[^/:]+)(?P<test>:testIamPermissions)?$"
)
_TEST_PERMISSIONS = re.compile(r"^/storage/v1/b/(?P<bucket>[^/]+)/iam/testPermissions$")
# google-genai's Vertex client calls v1beta1 (google/genai/_api_client.py: the default api_version).
_VALIDATE_REWARD = re.compile(rf"^/v1(?:beta1)?/{_PARENT}/tuningJobs:validateReinforcementTuningReward$")
_PUBLISHER_MODEL = re.compile(
    r"^/(?P<location>[a-z0-9-]+)-aiplatform\.googleapis\.com/v1beta1/publishers/(?P<model>[^:]+)$"
)
_COUNT_TOKENS = re.compile(rf"^/v1(?:beta1)?/{_PARENT}/publishers/google/models/(?P<model>[^/:]+):countTokens$")

#: Google's text-embedding tuning template and the parameters it declares (v1.1.3+), written out here rather than
#: imported so that the fake checks tunekit instead of agreeing with it. Sources: Google's sample
#: EmbeddingModelTuningSample.java (GoogleCloudPlatform/java-docs-samples, region tag
#: ``generativeaionvertexai_sdk_embedding_model_tuning``) and aiplatform 1.165.1's
#: vertexai/language_models/_language_models.py (``tune_model`` of text-embedding models).
EMBEDDING_TEMPLATE = "https://us-kfp.pkg.dev/ml-pipeline/llm-text-embedding/tune-text-embedding-model"
EMBEDDING_TEMPLATE_PARAMETERS = frozenset(
    {
        "base_model_version_id",
        "task_type",
        "queries_path",
        "corpus_path",
        "train_label_path",
        "test_label_path",
        "validation_label_path",
        "learning_rate_multiplier",
        "output_dimensionality",
        "batch_size",
        "train_steps",
        "encryption_spec_key_name",
        "machine_type",
        "accelerator_type",
        "accelerator_count",
    }
)


def template_yaml(parameters) -> str:
    """A compiled KFP spec (pipeline IR, as ``kfp compile`` writes it) declaring ``parameters`` as the root's inputs."""
    import yaml

    declared = {name: {"parameterType": "STRING", "isOptional": True} for name in sorted(parameters)}
    return yaml.safe_dump(
        {
            "pipelineInfo": {"name": "tune-text-embedding-model"},
            "root": {"inputDefinitions": {"parameters": declared}},
            "schemaVersion": "2.1.0",
            "sdkVersion": "kfp-2.17.0",
        }
    )


def hash_embedding(text: str, dim: int = 64) -> list[float]:
    """A deterministic embedding: word hashes into ``dim`` buckets, L2-normalised."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class FakeVertexPipelines(LoopbackFake):
    """The fake server; use as a context manager.

    Args:
        polls_to_finish: The GET of a pipeline job on which it ends (1 = the first GET).
        metrics: The evaluator metrics a succeeded job reports.
        operation_polls: 0 answers long-running operations done at once; N answers them not done, and done on
            the N-th GET of the operation (the work itself is carried out at once).
        project_number: When set, the fake answers as Vertex does: requests may name the project by its ID
            (:data:`PROJECT`) or its number, and every resource name it returns carries the NUMBER
            (``projects/123456789012/locations/...``), as the real service did on issue 14's first run (item C);
            aiplatform expects the number too (google/cloud/aiplatform/initializer.py converts "project number to
            project ID").

    Attributes:
        jobs: Pipeline jobs by resource name (Vertex JSON).
        endpoints: Endpoints by resource name (Vertex JSON).
        models: Model Registry entries by resource name (without version): their versions, oldest first.
        schedules: Pipeline job schedules by resource name (Vertex JSON).
        operations: Long-running operations by resource name, as they are once done (Vertex JSON).
    """

    thread_name = "fake-vertex-pipelines"

    def __init__(
        self,
        *,
        polls_to_finish: int = 2,
        metrics: dict[str, float] | None = None,
        operation_polls: int = 0,
        project_number: str = "",
    ):
        super().__init__()
        self.project_number = project_number
        self.polls_to_finish = polls_to_finish
        self.operation_polls = operation_polls
        self.operations: dict[str, dict] = {}
        self.metrics = metrics if metrics is not None else {"test/ndcg@10": 0.81}
        self.jobs: dict[str, dict] = {}
        self.endpoints: dict[str, dict] = {}
        self.models: dict[str, list[dict]] = {}
        self.schedules: dict[str, dict] = {}
        self._polls: dict[str, int] = {}
        self._fail_jobs: dict[str, str] = {}
        self._fail_next_create: int = 0
        self._counter = 0
        # What `tunekit doctor` finds (each test changes what its check must catch).
        #: Services Service Usage reports DISABLED (the others ENABLED).
        self.disabled_services: set[str] = set()
        #: Docker images in Artifact Registry, ``LOCATION-docker.pkg.dev/PROJECT/REPO/NAME:TAG``.
        self.images: set[str] = {f"{LOCATION}-docker.pkg.dev/{PROJECT}/tunekit/components:test"}
        #: Artifact Registry repositories (``PROJECT/REPO``) the caller may not read: 403.
        self.forbidden_repositories: set[str] = set()
        #: KFP templates by URL (without https://): their YAML.
        self.templates: dict[str, str] = {
            f"{EMBEDDING_TEMPLATE.removeprefix('https://')}/{tag}": template_yaml(EMBEDDING_TEMPLATE_PARAMETERS)
            for tag in ("v1.1.3", "v1.1.4")
        }
        #: Service accounts by email: ``{"disabled": bool, "caller_permissions": [...]}`` (default: actAs held).
        self.service_accounts: dict[str, dict] = {}
        #: Buckets and the permissions the caller holds on each.
        self.buckets: dict[str, set[str]] = {
            "bucket": {"storage.objects.create", "storage.objects.get", "storage.objects.list"}
        }
        #: Publisher models served per region.
        self.served_models: dict[str, set[str]] = {
            LOCATION: {
                "gemini-2.5-flash",
                "gemini-2.5-pro",
                "gemini-2.5-flash-lite",
                "gemini-3.1-flash-lite",
                "gemini-3.5-flash",
                "gemini-3.5-flash-lite",
            }
        }
        #: Model Garden publisher models (``publisher/model[@version]``) offered per region: the open models of
        #: Google's "Tune an open model" page in the regions it lists (components/tuning/gemini.py OPEN_MODELS).
        self.publisher_models: dict[str, set[str]] = {
            region: {"google/gemma-3-27b-it", "meta/llama3_1@llama-3.1-8b", "meta/llama3-2@llama-3.2-1b-instruct"}
            for region in (LOCATION, "europe-west4")
        }
        #: The fake Vertex API's reward dry run, served here too (``validateReinforcementTuningReward``): its
        #: ``validated`` holds the request bodies, its ``set_responder`` answers judge rewards.
        self.reward_service = FakeVertex()
        #: The OAuth refresh token is revoked: the token endpoint answers invalid_grant.
        self.revoked = False

    # --- scripting -------------------------------------------------------------------------------------------

    def fail_job(self, job_id: str, message: str) -> None:
        """Makes the job with this id (or id prefix) end in ``PIPELINE_STATE_FAILED`` with ``message``."""
        self._fail_jobs[job_id] = message

    def lose_next_create_reply(self) -> None:
        """The next create call creates the job but answers 503, as a lost reply would look to the client."""
        self._fail_next_create += 1

    def add_model(
        self,
        display_name: str,
        *,
        labels: dict[str, str] | None = None,
        with_endpoint: bool = False,
        project: str = PROJECT,
        location: str = LOCATION,
    ) -> str:
        """Seeds a Model Registry model (one version); returns ``NAME@1``.

        With ``with_endpoint``, it is deployed on a new endpoint of its own with all the traffic, as Vertex does
        for a tuned Gemini model.
        """
        with self._lock:
            self._counter += 1
            project = self._number(project)
            name = f"projects/{project}/locations/{location}/models/{8000 + self._counter}"
            self.models[name] = [self._new_version(name, {"displayName": display_name, "labels": labels or {}})]
            if with_endpoint:
                self._counter += 1
                endpoint = f"projects/{project}/locations/{location}/endpoints/{1000 + self._counter}"
                self.endpoints[endpoint] = {"name": endpoint, "displayName": display_name, "deployedModels": []}
                self._deploy(endpoint, {"model": f"{name}@1"}, {"0": 100})
        return f"{name}@1"

    def model_version(self, name: str) -> dict | None:
        """The version ``MODEL@VERSION_OR_ALIAS`` (or the newest version of ``MODEL``), or None."""
        base, _, version = name.partition("@")
        return self._find_version(base, version)

    def creates(self) -> list[tuple[str, str, Any]]:
        """The create calls received (accepted or refused)."""
        return [r for r in self.requests if r[0] == "POST" and urlparse(r[1]).path.endswith("/pipelineJobs")]

    # --- serving ---------------------------------------------------------------------------------------------

    def _number(self, project: str) -> str:
        """The project as Vertex names it in responses: its number when ``project_number`` is set."""
        return self.project_number if self.project_number and project == PROJECT else project

    def _by_number(self, value: Any) -> Any:
        """``value`` (a path or a JSON body) with ``projects/PROJECT/`` read as ``projects/NUMBER/``."""
        if not self.project_number or value is None:
            return value
        old, new = f"projects/{PROJECT}/", f"projects/{self.project_number}/"
        if isinstance(value, str):
            return value.replace(old, new)
        return json.loads(json.dumps(value).replace(old, new))

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = read_body(handler)
        parsed = urlparse(handler.path)
        if _TOKEN.match(parsed.path):  # form-encoded, not JSON
            with self._lock:
                self.requests.append((method, handler.path, parse_qs(raw.decode())))
            return self._send(handler, *self._token())
        body = json.loads(raw) if raw else None
        with self._lock:
            self.requests.append((method, handler.path, body))
            if method == "GET" and (m := _KFP_DOWNLOAD.match(parsed.path)):
                return self._send_template(handler, m["url"])
            status, payload = self._route(
                method, self._by_number(unquote(parsed.path)), self._by_number(body), parse_qs(parsed.query)
            )
        self._send(handler, status, payload)

    # --- what `tunekit doctor` asks -----------------------------------------------------------------------------

    def _token(self) -> tuple[int, dict]:
        # The refresh-token grant: https://developers.google.com/identity/protocols/oauth2/web-server#offline
        # (an access token and its lifetime; a revoked refresh token answers 400 invalid_grant).
        if self.revoked:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        return 200, {"access_token": "fake-token", "expires_in": 3599, "token_type": "Bearer"}

    def _send_template(self, handler: BaseHTTPRequestHandler, url: str) -> None:
        # kfp's RegistryClient.download_pipeline GETs {host}/{package}/{tag} and saves the body: the spec's YAML
        # (kfp/registry/context/kfp_pkg_dev.json, "download_tag_url").
        text = self.templates.get(url)
        if text is None:
            return self._send(handler, *self._error(404, "NOT_FOUND", f"{url} not found."))
        data = text.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/x-yaml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _doctor_route(self, method: str, path: str, query: dict, body: Any = None) -> tuple[int, dict] | None:
        if method == "GET" and (m := _SERVICE.match(path)):
            # Service Usage services.get: https://cloud.google.com/service-usage/docs/reference/rest/v1/services/get
            # (a Service with state ENABLED or DISABLED, named by the project number).
            project = self.project_number or m["project"]
            state = "DISABLED" if m["service"] in self.disabled_services else "ENABLED"
            return 200, {"name": f"projects/{project}/services/{m['service']}", "state": state}
        if method == "GET" and (m := _AR_TAG.match(path)):
            # Artifact Registry packages.tags.get / versions.get:
            # https://cloud.google.com/artifact-registry/docs/reference/rest/v1/projects.locations.repositories.packages.tags/get
            if f"{m['project']}/{m['repository']}" in self.forbidden_repositories:
                return self._error(403, "PERMISSION_DENIED", "Permission 'artifactregistry.tags.get' denied.")
            image = (
                f"{m['location']}-docker.pkg.dev/{m['project']}/{m['repository']}/{unquote(m['package'])}"
                f"{'@' if m['ref'].startswith('sha256:') else ':'}{m['ref']}"
            )
            if image not in self.images:
                return self._error(404, "NOT_FOUND", f"Requested entity was not found: {image}.")
            return 200, {"name": path.split("/v1/", 1)[1], "version": "sha256:0"}
        if (m := _SERVICE_ACCOUNT.match(path)) and method == ("POST" if m["test"] else "GET"):
            # IAM projects.serviceAccounts.get: https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/get
            # and testIamPermissions (the subset of the asked permissions the caller holds on the account):
            # https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/testIamPermissions
            account = self.service_accounts.get(m["email"])
            if account is None:
                return self._error(404, "NOT_FOUND", f"Unknown service account {m['email']}.")
            if m["test"]:
                held = set(account.get("caller_permissions", ["iam.serviceAccounts.actAs"]))
                return 200, {"permissions": [p for p in (body or {}).get("permissions", []) if p in held]}
            return 200, {"email": m["email"], "disabled": bool(account.get("disabled"))}
        if method == "GET" and (m := _TEST_PERMISSIONS.match(path)):
            # Cloud Storage buckets.testIamPermissions: https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions
            # (the subset of the asked permissions the caller holds; 404 for a bucket that does not exist).
            held = self.buckets.get(m["bucket"])
            if held is None:
                return self._error(404, "NOT_FOUND", "The specified bucket does not exist.")
            asked = query.get("permissions") or []
            return 200, {
                "kind": "storage#testIamPermissionsResponse",
                "permissions": [p for p in asked if p in held],
            }
        if method == "POST" and _VALIDATE_REWARD.match(path):
            # tuningJobs.validateReinforcementTuningReward, answered as the fake Vertex API answers it (its
            # sources cited there: fake_vertex.py FakeVertex._validate_reward).
            return self.reward_service._validate_reward(body or {})
        if method == "GET" and (m := _PUBLISHER_MODEL.match(path)):
            # Model Garden publishers.models.get on the region's endpoint:
            # https://cloud.google.com/vertex-ai/docs/reference/rest/v1beta1/publishers.models/get (a PublisherModel:
            # name publishers/{publisher}/models/{model}, versionId; NOT_FOUND for a model not offered there).
            model = m["model"].replace("/models/", "/", 1)
            if model not in self.publisher_models.get(m["location"], set()):
                return self._error(404, "NOT_FOUND", f"Publisher model publishers/{m['model']} not found.")
            name, _, version = m["model"].partition("@")
            return 200, {"name": f"publishers/{name}", "versionId": version or "001"}
        if method == "POST" and (m := _COUNT_TOKENS.match(path)):
            # countTokens: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/count-tokens
            # (a model not served in the region is NOT_FOUND).
            if m["model"] not in self.served_models.get(m["location"], set()):
                return self._error(
                    404, "NOT_FOUND", f"Publisher Model `{m['model']}` was not found in {m['location']}."
                )
            return 200, {"totalTokens": 2, "totalBillableCharacters": 12}
        return None

    @staticmethod
    def _error(code: int, status: str, message: str) -> tuple[int, dict]:
        return code, {"error": {"code": code, "status": status, "message": message}}

    def _route(self, method: str, path: str, body: Any, query: dict) -> tuple[int, dict]:
        if (answer := self._doctor_route(method, path, query, body)) is not None:
            return answer
        if method == "GET" and (m := _OPERATION.match(path)):
            return self._get_operation(m["name"])
        if method == "POST" and (m := _JOBS.match(path)):
            return self._create_job(m, body or {}, query)
        if method == "GET" and (m := _JOB.match(path)):
            return self._get_job(m["name"])
        if method == "POST" and (m := _ENDPOINTS.match(path)):
            self._counter += 1
            name = f"projects/{m['project']}/locations/{m['location']}/endpoints/{1000 + self._counter}"
            endpoint = {**(body or {}), "name": name, "deployedModels": []}
            self.endpoints[name] = endpoint
            return 200, self._done_operation(name, {"@type": _TYPE + "Endpoint", **endpoint})
        if method == "GET" and (m := _ENDPOINT.match(path)):
            if m["name"] not in self.endpoints:
                return self._error(404, "NOT_FOUND", f"Endpoint {m['name']} not found.")
            return 200, self.endpoints[m["name"]]
        if method == "POST" and (m := _DEPLOY.match(path)):
            endpoint = self.endpoints.get(m["name"])
            if endpoint is None:
                return self._error(404, "NOT_FOUND", f"Endpoint {m['name']} not found.")
            split = body.get("trafficSplit") or {"0": 100}
            if sum(split.values()) != 100 or not set(split) <= {
                "0",
                *(d["id"] for d in endpoint["deployedModels"]),
            }:
                return self._error(400, "INVALID_ARGUMENT", f"bad traffic split {split}.")
            deployed = self._deploy(m["name"], body["deployedModel"], split)
            return 200, self._done_operation(
                m["name"], {"@type": _TYPE + "DeployModelResponse", "deployedModel": deployed}
            )
        if method == "POST" and (m := _UNDEPLOY.match(path)):
            return self._undeploy(m["name"], body or {})
        if method == "DELETE" and (m := _ENDPOINT.match(path)):
            # endpoints.delete: a long-running operation; refused while models are deployed on it
            # (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.endpoints/delete).
            endpoint = self.endpoints.get(m["name"])
            if endpoint is None:
                return self._error(404, "NOT_FOUND", f"Endpoint {m['name']} not found.")
            if endpoint["deployedModels"]:
                return self._error(400, "FAILED_PRECONDITION", f"Endpoint {m['name']} has deployed models.")
            del self.endpoints[m["name"]]
            return 200, self._done_operation(m["name"], {"@type": "type.googleapis.com/google.protobuf.Empty"})
        if method == "DELETE" and (m := _MODEL.match(path)) and not m["verb"] and not m["version"]:
            # models.delete: refused while a version is deployed
            # (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models/delete).
            versions = self.models.get(m["name"])
            if versions is None:
                return self._error(404, "NOT_FOUND", f"Model {m['name']} not found.")
            if any(v["deployedModels"] for v in versions):
                return self._error(400, "FAILED_PRECONDITION", f"Model {m['name']} is deployed.")
            del self.models[m["name"]]
            return 200, self._done_operation(m["name"], {"@type": "type.googleapis.com/google.protobuf.Empty"})
        if method == "PATCH" and (m := _ENDPOINT.match(path)):
            endpoint = self.endpoints.get(m["name"])
            if endpoint is None:
                return self._error(404, "NOT_FOUND", f"Endpoint {m['name']} not found.")
            if "trafficSplit" in (query.get("updateMask") or [""])[0].split(","):
                split = {k: int(v) for k, v in (body.get("trafficSplit") or {}).items()}
                if sum(split.values()) != 100 or not set(split) <= {d["id"] for d in endpoint["deployedModels"]}:
                    return self._error(400, "INVALID_ARGUMENT", f"bad traffic split {split}.")
                endpoint["trafficSplit"] = split
            return 200, endpoint
        if method == "POST" and (m := _UPLOAD.match(path)):
            return self._upload(m, body or {})
        if method == "GET" and (m := _MODELS.match(path)):
            return self._list_models(m, query)
        if m := _MODEL.match(path):
            return self._model(method, m, body or {}, query)
        if method == "POST" and (m := _PREDICT.match(path)):
            dim = int(((body or {}).get("parameters") or {}).get("outputDimensionality") or 64)
            instances = (body or {}).get("instances") or []
            if "/endpoints/" not in m["name"]:
                # A publisher text-embedding model: predictions[i].embeddings.values.
                predictions = [
                    {"embeddings": {"values": hash_embedding(i.get("content", ""), dim)}} for i in instances
                ]
                return 200, {"predictions": predictions, "deployedModelId": "0"}
            # A tuned embedding model on its endpoint takes content, task_type and title in every instance and
            # answers each prediction as the plain vector: Google's embedding-tuning notebook
            # (GoogleCloudPlatform/generative-ai, embeddings/intro_embeddings_tuning.ipynb, get_top_k_documents:
            # instances of {"content", "task_type", "title"}, then np.asarray(response.predictions)) and aiplatform
            # 1.165.1 (vertexai/language_models/_language_models.py, TextEmbedding._parse_text_embedding_response:
            # "a mapping from a pretrained model, else the vector").
            endpoint = self.endpoints.get(m["name"])
            if endpoint is None or not endpoint["deployedModels"]:
                return self._error(404, "NOT_FOUND", f"Endpoint {m['name']} not found or has no deployed model.")
            for index, instance in enumerate(instances):
                missing = [k for k in ("content", "task_type", "title") if k not in instance]
                if missing:
                    return self._error(400, "INVALID_ARGUMENT", f"instances[{index}] lacks {', '.join(missing)}.")
            predictions = [hash_embedding(f"{i['title']} {i['content']}", dim) for i in instances]
            return 200, {"predictions": predictions, "deployedModelId": endpoint["deployedModels"][0]["id"]}
        if (m := _SCHEDULES.match(path)) or (m := _SCHEDULE.match(path)):
            return self._schedule(method, m, body or {}, query)
        return self._error(404, "NOT_FOUND", f"no fake for {method} {path}")

    # --- schedules -------------------------------------------------------------------------------------------

    def _schedule(self, method: str, m: re.Match, body: dict, query: dict) -> tuple[int, dict]:
        groups = m.groupdict()
        if "name" not in groups:  # the collection
            parent = f"projects/{m['project']}/locations/{m['location']}"
            if method == "POST":
                if not body.get("cron") or not body.get("createPipelineJobRequest"):
                    return self._error(400, "INVALID_ARGUMENT", "cron and createPipelineJobRequest are required.")
                self._counter += 1
                name = f"{parent}/schedules/{8000 + self._counter}"
                schedule = {**body, "name": name, "state": "ACTIVE", "createTime": "2026-01-01T00:00:00Z"}
                self.schedules[name] = schedule
                return 200, schedule
            if method == "GET":
                wanted = re.fullmatch(r'display_name="([^"]*)"', (query.get("filter") or [""])[0])
                found = [
                    s
                    for n, s in sorted(self.schedules.items())
                    if n.startswith(parent + "/") and (not wanted or s.get("displayName") == wanted.group(1))
                ]
                return 200, {"schedules": found}
            return self._error(405, "METHOD_NOT_ALLOWED", f"{method} on {parent}/schedules")
        name, verb = m["name"], m["verb"]
        schedule = self.schedules.get(name)
        if schedule is None:
            return self._error(404, "NOT_FOUND", f"Schedule {name} not found.")
        if method == "GET" and not verb:
            return 200, schedule
        if method == "POST" and verb in ("pause", "resume"):
            if verb == "pause" and schedule["state"] != "ACTIVE":
                return self._error(400, "FAILED_PRECONDITION", f"Schedule {name} is not active.")
            if verb == "resume" and schedule["state"] != "PAUSED":
                return self._error(400, "FAILED_PRECONDITION", f"Schedule {name} is not paused.")
            schedule["state"] = "PAUSED" if verb == "pause" else "ACTIVE"
            return 200, {}
        if method == "DELETE" and not verb:
            del self.schedules[name]
            self._counter += 1
            return 200, {
                "name": f"{name}/operations/{self._counter}",
                "done": True,
                "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            }
        return self._error(404, "NOT_FOUND", f"no fake for {method} {name}")

    # --- endpoints and Model Registry --------------------------------------------------------------------------

    def _time(self) -> str:
        self._counter += 1
        return (
            f"2026-01-01T{self._counter // 3600 % 24:02d}:{self._counter // 60 % 60:02d}:{self._counter % 60:02d}Z"
        )

    def _new_version(self, name: str, body: dict, version_id: str = "1") -> dict:
        now = self._time()
        return {
            **body,
            "name": name,
            "versionId": version_id,
            "versionAliases": list(body.get("versionAliases") or []),
            "labels": dict(body.get("labels") or {}),
            "deployedModels": [],
            "createTime": now,
            "updateTime": now,
            "versionCreateTime": now,
            "versionUpdateTime": now,
        }

    def _find_version(self, base: str, version: str) -> dict | None:
        versions = self.models.get(base) or []
        if not version:
            return versions[-1] if versions else None
        return next((v for v in versions if version in (v["versionId"], *v["versionAliases"])), None)

    def _deploy(self, endpoint_name: str, deployed_model: dict, split: dict) -> dict:
        endpoint = self.endpoints[endpoint_name]
        self._counter += 1
        deployed = {**deployed_model, "id": str(5000 + self._counter)}
        endpoint["deployedModels"].append(deployed)
        endpoint["trafficSplit"] = {(deployed["id"] if k == "0" else k): int(v) for k, v in split.items()}
        base, _, version = deployed_model["model"].partition("@")
        target = self._find_version(base, version)
        if target is not None:
            target["deployedModels"].append({"endpoint": endpoint_name, "deployedModelId": deployed["id"]})
        return deployed

    def _undeploy(self, name: str, body: dict) -> tuple[int, dict]:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return self._error(404, "NOT_FOUND", f"Endpoint {name} not found.")
        deployed_id = body.get("deployedModelId", "")
        deployed = next((d for d in endpoint["deployedModels"] if d["id"] == deployed_id), None)
        if deployed is None:
            return self._error(404, "NOT_FOUND", f"DeployedModel {deployed_id} not found on {name}.")
        split = {k: int(v) for k, v in (body.get("trafficSplit") or endpoint.get("trafficSplit") or {}).items()}
        if split.get(deployed_id, 0) > 0 and len(endpoint["deployedModels"]) > 1:
            return self._error(
                400,
                "FAILED_PRECONDITION",
                f"DeployedModel {deployed_id} still receives {split[deployed_id]}% traffic.",
            )
        split.pop(deployed_id, None)
        endpoint["deployedModels"].remove(deployed)
        endpoint["trafficSplit"] = split
        base, _, version = deployed["model"].partition("@")
        target = self._find_version(base, version)
        if target is not None:
            target["deployedModels"] = [r for r in target["deployedModels"] if r["deployedModelId"] != deployed_id]
        return 200, self._done_operation(name, {"@type": _TYPE + "UndeployModelResponse"})

    def _upload(self, m: re.Match, body: dict) -> tuple[int, dict]:
        model = body.get("model") or {}
        if not model.get("displayName") or not (model.get("containerSpec") or {}).get("imageUri"):
            return self._error(
                400, "INVALID_ARGUMENT", "model.displayName and model.containerSpec.imageUri are required."
            )
        parent_model = body.get("parentModel", "")
        if parent_model:
            if parent_model not in self.models:
                return self._error(404, "NOT_FOUND", f"Model {parent_model} not found.")
            name = parent_model
            versions = self.models[name]
            taken = {a for v in versions for a in v["versionAliases"]}
            if taken & set(model.get("versionAliases") or []):
                return self._error(400, "INVALID_ARGUMENT", "an alias is already used by another version.")
            versions.append(self._new_version(name, model, str(len(versions) + 1)))
        else:
            self._counter += 1
            name = f"projects/{m['project']}/locations/{m['location']}/models/{body.get('modelId') or 9000 + self._counter}"
            self.models[name] = [self._new_version(name, model)]
        version_id = self.models[name][-1]["versionId"]
        return 200, self._done_operation(
            name, {"@type": _TYPE + "UploadModelResponse", "model": name, "modelVersionId": version_id}
        )

    def _list_models(self, m: re.Match, query: dict) -> tuple[int, dict]:
        prefix = f"projects/{m['project']}/locations/{m['location']}/models/"
        wanted = label_filter(query)
        found = [
            versions[-1]
            for name, versions in self.models.items()
            if name.startswith(prefix) and all(versions[-1]["labels"].get(k) == v for k, v in wanted.items())
        ]
        return 200, {"models": found}

    def _model(self, method: str, m: re.Match, body: dict, query: dict) -> tuple[int, dict]:
        version = self._find_version(m["name"], m["version"] or "")
        if version is None:
            return self._error(404, "NOT_FOUND", f"Model {m['name']}@{m['version'] or ''} not found.")
        verb = m["verb"] or ""
        if method == "GET" and not verb:
            return 200, version
        if method == "GET" and verb == "listVersions":
            return 200, {"models": self.models[m["name"]]}
        if method == "PATCH" and not verb:
            mask = (query.get("updateMask") or [""])[0].split(",")
            for field in ("labels", "versionDescription", "displayName", "description"):
                if field in mask:
                    version[field] = body.get(field, {} if field == "labels" else "")
            version["updateTime"] = version["versionUpdateTime"] = self._time()
            return 200, version
        if method == "POST" and verb == "mergeVersionAliases":
            if not (m["version"] or "").isdigit():
                return self._error(400, "INVALID_ARGUMENT", "the name must include a version id.")
            aliases = list(version["versionAliases"])
            for alias in body.get("versionAliases") or []:
                if alias.startswith("-"):
                    aliases = [a for a in aliases if a != alias[1:]]
                elif alias not in aliases:
                    if any(alias in v["versionAliases"] for v in self.models[m["name"]] if v is not version):
                        return self._error(400, "INVALID_ARGUMENT", f"alias {alias} is used by another version.")
                    aliases.append(alias)
            version["versionAliases"] = aliases
            version["updateTime"] = version["versionUpdateTime"] = self._time()
            return 200, version
        return self._error(404, "NOT_FOUND", f"no fake for {method} {m.string}")

    def _done_operation(self, resource: str, response: dict) -> dict:
        self._counter += 1
        name = f"{resource}/operations/{self._counter}"
        self.operations[name] = {"name": name, "done": True, "response": response}
        self._polls[name] = 0
        if self.operation_polls:
            return {"name": name, "done": False}
        return self.operations[name]

    def _get_operation(self, name: str) -> tuple[int, dict]:
        operation = self.operations.get(name)
        if operation is None:
            return self._error(404, "NOT_FOUND", f"Operation {name} not found.")
        self._polls[name] += 1
        if self._polls[name] < self.operation_polls:
            return 200, {"name": name, "done": False}
        return 200, operation

    def _create_job(self, m: re.Match, body: dict, query: dict) -> tuple[int, dict]:
        job_id = (query.get("pipelineJobId") or [f"job-{len(self.jobs) + 1}"])[0]
        name = f"projects/{m['project']}/locations/{m['location']}/pipelineJobs/{job_id}"
        if name in self.jobs:
            return self._error(409, "ALREADY_EXISTS", f"PipelineJob {name} already exists.")
        if not body.get("templateUri") and not body.get("pipelineSpec"):
            return self._error(400, "INVALID_ARGUMENT", "either pipelineSpec or templateUri is required.")
        if (body.get("templateUri") or "").startswith(EMBEDDING_TEMPLATE):
            # A parameter the template does not declare is refused, with aiplatform's own message
            # (google/cloud/aiplatform/utils/pipeline_utils.py, PipelineRuntimeConfigBuilder._get_vertex_value).
            given = (body.get("runtimeConfig") or {}).get("parameterValues") or {}
            for key in sorted(set(given) - EMBEDDING_TEMPLATE_PARAMETERS):
                return self._error(
                    400,
                    "INVALID_ARGUMENT",
                    f"The pipeline parameter {key} is not found in the pipeline job input definitions.",
                )
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": "2026-01-01T00:00:00Z"}
        self.jobs[name] = job
        self._polls[name] = 0
        if self._fail_next_create:
            self._fail_next_create -= 1
            return self._error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return 200, job

    def _get_job(self, name: str) -> tuple[int, dict]:
        job = self.jobs.get(name)
        if job is None:
            return self._error(404, "NOT_FOUND", f"PipelineJob {name} not found.")
        if job["state"] in ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED"):
            return 200, job
        self._polls[name] += 1
        if self._polls[name] < self.polls_to_finish:
            job["state"] = "PIPELINE_STATE_RUNNING"
            return 200, job
        job_id = name.rsplit("/", 1)[-1]
        failure = next((msg for key, msg in self._fail_jobs.items() if job_id.startswith(key)), None)
        if failure is not None:
            job["state"] = "PIPELINE_STATE_FAILED"
            job["error"] = {"code": 9, "message": failure}
            return 200, job
        parent = name.split("/pipelineJobs/")[0]
        model = f"{parent}/models/{7000 + len(self.jobs)}"
        self.models.setdefault(model, [self._new_version(model, {"displayName": "tuned-embedding-model"})])
        job["state"] = "PIPELINE_STATE_SUCCEEDED"
        job["jobDetail"] = {
            "taskDetails": [
                {"taskId": "1", "taskName": "text-embedding-trainer", "state": "SUCCEEDED"},
                {
                    "taskId": "2",
                    "taskName": "text-embedding-evaluator",
                    "state": "SUCCEEDED",
                    "outputs": {"metrics": {"artifacts": [{"name": "metrics", "metadata": dict(self.metrics)}]}},
                },
                {
                    "taskId": "3",
                    "taskName": "text-embedding-model-uploader",
                    "state": "SUCCEEDED",
                    "execution": {
                        "name": f"{parent}/metadataStores/default/executions/3",
                        "metadata": {"output:model_resource_name": model},
                    },
                },
            ]
        }
        return 200, job


def serve_fake_pipelines(monkeypatch, **options) -> Iterator[FakeVertexPipelines]:
    """A pytest fixture body: a started :class:`FakeVertexPipelines` that tunekit's clients are aimed at.

    Only loopback connections are allowed while it runs (anything else fails the test afterwards), and
    ``TUNEKIT_VERTEX_BASE_URL`` is set to it. Use as ``yield from serve_fake_pipelines(monkeypatch, ...)``.

    Args:
        monkeypatch: pytest's fixture.
        **options: :class:`FakeVertexPipelines` arguments (``polls_to_finish``, ``operation_polls``...).
    """
    yield from serve_fake(monkeypatch, FakeVertexPipelines(**options))

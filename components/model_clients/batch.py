"""Vertex AI batch prediction for Gemini (google-genai ``client.batches``) as a :class:`~.engine.Backend`.

Half the online price and no online quota, at the cost of latency (a job may queue for hours): the right choice
for large sets. One engine call sends every uncached prompt as one job:

1. the requests are written as JSONL (``{"request": {contents, generationConfig, systemInstruction, labels}}``) to
   ``{staging_uri}/{fingerprint}/input.jsonl``; each request carries its index in the label ``tunekit_row``, so
   answers are matched whatever order the output has;
2. the job is created with ``client.batches.create`` through
   :func:`~tunekit.components.common.vertex_jobs.create_or_attach`: a request id is written to a state file before
   the create call and carried in the job's display name (google-genai's ``CreateBatchJobConfig`` has no labels),
   the job's name right after it, before waiting, so a retried or restarted step re-attaches to the same job (same
   fingerprint) instead of paying for a second one; a job that failed is replaced by a new one. The state file is
   a local path or a ``gs://`` object (next to a ``gs://`` response cache; see :mod:`~.common.state`), so it
   outlives the container;
3. the job is polled until it ends (:func:`~tunekit.components.common.vertex_jobs.wait_for`: transient poll
   errors are retried); ``predictions*.jsonl`` under the output prefix are read back and each line's
   ``response`` becomes a :class:`Generation` (a line with an error ``status`` is ``failed``; a request with no
   line at all is ``failed`` too, so nothing is dropped).

Cloud Storage is reached through :class:`GcsIO` (the ``/gcs`` mount or the storage client); tests pass
:class:`LocalGcsIO`, which keeps ``gs://`` objects under a local directory as the fake Vertex server does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any, Protocol

from google.genai import types

from tunekit.components.common import uris, vertex_jobs
from tunekit.components.common.state import delete_state
from tunekit.components.model_clients.base import FAILED, Generation, GenerationConfig, Prompt
from tunekit.components.model_clients.engine import Backend
from tunekit.components.model_clients.pricing import BATCH_DISCOUNT
from tunekit.components.model_clients.vertex import (
    generation_config_to_genai,
    make_genai_client,
    prompt_to_contents,
    response_to_generation,
)

#: The most requests Vertex takes in one batch job.
MAX_BATCH_REQUESTS = 200_000
_ROW_LABEL = "tunekit_row"
#: Batch prediction jobs: a partial success still has answers (the failed rows say why); a failed job is replaced
#: by a new one when the engine (or the step) tries again.
BATCH_JOB = vertex_jobs.JobKind(
    "Batch job",
    frozenset({vertex_jobs.JOB_SUCCEEDED, "JOB_STATE_PARTIALLY_SUCCEEDED"}),
    vertex_jobs.JOB_FAILED_STATES,
    replace_failed=True,
)


def read_response(response: dict) -> types.GenerateContentResponse:
    """A batch output line's ``response``, read the way google-genai reads an online answer.

    google-genai's models forbid unknown fields (``extra='forbid'`` in ``google/genai/_common.py``); for online
    calls the SDK first strips the fields it does not model (``BaseModel._from_response`` ->
    ``_remove_extra_fields``), so a field Google adds later does not break a client. Validating a batch line
    strictly instead would fail the whole read on such a field, after the batch job was paid for.
    """
    return types.GenerateContentResponse._from_response(response=response, kwargs={})


class StagingIO(Protocol):
    """Reads, writes and lists ``gs://`` objects."""

    def write_text(self, uri: str, text: str) -> None:
        """Writes an object."""

    def read_text(self, uri: str) -> str:
        """Reads an object."""

    def list(self, prefix: str) -> list[str]:
        """URIs of the objects under a prefix."""


class GcsIO:
    """Cloud Storage through the ``/gcs`` mount when present, else the google-cloud-storage client."""

    def write_text(self, uri: str, text: str) -> None:
        """Writes an object."""
        # Removed however this ends (a text that cannot be encoded, a failed upload, an interrupt).
        with tempfile.TemporaryDirectory(prefix="tunekit-batch-") as folder:
            path = os.path.join(folder, "input.jsonl")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            uris.upload(path, uri)

    def read_text(self, uri: str) -> str:
        """Reads an object."""
        with uris.local_copy(uri) as path, open(path, encoding="utf-8") as handle:
            return handle.read()

    def list(self, prefix: str) -> list[str]:
        """URIs of the objects under a prefix."""
        if os.path.isdir(uris.GCS_FUSE_ROOT):
            root = uris.gcs_to_fuse(prefix)
            return [uris.fuse_to_gcs(os.path.join(d, f)) for d, _, files in os.walk(root) for f in sorted(files)]
        from google.cloud import storage

        bucket, _, name = prefix[len(uris.GCS_PREFIX) :].partition("/")
        return [f"gs://{bucket}/{b.name}" for b in storage.Client().list_blobs(bucket, prefix=name)]


class LocalGcsIO:
    """``gs://bucket/object`` kept at ``root/bucket/object`` (offline tests, with the fake's ``gcs_root``)."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, uri: str) -> str:
        return os.path.join(self.root, uri[len(uris.GCS_PREFIX) :])

    def write_text(self, uri: str, text: str) -> None:
        """Writes an object."""
        path = self._path(uri)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)

    def read_text(self, uri: str) -> str:
        """Reads an object."""
        with open(self._path(uri), encoding="utf-8") as handle:
            return handle.read()

    def list(self, prefix: str) -> list[str]:
        """URIs of the objects under a prefix."""
        root = self._path(prefix)
        out = []
        for directory, _, files in os.walk(root):
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(directory, name), self.root)
                out.append(uris.GCS_PREFIX + rel.replace(os.sep, "/"))
        return sorted(out)


def batch_request(prompt: Prompt, config: GenerationConfig, row: int, model: str = "") -> dict[str, Any]:
    """One line of a Gemini batch input file (Vertex REST JSON, camelCase), for ``model``'s thinking setting."""
    contents = [c.model_dump(mode="json", exclude_none=True) for c in prompt_to_contents(prompt)]
    # The online request's decoding settings (thinking included), in the REST field names (google-genai's models
    # alias to camelCase).
    generation = generation_config_to_genai(config, model=model).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    request: dict[str, Any] = {
        "contents": contents,
        "generationConfig": generation,
        "labels": {_ROW_LABEL: str(row)},
    }
    if prompt.system:
        request["systemInstruction"] = {"parts": [{"text": prompt.system}]}
    return {"request": request}


class VertexBatchBackend(Backend):
    """Gemini batch prediction jobs; one engine call is one job (re-attached after a restart).

    Args:
        model: A publisher model id (``gemini-2.5-flash``) or a tuned model's resource name.
        project: The Google Cloud project.
        location: The Vertex AI region.
        staging_uri: A ``gs://`` prefix for the jobs' input and output files.
        state_path: Where the running job's name and fingerprint are kept: a local path (kept with the step's
            outputs) or a ``gs://`` object (next to the response cache); each job's file is this name with
            ``-<fingerprint>`` before the extension (see :meth:`job_state_path`). None keeps no state (no
            re-attach).
        client: A google-genai client; by default :func:`.vertex.make_genai_client`'s.
        io: Cloud Storage access; :class:`GcsIO` by default.
        poll_interval_s: Seconds between polls of the job.
        max_wait_s: Give up waiting after this long (Vertex may queue a job for up to 72 hours).
    """

    name = "vertex_batch"
    cache_namespace = "vertex"  # batch answers are the online model's answers: one cache for both
    max_batch = MAX_BATCH_REQUESTS
    billing_multiplier = BATCH_DISCOUNT  # half the online price
    call_timeout_s = 0.0  # no per-call timeout: the job's own limit applies

    def __init__(
        self,
        model: str,
        project: str,
        location: str,
        *,
        staging_uri: str,
        state_path: str | None = None,
        client: Any = None,
        io: StagingIO | None = None,
        poll_interval_s: float = 30.0,
        max_wait_s: float = 72 * 3600.0,
    ):
        if not uris.is_gcs(staging_uri):
            raise ValueError(f"staging_uri must be a gs:// prefix; got {staging_uri!r}")
        self.model = model
        self.project = project
        self.location = location
        self.staging_uri = staging_uri.rstrip("/")
        self.state_path = state_path
        self._client = client
        self.io: StagingIO = io or GcsIO()
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        #: Names of the jobs this backend created (not re-attached ones), for tests and reports.
        self.created_jobs: list[str] = []

    def describe(self) -> dict[str, Any]:
        """Backend, model and staging prefix for the report."""
        return {"backend": self.name, "model": self.model, "staging_uri": self.staging_uri}

    @property
    def client(self) -> Any:
        """The google-genai client (built on first use)."""
        if self._client is None:
            self._client = make_genai_client(self.project, self.location)
        return self._client

    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Runs one batch job for the prompts (on a worker thread: it polls for a long time)."""
        return await asyncio.to_thread(self.run_job, list(prompts), config)

    def run_job(self, prompts: list[Prompt], config: GenerationConfig) -> list[Generation]:
        """Creates (or re-attaches to) the job for these prompts, waits for it and reads its answers.

        Raises:
            JobFailed: The job failed, was cancelled or expired (every prompt then fails in the engine).
            JobTimeout: The job did not end within ``max_wait_s`` (a ``TimeoutError``: the engine tries again,
                and re-attaches).
        """
        lines = [
            json.dumps(batch_request(p, config, i, self.model), sort_keys=True) for i, p in enumerate(prompts)
        ]
        fingerprint = hashlib.sha256((self.model + "\n" + "\n".join(lines)).encode("utf-8")).hexdigest()[:20]
        input_uri = f"{self.staging_uri}/{fingerprint}/input.jsonl"
        state_path = self.job_state_path(fingerprint) if self.state_path else None

        def display_name(request_id: str) -> str:
            return f"tunekit-{fingerprint[:12]}-{request_id[:8]}"

        def create(request_id: str) -> Any:
            self.io.write_text(input_uri, "\n".join(lines) + "\n")
            return self.client.batches.create(
                model=self.model,
                src=input_uri,
                config=types.CreateBatchJobConfig(
                    dest=f"{self.staging_uri}/{fingerprint}/output", display_name=display_name(request_id)
                ),
            )

        def find(request_id: str) -> Any:
            # ListBatchPredictionJobs filters on display_name (aiplatform_v1 job_service.py); checked here too.
            wanted = display_name(request_id)
            listed = self.client.batches.list(config=types.ListBatchJobsConfig(filter=f'display_name="{wanted}"'))
            return next((job for job in listed if job.display_name == wanted), None)

        try:
            job = vertex_jobs.run_job(
                state_path,
                BATCH_JOB,
                get=lambda name: self.client.batches.get(name=name),
                create=create,
                find=find,
                inputs={"fingerprint": fingerprint},
                fields={"input_uri": input_uri},
                state_what="batch state file",
                retry_delay_s=min(self.poll_interval_s, 2.0),
                poll_interval_s=self.poll_interval_s,
                timeout_s=self.max_wait_s,
                on_start=self._note_created,
            ).job
        except vertex_jobs.JobFailed:
            if state_path:
                delete_state(state_path)  # a failed job is not re-attached: the next try creates a new one
            raise
        generations = self._read_outputs(f"{self.staging_uri}/{fingerprint}/output", len(prompts), job.name)
        if state_path:
            delete_state(state_path)
        return generations

    def _note_created(self, started: vertex_jobs.Started) -> None:
        if not started.resumed:
            self.created_jobs.append(started.job.name)

    def job_state_path(self, fingerprint: str) -> str:
        """The state file of the job for ``fingerprint``: ``state_path`` with ``-<fingerprint>`` before ``.json``.

        One file per job, so that jobs running side by side (more prompts than one job takes, or two steps sharing
        a ``gs://`` cache folder) never overwrite or delete each other's state.
        """
        root, ext = os.path.splitext(self.state_path or "")
        return f"{root}-{fingerprint}{ext or '.json'}"

    def _read_outputs(self, prefix: str, count: int, job_name: str) -> list[Generation]:
        results: list[Generation | None] = [None] * count
        files = [u for u in self.io.list(prefix) if os.path.basename(u).startswith("predictions")]
        for uri in files:
            for raw in self.io.read_text(uri).splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                labels = (line.get("request") or {}).get("labels") or {}
                try:
                    row = int(labels[_ROW_LABEL])
                except (KeyError, ValueError):
                    continue
                if not 0 <= row < count:
                    continue
                if line.get("response"):
                    response = read_response(line["response"])
                    results[row] = response_to_generation(response)
                else:
                    results[row] = Generation(
                        text="", status=FAILED, error=f"batch: {line.get('status') or 'no response'}"
                    )
        return [
            r
            if r is not None
            else Generation(text="", status=FAILED, error=f"no answer in the output of {job_name}")
            for r in results
        ]

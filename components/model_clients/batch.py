"""Vertex AI batch prediction for Gemini (google-genai ``client.batches``) as a :class:`~.engine.Backend`.

Half the online price and no online quota, at the cost of latency (a job may queue for hours): the right choice
for large sets. One engine call sends every uncached prompt as one job:

1. the requests are written as JSONL (``{"request": {contents, generationConfig, systemInstruction, labels}}``) to
   ``{staging_uri}/{fingerprint}/input.jsonl``; each request carries its index in the label ``tunekit_row``, so
   answers are matched whatever order the output has;
2. the job is created with ``client.batches.create`` and its name written to a state file *before* waiting, so a
   retried or restarted step re-attaches to the same job (same fingerprint) instead of paying for a second one; the
   state file is a local path or a ``gs://`` object (next to a ``gs://`` response cache: read and written through
   the ``/gcs`` mount when present, else through google-cloud-storage), so it outlives the container;
3. the job is polled until it ends; ``predictions*.jsonl`` under the output prefix are read back and each line's
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
import time
from collections.abc import Sequence
from typing import Any, Protocol

from google.genai import types

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state
from tunekit.components.model_clients.base import FAILED, Generation, GenerationConfig, Prompt
from tunekit.components.model_clients.engine import Backend
from tunekit.components.model_clients.pricing import BATCH_DISCOUNT
from tunekit.components.model_clients.vertex import make_genai_client, response_to_generation

#: The most requests Vertex takes in one batch job.
MAX_BATCH_REQUESTS = 200_000
_ROW_LABEL = "tunekit_row"
_DONE = {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
_ENDED = _DONE | {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


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
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as handle:
            handle.write(text)
        try:
            uris.upload(handle.name, uri)
        finally:
            os.unlink(handle.name)

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


def batch_request(prompt: Prompt, config: GenerationConfig, row: int) -> dict[str, Any]:
    """One line of a Gemini batch input file (Vertex REST JSON, camelCase)."""
    contents = [c.model_dump(mode="json", exclude_none=True) for c in _contents(prompt)]
    generation: dict[str, Any] = {
        "maxOutputTokens": config.max_output_tokens,
        "temperature": config.temperature,
        "candidateCount": config.candidate_count,
    }
    if config.temperature > 0:
        generation["topP"] = config.top_p
    if config.seed is not None:
        generation["seed"] = config.seed
    request: dict[str, Any] = {
        "contents": contents,
        "generationConfig": generation,
        "labels": {_ROW_LABEL: str(row)},
    }
    if prompt.system:
        request["systemInstruction"] = {"parts": [{"text": prompt.system}]}
    return {"request": request}


def _contents(prompt: Prompt) -> list[types.Content]:
    from tunekit.components.model_clients.vertex import prompt_to_contents

    return prompt_to_contents(prompt)


def _state_name(job: Any) -> str:
    state = getattr(job, "state", None)
    return getattr(state, "value", str(state or ""))


def _state_blob(uri: str) -> Any:
    from google.cloud import storage  # only for a gs:// state without the /gcs mount

    bucket, _, name = uri[len(uris.GCS_PREFIX) :].partition("/")
    return storage.Client().bucket(bucket).blob(name)


def _read_batch_state(path: str) -> dict[str, Any]:
    """The batch state at ``path`` (local, ``/gcs/...`` or ``gs://``); {} when there is none."""
    if uris.is_gcs(path) and os.path.isdir(uris.GCS_FUSE_ROOT):
        path = uris.gcs_to_fuse(path)
    if not uris.is_gcs(path):
        return read_state(path, what="batch state file")
    from google.api_core import exceptions

    try:
        text = _state_blob(path).download_as_text()
    except exceptions.NotFound:
        return {}
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"batch state file is not valid JSON ({exc}); delete it to start over", path=path
        ) from None
    if not isinstance(state, dict):
        raise UserError("batch state file is not a JSON object; delete it to start over", path=path)
    return state


def _write_batch_state(path: str, state: dict[str, Any] | None) -> None:
    """Writes the batch state at ``path`` (local, ``/gcs/...`` or ``gs://``); None deletes it."""
    if uris.is_gcs(path) and os.path.isdir(uris.GCS_FUSE_ROOT):
        path = uris.gcs_to_fuse(path)
    if not uris.is_gcs(path):
        if state is None:
            if os.path.exists(path):
                os.unlink(path)
        else:
            write_state(path, state)  # atomic: a kill leaves the old state or the new one
        return
    from google.api_core import exceptions

    blob = _state_blob(path)
    if state is None:
        try:
            blob.delete()
        except exceptions.NotFound:
            pass
    else:
        # One object upload: Cloud Storage replaces an object whole, so a kill leaves the old state or the new one.
        blob.upload_from_string(json.dumps(state, sort_keys=True), content_type="application/json")


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
            RuntimeError: The job failed, was cancelled or expired (every prompt then fails in the engine).
            TimeoutError: The job did not end within ``max_wait_s``.
        """
        lines = [json.dumps(batch_request(p, config, i), sort_keys=True) for i, p in enumerate(prompts)]
        fingerprint = hashlib.sha256((self.model + "\n" + "\n".join(lines)).encode("utf-8")).hexdigest()[:20]
        job = self._reattach(fingerprint)
        if job is None:
            input_uri = f"{self.staging_uri}/{fingerprint}/input.jsonl"
            self.io.write_text(input_uri, "\n".join(lines) + "\n")
            job = self.client.batches.create(
                model=self.model,
                src=input_uri,
                config=types.CreateBatchJobConfig(
                    dest=f"{self.staging_uri}/{fingerprint}/output", display_name=f"tunekit-{fingerprint[:12]}"
                ),
            )
            self.created_jobs.append(job.name)
            self._write_state(
                fingerprint, {"job_name": job.name, "fingerprint": fingerprint, "input_uri": input_uri}
            )
        deadline = time.monotonic() + self.max_wait_s
        while _state_name(job) not in _ENDED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch job {job.name} still {_state_name(job)} after {self.max_wait_s:g} s")
            time.sleep(self.poll_interval_s)
            job = self.client.batches.get(name=job.name)
        state = _state_name(job)
        if state not in _DONE:
            self._write_state(fingerprint, None)
            message = getattr(job.error, "message", None) if job.error else None
            raise RuntimeError(f"batch job {job.name} ended {state}" + (f": {message}" if message else ""))
        generations = self._read_outputs(f"{self.staging_uri}/{fingerprint}/output", len(prompts), job.name)
        self._write_state(fingerprint, None)
        return generations

    def _reattach(self, fingerprint: str) -> Any:
        if not self.state_path:
            return None
        state = _read_batch_state(self.job_state_path(fingerprint))
        if state.get("fingerprint") != fingerprint or not state.get("job_name"):
            return None
        job = self.client.batches.get(name=state["job_name"])
        if _state_name(job) in _ENDED and _state_name(job) not in _DONE:
            return None  # a failed job is not re-attached: a new one is created
        return job

    def job_state_path(self, fingerprint: str) -> str:
        """The state file of the job for ``fingerprint``: ``state_path`` with ``-<fingerprint>`` before ``.json``.

        One file per job, so that jobs running side by side (more prompts than one job takes, or two steps sharing
        a ``gs://`` cache folder) never overwrite or delete each other's state.
        """
        root, ext = os.path.splitext(self.state_path or "")
        return f"{root}-{fingerprint}{ext or '.json'}"

    def _write_state(self, fingerprint: str, state: dict[str, Any] | None) -> None:
        if self.state_path:
            _write_batch_state(self.job_state_path(fingerprint), state)

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
                    response = types.GenerateContentResponse.model_validate(line["response"])
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

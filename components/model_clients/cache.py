"""A persistent response cache: a re-run, or a retried step, never pays twice for the same prompt.

Answers are appended as JSON lines to a segment file in a directory kept with the step's outputs. Every open
starts a new segment (``responses-<time>-<random>.jsonl``), so two runs never interleave their writes, and a line
that a killed process left half-written is the last line of its own segment: readers skip it, later appends never
land behind it. Each answer is written with one ``write`` call as soon as it arrives, so after a SIGKILL at most
the answers still in flight are lost: a restarted run pays again for at most ``concurrency`` prompts.

Cloud Storage: inside Vertex AI Pipelines an output artifact's path is under ``/gcs`` (gcsfuse), which uploads a
file when it is closed or synced, so under ``/gcs`` (or for a ``gs://`` URI with the mount present) segments are
closed every ``segment_records`` answers (100 by default there): a container that disappears loses at most that
many answers plus those in flight. A ``gs://`` URI without the mount goes through the google-cloud-storage client:
existing segments are downloaded at open, and the current segment is uploaded every ``segment_records`` answers and
at close.

Keys are SHA-256 over the canonical JSON of the backend's namespace, the model, the generation config and the
prompt (system instruction, history and text), plus any extra fields the caller adds (a sample index).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tunekit.components.common import uris
from tunekit.components.model_clients.base import FAILED, Generation, GenerationConfig, Prompt

SEGMENT_GLOB = "responses-*.jsonl"
#: Segment size under Cloud Storage: each closed segment is an uploaded object.
GCS_SEGMENT_RECORDS = 100


def cache_key(
    backend: str,
    model: str,
    config: GenerationConfig,
    prompt: Prompt,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The cache key of one request.

    Args:
        backend: The backend's cache namespace (``vertex`` for online and batch Gemini alike: same answers).
        model: The model name or endpoint.
        config: The decoding settings.
        prompt: The prompt.
        extra: Anything else that changes the answer (a sample index for repeated sampling).

    Returns:
        A 64-character hex digest.
    """
    payload = {
        "backend": backend,
        "model": model,
        "config": dataclasses.asdict(config),
        "prompt": {"system": prompt.system, "history": [list(t) for t in prompt.history], "text": prompt.text},
        "extra": dict(extra or {}),
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _generation_to_record(key: str, generation: Generation, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    record = {"key": key, **dataclasses.asdict(generation), "time": round(time.time(), 3)}
    if meta:
        record["meta"] = dict(meta)
    return record


def _record_to_generation(record: Mapping[str, Any]) -> Generation:
    names = {f.name for f in dataclasses.fields(Generation)}
    return Generation(**{k: v for k, v in record.items() if k in names})


class ResponseCache:
    """Answers by cache key, loaded from and appended to a directory.

    Failed answers are not stored: a re-run tries them again. Blocked, truncated and empty answers are stored,
    because asking again costs as much and answers the same.

    Args:
        directory: A local directory (``/gcs/...`` included) or a ``gs://`` URI.
        segment_records: Close the segment and start another after this many answers; None keeps one segment
            per open (the default on local disks; :data:`GCS_SEGMENT_RECORDS` under Cloud Storage).
        fsync: ``fsync`` after every answer, for a machine crash rather than a killed process (slower).

    Attributes:
        loaded: Answers read at open.
        skipped_lines: Lines that could not be read (a write cut by a kill), skipped.
        written: Answers appended since open.
    """

    def __init__(self, directory: str, *, segment_records: int | None = None, fsync: bool = False):
        self.uri = directory
        self._remote = None
        if uris.is_gcs(directory):
            if os.path.isdir(uris.GCS_FUSE_ROOT):
                directory = uris.gcs_to_fuse(directory)
            else:
                self._remote = directory.rstrip("/")
                directory = tempfile.mkdtemp(prefix="tunekit-cache-")
        on_gcs = self._remote is not None or directory.startswith(uris.GCS_FUSE_ROOT + "/")
        self.directory = directory
        self.segment_records = (
            segment_records if segment_records is not None else (GCS_SEGMENT_RECORDS if on_gcs else None)
        )
        self.fsync = fsync
        self._entries: dict[str, Generation] = {}
        self._lock = threading.Lock()
        self._handle = None
        self._segment_path = ""
        self._segment_count = 0
        self.loaded = 0
        self.skipped_lines = 0
        self.written = 0
        os.makedirs(directory, exist_ok=True)
        if self._remote is not None:
            self._download()
        self._load()

    # --- reading ---------------------------------------------------------------------------------------------

    def _load(self) -> None:
        for path in sorted(glob.glob(os.path.join(self.directory, SEGMENT_GLOB))):
            for record in self._read_segment(path):
                if record.get("status") == FAILED or "key" not in record:
                    continue
                self._entries[record["key"]] = _record_to_generation(record)
        self.loaded = len(self._entries)

    def _read_segment(self, path: str) -> Iterator[dict[str, Any]]:
        with open(path, "rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self.skipped_lines += 1
                    continue
                if isinstance(record, dict):
                    yield record

    def get(self, key: str) -> Generation | None:
        """The stored answer for ``key`` (a copy), or None."""
        with self._lock:
            generation = self._entries.get(key)
        return dataclasses.replace(generation, candidates=list(generation.candidates)) if generation else None

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # --- writing ---------------------------------------------------------------------------------------------

    def put(self, key: str, generation: Generation, meta: Mapping[str, Any] | None = None) -> bool:
        """Stores an answer and appends it to the current segment at once.

        Args:
            key: From :func:`cache_key`.
            generation: The answer; a ``failed`` one is not stored.
            meta: Extra fields kept on the line for people reading the cache (backend, model).

        Returns:
            Whether it was stored.
        """
        if generation.status == FAILED:
            return False
        line = (json.dumps(_generation_to_record(key, generation, meta), ensure_ascii=False) + "\n").encode()
        with self._lock:
            self._entries[key] = generation
            if self._handle is None:
                self._open_segment()
            # One write call per line: a kill leaves either the whole line or a torn tail of this segment.
            os.write(self._handle, line)
            if self.fsync:
                os.fsync(self._handle)
            self.written += 1
            self._segment_count += 1
            if self.segment_records and self._segment_count >= self.segment_records:
                self._close_segment()
        return True

    def _open_segment(self) -> None:
        name = f"responses-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.jsonl"
        self._segment_path = os.path.join(self.directory, name)
        if self._remote is not None:
            os.makedirs(self.directory, exist_ok=True)  # the local mirror is removed at close
        # 0666 less the umask, as open() gives: a team's shared cache stays readable to the team (umask 002).
        self._handle = os.open(self._segment_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        self._segment_count = 0

    def _close_segment(self) -> None:
        if self._handle is None:
            return
        os.close(self._handle)
        self._handle = None
        if self._remote is not None:
            self._upload(self._segment_path)

    def close(self) -> None:
        """Closes (and, for ``gs://`` without the mount, uploads) the current segment.

        For ``gs://`` without the mount, the local mirror (a temporary folder) is removed too: every answer is in
        Cloud Storage by then. The answers stay in memory, and a later :meth:`put` starts a new segment.
        """
        with self._lock:
            self._close_segment()
            self._remove_mirror()

    def _remove_mirror(self) -> None:
        if self._remote is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- gs:// through the storage client --------------------------------------------------------------------

    def _bucket_and_prefix(self) -> tuple[Any, str]:
        from google.cloud import storage  # only off Vertex, without the /gcs mount

        bucket, _, prefix = self._remote[len(uris.GCS_PREFIX) :].partition("/")
        return storage.Client().bucket(bucket), prefix

    def _download(self) -> None:
        bucket, prefix = self._bucket_and_prefix()
        for blob in bucket.client.list_blobs(bucket, prefix=prefix.rstrip("/") + "/responses-"):
            blob.download_to_filename(os.path.join(self.directory, os.path.basename(blob.name)))

    def _upload(self, path: str) -> None:
        bucket, prefix = self._bucket_and_prefix()
        bucket.blob(f"{prefix.rstrip('/')}/{os.path.basename(path)}").upload_from_filename(path)

    def __del__(self) -> None:
        try:  # a cache that was never closed: its mirror goes with it
            self._remove_mirror()
        except Exception:  # noqa: BLE001 (never raise from a finaliser)
            pass

"""Fingerprints of a run's input data, and the retrain-or-skip decision made from them.

A fingerprint is a sha256 hex digest over one line per input, in the order given:

- a local file: the sha256 of its content (the path itself does not count, so moving data changes nothing);
- a local folder: the sha256 of every file in it, with their relative paths, sorted;
- a ``gs://`` object: its MD5 checksum as Cloud Storage records it, read from the object's metadata without
  downloading it; composite objects have no MD5, so their CRC32C, size and generation stand in;
- a ``gs://`` prefix with no object of that exact name: every object under ``prefix/``, as above;
- an empty URI (an optional input left out): the word ``none``.

A re-upload of identical bytes keeps the fingerprint (except for composite objects, whose generation counts); any
change of content, or of which input holds it, changes it.

The pipelines compare it with the fingerprint recorded by the last successful deployment of the same purpose (the
champion's ``data_fingerprint``); an equal fingerprint ends the run early as "skipped: data unchanged".
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from tunekit.components.common.errors import UserError
from tunekit.components.common.uris import GCS_PREFIX, is_gcs

#: Length of the fingerprint prefix kept where storage is short (Vertex model labels hold at most 63 characters).
SHORT_LENGTH = 32
_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a local file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _local_entry(path: str) -> str:
    if os.path.isfile(path):
        return f"file sha256={file_sha256(path)}"
    if os.path.isdir(path):
        lines = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                lines.append(f"{os.path.relpath(full, path)} {file_sha256(full)}")
        return "dir sha256=" + hashlib.sha256("\n".join(lines).encode()).hexdigest()
    raise UserError("input data not found; check the path", path=path)


def _blob_entry(blob) -> str:
    if blob.md5_hash:
        return f"md5={blob.md5_hash}"
    return f"crc32c={blob.crc32c} size={blob.size} generation={blob.generation}"


def _gcs_entry(uri: str, client) -> str:
    bucket_name, _, name = uri[len(GCS_PREFIX) :].partition("/")
    if not bucket_name:
        raise UserError("a gs:// URI needs a bucket: gs://BUCKET/OBJECT", path=uri)
    if client is None:
        from google.cloud import storage  # installed with google-cloud-aiplatform

        client = storage.Client()
    bucket = client.bucket(bucket_name)
    blob = bucket.get_blob(name) if name and not name.endswith("/") else None
    if blob is not None:
        return "object " + _blob_entry(blob)
    prefix = name if not name or name.endswith("/") else name + "/"
    blobs = sorted(client.list_blobs(bucket_name, prefix=prefix), key=lambda b: b.name)
    if not blobs:
        raise UserError(
            "no such Cloud Storage object or folder; check the URI and the bucket's permissions", path=uri
        )
    lines = [f"{b.name[len(prefix) :]} {_blob_entry(b)}" for b in blobs]
    return "prefix " + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def uri_entry(uri: str, *, client=None) -> str:
    """The line one input contributes to a fingerprint (see the module docstring).

    Args:
        uri: A local path, a ``gs://`` URI, or '' for an input left out.
        client: A ``google.cloud.storage.Client`` for ``gs://`` URIs (default: one with the environment's
            credentials).

    Raises:
        UserError: The file, folder or object does not exist.
    """
    if not uri:
        return "none"
    if is_gcs(uri):
        return _gcs_entry(uri, client)
    return _local_entry(uri)


def fingerprint_uris(uris: list[str], *, client=None) -> str:
    """The sha256 hex fingerprint of the data behind ``uris`` (order matters: it says which input is which).

    Raises:
        UserError: An input does not exist.
    """
    digest = hashlib.sha256(b"tunekit-data-fingerprint-v1\n")
    for index, uri in enumerate(uris):
        digest.update(f"{index} {uri_entry(str(uri), client=client)}\n".encode())
    return digest.hexdigest()


def fingerprints_match(current: str, recorded: str) -> bool:
    """Whether a recorded fingerprint (full, or its :data:`SHORT_LENGTH`-character label form) is ``current``."""
    if not current or not recorded:
        return False
    recorded = recorded.strip().lower()
    if len(recorded) < SHORT_LENGTH:
        return False
    return current.lower().startswith(recorded)


@dataclass
class RetrainDecision:
    """Whether a run goes on, and why.

    Attributes:
        proceed: True to train; False ends the run early.
        fingerprint: The data's fingerprint now.
        champion_fingerprint: The fingerprint the champion was trained on ('' when there is none).
        reason: One line for people: "skipped: data unchanged (...)" or why the run goes on.
    """

    proceed: bool
    fingerprint: str
    champion_fingerprint: str
    reason: str


def decide(
    fingerprint: str, champion_fingerprint: str, *, force: bool = False, champion: str = ""
) -> RetrainDecision:
    """Decides whether to retrain: only when forced, when there is no champion, or when the data changed."""
    short = fingerprint[:12]
    if force:
        reason = f"forced: training although the data may be unchanged (data {short})"
        return RetrainDecision(True, fingerprint, champion_fingerprint, reason)
    if not champion:
        return RetrainDecision(True, fingerprint, "", f"no champion yet: training (data {short})")
    if not champion_fingerprint:
        reason = f"the champion ({champion}) recorded no data fingerprint: training (data {short})"
        return RetrainDecision(True, fingerprint, "", reason)
    if fingerprints_match(fingerprint, champion_fingerprint):
        reason = f"skipped: data unchanged (data {short} is what the champion {champion} was trained on)"
        return RetrainDecision(False, fingerprint, champion_fingerprint, reason)
    reason = f"data changed since the champion {champion} ({champion_fingerprint[:12]} -> {short}): training"
    return RetrainDecision(True, fingerprint, champion_fingerprint, reason)


def check_data(
    uris: list[str],
    *,
    purpose: str,
    backend: str,
    local_registry: str = "",
    project: str = "",
    location: str = "",
    force: bool = False,
    storage_client=None,
    find_champion=None,
) -> RetrainDecision:
    """Fingerprints ``uris`` and compares it with the champion of ``purpose``.

    Args:
        uris: The run's data inputs ('' for one left out).
        purpose: Whose champion to compare with.
        backend: "local" (the local registry JSON) or "vertex" (the Model Registry).
        local_registry: The local registry file.
        project: Google Cloud project (Vertex).
        location: Google Cloud region (Vertex).
        force: Train even when the data is unchanged.
        storage_client: For ``gs://`` URIs (default: one with the environment's credentials).
        find_champion: The champion lookup (default:
            ``tunekit.components.deployment.champion.find_champion``); tests pass their own.
    """
    fingerprint = fingerprint_uris(uris, client=storage_client)
    if force:
        return decide(fingerprint, "", force=True)
    if find_champion is None:
        from tunekit.components.deployment.champion import find_champion
    backend = "vertex" if backend == "vertex" else "local"
    if backend == "local" and not local_registry:
        return decide(fingerprint, "", champion="")
    found = find_champion(
        purpose, backend=backend, local_registry=local_registry, project=project, location=location
    )
    if found is None:
        return decide(fingerprint, "", champion="")
    name = found.registry_id or found.model
    return decide(fingerprint, found.data_fingerprint or "", champion=name)

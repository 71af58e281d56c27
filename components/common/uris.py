"""Reading and writing local paths and ``gs://`` URIs alike.

Inside Vertex AI Pipelines, Cloud Storage is mounted at ``/gcs`` (gcsfuse), so ``gs://b/o`` is read as
``/gcs/b/o`` there; elsewhere the google-cloud-storage client is used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

GCS_PREFIX = "gs://"
GCS_FUSE_ROOT = "/gcs"


def is_gcs(uri: str) -> bool:
    """Whether ``uri`` names a Cloud Storage object."""
    return uri.startswith(GCS_PREFIX)


def gcs_to_fuse(uri: str) -> str:
    """``gs://bucket/obj`` to ``/gcs/bucket/obj``; other strings unchanged."""
    return GCS_FUSE_ROOT + "/" + uri[len(GCS_PREFIX) :] if is_gcs(uri) else uri


def fuse_to_gcs(path: str) -> str:
    """``/gcs/bucket/obj`` to ``gs://bucket/obj``; other strings unchanged."""
    prefix = GCS_FUSE_ROOT + "/"
    return GCS_PREFIX + path[len(prefix) :] if path.startswith(prefix) else path


def _fuse_available() -> bool:
    return os.path.isdir(GCS_FUSE_ROOT)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """Yields a local file path holding the content of ``uri`` (a path, or a ``gs://`` URI)."""
    if not is_gcs(uri):
        yield uri
        return
    if _fuse_available():
        yield gcs_to_fuse(uri)
        return
    from google.cloud import storage  # imported lazily: only needed off Vertex

    bucket_name, _, blob_name = uri[len(GCS_PREFIX) :].partition("/")
    with tempfile.TemporaryDirectory() as tmp:
        target = os.path.join(tmp, os.path.basename(blob_name) or "object")
        storage.Client().bucket(bucket_name).blob(blob_name).download_to_filename(target)
        yield target


def upload(local_path: str, uri: str) -> str:
    """Copies a local file to ``uri`` (a path or ``gs://`` URI) and returns ``uri``."""
    if not is_gcs(uri):
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        if os.path.abspath(local_path) != os.path.abspath(uri):
            shutil.copyfile(local_path, uri)
        return uri
    if _fuse_available():
        target = gcs_to_fuse(uri)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(local_path, target)
        return uri
    from google.cloud import storage

    bucket_name, _, blob_name = uri[len(GCS_PREFIX) :].partition("/")
    storage.Client().bucket(bucket_name).blob(blob_name).upload_from_filename(local_path)
    return uri

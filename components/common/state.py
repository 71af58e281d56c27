"""Small JSON state files that make slow or paid steps resumable.

A step writes what it has started (a request id, a job's name, an upload's name) to a state file *before* it
waits, so that a retry re-attaches to that work instead of paying for it twice (see
:mod:`~tunekit.components.common.vertex_jobs`). The file is replaced whole: a kill leaves either the old state or
the new one, never half a file.

A state file is a local path (kept with the step's outputs), a ``/gcs/...`` path, or a ``gs://`` object (read and
written through the ``/gcs`` mount when present, else through google-cloud-storage), so that it can outlive the
container.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError


def _where(path: str) -> str:
    """``path`` as this container reaches it: a ``gs://`` URI becomes its ``/gcs`` path when the mount is there."""
    if uris.is_gcs(path) and os.path.isdir(uris.GCS_FUSE_ROOT):
        return uris.gcs_to_fuse(path)
    return path


def _blob(uri: str) -> Any:
    from google.cloud import storage  # only for a gs:// state without the /gcs mount

    bucket, _, name = uri[len(uris.GCS_PREFIX) :].partition("/")
    return storage.Client().bucket(bucket).blob(name)


def read_state(path: str, *, what: str = "state file") -> dict[str, Any]:
    """Reads a JSON state file.

    Args:
        path: The state file (local, ``/gcs/...`` or ``gs://``).
        what: How the file is named in an error message (for example ``"tuning state file"``).

    Returns:
        The state; an empty dict when the file does not exist yet.

    Raises:
        UserError: The file exists but is not a JSON object.
    """
    path = _where(path)
    if uris.is_gcs(path):
        from google.api_core import exceptions

        try:
            text = _blob(path).download_as_text()
        except exceptions.NotFound:
            return {}
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return {}
    try:
        state = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc}); delete it to start over", path=path) from None
    if not isinstance(state, dict):
        raise UserError(f"{what} is not a JSON object; delete it to start over", path=path)
    return state


def write_state(path: str, state: dict[str, Any]) -> None:
    """Writes a JSON state file whole.

    A local file is written to a temporary file in the same folder, then ``os.replace``-d; a ``gs://`` object is
    one upload (Cloud Storage replaces an object whole).

    Args:
        path: The state file (local, ``/gcs/...`` or ``gs://``); a local folder is created if needed.
        state: The state to write (keys sorted, indented by 2 in a local file).
    """
    path = _where(path)
    if uris.is_gcs(path):
        _blob(path).upload_from_string(json.dumps(state, sort_keys=True), content_type="application/json")
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=directory, prefix=os.path.basename(path) + ".tmp-", delete=False, encoding="utf-8"
    ) as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise


def delete_state(path: str) -> None:
    """Deletes a state file (local, ``/gcs/...`` or ``gs://``); one that does not exist is fine."""
    path = _where(path)
    if uris.is_gcs(path):
        from google.api_core import exceptions

        try:
            _blob(path).delete()
        except exceptions.NotFound:
            pass
    elif os.path.exists(path):
        os.unlink(path)


def check_recorded(state: dict[str, Any], path: str, *, what: str = "state file", **expected: Any) -> None:
    """Checks that a state file records work for the same inputs as this step's.

    Args:
        state: The state file's content.
        path: The state file (named in the error).
        what: How the file is named in the error.
        expected: The inputs; a key the file does not record is not checked.

    Raises:
        UserError: A recorded value differs from the expected one (the file belongs to other work).
    """
    for key, value in expected.items():
        recorded = state.get(key)
        if recorded is not None and recorded != value:
            raise UserError(
                f"the {what} records a job for {key} '{recorded}', but this step asks for '{value}'; "
                "use a new state file (a new pipeline run) or delete this one to start over",
                path=path,
            )

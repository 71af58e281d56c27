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

import contextlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
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

    A local file is written to a temporary file in the same folder, flushed to disk (``fsync``), then
    ``os.replace``-d, so a reader sees the old file or the new one, never half of one. A file that is replaced
    keeps its mode; a new one gets the mode the user's umask gives (``0644`` under umask ``022``), as
    ``open()`` would. A ``gs://`` object is one upload (Cloud Storage replaces an object whole).

    Args:
        path: The state file (local, ``/gcs/...`` or ``gs://``); a local folder is created if needed.
        state: The state to write (keys sorted, indented by 2 in a local file).
    """
    path = _where(path)
    if uris.is_gcs(path):
        _blob(path).upload_from_string(json.dumps(state, sort_keys=True), content_type="application/json")
        return
    write_text(path, json.dumps(state, indent=2, sort_keys=True))


def write_text(path: str, text: str) -> None:
    """Writes a local text file whole (UTF-8): what :func:`write_state` does for a local path, for any text.

    The text goes to a temporary file in the same folder, is flushed to disk (``fsync``), then ``os.replace``-d
    onto ``path``: a kill leaves the old file or the new one, and a symlink at ``path`` is replaced, not written
    through. A replaced file keeps its mode; a new one gets the mode the user's umask gives. The folder is
    created if needed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        status = None
    # A symlink is replaced by a new file, which takes the umask's mode, not that of the file the link named.
    mode = stat.S_IMODE(status.st_mode) if status is not None and not stat.S_ISLNK(status.st_mode) else None
    temporary, fd = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None and stat.S_IMODE(os.stat(temporary).st_mode) != mode:
            try:
                os.chmod(temporary, mode)
            except OSError:  # a file system without modes (some mounts): the write still counts
                pass
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


@contextlib.contextmanager
def replace_directory(target: str) -> Iterator[str]:
    """Yields a new, empty folder beside ``target``; when the block ends without error, it becomes ``target``.

    For generated folders (a model saved with ``save_pretrained``, an adapter): whatever writes into the yielded
    folder, a kill leaves either the old ``target`` (or none) or the complete new one, never half of one. The
    files are flushed to disk before the rename. An existing ``target`` is moved aside, replaced, then deleted.
    On an error the new folder is deleted and ``target`` is left as it was. The folder gets the mode the user's
    umask gives (``tempfile.mkdtemp`` would give 0700).

    Under the Cloud Storage mount (``/gcs``, gcsfuse) a folder cannot be renamed reliably: on a flat bucket
    gcsfuse renames a folder object by object, and only below its ``--rename-dir-limit`` descendants, 0 by
    default (GoogleCloudPlatform/gcsfuse, the flag's definition). There the folder is ``target`` itself, written
    in place; gcsfuse uploads each file whole when it is closed.
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    if target.startswith(uris.GCS_FUSE_ROOT + "/"):
        os.makedirs(target, exist_ok=True)
        yield target
        return
    os.makedirs(parent, exist_ok=True)
    temporary = _create_temporary_directory(parent, os.path.basename(target))
    try:
        yield temporary
        for folder, _, files in os.walk(temporary):
            for name in files:
                _fsync_file(os.path.join(folder, name))
        _fsync_directory(temporary)
        old = None
        if os.path.lexists(target):
            old = _create_temporary_directory(parent, os.path.basename(target) + ".old")
            os.rmdir(old)  # only its unique name is wanted
            os.rename(target, old)
        try:
            os.rename(temporary, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
        _fsync_directory(parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _create_temporary_directory(directory: str, name: str) -> str:
    """A new folder ``<name>.tmp-<random>`` in ``directory``, with mode ``0777`` less the umask."""
    while True:
        temporary = os.path.join(directory, f"{name}.tmp-{secrets.token_hex(6)}")
        try:
            os.mkdir(temporary, 0o777)
            return temporary
        except FileExistsError:
            continue


def _fsync_file(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temporary(directory: str, name: str) -> tuple[str, int]:
    """A new file ``<name>.tmp-<random>`` in ``directory``, opened for writing with mode ``0666`` less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        temporary = os.path.join(directory, f"{name}.tmp-{secrets.token_hex(6)}")
        try:
            return temporary, os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue


def _fsync_directory(directory: str) -> None:
    """Flushes a folder's entries (the rename) to disk, where the platform and file system allow it."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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

"""Small JSON state files that make slow or paid steps resumable.

A step writes what it has started (a request id, a job's name, an upload's name) to a state file *before* it
waits, so that a retry re-attaches to that work instead of paying for it twice. The file is replaced atomically:
a kill leaves either the old state or the new one, never half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from tunekit.components.common.errors import UserError


def read_state(path: str, *, what: str = "state file") -> dict[str, Any]:
    """Reads a JSON state file.

    Args:
        path: The state file.
        what: How the file is named in an error message (for example ``"tuning state file"``).

    Returns:
        The state; an empty dict when the file does not exist yet.

    Raises:
        UserError: The file exists but is not a JSON object.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} is not valid JSON ({exc}); delete it to start over", path=path) from None
    if not isinstance(state, dict):
        raise UserError(f"{what} is not a JSON object; delete it to start over", path=path)
    return state


def write_state(path: str, state: dict[str, Any]) -> None:
    """Writes a JSON state file atomically (a temporary file in the same folder, then ``os.replace``).

    Args:
        path: The state file; its folder is created if needed.
        state: The state to write (keys sorted, indented by 2).
    """
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

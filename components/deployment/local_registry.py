"""A local model registry: one JSON file listing the models a local run deployed, newest last.

Each entry records the model directory, its base model, metrics, the gate's reason, the pipeline run and the
data fingerprint, and carries the ``champion`` alias when it is the model now serving its purpose. An entry made
champion also records ``previous_champion``, the id of the entry it replaced, so a rollback is well defined:
:func:`rollback` gives the alias back to that entry and marks the rolled-back one ``rolled-back``; rolling back
again goes one further step back.

Several processes may share one registry (two pipelines deploying at once, a rollback during a deploy): every
change holds an exclusive lock on the sidecar file ``<registry>.lock`` (``fcntl.flock``; POSIX only, and the file
system must support it: local disks do, and so does NFS on Linux; where Python has no ``fcntl``, as on Windows,
a change is a one-line :class:`~tunekit.components.common.errors.UserError`), re-reads the registry under the
lock, allocates ids there, and replaces the file whole (:func:`~tunekit.components.common.state.write_state`), so no change is
lost and no id is given twice. Readers take no lock: they see the old file or the new one. A file that is
replaced keeps its mode; a new registry (and its lock file) gets the mode the user's umask gives.

A hand-edited registry is read tolerantly where the meaning is clear (``"aliases": null`` is no aliases) and is
otherwise a :class:`~tunekit.components.common.errors.UserError` naming the entry and what to fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_state

CHAMPION = "champion"
ROLLED_BACK = "rolled-back"
#: Entry fields that hold text when present (``null`` reads as absent).
_TEXT_FIELDS = ("id", "purpose", "model_dir", "kind", "base_model", "data_fingerprint", "previous_champion")
#: Entry fields that hold a JSON object when present (``null`` reads as absent).
_OBJECT_FIELDS = ("metrics", "labels")


def _check_entry(path: str, number: int, model: object) -> None:
    """Checks the shape of entry ``number`` (1-based) and reads ``"aliases": null`` as no aliases, in place."""
    if not isinstance(model, dict):
        raise UserError(
            f"entry {number} of 'models' is not an object (it is {json.dumps(model)[:40]}); fix or remove it",
            path=path,
        )
    name = f"entry {number}" + (f" ('{model['id']}')" if isinstance(model.get("id"), str) else "")
    aliases = model.get("aliases")
    if aliases is None:
        model["aliases"] = []
    elif not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise UserError(
            f"{name}: 'aliases' must be a list of names such as [\"champion\"], not {json.dumps(aliases)[:40]}; "
            "fix or remove it",
            path=path,
        )
    for key in _TEXT_FIELDS:
        if model.get(key) is not None and not isinstance(model[key], str):
            raise UserError(f"{name}: '{key}' must be a string; fix or remove it", path=path)
    for key in _OBJECT_FIELDS:
        if model.get(key) is not None and not isinstance(model[key], dict):
            raise UserError(f"{name}: '{key}' must be an object; fix or remove it", path=path)
    if model.get("rollbacks") is not None and not isinstance(model["rollbacks"], list):
        raise UserError(f"{name}: 'rollbacks' must be a list; fix or remove it", path=path)


def _read(path: str) -> dict:
    """The registry at ``path`` (no models when there is no file), its shape checked."""
    if not os.path.exists(path):
        return {"models": []}
    try:
        with open(path, encoding="utf-8") as handle:
            registry = json.load(handle)
    except ValueError as exc:
        raise UserError(f"the registry is not valid JSON ({exc}); fix or delete it", path=path) from None
    except OSError as exc:
        raise UserError(f"cannot read the registry: {exc.strerror}", path=path) from None
    if not isinstance(registry, dict) or not isinstance(registry.get("models"), list):
        raise UserError("the registry has no 'models' list; is this a tunekit registry file?", path=path)
    for number, model in enumerate(registry["models"], 1):
        _check_entry(path, number, model)
    return registry


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Holds the exclusive lock of the registry at ``path`` (``<path>.lock``; created, and its folder, if needed)."""
    lock_path = path + ".lock"
    try:
        import fcntl  # POSIX only: Windows has no flock
    except ImportError:
        raise UserError(
            "the local registry needs POSIX file locks (fcntl), which this platform lacks; "
            "run tunekit on Linux or macOS (on Windows, inside WSL)",
            path=path,
        ) from None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except PermissionError:  # another user's lock file that we may only read: a read-only descriptor locks too
            fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"cannot open the registry's lock file: {exc.strerror}", path=lock_path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise UserError(
                f"cannot lock the registry ({exc.strerror}); keep the registry on a local disk", path=lock_path
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _champion_of(registry: dict, purpose: str) -> dict | None:
    for model in reversed(registry["models"]):
        if model.get("purpose") == purpose and CHAMPION in model["aliases"]:
            return model
    return None


def _new_id(registry: dict, purpose: str) -> str:
    """``<purpose>-<n>``: n is one more than the number of entries, or the next number no entry's id has taken."""
    taken = {m.get("id") for m in registry["models"]}
    number = len(registry["models"]) + 1
    while f"{purpose}-{number}" in taken:
        number += 1
    return f"{purpose}-{number}"


def register_model(registry_path: str, entry: dict, *, purpose: str, champion: bool = True) -> dict:
    """Adds ``entry`` to the registry at ``registry_path`` and returns it as stored.

    Safe against other processes changing the registry at the same time (see the module's docstring).

    Args:
        registry_path: The registry JSON file (created if missing).
        entry: What to record: at least ``model_dir``; anything JSON-able.
        purpose: What the model is for (the pipeline name, by default); one champion per purpose.
        champion: Make this model the champion of ``purpose`` (the previous one loses the alias and is recorded
            as this entry's ``previous_champion``).

    Raises:
        UserError: The registry cannot be read, locked or written, or has entries of an unexpected shape.
    """
    with _locked(registry_path):
        registry = _read(registry_path)
        stored = dict(entry)
        stored.update(
            {
                "id": _new_id(registry, purpose),
                "purpose": purpose,
                "registered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "aliases": [CHAMPION] if champion else [],
            }
        )
        if champion:
            previous = _champion_of(registry, purpose)
            stored["previous_champion"] = previous["id"] if previous is not None else ""
            for model in registry["models"]:
                if model.get("purpose") == purpose and CHAMPION in model["aliases"]:
                    model["aliases"] = [a for a in model["aliases"] if a != CHAMPION]
        registry["models"].append(stored)
        _write(registry_path, registry)
    return stored


def _write(path: str, registry: dict) -> None:
    try:
        write_state(path, registry)  # written whole and renamed: a crash never leaves half a registry
    except OSError as exc:
        raise UserError(f"cannot write the registry: {exc.strerror}", path=path) from None


def champion(registry_path: str, purpose: str) -> dict | None:
    """The entry that holds the ``champion`` alias for ``purpose``, if any."""
    return _champion_of(_read(registry_path), purpose)


def purposes(registry_path: str) -> list[str]:
    """The purposes that have entries in the registry, in first-registered order."""
    return list(dict.fromkeys(str(m.get("purpose") or "") for m in _read(registry_path)["models"]))


def rollback(registry_path: str, purpose: str) -> tuple[dict, dict]:
    """Gives the ``champion`` alias of ``purpose`` back to the champion the current one replaced.

    Safe against other processes changing the registry at the same time (see the module's docstring): two
    rollbacks at once go two steps back.

    Args:
        registry_path: The registry JSON file.
        purpose: The purpose to roll back.

    Returns:
        ``(restored, rolled_back)``: the entry that is champion again, and the one that lost the alias (it now
        carries the ``rolled-back`` alias).

    Raises:
        UserError: No registry file, no champion for ``purpose``, no previous champion to go back to, or a
            registry that cannot be read or has entries of an unexpected shape.
    """
    if not os.path.exists(registry_path):
        raise UserError("no registry file here; run a local pipeline first or pass --registry", path=registry_path)
    with _locked(registry_path):
        registry = _read(registry_path)
        current = _champion_of(registry, purpose)
        if current is None:
            known = ", ".join(
                p for p in dict.fromkeys(str(m.get("purpose") or "") for m in registry["models"]) if p
            )
            raise UserError(
                f"purpose '{purpose}' has no champion in the registry (purposes there: {known or 'none'})",
                path=registry_path,
            )
        wanted = current.get("previous_champion") or ""
        matches = [m for m in registry["models"] if wanted and m.get("id") == wanted]
        if not matches:
            raise UserError(
                f"'{current.get('id')}' is the first champion of '{purpose}': there is no previous champion to "
                "roll back to",
                path=registry_path,
            )
        if len(matches) > 1:
            raise UserError(
                f"{len(matches)} entries have the id '{wanted}' (the previous champion of '{current.get('id')}'); "
                "give all but one a new id, or remove them",
                path=registry_path,
            )
        previous = matches[0]
        if previous is current:
            raise UserError(
                f"'{wanted}' names itself as its previous champion; fix its 'previous_champion'",
                path=registry_path,
            )
        current["aliases"] = [a for a in current["aliases"] if a != CHAMPION] + [ROLLED_BACK]
        previous["aliases"] = [a for a in previous["aliases"] if a != ROLLED_BACK] + [CHAMPION]
        previous["rollbacks"] = list(previous.get("rollbacks") or []) + [
            {"from": current.get("id"), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        ]
        _write(registry_path, registry)
    return previous, current

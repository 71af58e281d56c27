"""A local model registry: one JSON file listing the models a local run deployed, newest last.

Each entry records the model directory, its base model, metrics, the gate's reason, the pipeline run and the
data fingerprint, and carries the ``champion`` alias when it is the model now serving its purpose. An entry made
champion also records ``previous_champion``, the id of the entry it replaced, so a rollback is well defined:
:func:`rollback` gives the alias back to that entry and marks the rolled-back one ``rolled-back``; rolling back
again goes one further step back.
"""

from __future__ import annotations

import datetime as dt
import json
import os

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_state

CHAMPION = "champion"
ROLLED_BACK = "rolled-back"


def _read(path: str) -> dict:
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
    return registry


def _champion_of(registry: dict, purpose: str) -> dict | None:
    for model in reversed(registry["models"]):
        if model.get("purpose") == purpose and CHAMPION in model.get("aliases", []):
            return model
    return None


def register_model(registry_path: str, entry: dict, *, purpose: str, champion: bool = True) -> dict:
    """Adds ``entry`` to the registry at ``registry_path`` and returns it as stored.

    Args:
        registry_path: The registry JSON file (created if missing).
        entry: What to record: at least ``model_dir``; anything JSON-able.
        purpose: What the model is for (the pipeline name, by default); one champion per purpose.
        champion: Make this model the champion of ``purpose`` (the previous one loses the alias and is recorded
            as this entry's ``previous_champion``).
    """
    registry = _read(registry_path)
    stored = dict(entry)
    stored.update(
        {
            "id": f"{purpose}-{len(registry['models']) + 1}",
            "purpose": purpose,
            "registered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "aliases": [CHAMPION] if champion else [],
        }
    )
    if champion:
        previous = _champion_of(registry, purpose)
        stored["previous_champion"] = previous["id"] if previous is not None else ""
        for model in registry["models"]:
            if model.get("purpose") == purpose and CHAMPION in model.get("aliases", []):
                model["aliases"].remove(CHAMPION)
    registry["models"].append(stored)
    write_state(registry_path, registry)  # written whole and renamed: a crash never leaves half a registry
    return stored


def champion(registry_path: str, purpose: str) -> dict | None:
    """The entry that holds the ``champion`` alias for ``purpose``, if any."""
    return _champion_of(_read(registry_path), purpose)


def purposes(registry_path: str) -> list[str]:
    """The purposes that have entries in the registry, in first-registered order."""
    return list(dict.fromkeys(str(m.get("purpose", "")) for m in _read(registry_path)["models"]))


def rollback(registry_path: str, purpose: str) -> tuple[dict, dict]:
    """Gives the ``champion`` alias of ``purpose`` back to the champion the current one replaced.

    Args:
        registry_path: The registry JSON file.
        purpose: The purpose to roll back.

    Returns:
        ``(restored, rolled_back)``: the entry that is champion again, and the one that lost the alias (it now
        carries the ``rolled-back`` alias).

    Raises:
        UserError: No registry file, no champion for ``purpose``, or no previous champion to go back to.
    """
    if not os.path.exists(registry_path):
        raise UserError("no registry file here; run a local pipeline first or pass --registry", path=registry_path)
    registry = _read(registry_path)
    current = _champion_of(registry, purpose)
    if current is None:
        known = ", ".join(p for p in dict.fromkeys(str(m.get("purpose", "")) for m in registry["models"]) if p)
        raise UserError(
            f"purpose '{purpose}' has no champion in the registry (purposes there: {known or 'none'})",
            path=registry_path,
        )
    by_id = {m.get("id"): m for m in registry["models"]}
    previous = by_id.get(current.get("previous_champion") or "")
    if previous is None:
        raise UserError(
            f"'{current.get('id')}' is the first champion of '{purpose}': there is no previous champion to roll "
            "back to",
            path=registry_path,
        )
    current["aliases"] = [a for a in current.get("aliases", []) if a != CHAMPION] + [ROLLED_BACK]
    previous["aliases"] = [a for a in previous.get("aliases", []) if a != ROLLED_BACK] + [CHAMPION]
    previous.setdefault("rollbacks", []).append(
        {"from": current.get("id"), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    )
    write_state(registry_path, registry)  # written whole and renamed: a crash never leaves half a registry
    return previous, current

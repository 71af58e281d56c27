"""A local model registry: one JSON file listing the models a local run deployed, newest last.

Each entry records the model directory, its base model, metrics, the gate's reason, the pipeline run and the
dataset fingerprint, and carries the ``champion`` alias when it is the model now serving its purpose.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {"models": []}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def register_model(registry_path: str, entry: dict, *, purpose: str, champion: bool = True) -> dict:
    """Adds ``entry`` to the registry at ``registry_path`` and returns it as stored.

    Args:
        registry_path: The registry JSON file (created if missing).
        entry: What to record: at least ``model_dir``; anything JSON-able.
        purpose: What the model is for (the pipeline name, by default); one champion per purpose.
        champion: Make this model the champion of ``purpose`` (the previous one loses the alias).
    """
    registry = _read(registry_path)
    stored = dict(entry)
    stored.update(
        {
            "id": f"{purpose}-{len(registry['models']) + 1}",
            "purpose": purpose,
            "registered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "aliases": ["champion"] if champion else [],
        }
    )
    if champion:
        for model in registry["models"]:
            if model.get("purpose") == purpose and "champion" in model.get("aliases", []):
                model["aliases"].remove("champion")
    registry["models"].append(stored)
    directory = os.path.dirname(os.path.abspath(registry_path))
    os.makedirs(directory, exist_ok=True)
    # Written whole and renamed, so a crash never leaves half a registry.
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(registry, handle, indent=2)
    os.replace(handle.name, registry_path)
    return stored


def champion(registry_path: str, purpose: str) -> dict | None:
    """The entry that holds the ``champion`` alias for ``purpose``, if any."""
    for model in reversed(_read(registry_path)["models"]):
        if model.get("purpose") == purpose and "champion" in model.get("aliases", []):
            return model
    return None

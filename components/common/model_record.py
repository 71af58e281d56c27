"""The model record: what a tuning step tells every step after it, in ``tunekit_model.json``.

One owner for one hand-off. Every tuning step (supervised, distillation, preference, embedding; local or Vertex)
writes a :class:`ModelRecord` into its model artifact's folder with :meth:`ModelRecord.write`; evaluation,
deployment, serving and the run report read it back with :meth:`ModelRecord.read`. The file stays a flat JSON
object (the fields below, plus a method's own fields in ``details``), so records written by earlier versions
read the same.

Also here: :func:`deploy_backend`, where a tuned model is deployed. Tuned Gemini models are always deployed on
Vertex AI. Open models are deployed where they were trained: a model trained by the local runner is registered
in the local registry file, while one trained on Vertex AI Pipelines (in a pipeline step or in a Vertex AI custom
training job on GPUs) has a ``gs://`` artifact URI and is uploaded with a serving container and deployed to an
endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_state

#: The record's file name inside a model artifact's folder.
RECORD_FILE = "tunekit_model.json"

LOCAL = "local"
VERTEX = "vertex"


@dataclass
class ModelRecord:
    """A tuned model, as its tuning step describes it.

    Attributes:
        backend: Where it was trained: ``local`` (an open model's weights or adapter in ``model_dir``) or
            ``vertex`` (a Vertex AI tuning service: ``tuned_model`` and ``endpoint``).
        base_model: The model it was tuned from.
        model_dir: Local backends: the folder holding the weights or the adapter.
        tuned_model: Vertex: the Model Registry entry, ``projects/P/locations/L/models/M@V``.
        endpoint: Vertex: the endpoint serving it, ``projects/P/locations/L/endpoints/E``.
        training: The training summary (losses, steps), when the backend reports one.
        serving_prefix: Text put before the prompt at serving time (distilled students), '' for none.
        skipped: Whether the step was switched off and trained nothing.
        details: The method's own fields (job name, distillation mode, the deploy backend, ...), kept as they are.
    """

    backend: str = ""
    base_model: str = ""
    model_dir: str = ""
    tuned_model: str = ""
    endpoint: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    serving_prefix: str = ""
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        """A record from its JSON form: the known fields by name, everything else in ``details``."""
        known = {f.name for f in dataclasses.fields(cls)} - {"details"}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        return cls(**values, details={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON form: ``details`` first, then every known field (unset ones at their defaults)."""
        record = dict(self.details)
        record.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"})
        return record

    def get(self, key: str, default: Any = None) -> Any:
        """A field or a detail by name (``default`` when it is unset)."""
        value = self.to_dict().get(key)
        return default if value is None or value == "" else value

    def update(self, **values: Any) -> ModelRecord:
        """Sets fields (known names) and details (any other name); returns the record."""
        known = {f.name for f in dataclasses.fields(self)} - {"details"}
        for key, value in values.items():
            if key in known:
                setattr(self, key, value)
            else:
                self.details[key] = value
        return self

    def write(self, model_path: str, metadata: dict | None = None) -> dict[str, Any]:
        """Writes ``model_path/tunekit_model.json``; copies the scalar fields into ``metadata`` (the artifact's).

        Returns:
            The record's JSON form.
        """
        record = self.to_dict()
        # The shared atomic writer: a step killed mid-write leaves the old record or none, never half of one.
        write_state(os.path.join(model_path, RECORD_FILE), record)
        if metadata is not None:
            metadata.update({k: v for k, v in record.items() if isinstance(v, (str, int, float, bool))})
        return record

    @classmethod
    def read(cls, model_path: str, metadata: dict | None = None) -> ModelRecord:
        """The record of a model artifact: its metadata, overridden by ``tunekit_model.json`` in its folder.

        A folder without the file (a model that no tunekit step wrote) gives the metadata alone, or an empty
        record.
        """
        data = dict(metadata or {})
        path = os.path.join(model_path, RECORD_FILE) if model_path else ""
        if path and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    stored = json.load(handle)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise UserError(
                    f"the model record is not valid JSON ({exc}); re-run the tuning step", path=path
                ) from None
            if not isinstance(stored, dict):
                raise UserError("the model record must be a JSON object; re-run the tuning step", path=path)
            data.update(stored)
        return cls.from_dict(data)


def deploy_backend(training_backend: str, model_uri: str) -> str:
    """The deploy step's backend for a model trained with ``training_backend`` whose artifact is ``model_uri``.

    Args:
        training_backend: The tuning step's backend: ``local`` for open models; anything else (``vertex``,
            ``vertex_distillation``) is a Vertex tuning service.
        model_uri: The tuned-model artifact's URI (``gs://`` on Vertex AI Pipelines, a local path in the local
            runner; a ``/gcs/`` path is read as the ``gs://`` URI it mounts).

    Returns:
        ``local`` or ``vertex``.
    """
    if training_backend != LOCAL:
        return VERTEX
    return VERTEX if uris.is_gcs(uris.fuse_to_gcs(model_uri)) else LOCAL

"""Supervised tuning on Vertex AI: Gemini, open models (Model Garden managed tuning), and continuous tuning.

One service, three sources of the model tuned, all through google-genai's ``client.tunings.tune`` and
:func:`~tunekit.components.tuning.gemini.run_tuning_job` (so a retried step re-attaches to its job):

- a Gemini model id (``gemini-3.5-flash``): :func:`~tunekit.components.tuning.gemini.tune_gemini`;
- an open model id (``meta/llama3_1@llama-3.1-8b-instruct``, ``google/gemma-3-27b-it``): managed open-model tuning
  ("Tune an open model", https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning), with
  ``tuning_mode`` (full or LoRA), ``learning_rate``, ``batch_size``, ``custom_base_model`` (the user's own
  ``.safetensors`` weights in Cloud Storage) and the required ``output_uri``. The data goes in the chat
  ``messages`` layout open models are tuned on (google/skills, skills/cloud/agent-platform-tuning/SKILL.md:
  "--format messages for open models and --format messages_gemini for Gemini models"). The service is not
  documented to deploy the tuned model: the tuned weights are written under ``output_uri``
  (:func:`~tunekit.components.tuning.gemini.open_model_weights_uri`) and deployed from there with a serving
  container (the skill's "Phase 5: Model Deployment", ``gcloud ai model-garden models deploy --model=...final``),
  which the model record names for the deploy step;
- a tuned model to continue from (``start_from``: ``projects/P/locations/L/models/M[@VERSION or @ALIAS]``, e.g.
  ``...@champion``): continuous tuning ("Use continuous tuning for Gemini models",
  https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/continuous-tuning.md.txt). The SDK
  sends a ``projects/...`` base model as ``preTunedModel`` (tunings.py ``Tunings.tune``) with
  ``pre_tuned_model_checkpoint_id`` as its ``checkpointId``; the 2025-07-11 rule and the same-key CMEK rule are
  checked on the Model Registry entry first (:func:`~tunekit.components.tuning.gemini.check_continuous_start`).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from google.genai import types

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl, write_jsonl
from tunekit.components.tuning import gemini

#: Gemini roles to the chat roles of the ``messages`` layout.
_ROLES = {"user": "user", "model": "assistant", "system": "system"}


def _text(content: dict) -> str:
    return "".join(str(part.get("text", "")) for part in content.get("parts") or [] if isinstance(part, dict))


def gemini_row_to_messages(row: dict) -> dict:
    """One Gemini tuning row (``systemInstruction``?, ``contents``) as a ``messages`` row (system/user/assistant).

    Raises:
        UserError: A turn with a role the chat layout has no name for.
    """
    messages = []
    system = row.get("systemInstruction")
    if isinstance(system, dict) and _text(system):
        messages.append({"role": "system", "content": _text(system)})
    for turn in row.get("contents") or []:
        role = _ROLES.get(str(turn.get("role", "")))
        if role is None:
            raise UserError(f"a turn has role '{turn.get('role')}'; open models are tuned on user and model turns")
        messages.append({"role": role, "content": _text(turn)})
    return {"messages": messages}


def messages_dataset_uri(uri: str, local_path: str) -> str:
    """The ``gs://`` URI of a prepared (Gemini-layout) dataset rewritten in the ``messages`` layout.

    The copy is written beside the artifact as ``<uri>.messages.jsonl`` (a retried step writes the same copy); ''
    stays ''. A URI outside Cloud Storage is returned as it is, for :func:`gemini.check_job_args` to refuse.
    """
    gcs = uris.fuse_to_gcs(uri or "")
    if not uris.is_gcs(gcs):
        return gcs
    target = gcs + ".messages" + gemini.JSONL_SUFFIX
    source = local_path if local_path and os.path.isfile(local_path) else gcs
    with uris.local_copy(source) as path:
        rows = [gemini_row_to_messages(row) for _, row in iter_jsonl(path)]
    # Staged in a temporary folder: the step's input artifacts are another step's outputs, not written here.
    with tempfile.TemporaryDirectory() as folder:
        staged = os.path.join(folder, "messages.jsonl")
        write_jsonl(staged, rows)
        uris.upload(staged, target)
    return target


def check_open_model_job(base_model: str, **job: Any) -> None:
    """Everything checked of an open-model job before any paid call.

    :func:`gemini.check_open_model_job`, and the data and epoch checks of :func:`gemini.check_job_args`.
    """
    open_fields = ("tuning_mode", "learning_rate", "batch_size", "custom_base_model", "location")
    gemini.check_open_model_job(
        base_model=base_model,
        learning_rate_multiplier=job.get("learning_rate_multiplier"),
        adapter_size=job.get("adapter_size"),
        output_uri=job.get("output_uri"),
        **{name: job[name] for name in open_fields if job.get(name) is not None},
    )
    gemini.check_job_args(
        **{k: v for k, v in job.items() if k not in ("adapter_size", "learning_rate_multiplier")}
    )


def tune_open_model(
    *,
    base_model: str,
    tuning_mode: str = "",
    learning_rate: float | None = None,
    batch_size: int | None = None,
    custom_base_model: str = "",
    **job: Any,
) -> dict[str, Any]:
    """Tunes an open model with Vertex AI's managed tuning and waits, creating at most one job.

    Args:
        base_model: The open model id (:data:`gemini.OPEN_MODELS`).
        tuning_mode: ``full`` or ``lora`` ('' lets Vertex choose).
        learning_rate: The learning rate (None lets Vertex choose).
        batch_size: Examples per step (None lets Vertex choose).
        custom_base_model: ``gs://`` folder of the user's own weights derived from ``base_model``.
        job: :func:`gemini.run_tuning_job`'s arguments (``output_uri`` required).

    Returns:
        The model record's fields: the job, ``tuned_model`` (the Model Registry entry), ``model_dir`` (the tuned
        weights' ``gs://`` folder), ``open_model: True``, ``tuning_mode``.
    """
    check_open_model_job(
        base_model,
        tuning_mode=tuning_mode or None,
        learning_rate=learning_rate,
        batch_size=batch_size,
        custom_base_model=custom_base_model or None,
        **job,
    )
    fields = gemini.open_model_fields(
        base_model=base_model,
        tuning_mode=tuning_mode,
        learning_rate=learning_rate,
        batch_size=batch_size,
        custom_base_model=custom_base_model,
    )
    job.pop("learning_rate_multiplier", None)
    result = gemini.run_tuning_job(
        gemini.build_tuning_config,
        base_model=base_model,
        state_fields={"open_model": True, "tuning_mode": tuning_mode, "custom_base_model": custom_base_model},
        **job,
        **fields,
    )
    record = result.to_dict()
    record.update(
        open_model=True,
        tuning_mode=tuning_mode,
        custom_base_model=custom_base_model,
        model_dir=gemini.open_model_weights_uri(job["output_uri"]),
        # Not documented as deployed by the service: the deploy step serves model_dir with a serving container.
        endpoint="",
        service_endpoint=result.endpoint,
    )
    return record


def tune_continuous(
    *,
    start_model: str,
    pre_tuned_model_checkpoint_id: str = "",
    model_client: Any = None,
    **job: Any,
) -> dict[str, Any]:
    """Continues tuning ``start_model`` (a tuned Model Registry entry, a version or an alias) on new data.

    The continuous-tuning rules are checked first (:func:`gemini.check_continuous_start`); the job goes through
    :func:`gemini.run_tuning_job` with ``start_model`` as its base model, which the SDK sends as ``preTunedModel``.

    Returns:
        The model record's fields: the job, ``start_from``, ``start_checkpoint_id``, and what was read of the
        start model (``start_tuned_on``, ``start_version_id``).
    """
    gemini.check_job_args(**job)
    start = gemini.check_continuous_start(
        start_model, encryption_key=job.get("encryption_key") or "", model_client=model_client
    )

    def build(**fields: Any) -> types.CreateTuningJobConfig:
        if pre_tuned_model_checkpoint_id:
            fields["pre_tuned_model_checkpoint_id"] = str(pre_tuned_model_checkpoint_id)
        return gemini.build_tuning_config(**fields)

    result = gemini.run_tuning_job(
        build,
        base_model=start["model"],
        state_fields={"start_from": start["model"], "start_checkpoint_id": pre_tuned_model_checkpoint_id},
        kind="Continuous tuning job",
        **job,
    )
    record = result.to_dict()
    record.update(
        start_from=start["model"],
        start_checkpoint_id=pre_tuned_model_checkpoint_id,
        start_tuned_on=start["tuned_on"],
        start_version_id=start["version_id"],
    )
    return record


def tune_vertex(
    *,
    base_model: str,
    train_path: str,
    train_uri: str,
    validation_path: str,
    validation_uri: str,
    job: dict[str, Any],
    start_from: str = "",
    pre_tuned_model_checkpoint_id: str = "",
    tuning_mode: str = "",
    learning_rate: float = 0.0,
    batch_size: int = 0,
    custom_base_model: str = "",
) -> dict[str, Any]:
    """The supervised step's Vertex backend: the model record's fields for Gemini, an open model, or a continuation.

    Args:
        base_model: A Gemini model id or an open model id.
        train_path: The prepared training rows (Gemini layout), on this machine.
        train_uri: Their artifact URI.
        validation_path: The prepared validation rows, on this machine ('' for none).
        validation_uri: Their artifact URI.
        job: :func:`gemini.job_options` of the step (project, location, labels, state file, job settings).
        start_from: A tuned model to continue from ('' to tune ``base_model``).
        pre_tuned_model_checkpoint_id: A checkpoint of ``start_from`` other than its default one.
        tuning_mode: Open models: ``full`` or ``lora``.
        learning_rate: Open models: the learning rate (0 lets Vertex choose).
        batch_size: Open models: examples per step (0 lets Vertex choose).
        custom_base_model: Open models: ``gs://`` folder of the user's own weights.
    """
    if pre_tuned_model_checkpoint_id and not start_from:
        raise UserError(
            "pre_tuned_model_checkpoint_id names a checkpoint of start_from: set start_from too",
            field="pre_tuned_model_checkpoint_id",
        )
    if gemini.is_open_model(base_model) and not start_from:
        record = tune_open_model(
            base_model=base_model,
            tuning_mode=tuning_mode,
            learning_rate=learning_rate or None,
            batch_size=batch_size or None,
            custom_base_model=custom_base_model,
            training_dataset_uri=messages_dataset_uri(train_uri, train_path),
            **{**job, "validation_dataset_uri": messages_dataset_uri(validation_uri, validation_path) or None},
        )
        return {"backend": "vertex", **record}
    for name, value in (("tuning_mode", tuning_mode), ("custom_base_model", custom_base_model)):
        if value:
            raise UserError(f"{name} is an open-model setting; base_model '{base_model}' is Gemini", field=name)
    datasets = {
        "training_dataset_uri": gemini.jsonl_dataset_uri(train_uri, train_path),
        "validation_dataset_uri": gemini.jsonl_dataset_uri(validation_uri, validation_path) or None,
    }
    if start_from:
        record = tune_continuous(
            start_model=start_from,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id,
            tuned_base_model=gemini.normalize_base_model(base_model),
            **{**job, **datasets},
        )
        return {"backend": "vertex", **record}
    result = gemini.tune_gemini(base_model=base_model, **{**job, **datasets})
    return {"backend": "vertex", **result.to_dict()}


def describe(record: dict[str, Any]) -> str:
    """One line for the step's log: what was tuned and from what."""
    source = record.get("start_from") or record.get("base_model", "")
    kind = "open model" if record.get("open_model") else "model"
    return f"tuned {kind} {record.get('tuned_model', '')} from {source} ({json.dumps(record.get('job_name', ''))})"

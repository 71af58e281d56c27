"""Preference tuning of Gemini on Vertex AI: SFT on the preferred answers, then ``PREFERENCE_TUNING`` from it.

Google recommends starting preference tuning from a model that was first tuned (SFT) on good answers. The
``PREFERENCE_TUNING`` job then continues from that tuned model: google-genai sends a ``projects/...`` base model as
``preTunedModel.tunedModelName`` (with ``checkpointId`` when ``pre_tuned_model_checkpoint_id`` is set), and
``beta``, ``epoch_count`` and ``adapter_size`` as ``preferenceOptimizationSpec.hyperParameters``.

Each job goes through its own state file, with the protocol of :mod:`tunekit.components.tuning.gemini` (request
id label written before the create call, job name written before any waiting): a retried step re-attaches to the
job it started and never pays twice. The SFT warm start is :func:`~tunekit.components.tuning.gemini.tune_gemini`
itself; this module adds the preference job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.common.uris import is_gcs
from tunekit.components.tuning import gemini as gv

#: A tuned model's Model Registry name, with an optional version: what a preference job continues from.
_TUNED_MODEL_PREFIX = "projects/"


def build_preference_config(
    *,
    beta: float | None = None,
    epoch_count: int | None = None,
    adapter_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    pre_tuned_model_checkpoint_id: str | None = None,
    validation_dataset_uri: str | None = None,
    tuned_model_display_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    encryption_key: str | None = None,
    output_uri: str | None = None,
) -> types.CreateTuningJobConfig:
    """The ``CreateTuningJobConfig`` of a ``PREFERENCE_TUNING`` job, with only the fields that are set.

    Raises:
        UserError: ``beta`` is negative or the adapter size is not one Vertex accepts.
    """
    if beta is not None and beta < 0:
        raise UserError(f"beta must be >= 0, not {beta}", field="beta")
    return gv.tuning_config(
        types.TuningMethod.PREFERENCE_TUNING,
        beta=None if beta is None else float(beta),
        pre_tuned_model_checkpoint_id=str(pre_tuned_model_checkpoint_id)
        if pre_tuned_model_checkpoint_id
        else None,
        epoch_count=epoch_count,
        adapter_size=adapter_size,
        learning_rate_multiplier=learning_rate_multiplier,
        validation_dataset_uri=validation_dataset_uri,
        tuned_model_display_name=tuned_model_display_name,
        labels=labels,
        encryption_key=encryption_key,
        output_uri=output_uri,
    )


def check_preference_args(
    *, start_model: str, training_dataset_uri: str, validation_dataset_uri: str | None
) -> str:
    """Checks a preference job's inputs before any paid call; returns the model to send as ``base_model``.

    ``start_model`` is a tunable Gemini id (preference tuning from the base model) or a tuned model's resource
    name ``projects/P/locations/L/models/M[@V]`` (continuing from the SFT warm start).

    Raises:
        UserError: Naming the argument and what to do.
    """
    start_model = start_model.strip()
    if not start_model.startswith(_TUNED_MODEL_PREFIX):
        gv.check_base_model(start_model)
        start_model = gv.normalize_base_model(start_model)
    elif "/models/" not in start_model:
        raise UserError(
            f"'{start_model}' is not a tuned model's resource name (projects/P/locations/L/models/M@V)",
            field="start_model",
        )
    for name, uri in (
        ("training_dataset_uri", training_dataset_uri),
        ("validation_dataset_uri", validation_dataset_uri),
    ):
        if uri and not is_gcs(uri):
            raise UserError(
                f"Vertex AI reads tuning data from Cloud Storage: '{uri}' must be a gs:// URI", field=name
            )
    if not training_dataset_uri:
        raise UserError("a preference dataset is required", field="training_dataset_uri")
    return start_model


def tune_gemini_preference(
    *,
    project: str,
    location: str,
    start_model: str,
    base_model: str,
    training_dataset_uri: str,
    state_path: str,
    validation_dataset_uri: str | None = None,
    beta: float | None = None,
    epoch_count: int | None = None,
    adapter_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    pre_tuned_model_checkpoint_id: str | None = None,
    tuned_model_display_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    encryption_key: str | None = None,
    output_uri: str | None = None,
    client: Any = None,
    poll_interval_s: float = 30.0,
    max_poll_interval_s: float = 300.0,
    timeout_s: float | None = None,
) -> gv.TunedGemini:
    """Runs one ``PREFERENCE_TUNING`` job from ``start_model`` and waits for it, creating at most one job.

    Args:
        project: The Google Cloud project.
        location: The Vertex AI region.
        start_model: The SFT warm start's tuned model (``projects/.../models/M@V``), or a tunable Gemini id.
        base_model: The Gemini model underneath (recorded; the tuned model's lineage).
        training_dataset_uri: ``gs://`` URI of the Gemini preference data (``contents`` + scored ``completions``).
        state_path: The state file that lets a retried step re-attach to its job.
        validation_dataset_uri: ``gs://`` URI of held-out preference rows, if any.
        beta: The KL-divergence weight (Vertex chooses when unset).
        epoch_count: Epochs (Vertex chooses when unset).
        adapter_size: LoRA adapter size 1, 2, 4, 8 or 16 (Vertex chooses when unset).
        learning_rate_multiplier: Learning-rate multiplier (Vertex chooses when unset).
        pre_tuned_model_checkpoint_id: A checkpoint of ``start_model`` other than its default one.
        tuned_model_display_name: The tuned model's display name.
        labels: Job labels (cleaned to Google Cloud's label rules).
        encryption_key: Cloud KMS key for CMEK.
        output_uri: ``gs://`` prefix for the job's outputs.
        client: A google-genai client (default: ``make_genai_client(project, location)``).
        poll_interval_s: First wait between polls.
        max_poll_interval_s: Cap on the wait between polls.
        timeout_s: Give up waiting after this long (the job keeps running; a retry re-attaches).

    Returns:
        The tuned model, its endpoint and the job.

    Raises:
        UserError: Bad arguments (before any call), a state file of another request, or Vertex refused the job.
        TuningJobFailed: The job failed, was cancelled or expired.
    """
    return gv.run_tuning_job(
        client,
        project=project,
        location=location,
        state_path=state_path,
        base_model=check_preference_args(
            start_model=start_model,
            training_dataset_uri=training_dataset_uri,
            validation_dataset_uri=validation_dataset_uri,
        ),
        training_dataset_uri=training_dataset_uri,
        validation_dataset_uri=validation_dataset_uri,
        labels=labels,
        build_config=lambda job_labels: build_preference_config(
            beta=beta,
            epoch_count=epoch_count,
            adapter_size=adapter_size,
            learning_rate_multiplier=learning_rate_multiplier,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id,
            validation_dataset_uri=validation_dataset_uri,
            tuned_model_display_name=tuned_model_display_name,
            labels=job_labels,
            encryption_key=encryption_key,
            output_uri=output_uri,
        ),
        poll_interval_s=poll_interval_s,
        max_poll_interval_s=max_poll_interval_s,
        timeout_s=timeout_s,
        state_fields={"method": "PREFERENCE_TUNING", "gemini_base_model": base_model},
        tuned_base_model=base_model,
        kind="Preference tuning job",
    )

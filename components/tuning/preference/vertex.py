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

import functools
from typing import Any

from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.tuning import gemini as gv

#: A tuned model's Model Registry name, with an optional version: what a preference job continues from.
_TUNED_MODEL_PREFIX = "projects/"


def build_preference_config(
    *, beta: float | None = None, pre_tuned_model_checkpoint_id: str | None = None, **fields: Any
) -> types.CreateTuningJobConfig:
    """The ``CreateTuningJobConfig`` of a ``PREFERENCE_TUNING`` job, with only the fields that are set.

    Args:
        beta: The KL-divergence weight (Vertex chooses when unset).
        pre_tuned_model_checkpoint_id: A checkpoint of the start model other than its default one.
        fields: The fields of :func:`~tunekit.components.tuning.gemini.tuning_config` (validation data, epochs,
            adapter size, learning-rate multiplier, display name, labels, CMEK key, output URI).

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
        **fields,
    )


def check_start_model(start_model: str) -> str:
    """Checks where a preference job starts, before any paid call; returns the model to send as ``base_model``.

    ``start_model`` is a tunable Gemini id (preference tuning from the base model) or a tuned model's resource
    name ``projects/P/locations/L/models/M[@V]`` (continuing from the SFT warm start).

    Raises:
        UserError: Naming the argument and what to do.
    """
    start_model = start_model.strip()
    if not start_model.startswith(_TUNED_MODEL_PREFIX):
        gv.check_base_model(start_model)
        return gv.normalize_base_model(start_model)
    if "/models/" not in start_model:
        raise UserError(
            f"'{start_model}' is not a tuned model's resource name (projects/P/locations/L/models/M@V)",
            field="start_model",
        )
    return start_model


def tune_gemini_preference(
    *,
    start_model: str,
    base_model: str,
    beta: float | None = None,
    pre_tuned_model_checkpoint_id: str | None = None,
    **job: Any,
) -> gv.TunedGemini:
    """Runs one ``PREFERENCE_TUNING`` job from ``start_model`` and waits for it, creating at most one job.

    Args:
        start_model: The SFT warm start's tuned model (``projects/.../models/M@V``), or a tunable Gemini id.
        base_model: The Gemini model underneath (recorded; the tuned model's lineage).
        beta: The KL-divergence weight (Vertex chooses when unset).
        pre_tuned_model_checkpoint_id: A checkpoint of ``start_model`` other than its default one.
        job: The job's other arguments, those of :func:`~tunekit.components.tuning.gemini.tune_gemini`
            (``project``, ``location``, ``training_dataset_uri``: the Gemini preference data, ``contents`` +
            scored ``completions``; ``state_path``, held-out rows as ``validation_dataset_uri``, epochs, adapter
            size, learning-rate multiplier, labels, client, polling).

    Returns:
        The tuned model, its endpoint and the job.

    Raises:
        UserError: Bad arguments (before any call), a state file of another request, or Vertex refused the job.
        TuningJobFailed: The job failed, was cancelled or expired.
    """
    start = check_start_model(start_model)
    gv.check_job_args(**job)
    return gv.run_tuning_job(
        functools.partial(
            build_preference_config, beta=beta, pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id
        ),
        base_model=start,
        state_fields={"method": "PREFERENCE_TUNING", "gemini_base_model": base_model},
        tuned_base_model=base_model,
        kind="Preference tuning job",
        **job,
    )

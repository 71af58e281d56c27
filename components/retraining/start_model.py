"""Continuous tuning from the champion: ``start_from: champion`` resolved, when the run starts, to the model now serving.

A scheduled retraining run (``tunekit schedule``, cloudbuild/schedules.yaml) keeps one config for months while
the champion of its purpose changes with each deploy. ``start_from: champion`` asks it to continue tuning from
whichever model serves the purpose when the run starts, instead of from the base model each time: this step finds
it (:func:`~tunekit.components.deployment.champion.find_champion`, the one owner of "who serves a purpose") and
hands its Model Registry version (``projects/P/locations/L/models/M@VERSION``, the form Vertex AI's continuous
tuning takes, "Use continuous tuning for Gemini models",
https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/continuous-tuning.md.txt) to the
tuning step, which checks the continuous-tuning rules on it before creating the job. A purpose with no champion
yet (the first run) starts from the base model. Any other value passes through unchanged.
"""

from __future__ import annotations

from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import champion as champions

#: The ``start_from`` value that means "the purpose's champion when the run starts".
CHAMPION = champions.CHAMPION


def resolve_start_from(
    start_from: str,
    *,
    purpose: str,
    backend: str,
    project: str = "",
    location: str = "",
    client: Any = None,
) -> str:
    """The model a run continues tuning from: ``start_from``, with ``champion`` replaced by the champion's version.

    Args:
        start_from: The config's ``start_from`` ('' tunes the base model).
        purpose: The run's purpose (whose champion is meant).
        backend: ``vertex`` (continuous tuning is a Vertex AI feature).
        project: The Google Cloud project.
        location: The Vertex AI region.
        client: A ``ModelServiceClient`` (tests).

    Returns:
        '' (tune the base model: no ``start_from``, or no champion yet), or a model resource name.

    Raises:
        UserError: ``champion`` with another backend, or a champion that is an open model on its own serving
            container (continuous tuning continues tuned Gemini models).
    """
    if start_from.strip() != CHAMPION:
        return start_from
    if backend != "vertex":
        raise UserError(
            f"start_from: champion continues a Vertex AI tuned model; backend is {backend}", field="start_from"
        )
    found = champions.find_champion(purpose, backend=backend, project=project, location=location, client=client)
    if found is None:
        print(f"start_from: champion: purpose '{purpose}' has no champion yet; tuning the base model", flush=True)
        return ""
    if champions.is_open_model(found):
        raise UserError(
            f"the champion of '{purpose}' ({found.model}) is an open model on its own serving container; continuous "
            "tuning continues tuned Gemini models: leave start_from empty",
            field="start_from",
        )
    print(f"start_from: champion: continuing from {found.model}", flush=True)
    return found.model

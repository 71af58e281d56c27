"""Where a tuned model is deployed: the decision every tuning step returns to the deploy step.

Tuned Gemini models are always deployed on Vertex AI. Open models are deployed where they were trained: a model
trained by the local runner is registered in the local registry file, while one trained on Vertex AI Pipelines
(in a pipeline step or in a Vertex AI custom training job on GPUs) has a ``gs://`` artifact URI and is uploaded
with a serving container and deployed to an endpoint (see :func:`.steps.run_deploy`).
"""

from __future__ import annotations

from tunekit.components.common import uris

LOCAL = "local"
VERTEX = "vertex"


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

"""KFP wrapper of the evaluation step (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_supervised(
    backend: str,
    task: str,
    base_model: str,
    tuned_model: dsl.Input[dsl.Model],
    validation_dataset: dsl.Input[dsl.Dataset],
    max_eval_examples: int,
    max_output_tokens: int,
    min_improvement: float,
    project: str,
    location: str,
    metrics: dsl.Output[dsl.Metrics],
    summary: dsl.Output[dsl.Markdown],
    predictions: dsl.Output[dsl.Dataset],
    confusion_matrix: dsl.Output[dsl.ClassificationMetrics],
    response_cache: dsl.Output[dsl.Artifact],
    purpose: str = "",
    local_registry: str = "",
    beat_champion: bool = True,
    require_significant: bool = False,
    model_based_evaluation: bool = False,
    select_checkpoint: bool = False,
) -> bool:
    """Scores the tuned model beside its base and the champion on held-out rows; returns whether the gate passed.

    A single ``bool`` return (not a NamedTuple): the pipeline's ``dsl.If`` reads it as ``Output``; the reason is
    ``metrics.metadata["gate_reason"]``. ``metrics`` is an evaluation result as every evaluation logs it
    (:mod:`tunekit.components.evaluation.result`): it holds ``<model>_<metric>`` for ``base``, ``tuned`` and
    ``champion``, the comparisons' ``gate_delta_*`` / ``gate_ci_low_*`` / ``gate_ci_high_*``, and ``gate`` (the
    comparisons in full). Classification also logs the tuned model's per-class precision and recall and its
    confusion matrix (``confusion_matrix``). With ``model_based_evaluation`` (Vertex only), the Gen AI evaluation
    service's pairwise autorater's win rates of the tuned model against the base and the champion are logged as
    ``autorater_win_rate_vs_<model>`` (with ``_ci_low``/``_ci_high``); they do not gate. On Vertex the models'
    answers and the autorater's verdicts are kept in ``response_cache`` as they arrive: a retry of this step pays
    for nothing twice. With ``select_checkpoint``, every checkpoint of the tuned model answers the same rows; the
    best on the primary metric is the candidate (``checkpoint_<id>_<metric>`` with ``_ci_low``/``_ci_high`` per
    checkpoint, ``metadata["checkpoints"]`` the selection); on Vertex it becomes the default checkpoint and the
    other checkpoints' endpoints are undeployed, locally its adapter becomes the tuned model's.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.evaluation.gate import CANDIDATE, GatePolicy
    from tunekit.components.evaluation.result import log_evaluation
    from tunekit.components.evaluation.supervised.steps import run_evaluate

    result = call(
        run_evaluate,
        locals(),
        model_path=tuned_model.path,
        model_metadata=dict(tuned_model.metadata),
        validation_path=validation_dataset.path,
        predictions_path=predictions.path,
        summary_path=summary.path,
        policy=call(GatePolicy, locals()),
        model_based=model_based_evaluation,
        cache_dir=response_cache.path if backend == "vertex" else "",
    )
    details = result.extras["classification"].get(CANDIDATE)
    if details is not None:
        confusion_matrix.log_confusion_matrix(details.labels, details.matrix)
    return log_evaluation(result, metrics)

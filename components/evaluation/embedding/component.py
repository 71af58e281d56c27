"""KFP wrapper of the retrieval evaluation and gate (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_embedding(
    backend: str,
    base_model: str,
    tuned_model: dsl.Input[dsl.Model],
    corpus_uri: str,
    queries_uri: str,
    test_labels_uri: str,
    min_improvement: float,
    output_dimensionality: int,
    project: str,
    location: str,
    metrics: dsl.Output[dsl.Metrics],
    summary: dsl.Output[dsl.Markdown],
    purpose: str = "",
    local_registry: str = "",
    beat_champion: bool = True,
    require_significant: bool = False,
) -> bool:
    """Scores the base, tuned and champion embedding models on the test labels; returns whether the gate passed.

    A single ``bool`` return (not a NamedTuple): the pipeline's ``dsl.If`` reads it as ``Output``; the reason is
    ``metrics.metadata["gate_reason"]``, the comparisons are in ``gate``; ``metrics`` is an evaluation result as
    every evaluation logs it (:mod:`tunekit.components.evaluation.result`).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import ModelRecord
    from tunekit.components.evaluation.embedding.steps import run_evaluate_embedding
    from tunekit.components.evaluation.gate import GatePolicy
    from tunekit.components.evaluation.result import log_evaluation

    result = call(
        run_evaluate_embedding,
        locals(),
        tuned_model_path=tuned_model.path,
        tuned_info=ModelRecord.read(tuned_model.path, dict(tuned_model.metadata)).to_dict(),
        summary_path=summary.path,
        policy=call(GatePolicy, locals()),
    )
    return log_evaluation(result, metrics)

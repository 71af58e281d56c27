"""KFP wrapper of the reinforcement-tuning evaluation (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_reinforcement(
    backend: str,
    base_model: str,
    reward_config_uri: str,
    warm_model: dsl.Input[dsl.Model],
    tuned_model: dsl.Input[dsl.Model],
    eval_prompts: dsl.Input[dsl.Dataset],
    max_eval_examples: int,
    max_output_tokens: int,
    gate_metric: str,
    task_reward: str,
    min_improvement: float,
    project: str,
    location: str,
    metrics: dsl.Output[dsl.Metrics],
    summary: dsl.Output[dsl.Markdown],
    predictions: dsl.Output[dsl.Dataset],
    response_cache: dsl.Output[dsl.Artifact],
    purpose: str = "",
    local_registry: str = "",
    beat_champion: bool = True,
    require_significant: bool = False,
) -> bool:
    """Scores base, warm start, tuned model and champion with the rewards on held-out prompts; returns the gate.

    ``metrics`` is an evaluation result as every evaluation logs it (:mod:`tunekit.components.evaluation.result`):
    ``<model>_mean_reward``, ``<model>_task_accuracy`` and ``<model>_reward_<name>`` per model, the gate's
    comparisons of ``gate_metric`` with intervals, and the other metric's differences and intervals as figures.
    On Vertex the models' answers are kept in ``response_cache`` as they arrive: a retry pays for none twice.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.evaluation.gate import GatePolicy
    from tunekit.components.evaluation.reinforcement.steps import run_evaluate_reinforcement
    from tunekit.components.evaluation.result import log_evaluation

    result = call(
        run_evaluate_reinforcement,
        locals(),
        warm_model_path=warm_model.path,
        tuned_model_path=tuned_model.path,
        eval_path=eval_prompts.path,
        summary_path=summary.path,
        predictions_path=predictions.path,
        policy=call(GatePolicy, locals()),
        cache_dir=response_cache.path if backend == "vertex" else "",
    )
    return log_evaluation(result, metrics)

"""KFP wrapper of the preference evaluation (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_preference(
    backend: str,
    base_model: str,
    warm_model: dsl.Input[dsl.Model],
    tuned_model: dsl.Input[dsl.Model],
    reward_model: dsl.Input[dsl.Model],
    eval_pairs: dsl.Input[dsl.Dataset],
    max_eval_examples: int,
    max_output_tokens: int,
    min_win_rate: float,
    judge_model: str,
    project: str,
    location: str,
    metrics: dsl.Output[dsl.Metrics],
    summary: dsl.Output[dsl.Markdown],
    predictions: dsl.Output[dsl.Dataset],
    response_cache: dsl.Output[dsl.Artifact],
    purpose: str = "",
    local_registry: str = "",
    beat_champion: bool = True,
) -> bool:
    """Reward-model accuracy on held-out pairs, win rates against the base and the champion; returns the gate.

    The champion (the model deployed for ``purpose`` now: in ``local_registry`` locally, in the Model Registry
    on Vertex) answers the same held-out prompts and the same judge compares it with the tuned policy; the gate
    requires the tuned policy to beat it (win rate above 0.5) unless ``beat_champion`` is false, and to beat the
    base model (win rate above ``min_win_rate``). ``metrics`` is an evaluation result as every evaluation logs it
    (:mod:`tunekit.components.evaluation.result`): ``reward_accuracy``, ``win_rate``, ``win_rate_vs_reference``,
    ``win_rate_vs_champion``, ``kl_from_reference``, ``<model>_mean_reward``, ``tuned_win_rate`` /
    ``base_win_rate`` and the gate's figures.

    On Vertex the models' answers and the Gemini judge's verdicts go through the model engine (retries, rate
    limits) and are kept in ``response_cache`` as they arrive: a retry of this step pays for nothing twice.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.evaluation.gate import GatePolicy
    from tunekit.components.evaluation.preference.steps import run_evaluate_preference
    from tunekit.components.evaluation.result import log_evaluation

    result = call(
        run_evaluate_preference,
        locals(),
        warm_model_path=warm_model.path,
        tuned_model_path=tuned_model.path,
        reward_model_path=reward_model.path,
        eval_path=eval_pairs.path,
        summary_path=summary.path,
        predictions_path=predictions.path,
        cache_dir=response_cache.path if backend == "vertex" else "",
        policy=call(GatePolicy, locals()),
    )
    return log_evaluation(result, metrics)

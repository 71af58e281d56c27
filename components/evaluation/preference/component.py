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
) -> bool:
    """Reward-model accuracy on held-out pairs, win rate against the base, KL from reference; returns the gate.

    On Vertex the models' answers and the Gemini judge's verdicts go through the model engine (retries, rate
    limits) and are kept in ``response_cache`` as they arrive: a retry of this step pays for nothing twice.
    """
    from tunekit.components.tuning.preference.steps import run_evaluate_preference

    report, decision = run_evaluate_preference(
        backend=backend,
        base_model=base_model,
        warm_model_path=warm_model.path,
        tuned_model_path=tuned_model.path,
        reward_model_path=reward_model.path,
        eval_path=eval_pairs.path,
        max_eval_examples=max_eval_examples,
        max_output_tokens=max_output_tokens,
        min_win_rate=min_win_rate,
        judge_model=judge_model,
        project=project,
        location=location,
        summary_path=summary.path,
        predictions_path=predictions.path,
        cache_dir=response_cache.path if backend == "vertex" else "",
    )
    for name, value in report.metrics.items():
        metrics.log_metric(name, float(value))
    metrics.metadata["gate_passed"] = decision.passed
    metrics.metadata["gate_reason"] = decision.reason
    print(decision.reason)
    return decision.passed

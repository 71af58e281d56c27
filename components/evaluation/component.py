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
) -> bool:
    """Scores the tuned model beside its base on held-out rows; returns whether the deploy gate passed."""
    from tunekit.components.evaluation.steps import run_evaluate

    report, decision = run_evaluate(
        backend=backend,
        task=task,
        base_model=base_model,
        model_path=tuned_model.path,
        model_metadata=dict(tuned_model.metadata),
        validation_path=validation_dataset.path,
        predictions_path=predictions.path,
        summary_path=summary.path,
        max_eval_examples=max_eval_examples,
        max_output_tokens=max_output_tokens,
        min_improvement=min_improvement,
        project=project,
        location=location,
    )
    for model_name, values in report.metrics.items():
        for metric_name, value in values.items():
            metrics.log_metric(f"{model_name}_{metric_name}", float(value))
    metrics.metadata["gate_passed"] = decision.passed
    metrics.metadata["gate_reason"] = decision.reason
    print(decision.reason)
    return decision.passed

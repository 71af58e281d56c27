"""KFP wrapper of the distillation evaluation (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_distillation(
    task: str,
    task_type: str,
    eval_dataset: dsl.Input[dsl.Dataset],
    student: dsl.Input[dsl.Model],
    baseline: dsl.Input[dsl.Model],
    evaluate_teacher: bool,
    teacher_backend: str,
    teacher_model: str,
    teacher_script_uri: str,
    teacher_options: dict,
    teacher_engine_options: dict,
    teacher_cache_uri: str,
    exemplars_uri: str,
    num_exemplars: int,
    instruction: str,
    classes: list,
    teacher_max_output_tokens: int,
    max_eval_examples: int,
    max_output_tokens: int,
    min_student_metric: float,
    min_improvement_over_baseline: float,
    price_table: dict,
    student_cost_per_hour: float,
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
    """Scores teacher, label-only baseline (when trained) and student on the held-out rows; returns the gate.

    The champion (the model deployed for ``purpose`` now) answers the same rows, and the gate requires the student
    to beat it unless ``beat_champion`` is false.

    ``metrics`` is an evaluation result as every evaluation logs it (:mod:`tunekit.components.evaluation.result`):
    ``<model>_<metric>`` for teacher, baseline, student and champion, ``<model>_cost_per_1000``,
    ``<model>_parameters`` where known, the gate's figures, ``gate_passed``, ``gate_reason``, ``gate``,
    ``<model>_size`` and ``table`` (the Markdown table, also in ``summary``).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.evaluation.distillation.steps import run_evaluate_distillation
    from tunekit.components.evaluation.gate import GatePolicy
    from tunekit.components.evaluation.result import log_evaluation
    from tunekit.components.model_clients.teachers import make_teacher
    from tunekit.components.rationale_extraction.steps import load_exemplars, rationale_task_type

    chosen_type = rationale_task_type(task, task_type)

    def teacher_factory():
        return make_teacher(
            teacher_backend,
            teacher_model,
            project=project,
            location=location,
            script_uri=teacher_script_uri,
            options=teacher_options,
            engine_options=teacher_engine_options,
            cache_dir=teacher_cache_uri or response_cache.path,
            price_table=price_table,
        )

    result = call(
        run_evaluate_distillation,
        locals(),
        task_type=chosen_type,
        eval_path=eval_dataset.path,
        student_path=student.path,
        student_metadata=dict(student.metadata),
        baseline_path=baseline.path,
        baseline_metadata=dict(baseline.metadata),
        predictions_path=predictions.path,
        summary_path=summary.path,
        teacher_factory=teacher_factory if evaluate_teacher else None,
        exemplars=load_exemplars(exemplars_uri, num_exemplars) if evaluate_teacher else [],
        instruction=instruction or None,
        classes=[str(c) for c in classes] if classes else None,
        policy=call(GatePolicy, locals()),
    )
    print(result.metadata["table"])
    return log_evaluation(result, metrics)

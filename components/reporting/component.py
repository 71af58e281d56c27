"""KFP wrapper of the run report (imports the installed package inside its body).

Every input artifact is optional: a pipeline passes what it has (no teacher in supervised tuning, no training log
from a managed Gemini tuning job...), and the report says what is missing instead of failing.
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def make_run_report(
    pipeline_name: str,
    pipeline_job_name: str,
    html_report: dsl.Output[dsl.HTML],
    parameters: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    validation_report: dsl.Input[dsl.Artifact] = None,
    teacher_metrics: dsl.Input[dsl.Metrics] = None,
    labelling_metrics: dsl.Input[dsl.Metrics] = None,
    tuned_model: dsl.Input[dsl.Model] = None,
    baseline_model: dsl.Input[dsl.Model] = None,
    evaluation_metrics: dsl.Input[dsl.Metrics] = None,
    classification_metrics: dsl.Input[dsl.ClassificationMetrics] = None,
):
    """Writes the run's report: validation, teacher usage and cost, training curves, evaluation, gate decision.

    ``html_report`` is one self-contained HTML page (inline CSS and SVG, no scripts, no external assets); the
    Vertex AI pipeline UI shows it. ``tuned_model`` (and ``baseline_model``) are model folders whose
    ``training_log.json`` is plotted; ``evaluation_metrics`` is an evaluation result as every evaluation logs it
    (:mod:`tunekit.components.evaluation.result`: ``<model>_<metric>`` keys, the gate's ``gate_passed`` /
    ``gate_reason`` / ``gate``, and the declared schema, whose candidate names the trained model).
    """
    from tunekit.components.reporting.report import build_report, declared_schema, write_report

    def meta(artifact):
        return dict(artifact.metadata) if artifact is not None else {}

    teachers = [
        (step, meta(artifact))
        for step, artifact in (("teacher labelling", labelling_metrics), ("rationale extraction", teacher_metrics))
        if artifact is not None
    ]
    schema = declared_schema(meta(evaluation_metrics)) or {}
    # The trained model is named as the evaluation declares its candidate (``student`` for distillation).
    tuned_name = schema.get("candidate") or ("student" if teacher_metrics is not None else "tuned")
    models = [
        (name, artifact.path)
        for name, artifact in ((tuned_name, tuned_model), ("baseline", baseline_model))
        if artifact is not None
    ]
    report = build_report(
        pipeline_name=pipeline_name,
        run_name=pipeline_job_name,
        parameters=parameters,
        validation_report_path=validation_report.path if validation_report is not None else "",
        teacher_metrics=teachers,
        models=models,
        evaluation_metrics=meta(evaluation_metrics),
        classification_metrics=[(tuned_name, meta(classification_metrics))] if classification_metrics else [],
    )
    write_report(html_report.path, report)
    html_report.metadata["sections"] = ",".join(
        name
        for name, present in (
            ("validation", report.validation),
            ("teacher", report.usage),
            ("training", report.training),
            ("evaluation", report.evaluation),
            ("gate", report.gate),
        )
        if present
    )
    print(f"run report: {html_report.path}")

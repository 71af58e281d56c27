"""KFP wrapper of the teacher-labelling step.

The body imports the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def label_with_teacher(
    input_dataset: dsl.Input[dsl.Dataset],
    labelled_dataset: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    response_cache: dsl.Output[dsl.Artifact],
    task: str = "generic",
    classes: list = [],  # noqa: B006 (KFP reads the default from the signature; it is never mutated)
    teacher_backend: str = "vertex",
    teacher_model: str = "gemini-3.5-flash",
    backend_options: dict = {},  # noqa: B006
    engine_options: dict = {},  # noqa: B006
    instruction: str = "",
    exemplars: list = [],  # noqa: B006
    seed_dataset_uri: str = "",
    num_exemplars: int = 4,
    evaluate_gold: bool = True,
    max_output_tokens: int = 64,
    temperature: float = 0.0,
    price_table: dict = {},  # noqa: B006
    cache_uri: str = "",
    dry_run: bool = False,
    expected_output_tokens: int = 0,
    project: str = "",
    location: str = "us-central1",
    teacher_script_uri: str = "",
    label_mode: str = "separate",
):
    """Labels unlabelled rows (``input_text``) with a teacher model's few-shot answers; one output row per input.

    ``input_dataset`` is a JSONL file or a folder holding ``train.jsonl``. The response cache lives in
    ``response_cache`` (the same URI when Vertex retries the task, so a retry resumes and pays nothing twice), or
    at ``cache_uri`` when given (shared across pipeline runs). ``teacher_backend: scripted`` answers from the
    ``label`` column of ``teacher_script_uri`` (no model called). ``label_mode``: ``separate`` labels the rows;
    ``cot`` copies them through and calls nothing (the distilling step-by-step pipeline's default, where rationale
    extraction labels rows from the teacher's chain of thought; the step stays in the graph either way).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.errors import UserError
    from tunekit.components.teacher_labelling.label import LABEL_MODES, LabellingConfig
    from tunekit.components.teacher_labelling.steps import run_labelling

    if label_mode not in LABEL_MODES:
        raise UserError(
            f"unknown label_mode '{label_mode}'; use one of {', '.join(LABEL_MODES)}", field="label_mode"
        )

    options = dict(backend_options)
    options.setdefault("project", project)
    options.setdefault("location", location)
    report = call(
        run_labelling,
        locals(),
        input_path=input_dataset.path,
        output_path=labelled_dataset.path,
        cache_dir=cache_uri or response_cache.path,
        backend_options=options,
        config=None
        if label_mode == "cot"
        else LabellingConfig(
            task=task,
            classes=[str(c) for c in classes],
            instruction=instruction,
            exemplars=[dict(e) for e in exemplars],
            num_exemplars=num_exemplars,
            evaluate_gold=evaluate_gold,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
        ),
        output_metadata=labelled_dataset.metadata,
        enabled=label_mode == "separate",
    )
    for name, value in report["metrics"].items():
        metrics.log_metric(name, value)

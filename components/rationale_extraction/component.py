"""KFP wrapper of rationale extraction (imports the installed package inside its body)."""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def extract_rationales(
    dataset: dsl.Input[dsl.Dataset],
    task: str,
    task_type: str,
    exemplars_uri: str,
    num_exemplars: int,
    teacher_backend: str,
    teacher_model: str,
    teacher_script_uri: str,
    teacher_options: dict,
    teacher_engine_options: dict,
    teacher_cache_uri: str,
    n_samples: int,
    temperature: float,
    max_output_tokens: int,
    keep_disagreeing: bool,
    instruction: str,
    classes: list,
    price_table: dict,
    project: str,
    location: str,
    rationale_dataset: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
    response_cache: dsl.Output[dsl.Artifact],
):
    """Prompts the teacher with chain-of-thought exemplars; outputs every row with its rationale and answer.

    ``dataset`` is a JSONL file or a folder with ``train.jsonl``. ``rationale_dataset`` holds the rows with the
    columns of ``tunekit.components.rationale_extraction.extract`` (``rationale``, ``teacher_answer``,
    ``status``, ``rationale_kept``...). ``metrics`` has the counts, tokens and estimated cost. Answers are cached in
    ``response_cache`` (a retry of this step pays for nothing twice), or in ``teacher_cache_uri`` when set, to share
    a cache across runs.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.rationale_extraction.steps import run_extract_rationales

    counts = call(
        run_extract_rationales,
        locals(),
        dataset_path=dataset.path,
        output_path=rationale_dataset.path,
        cache_dir=teacher_cache_uri or response_cache.path,
        log_metric=metrics.log_metric,
    )
    rationale_dataset.metadata.update(
        {k: v for k, v in counts.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    )

"""KFP wrappers of data validation: the first step of every pipeline, failing it before any paid step.

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate_data(
    train_dataset_uri: str,
    validation_dataset_uri: str,
    method: str,
    task: str,
    base_model: str,
    strict: bool,
    report: dsl.Output[dsl.Artifact],
    html_report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    normalised_dataset: dsl.Output[dsl.Dataset],
    dedupe: bool = False,
):
    """Validates training (and validation) data for ``method``; fails the step when the data is not valid.

    Outputs: ``report`` (JSON), ``html_report`` (shown by the Vertex UI), ``metrics`` (counts by kind),
    ``normalised_dataset`` (a folder with ``train.jsonl`` and ``validation.jsonl``: valid rows, normalised,
    without exact duplicates when ``dedupe``).
    """
    from tunekit.components.data_validation.steps import run_validation

    run_validation(
        {"train": train_dataset_uri, "validation": validation_dataset_uri},
        method=method,
        task=task,
        base_model=base_model,
        strict=strict,
        report_path=report.path,
        html_path=html_report.path,
        log_metric=metrics.log_metric,
        normalised_dir=normalised_dataset.path,
        dedupe=dedupe,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate_embedding_data(
    corpus_uri: str,
    queries_uri: str,
    train_labels_uri: str,
    test_labels_uri: str,
    validation_labels_uri: str,
    strict: bool,
    report: dsl.Output[dsl.Artifact],
    html_report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    backend: str = "vertex",
):
    """Validates a text-embedding tuning set (corpus, queries, label TSVs) as one; fails the step if not valid.

    ``backend`` is the pipeline's: with ``vertex``, a set outside the template's size requirements fails here,
    before the paid template run; with ``local`` those are notes.
    """
    from tunekit.components.data_validation.steps import run_validation

    run_validation(
        {
            "corpus": corpus_uri,
            "queries": queries_uri,
            "train_labels": train_labels_uri,
            "test_labels": test_labels_uri,
            "validation_labels": validation_labels_uri,
        },
        method="embedding",
        task="",
        base_model="",
        strict=strict,
        report_path=report.path,
        html_path=html_report.path,
        log_metric=metrics.log_metric,
        backend=backend,
    )

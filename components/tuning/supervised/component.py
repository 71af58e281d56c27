"""KFP wrappers of the tuning steps.

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_supervised_data(
    backend: str,
    normalised_dataset: dsl.Input[dsl.Dataset],
    validation_split: float,
    train_dataset: dsl.Output[dsl.Dataset],
    validation_dataset: dsl.Output[dsl.Dataset],
):
    """Renders validation's normalised rows for the backend; holds out a split if no validation set was given."""
    from tunekit.components.tuning.supervised.steps import run_prepare

    run_prepare(
        backend=backend,
        normalised_dir=normalised_dataset.path,
        validation_split=validation_split,
        train_path=train_dataset.path,
        validation_path=validation_dataset.path,
        train_metadata=train_dataset.metadata,
        validation_metadata=validation_dataset.metadata,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_supervised(
    backend: str,
    base_model: str,
    task: str,
    train_dataset: dsl.Input[dsl.Dataset],
    validation_dataset: dsl.Input[dsl.Dataset],
    tuned_model_display_name: str,
    epoch_count: int,
    learning_rate_multiplier: float,
    adapter_size: int,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    train_steps: int,
    learning_rate: float,
    batch_size: int,
    lora_rank: int,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    tuned_model: dsl.Output[dsl.Model],
):
    """Supervised tuning: Gemini on Vertex (re-attaching on retry) or LoRA on an open model locally."""
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.supervised.steps import run_tune

    call(
        run_tune,
        locals(),
        train_path=train_dataset.path,
        train_uri=train_dataset.uri,
        validation_path=validation_dataset.path,
        validation_uri=validation_dataset.uri,
        model_path=tuned_model.path,
        model_metadata=tuned_model.metadata,
    )

"""KFP wrappers of the tuning steps.

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time). ``tune_supervised`` exists twice: with the CPU image
(the default, and what the local runner runs) and with the GPU image (``tune_supervised_gpu``), which
:func:`gpu_training_op` turns into a Vertex AI custom training job on GPUs (one process per GPU on every replica).
"""

from typing import Any

from kfp import dsl

from tunekit.components.common.image import GPU_IMAGE, IMAGE
from tunekit.components.tuning.component import gpu_training_jobs


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
    tuning_mode: str,
    custom_base_model: str,
    start_from: str,
    pre_tuned_model_checkpoint_id: str,
    tuned_model: dsl.Output[dsl.Model],
) -> str:
    """Supervised tuning: Gemini on Vertex (re-attaching on retry) or LoRA on an open model; returns the deploy backend.

    The deploy backend ('local' or 'vertex') is ``vertex`` for Gemini and for open models trained on Vertex AI
    (their artifact is in Cloud Storage), ``local`` for open models trained by the local runner.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import deploy_backend
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
    # Open models trained on Vertex (gs:// artifacts, in a pipeline step or a GPU custom job) deploy there too.
    return deploy_backend(backend, tuned_model.uri)


# One body, two images: the GPU variant is wrapped in a custom training job by gpu_training_op.
tune_supervised_gpu = dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)(tune_supervised)
tune_supervised = dsl.component(base_image=IMAGE, install_kfp_package=False)(tune_supervised)


def gpu_training_op(**gpu: Any):
    """The supervised-tuning component as a Vertex AI custom training job on GPUs (GPU image, bf16).

    ``gpu``: the machines, :func:`~tunekit.components.tuning.component.gpu_training_jobs`'s keyword arguments
    (``accelerator_type``, ``accelerator_count``, ``machine_type``, ``replica_count``, ``boot_disk_size_gb``).
    """
    (job,) = gpu_training_jobs({"tune-supervised-gpu": tune_supervised_gpu}, **gpu)
    return job

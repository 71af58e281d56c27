"""KFP wrappers of the preference-tuning steps (prepare, warm start, preference tuning).

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time). The two training steps exist twice: with the CPU image
(the default, and what the local runner runs) and with the GPU image (``*_gpu``), which :func:`gpu_training_ops`
turns into Vertex AI custom training jobs on GPUs for open models.
"""

from typing import Any

from kfp import dsl

from tunekit.components.common.image import GPU_IMAGE, IMAGE
from tunekit.components.tuning.component import gpu_training_jobs


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_preference_data(
    validated_dataset: dsl.Input[dsl.Dataset],
    prompt_dataset_uri: str,
    sft_dataset_uri: str,
    eval_split: float,
    seed: int,
    preference_dataset: dsl.Output[dsl.Dataset],
    eval_pairs: dsl.Output[dsl.Dataset],
    prompt_dataset: dsl.Output[dsl.Dataset],
    sft_dataset: dsl.Output[dsl.Dataset],
    reports: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
):
    """Turns the validated pairs into the Gemini preference format and holds out evaluation pairs.

    Also validates the optional prompt and SFT datasets (reports in ``reports``) and builds the warm start's data:
    the preferred answers in the Gemini SFT format, or the user's own SFT data.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.preference.steps import run_prepare_preference
    from tunekit.components.tuning.prepare import fingerprint_files, record_counts

    counts = call(
        run_prepare_preference,
        locals(),
        validated_dir=validated_dataset.path,
        preference_path=preference_dataset.path,
        eval_path=eval_pairs.path,
        prompt_path=prompt_dataset.path,
        sft_path=sft_dataset.path,
        reports_dir=reports.path,
    )
    fingerprint = fingerprint_files(preference_dataset.path)
    record_counts(
        counts, metrics, preference_dataset.metadata, layout="gemini_preference", fingerprint=fingerprint
    )


def warm_start_supervised(
    backend: str,
    base_model: str,
    enabled: bool,
    sft_dataset: dsl.Input[dsl.Dataset],
    sft_steps: int,
    epoch_count: int,
    adapter_size: int,
    learning_rate_multiplier: float,
    tuned_model_display_name: str,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    warm_model: dsl.Output[dsl.Model],
):
    """Supervised tuning on the preferred answers before preference tuning (or a record of the base model).

    Vertex: a Gemini SFT job that re-attaches on retry; local: TRL SFT of the open model.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.preference.steps import run_warm_start

    call(
        run_warm_start,
        locals(),
        sft_path=sft_dataset.path,
        sft_uri=sft_dataset.uri,
        model_path=warm_model.path,
        model_metadata=warm_model.metadata,
    )


def tune_preference(
    backend: str,
    algorithm: str,
    base_model: str,
    warm_model: dsl.Input[dsl.Model],
    preference_dataset: dsl.Input[dsl.Dataset],
    eval_pairs: dsl.Input[dsl.Dataset],
    prompt_dataset: dsl.Input[dsl.Dataset],
    beta: float,
    epoch_count: int,
    adapter_size: int,
    learning_rate_multiplier: float,
    pre_tuned_model_checkpoint_id: str,
    tuned_model_display_name: str,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    reward_steps: int,
    rl_steps: int,
    batch_size: int,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    tuned_model: dsl.Output[dsl.Model],
    reward_model: dsl.Output[dsl.Model],
) -> str:
    """Preference tuning from the warm start: Vertex ``PREFERENCE_TUNING``, or TRL reward model + RLOO / DPO.

    Returns the deploy backend: ``vertex`` for Gemini and for open models trained on Vertex AI (their artifact is
    in Cloud Storage), ``local`` for open models trained by the local runner.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import deploy_backend
    from tunekit.components.tuning.preference.steps import run_tune_preference

    call(
        run_tune_preference,
        locals(),
        warm_model_path=warm_model.path,
        preference_path=preference_dataset.path,
        preference_uri=preference_dataset.uri,
        eval_uri=eval_pairs.uri,
        prompt_path=prompt_dataset.path,
        model_path=tuned_model.path,
        model_metadata=tuned_model.metadata,
        reward_path=reward_model.path,
        reward_metadata=reward_model.metadata,
    )
    return deploy_backend(backend, tuned_model.uri)


# One body, two images: the GPU variants are wrapped in custom training jobs by gpu_training_ops.
warm_start_supervised_gpu = dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)(warm_start_supervised)
warm_start_supervised = dsl.component(base_image=IMAGE, install_kfp_package=False)(warm_start_supervised)
tune_preference_gpu = dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)(tune_preference)
tune_preference = dsl.component(base_image=IMAGE, install_kfp_package=False)(tune_preference)


def gpu_training_ops(**gpu: Any):
    """The warm-start and preference-tuning components as Vertex AI custom training jobs on GPUs (GPU image).

    ``gpu``: the machines, :func:`~tunekit.components.tuning.component.gpu_training_jobs`'s keyword arguments
    (``accelerator_type``, ``accelerator_count``, ``machine_type``, ``replica_count``, ``boot_disk_size_gb``):
    one training process per GPU on every replica.
    With ``backend: vertex`` (Gemini) the jobs only wait on the tuning service.

    Returns:
        ``(warm_start_op, tune_preference_op)``.
    """
    return gpu_training_jobs(
        {"warm-start-supervised-gpu": warm_start_supervised_gpu, "tune-preference-gpu": tune_preference_gpu}, **gpu
    )

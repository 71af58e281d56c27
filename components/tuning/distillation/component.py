"""KFP wrappers of the distilling step-by-step student steps.

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time). ``tune_student_model`` exists twice: with the CPU image
(the default, and what the local runner runs) and with the GPU image (``tune_student_model_gpu``), which
:func:`gpu_training_op` turns into a Vertex AI custom training job on GPUs (one process per GPU on every replica).
"""

from typing import Any

from kfp import dsl

from tunekit.components.common.image import GPU_IMAGE, IMAGE
from tunekit.components.tuning.component import gpu_training_jobs


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def build_student_dataset(
    rationale_dataset: dsl.Input[dsl.Dataset],
    validation_dataset: dsl.Input[dsl.Dataset],
    mode: str,
    alpha: float,
    label_prefix: str,
    rationale_prefix: str,
    max_input_tokens: int,
    max_output_tokens: int,
    no_truncate: bool,
    validation_split: float,
    student_backend: str,
    student_model: str,
    student_dataset: dsl.Output[dsl.Dataset],
    eval_dataset: dsl.Output[dsl.Dataset],
    metrics: dsl.Output[dsl.Metrics],
):
    """Builds the multi-task student data (and the label-only baseline's) and holds out the evaluation rows.

    ``validation_dataset`` is a folder with ``validation.jsonl`` (data validation's normalised output; absent or
    empty means: hold out ``validation_split`` of the gold-labelled rows). Over-long inputs and targets are
    truncated and counted in ``metrics``, or fail the step with ``no_truncate``.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.distillation.steps import run_build_student_dataset
    from tunekit.components.tuning.prepare import fingerprint_files, record_counts

    counts = call(
        run_build_student_dataset,
        locals(),
        rationale_path=rationale_dataset.path,
        validation_path=validation_dataset.path,
        output_dir=student_dataset.path,
        eval_path=eval_dataset.path,
    )
    fingerprint = fingerprint_files(rationale_dataset.path)
    record_counts(counts, metrics, student_dataset.metadata, mode=mode, alpha=alpha, fingerprint=fingerprint)


def tune_student_model(
    student_backend: str,
    student_model: str,
    task: str,
    student_dataset: dsl.Input[dsl.Dataset],
    baseline: bool,
    enabled: bool,
    teacher_model: str,
    train_steps: int,
    learning_rate: float,
    batch_size: int,
    lora_rank: int,
    finetuning: str,
    local_options: dict,
    epoch_count: int,
    learning_rate_multiplier: float,
    adapter_size: int,
    tuned_model_display_name: str,
    labels: dict,
    output_uri: str,
    project: str,
    location: str,
    pipeline_job_name: str,
    student: dsl.Output[dsl.Model],
) -> str:
    """Trains the student (or the label-only baseline); returns the deploy backend ('local' or 'vertex').

    The deploy backend is ``vertex`` for Gemini students and for open students trained on Vertex AI (their
    artifact is in Cloud Storage), ``local`` for open students trained by the local runner.

    Open models get the weighted multi-task loss (LoRA or full fine-tuning, CPU or GPU with bf16); Gemini students
    are tuned on Vertex (SFT on the multi-task data, or the distillation service), re-attaching on retry.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import deploy_backend
    from tunekit.components.tuning.distillation.steps import resolve_student_model, run_tune_student

    record = call(
        run_tune_student,
        locals(),
        student_model=resolve_student_model(student_model, student.path),
        dataset_dir=student_dataset.path,
        dataset_uri=student_dataset.uri,
        model_path=student.path,
        model_metadata=student.metadata,
    )
    # Open students trained on Vertex (gs:// artifacts, in a pipeline step or a GPU custom job) deploy there too.
    return deploy_backend(record["student_backend"], student.uri)


# One body, two images: the GPU variant is wrapped in a custom training job by gpu_training_op.
tune_student_model_gpu = dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)(tune_student_model)
tune_student_model = dsl.component(base_image=IMAGE, install_kfp_package=False)(tune_student_model)


def gpu_training_op(**gpu: Any):
    """The student-training component as a Vertex AI custom training job on GPUs (GPU image, bf16).

    ``gpu``: the machines, :func:`~tunekit.components.tuning.component.gpu_training_jobs`'s keyword arguments
    (``accelerator_type``, ``accelerator_count``, ``machine_type``, ``replica_count``, ``boot_disk_size_gb``):
    one training process per GPU on every replica.
    """
    (job,) = gpu_training_jobs({"tune-student-gpu": tune_student_model_gpu}, **gpu)
    return job

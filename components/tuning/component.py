"""What the tuning methods' KFP wrappers share: their open-model training steps as Vertex AI GPU jobs."""

from collections.abc import Mapping
from typing import Any


def gpu_training_jobs(
    components: Mapping[str, Any],
    *,
    accelerator_type: str = "NVIDIA_L4",
    accelerator_count: int = 1,
    machine_type: str = "g2-standard-12",
    boot_disk_size_gb: int = 200,
) -> tuple[Any, ...]:
    """Components built on the GPU image as Vertex AI custom training jobs on GPUs, in order.

    Chosen when a pipeline is compiled (its ``build_pipeline(gpu=...)``: the keyword arguments here); the jobs
    run in the pipeline's project and region.

    Args:
        components: The components, by the display name of their job.
        accelerator_type: The GPU type.
        accelerator_count: GPUs per job.
        machine_type: The machine the GPUs are attached to.
        boot_disk_size_gb: The job's boot disk.
    """
    from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component

    return tuple(
        create_custom_training_job_from_component(
            component,
            display_name=display_name,
            machine_type=machine_type,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            boot_disk_size_gb=boot_disk_size_gb,
        )
        for display_name, component in components.items()
    )

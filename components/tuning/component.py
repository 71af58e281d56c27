"""What the tuning methods' KFP wrappers share: their open-model training steps as Vertex AI GPU jobs."""

from collections.abc import Mapping
from typing import Any

#: How the custom job's container runs the step: through the launcher, which starts one process per GPU on every
#: replica with torchrun when there is more than one in all (:mod:`tunekit.components.tuning.launch`).
LAUNCHER = ("python3", "-m", "tunekit.components.tuning.launch")


def launched(command: list[str], *, replica_count: int, accelerator_count: int) -> list[str]:
    """The container command of a training step run by the launcher on ``replica_count`` x ``accelerator_count``."""
    return [
        *LAUNCHER,
        f"--nnodes={replica_count}",
        f"--nproc-per-node={accelerator_count}",
        "--",
        *command,
    ]


def gpu_training_jobs(
    components: Mapping[str, Any],
    *,
    accelerator_type: str = "NVIDIA_L4",
    accelerator_count: int = 1,
    machine_type: str = "g2-standard-12",
    replica_count: int = 1,
    boot_disk_size_gb: int = 200,
) -> tuple[Any, ...]:
    """Components built on the GPU image as Vertex AI custom training jobs on GPUs, in order.

    Chosen when a pipeline is compiled (its ``build_pipeline(gpu=...)``: the keyword arguments here); the jobs
    run in the pipeline's project and region. GCPC's ``create_custom_training_job_from_component`` makes the
    job's ``workerPoolSpecs``: pool 0 the primary replica, pool 1 the other ``replica_count - 1`` replicas, all on
    the same machine (its docstring; Vertex AI's layout,
    https://cloud.google.com/vertex-ai/docs/training/distributed-training). Every replica runs the step through
    :mod:`~tunekit.components.tuning.launch`: one process per GPU (``accelerator_count``) on each, under
    ``torchrun`` when there is more than one process in all.

    Args:
        components: The components, by the display name of their job.
        accelerator_type: The GPU type ('' for a CPU machine: one process per replica).
        accelerator_count: GPUs per replica (one training process each).
        machine_type: The machine the GPUs are attached to.
        replica_count: Machines training together (data-parallel, all alike).
        boot_disk_size_gb: The job's boot disk.

    Raises:
        ValueError: A count below 1 (a mistake in the compiling code).
    """
    import yaml
    from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component
    from kfp import components as kfp_components

    if replica_count < 1 or accelerator_count < 1:
        raise ValueError(
            f"replica_count and accelerator_count must be at least 1: {replica_count}, {accelerator_count}"
        )
    processes = accelerator_count if accelerator_type else 1
    jobs = []
    for display_name, component in components.items():
        job = create_custom_training_job_from_component(
            component,
            display_name=display_name,
            machine_type=machine_type,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            replica_count=replica_count,
            boot_disk_size_gb=boot_disk_size_gb,
        )
        # The worker pools are the job's default input; every pool's container runs the step through the launcher.
        spec = yaml.safe_load(job.component_yaml)
        for definition in [spec["root"], *spec["components"].values()]:
            pools = definition["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
            for pool in pools:
                pool["container_spec"]["command"] = launched(
                    pool["container_spec"]["command"], replica_count=replica_count, accelerator_count=processes
                )
        wrapped = kfp_components.load_component_from_text(yaml.safe_dump(spec))
        # As GCPC does: the job keeps the step's name (the task's name in the graph) and description.
        wrapped.component_spec.name = job.component_spec.name
        wrapped.description = job.description
        jobs.append(wrapped)
    return tuple(jobs)

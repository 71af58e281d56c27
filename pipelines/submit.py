"""Submitting a compiled pipeline to Vertex AI Pipelines as a ``PipelineJob``."""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from tunekit.components.common import vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.common.image import chosen_images, names_unpublished_image, unpublished_image_error
from tunekit.pipelines.compile import compile_method
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, check_region, parameter_values
from tunekit.pipelines.registry import Method


@dataclass
class SubmitOptions:
    """How to submit a run.

    Attributes:
        project: Google Cloud project of the pipeline job.
        region: Region of the pipeline job.
        pipeline_root: gs:// folder for the run's artifacts.
        template_path: A compiled spec to submit ('' compiles the method now, with ``image``).
        image: Component image to compile with ('' for ``TUNEKIT_IMAGE``; the GPU image is ``TUNEKIT_GPU_IMAGE``
            or the ``components-gpu`` image beside it). A spec that would name the unpublished default image is
            refused before anything is sent (:func:`check_images`).
        display_name: The run's display name ('' for the method's name).
        labels: Labels of the pipeline job.
        service_account: Service account the steps run as.
        network: VPC network to peer with.
        encryption_key: Cloud KMS key for the pipeline job's resources.
        enable_caching: Whether Vertex may reuse cached step results (None: the spec's settings, where the steps
            that read data by URI never cache). True caches those too: a changed file under the same URI would
            then be missed, which is why the CLI offers only ``--no-cache``.
        job_id: The pipeline job's id ('' for ``<pipeline name>-<timestamp>``); submitting the same id again
            re-attaches to the job instead of starting a second one.
        api_endpoint: Vertex AI API endpoint ('' for the region's; a Private Service Connect endpoint, or a
            local fake in tests).
        doctor: Run ``tunekit doctor``'s checks (pipelines/doctor.py) after the job is built and before it is
            created; a failed check stops the submission (the CLI sets it unless ``--skip-doctor``).
    """

    project: str
    region: str
    pipeline_root: str
    template_path: str = ""
    image: str = ""
    display_name: str = ""
    labels: dict | None = None
    service_account: str = ""
    network: str = ""
    encryption_key: str = ""
    enable_caching: bool | None = None
    job_id: str = ""
    api_endpoint: str = ""
    doctor: bool = False


def connect(options: SubmitOptions, credentials=None):
    """Points aiplatform at ``options``' project, region and endpoint; returns the credentials to use.

    ``TUNEKIT_VERTEX_BASE_URL`` (read now, never at import) aims it at a local fake, as the other Vertex clients
    of the project do; a plain ``http://`` endpoint gets static credentials.
    """
    from google.cloud import aiplatform

    from tunekit.components.model_clients.vertex import base_url_override, static_credentials

    check_region(options.region)
    endpoint = options.api_endpoint or base_url_override() or ""
    if credentials is None and endpoint.startswith("http://"):
        # Plain HTTP is never Google's API: a local fake (tests) that takes any token.
        credentials = static_credentials()
    kwargs = {"api_endpoint": endpoint, "api_transport": "rest"} if endpoint else {}
    aiplatform.init(project=options.project, location=options.region, credentials=credentials, **kwargs)
    return credentials


def vertex_parameters(config) -> dict:
    """The parameter values of ``config`` for a Vertex run.

    Project and location left at their placeholders are not sent, so Vertex fills in the job's own.
    """
    values = parameter_values(config)
    for key, placeholder in (("project", PROJECT_PLACEHOLDER), ("location", LOCATION_PLACEHOLDER)):
        if values.get(key) in (placeholder, ""):
            values.pop(key, None)
    for key, value in values.items():
        if key.endswith("_uri") and isinstance(value, str) and value and not value.startswith("gs://"):
            raise UserError(
                f"'{value}' is a local path; a Vertex run reads data from Cloud Storage: upload it and give the gs:// URI",
                field=key,
            )
    return values


def check_images(template: str, options: SubmitOptions, *, compiled_here: bool = False) -> None:
    """Refuses a compiled spec (a local file) that names the unpublished default image.

    A template in Artifact Registry (``https://...``) is not read here: ``tunekit doctor`` checks its images.

    Raises:
        UserError: The spec names ``us-docker.pkg.dev/tunekit-oss/...``, with the command that builds the images.
    """
    if template.startswith(("https://", "http://")) or not os.path.isfile(template):
        return
    with open(template, encoding="utf-8") as handle:
        if names_unpublished_image(handle.read()):
            # A spec this submission compiled in its own temporary folder is not the user's file to name.
            shown = None if compiled_here else template
            raise unpublished_image_error(options.project, options.region, path=shown)


def build_pipeline_job(method: Method, config, options: SubmitOptions, *, credentials=None):
    """Builds (without submitting) the ``aiplatform.PipelineJob`` for ``config``."""
    from google.cloud import aiplatform

    if not options.pipeline_root.startswith("gs://"):
        raise UserError("--pipeline-root must be a gs:// folder", field="pipeline_root")
    check_region(options.region)
    parameter_values = vertex_parameters(config)  # the config's mistakes first, then the image's
    # The spec compiled here is read when PipelineJob is built (aiplatform pipeline_jobs.py loads template_path
    # in __init__ and keeps no reference to the file), so its folder is removed once the job object exists.
    with tempfile.TemporaryDirectory(prefix="tunekit-") as folder:
        template = options.template_path
        if not template:
            image, gpu_image = chosen_images(options.image)
            if not image or names_unpublished_image(image):
                raise unpublished_image_error(options.project, options.region)
            template = os.path.join(folder, method.compiled_name)
            compile_method(method, template, image=image, gpu_image=gpu_image or None)
        check_images(template, options, compiled_here=not options.template_path)
        labels = {"tunekit-method": method.name, **(options.labels or {})}
        display_name = options.display_name or method.name
        return aiplatform.PipelineJob(
            display_name=display_name,
            template_path=template,
            job_id=options.job_id or None,
            pipeline_root=options.pipeline_root,
            parameter_values=parameter_values,
            enable_caching=options.enable_caching,
            encryption_spec_key_name=options.encryption_key or None,
            labels={
                re.sub(r"[^a-z0-9_-]", "-", k.lower()): re.sub(r"[^a-z0-9_-]", "-", str(v).lower())
                for k, v in labels.items()
            },
            credentials=credentials,
            project=options.project,
            location=options.region,
        )


def run_doctor(method: Method, config, options: SubmitOptions, credentials=None, job=None) -> None:
    """The preflight (pipelines/doctor.py) of ``job``'s spec when ``options.doctor``.

    Raises:
        UserError: A check failed (its line was printed).
    """
    if options.doctor:
        from tunekit.pipelines.doctor import preflight

        preflight(method, config, options, job=job, credentials=credentials)


def submit(method: Method, config, options: SubmitOptions, *, credentials=None):
    """Builds and submits the job; returns it (``job.resource_name``, ``job._dashboard_uri()``).

    A create call whose reply is lost (a 5xx or a timeout), or a job id submitted twice (409), is not repeated: the
    job is looked up by its id and re-attached (:func:`~tunekit.components.common.vertex_jobs.create_once`), so a
    retried submission never starts (and bills) a second run. ``PipelineJob`` fixes its ``job_id`` when it is built
    (aiplatform ``pipeline_jobs.py``), so the id is the same for every try.
    """
    from google.api_core import exceptions
    from google.cloud import aiplatform

    credentials = connect(options, credentials)
    job = build_pipeline_job(method, config, options, credentials=credentials)
    run_doctor(method, config, options, credentials, job)
    name = f"projects/{options.project}/locations/{options.region}/pipelineJobs/{job.job_id}"

    def create():
        job.submit(service_account=options.service_account or None, network=options.network or None)
        return job

    def attached(exc: BaseException):
        try:
            found = aiplatform.PipelineJob.get(name, credentials=credentials)
        except exceptions.NotFound:
            return None
        print(f"re-attached to {found.resource_name} ({type(exc).__name__} on create)")
        return found

    return vertex_jobs.create_once(create, find=attached, on_conflict=attached, attempts=1, retry_delay_s=0.0)


#: Final pipeline states and the exit code each one means.
FINAL_STATES = {
    "PIPELINE_STATE_SUCCEEDED": 0,
    "PIPELINE_STATE_FAILED": 1,
    "PIPELINE_STATE_CANCELLED": 1,
}
PIPELINE_RUN = vertex_jobs.JobKind(
    "Pipeline run", frozenset({vertex_jobs.PIPELINE_SUCCEEDED}), vertex_jobs.PIPELINE_FAILED_STATES
)


def wait_for_job(
    job,
    *,
    poll_seconds: float = 30.0,
    timeout_seconds: float = 0.0,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    max_poll_errors: int = 10,
) -> str:
    """Polls a submitted ``PipelineJob`` until it ends, printing each change of the job's and its tasks' states.

    The polling is :func:`~tunekit.components.common.vertex_jobs.wait_for`'s: transient errors while polling
    (:func:`~tunekit.components.common.vertex_jobs.is_transient`) are retried; the job keeps running either way.

    Args:
        job: An ``aiplatform.PipelineJob`` that was submitted (or fetched with ``PipelineJob.get``).
        poll_seconds: Seconds between polls.
        timeout_seconds: Give up waiting after this long (0: never); the job itself is not cancelled.
        echo: Where progress lines go.
        sleep: Waits between polls (tests pass a no-op).
        clock: Monotonic clock (tests pass their own).
        max_poll_errors: Consecutive failed polls tolerated (the next one raises).

    Returns:
        The final state's name (``PIPELINE_STATE_SUCCEEDED``...), or ``TIMEOUT`` when ``timeout_seconds`` passed.
    """
    last_state = ""
    tasks: dict[str, str] = {}

    def read():
        job.state  # noqa: B018 (the property reads the job again: aiplatform's _sync_gca_resource)
        return job.gca_resource

    def show(resource) -> None:
        nonlocal last_state
        state = vertex_jobs.state_name(resource.state)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S")
        if state != last_state:
            echo(f"{stamp} {job.resource_name.rsplit('/', 1)[-1]}: {state.removeprefix('PIPELINE_STATE_')}")
            last_state = state
        for task in resource.job_detail.task_details:
            task_state = vertex_jobs.state_name(task.state)
            if task.task_name and tasks.get(task.task_name) != task_state:
                tasks[task.task_name] = task_state
                echo(f"{stamp}   {task.task_name}: {task_state}")

    def poll_failed(exc: BaseException) -> None:
        echo(f"poll failed ({type(exc).__name__}); retrying")

    errors = max_poll_errors + 1  # the error after max_poll_errors in a row is raised
    resource = vertex_jobs.retry_transient(
        read, attempts=errors, initial_s=poll_seconds, max_s=poll_seconds, sleep=sleep, on_error=poll_failed
    )
    show(resource)
    try:
        resource = vertex_jobs.wait_for(
            resource,
            read,
            PIPELINE_RUN,
            poll_interval_s=poll_seconds,
            timeout_s=timeout_seconds or None,
            progress=show,
            on_poll_error=poll_failed,
            max_poll_errors=errors,
            sleep=sleep,
            clock=clock,
        )
    except vertex_jobs.JobFailed as failed:
        if failed.job is not None and failed.job.error.message:
            echo(f"error: {failed.job.error.message}")
        return failed.state
    except vertex_jobs.JobTimeout:
        echo(f"stopped waiting after {timeout_seconds:.0f}s; the job goes on: {job.resource_name}")
        return "TIMEOUT"
    return vertex_jobs.state_name(resource.state)

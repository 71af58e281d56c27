"""Scheduled retraining: Vertex AI ``PipelineJobSchedule``s that submit a method's pipeline on a cron.

Each schedule holds a full pipeline job request (template, parameter values, service account, labels), so the
run it starts every time is exactly what ``tunekit submit`` would start now. Scheduled runs start with the data
fingerprint check: when the data is unchanged since the champion was trained, the run ends within a minute as
"skipped: data unchanged" and costs one small step.

Schedules are found again by their display name (``tunekit-<method>`` unless named) among the region's
schedules whose pipeline job carries the ``tunekit-method`` label.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass

from tunekit.components.common.errors import UserError
from tunekit.pipelines.registry import Method
from tunekit.pipelines.submit import SubmitOptions, build_pipeline_job, connect, run_doctor

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")


@dataclass
class ScheduleOptions:
    """How often, and how many, scheduled runs.

    Attributes:
        cron: Five-field cron expression, optionally prefixed by ``TZ=Area/City `` (default UTC).
        name: The schedule's display name ('' for ``tunekit-<method>``).
        max_concurrent_runs: Runs of this schedule allowed at once.
        max_runs: Stop after this many runs (0 for no limit).
        allow_queueing: Queue a run that is due while ``max_concurrent_runs`` are running (instead of skipping it).
        start_time: RFC 3339 time of the first possible run ('' for now).
        end_time: RFC 3339 time after which no run starts ('' for never).
    """

    cron: str
    name: str = ""
    max_concurrent_runs: int = 1
    max_runs: int = 0
    allow_queueing: bool = False
    start_time: str = ""
    end_time: str = ""


def schedule_name(method: Method, name: str = "") -> str:
    """The display name of ``method``'s schedule."""
    return name or f"tunekit-{method.name}"


def check_cron(cron: str) -> str:
    """Returns ``cron`` when it is a five-field cron expression (with an optional ``TZ=`` prefix).

    Raises:
        UserError: It is not.
    """
    fields = cron.split()
    if fields and re.match(r"^(CRON_)?TZ=\S+$", fields[0]):
        fields = fields[1:]
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise UserError(
            f"'{cron}' is not a cron expression: give five fields, e.g. '0 3 * * 1' (03:00 UTC on Mondays), "
            "optionally prefixed by TZ=Europe/Paris",
            field="--cron",
        )
    return cron


def check_time(value: str, flag: str) -> str:
    """Returns ``value`` normalised to RFC 3339 UTC ('' stays '').

    Raises:
        UserError: Not an ISO 8601 / RFC 3339 time.
    """
    if not value:
        return ""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"'{value}' is not a time: use RFC 3339, e.g. 2027-01-31T03:00:00Z", field=flag) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validate(options: ScheduleOptions) -> None:
    check_cron(options.cron)
    if options.max_concurrent_runs < 1:
        raise UserError("must be at least 1", field="--max-concurrent-runs")
    if options.max_runs < 0:
        raise UserError("must be 0 (no limit) or more", field="--max-runs")
    start, end = check_time(options.start_time, "--start-time"), check_time(options.end_time, "--end-time")
    if start and end and end <= start:
        raise UserError(f"the end time {end} is not after the start time {start}", field="--end-time")


def _method_of(schedule) -> str:
    request = schedule.gca_resource.create_pipeline_job_request
    return dict(request.pipeline_job.labels).get("tunekit-method", "")


def list_schedules(method: Method | None, submit_options: SubmitOptions, *, credentials=None) -> list:
    """The region's tunekit schedules (of ``method``, or of every method), as ``aiplatform`` objects."""
    from google.cloud import aiplatform

    credentials = connect(submit_options, credentials)
    found = aiplatform.PipelineJobSchedule.list(
        project=submit_options.project, location=submit_options.region, credentials=credentials
    )
    return [s for s in found if _method_of(s) and (method is None or _method_of(s) == method.name)]


def find_schedule(method: Method, submit_options: SubmitOptions, name: str = "", *, credentials=None):
    """The schedule of ``method`` with display name ``name`` (default ``tunekit-<method>``), or None.

    Raises:
        UserError: Several schedules have that name (give the resource name to act on one of them).
    """
    if name.startswith("projects/"):
        from google.cloud import aiplatform

        credentials = connect(submit_options, credentials)
        return aiplatform.PipelineJobSchedule.get(name, credentials=credentials)
    wanted = schedule_name(method, name)
    matches = [
        s for s in list_schedules(method, submit_options, credentials=credentials) if s.display_name == wanted
    ]
    if len(matches) > 1:
        names = ", ".join(s.resource_name for s in matches)
        raise UserError(f"several schedules are named '{wanted}' ({names}); pass one resource name with --name")
    return matches[0] if matches else None


def create_schedule(
    method: Method,
    config,
    submit_options: SubmitOptions,
    options: ScheduleOptions,
    *,
    replace: bool = False,
    credentials=None,
):
    """Creates the schedule that runs ``method`` with ``config``; returns the ``PipelineJobSchedule``.

    Args:
        method: The pipeline.
        config: Its config (the parameter values every scheduled run gets).
        submit_options: Project, region, pipeline root, template (a compiled file or an Artifact Registry
            template URL, e.g. ``https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/latest``), service account,
            network, labels, CMEK key and caching of each run.
        options: Cron, name, concurrency, queueing, start and end.
        replace: Delete a schedule of the same name first (a release refreshes its schedules so).
        credentials: Google credentials (default: the environment's).

    Raises:
        UserError: A bad option, or a schedule of that name exists and ``replace`` is false.
    """
    from google.cloud import aiplatform

    _validate(options)
    credentials = connect(submit_options, credentials)
    display_name = schedule_name(method, options.name)
    labels = {"tunekit-schedule": display_name, **(submit_options.labels or {})}
    job_options = dataclasses.replace(submit_options, labels=labels, display_name=display_name)
    # The static checks and the preflight come before a replaced schedule is deleted.
    job = build_pipeline_job(method, config, job_options, credentials=credentials)
    run_doctor(method, config, submit_options, credentials, job)
    existing = find_schedule(method, submit_options, display_name, credentials=credentials)
    if existing is not None:
        if not replace:
            raise UserError(
                f"a schedule named '{display_name}' exists ({existing.resource_name}); add --replace to replace it, "
                "or --name to create another"
            )
        existing.delete()
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job,
        display_name=display_name,
        credentials=credentials,
        project=submit_options.project,
        location=submit_options.region,
    )
    schedule.create(
        cron=options.cron,
        start_time=check_time(options.start_time, "--start-time") or None,
        end_time=check_time(options.end_time, "--end-time") or None,
        allow_queueing=options.allow_queueing,
        max_run_count=options.max_runs or None,
        max_concurrent_run_count=options.max_concurrent_runs,
        service_account=submit_options.service_account or None,
        network=submit_options.network or None,
    )
    return schedule


def _require(method: Method, submit_options: SubmitOptions, name: str, credentials):
    schedule = find_schedule(method, submit_options, name, credentials=credentials)
    if schedule is None:
        raise UserError(
            f"no schedule named '{schedule_name(method, name)}' in {submit_options.project}/{submit_options.region}; "
            f"see 'tunekit schedule list {method.name}'"
        )
    return schedule


def pause_schedule(method: Method, submit_options: SubmitOptions, name: str = "", *, credentials=None):
    """Pauses ``method``'s schedule (runs due while paused are not started)."""
    schedule = _require(method, submit_options, name, connect(submit_options, credentials))
    schedule.pause()
    return schedule


def resume_schedule(method: Method, submit_options: SubmitOptions, name: str = "", *, credentials=None):
    """Resumes ``method``'s paused schedule."""
    schedule = _require(method, submit_options, name, connect(submit_options, credentials))
    schedule.resume()
    return schedule


def delete_schedule(method: Method, submit_options: SubmitOptions, name: str = "", *, credentials=None) -> str:
    """Deletes ``method``'s schedule; returns its resource name."""
    schedule = _require(method, submit_options, name, connect(submit_options, credentials))
    resource_name = schedule.resource_name
    schedule.delete()
    return resource_name


def describe(schedule) -> dict:
    """The fields of a schedule worth printing."""
    resource = schedule.gca_resource
    return {
        "name": resource.display_name,
        "resource": resource.name,
        "method": _method_of(schedule),
        "state": getattr(resource.state, "name", str(resource.state)),
        "cron": resource.cron,
        "max_concurrent_runs": resource.max_concurrent_run_count,
        "max_runs": resource.max_run_count,
        "allow_queueing": resource.allow_queueing,
        "next_run": resource.next_run_time.isoformat() if resource.next_run_time else "",
        "started_runs": resource.started_run_count,
    }

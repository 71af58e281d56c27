"""Paid, long-running Vertex AI work, done once: create or re-attach, poll with back-off, one transient error.

Tuning jobs, the embedding-tuning template's pipeline job, batch prediction jobs, ``tunekit submit --wait`` and
the long-running operations of an open-model rollout run for minutes to days and cost money, while the pipeline
step waiting for them can be retried (a preempted pod, a transient error). This module is the one implementation
of the README's "never pay twice" for all of them:

:func:`run_job` is the entry point for jobs (tuning, pipeline, batch), :func:`run_operation` for long-running
operations:

1. **Identity first** (:func:`create_or_attach`). A request id is written to the step's state file *before* the
   create call, and the job's resource name right after it, before any waiting. The request id reaches Vertex as
   a label (tuning jobs), as the job's own id (pipeline jobs) or in the display name (batch jobs, which
   google-genai cannot label), so a job whose create reply was lost can be found again.
2. **Re-attach** on retry: a state file naming a job re-attaches to it; one holding only a request id looks the
   job up (``find``) before creating anything. An error on the create call that does not say whether the job
   exists (a 5xx, a timeout, a dropped connection) is followed by the same look-up before creating again; a 429
   means the request was refused and nothing was created; a 409 on a create that names its job means an earlier
   create got through (:func:`create_once`). Long-running operations record their operation's name the same way
   and re-attach to it by name (:func:`run_operation`).
3. **Poll** with back-off (:func:`wait_for`, :func:`wait_for_operation`): the wait between polls grows by half
   up to a cap, and a poll that fails transiently is retried a bounded number of times in a row
   (:data:`MAX_POLL_ERRORS`) before the error is raised. The job keeps running when the step gives up waiting
   (:class:`JobTimeout`): a retry re-attaches.
4. **One transient error** (:func:`is_transient`), for these helpers and for generation calls
   (``model_clients``) alike.
5. **Clear failures**: a job that ended failed, cancelled or expired raises :class:`JobFailed` (a subclass per
   kind of job) with the job's own error message and what to do next.

SDK facts this module relies on (the installed google-genai 2.34.0, google-cloud-aiplatform 1.165.1 and the
google-api-core they pull in; paths under ``site-packages``):

- ``google/genai/errors.py``: every API failure is an ``APIError`` whose ``code`` is the HTTP status
  (``ClientError`` for 4xx, ``ServerError`` for 5xx); transport failures surface as ``httpx`` (or, for the
  async client when installed, ``httpx2``) ``TransportError``, which covers timeouts and dropped connections.
- ``google/api_core/exceptions.py``: ``GoogleAPICallError.code`` is the HTTP status of every subclass
  (``TooManyRequests`` 429, ``InternalServerError`` 500, ``BadGateway`` 502, ``ServiceUnavailable`` 503,
  ``GatewayTimeout``/``DeadlineExceeded`` 504, ``Conflict`` 409, ``NotFound`` 404); the REST transports map a
  response to its class by status (``from_http_response``). Their transport is ``requests`` (through
  google-auth's ``AuthorizedSession``), whose ``ConnectionError``, ``Timeout`` and ``ChunkedEncodingError`` are
  the dropped-connection cases.
- ``google/api_core/retry/retry_base.py``: ``if_transient_error`` counts 500, 429, 503 and requests'
  ``ConnectionError``/``ChunkedEncodingError`` as transient; :data:`TRANSIENT_STATUS` adds 408, 502 and 504,
  which ``google/api_core/future/polling.py`` (``RETRY_PREDICATE``: 429, 500, 502, 503) and Vertex's own retry
  guidance treat as retryable too.
- ``google/genai/types.py`` ``JobState`` and ``google/cloud/aiplatform_v1/types/pipeline_state.py``
  ``PipelineState``: the states a job does not leave (``*_SUCCEEDED``, ``*_FAILED``, ``*_CANCELLED``,
  ``JOB_STATE_EXPIRED``; batch jobs also ``JOB_STATE_PARTIALLY_SUCCEEDED``). google-genai's states are ``str``
  enums (the value is the name), aiplatform's are ``int`` enums (the name is the name): see :func:`state_name`.
- ``google/api_core/operation.py``: an ``Operation`` that comes back done already holds its result or its error
  (``__init__`` calls ``_set_result_from_operation``); ``done()`` refreshes it through the operations client, and
  ``result()`` raises the operation's own error as ``exceptions.from_grpc_status(code, message)``, so a caller
  can still tell ``NotFound`` from ``FailedPrecondition``. ``from_gapic`` rebuilds the future from an operation
  fetched by name (``get_operation``). ``google/api_core/future/polling.py`` ``DEFAULT_POLLING`` (first wait 1 s,
  growing by half, at most 20 s) is the polling :func:`wait_for_operation` keeps.
"""

from __future__ import annotations

import enum
import functools
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import check_recorded, read_state, write_state

#: HTTP statuses worth another try: request timeout, quota, and the server errors that say nothing about the
#: request itself.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
#: A poll (or a look-up) that fails transiently this many times in a row gives up and raises the error.
MAX_POLL_ERRORS = 8
#: Create calls made for one request at most (each after a look-up when the previous one may have got through).
CREATE_ATTEMPTS = 4

#: Final states of google-genai jobs (tuning and batch prediction jobs), ``google/genai/types.py`` ``JobState``.
JOB_SUCCEEDED = "JOB_STATE_SUCCEEDED"
JOB_FAILED_STATES = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})
#: Final states of Vertex AI pipeline jobs, ``aiplatform_v1`` ``PipelineState``.
PIPELINE_SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
PIPELINE_FAILED_STATES = frozenset({"PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"})


# --- transient errors ------------------------------------------------------------------------------------------


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an error from google-genai or google-api-core, or None (a transport error, a bug)."""
    from google.api_core import exceptions as core_exceptions
    from google.genai import errors as genai_errors

    if isinstance(exc, (genai_errors.APIError, core_exceptions.GoogleAPICallError)):
        code = exc.code
        return code if isinstance(code, int) else None
    return None


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx
    import requests

    errors: list[type[BaseException]] = [
        httpx.TransportError,  # google-genai: timeouts, refused and dropped connections
        requests.ConnectionError,  # aiplatform's REST transports (google-auth's AuthorizedSession)
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    ]
    try:  # google-genai's async client uses httpx2 when it is installed
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call to Vertex AI is worth another try: the one definition of a transient error.

    True for the statuses in :data:`TRANSIENT_STATUS` (from google-genai's ``APIError`` or google-api-core's
    ``GoogleAPICallError``) and for transport errors (timeouts, refused or dropped connections) of httpx, httpx2
    and requests. Anything else (a refused request, a missing resource, a bug) is not retried.
    """
    code = status_code(exc)
    if code is not None:
        return code in TRANSIENT_STATUS
    return isinstance(exc, _transport_errors())


def describe_error(exc: BaseException) -> str:
    """A one-line description of an error from google-genai (``429 RESOURCE_EXHAUSTED: ...``) or anything else."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return f"{exc.code} {exc.status or ''}: {exc.message or exc}".replace("  ", " ")
    return f"{type(exc).__name__}: {exc}"


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: between half and all of ``initial_s * 2**(attempt-1)``, capped at ``max_s``."""
    # Jitter spreads the retries of workers that hit the same quota wall at once.
    return min(max_s, initial_s * 2 ** (attempt - 1)) * (rng or random).uniform(0.5, 1.0)


def retry_transient(
    call: Callable[[], Any],
    *,
    attempts: int = MAX_POLL_ERRORS,
    initial_s: float = 1.0,
    max_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    on_error: Callable[[BaseException], None] | None = None,
) -> Any:
    """Runs ``call``, retrying transient errors (:func:`is_transient`) with capped backoff.

    Args:
        call: What to run.
        attempts: Tries in all; the error of the last one is raised.
        initial_s: The first retry's nominal delay; it doubles each retry.
        max_s: The cap on one delay.
        sleep: Waits between tries (tests pass a no-op).
        on_error: Told of each transient error that is retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
            if on_error is not None:
                on_error(exc)
            sleep(backoff_delay(attempt, initial_s, max_s))
    raise AssertionError("unreachable")  # pragma: no cover


# --- job states and outcomes -----------------------------------------------------------------------------------


def state_name(state: Any) -> str:
    """A job state as its name (``STATE_UNSPECIFIED`` for None).

    google-genai's states are ``str`` enums whose value is the name (``JOB_STATE_RUNNING``); aiplatform's are
    ``int`` enums (``PIPELINE_STATE_RUNNING``; a pipeline task's ``SUCCEEDED``).
    """
    if state is None:
        return "STATE_UNSPECIFIED"
    if isinstance(state, enum.Enum):
        return state.value if isinstance(state.value, str) else state.name
    return str(state)


class JobFailed(RuntimeError):
    """A Vertex job ended without its result (failed, cancelled, expired); the message is the job's own error.

    Attributes:
        job_name: The job's resource name.
        state: Its final state (``JOB_STATE_FAILED``, ``PIPELINE_STATE_CANCELLED``...).
        code: The job's error code, if any.
        job_message: The job's error message, if any.
        job: The job as last read, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        job_name: str,
        state: str,
        code: int | None = None,
        job_message: str = "",
        job: Any = None,
    ):
        super().__init__(message)
        self.job_name = job_name
        self.state = state
        self.code = code
        self.job_message = job_message
        self.job = job


class JobTimeout(TimeoutError):
    """The step stopped waiting; the job keeps running, and a retry of the step re-attaches to it.

    Attributes:
        job_name: The job's (or operation's) resource name.
        state: Its state when the wait ended.
    """

    def __init__(self, message: str, *, job_name: str, state: str = ""):
        super().__init__(message)
        self.job_name = job_name
        self.state = state


class JobRefused(UserError):
    """Vertex AI refused to create the job (400, 403, 404): a problem with the request, not a transient one."""


@dataclass(frozen=True)
class JobKind:
    """What a kind of Vertex job looks like to the helpers.

    Attributes:
        what: How a job is named in messages (``Tuning job``, ``Pipeline job``, ``Batch job``).
        succeeded: Final states with a result.
        failed: Final states without one.
        error: The exception a failed job raises (:class:`JobFailed` or a subclass).
        replace_failed: Whether a recorded job that ended failed is replaced by a new one on retry (batch
            prediction: running it again is the point of a retry) instead of raised again (tuning: the same data
            would fail the same way, and cost again).
    """

    what: str
    succeeded: frozenset[str]
    failed: frozenset[str]
    error: type[JobFailed] = JobFailed
    replace_failed: bool = False

    def state_of(self, job: Any) -> str:
        """The job's state as its name."""
        return state_name(getattr(job, "state", None))

    def failure(self, job: Any, *, state_path: str = "", resumed: bool = False) -> JobFailed:
        """The exception for a job that ended in one of :attr:`failed`, with the job's own error message."""
        state = self.state_of(job)
        name = getattr(job, "name", "") or ""
        error = getattr(job, "error", None)
        code = getattr(error, "code", None) or None
        job_message = getattr(error, "message", None) or f"the job ended in {state}"
        if self.replace_failed:
            how = "A retry of this step starts a new job."
        elif resumed and state_path:
            how = (
                f"This step re-attached to the job recorded in {state_path}; to start a new job, run the pipeline "
                "again (a new run gets a new state file) or delete that file."
            )
        else:
            how = "Fix the cause and run the pipeline again."
        code_note = f" (code {code})" if code is not None else ""
        return self.error(
            f"{self.what} {name} ended in {state}: {job_message}{code_note}. {how}",
            job_name=name,
            state=state,
            code=code,
            job_message=job_message,
            job=job,
        )


def _still_running(what: str, name: str, state: str, waited_s: float, state_path: str) -> JobTimeout:
    retry = f", and a retry of this step re-attaches to it through {state_path}" if state_path else ""
    return JobTimeout(
        f"{what} {name} is still {state} after {waited_s:g} s; it keeps running{retry}", job_name=name, state=state
    )


def wait_for(
    job: Any,
    get: Callable[[], Any],
    kind: JobKind,
    *,
    poll_interval_s: float,
    max_poll_interval_s: float | None = None,
    timeout_s: float | None = None,
    progress: Callable[[Any], None] | None = None,
    on_poll_error: Callable[[BaseException], None] | None = None,
    max_poll_errors: int = MAX_POLL_ERRORS,
    state_path: str = "",
    resumed: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Polls a job until it ends; returns it when it succeeded.

    Args:
        job: The job as last read.
        get: Reads the job again.
        kind: Its final states and error.
        poll_interval_s: The first wait between polls.
        max_poll_interval_s: The wait grows by half each poll up to this cap; None keeps it constant.
        timeout_s: Stop waiting after this many seconds (the job keeps running); None waits for ever.
        progress: Called with the job after each poll.
        on_poll_error: Told of each transient poll error that is retried.
        max_poll_errors: Transient errors in a row that one poll tolerates (retried with backoff) before raising.
        state_path: The state file a retry re-attaches through (named in messages).
        resumed: Whether this step re-attached to an earlier attempt's job (for the failure message).
        sleep: Waits between polls (tests pass a no-op).
        clock: A monotonic clock.

    Raises:
        JobFailed: The job ended in one of ``kind.failed`` (``kind.error``, with the job's own message).
        JobTimeout: ``timeout_s`` passed first.
    """
    started = clock()
    interval = poll_interval_s
    cap = poll_interval_s if max_poll_interval_s is None else max_poll_interval_s
    while True:
        state = kind.state_of(job)
        if state in kind.succeeded:
            return job
        if state in kind.failed:
            raise kind.failure(job, state_path=state_path, resumed=resumed)
        if timeout_s is not None and clock() - started >= timeout_s:
            raise _still_running(kind.what, getattr(job, "name", "") or "", state, timeout_s, state_path)
        sleep(interval)
        interval = min(cap, interval * 1.5)  # constant when there is no cap
        job = retry_transient(
            get,
            attempts=max_poll_errors,
            initial_s=poll_interval_s,
            max_s=cap,
            sleep=sleep,
            on_error=on_poll_error,
        )
        if progress is not None:
            progress(job)


# --- creating once ---------------------------------------------------------------------------------------------


def create_once(
    create: Callable[[], Any],
    *,
    find: Callable[[BaseException], Any | None] | None = None,
    on_conflict: Callable[[BaseException], Any | None] | None = None,
    attempts: int = CREATE_ATTEMPTS,
    retry_delay_s: float = 2.0,
    max_retry_delay_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Makes a create call, retrying transient errors without ever creating a second job.

    Args:
        create: The create call; returns the job.
        find: Looks for the job after an error that leaves it unknown whether the create got through (a 5xx, a
            timeout, a dropped connection; not a 429, which refuses the request); returns None when there is none.
            Without it the create is simply repeated (a create that names its job is refused with 409 the second
            time: see ``on_conflict``).
        on_conflict: For a create that names its job: returns the existing job on a 409 ``ALREADY_EXISTS`` (an
            earlier create of this request got through); None raises the 409.
        attempts: Create calls at most.
        retry_delay_s: The first retry's nominal delay; it doubles each retry.
        max_retry_delay_s: The cap on one delay.
        sleep: Waits between tries.

    Raises:
        Exception: The create call's last error, or the first one that is not transient.
    """
    for attempt in range(1, attempts + 1):
        try:
            return create()
        except Exception as exc:
            code = status_code(exc)
            if code == 409 and on_conflict is not None:
                existing = on_conflict(exc)
                if existing is None:
                    raise
                return existing
            if not is_transient(exc):
                raise
            look = find is not None and code != 429  # a 429 refused the request: nothing was created
            if attempt >= attempts and not look:
                raise
            sleep(backoff_delay(attempt, retry_delay_s, max_retry_delay_s))
            if look:
                existing = retry_transient(
                    lambda exc=exc: find(exc), initial_s=retry_delay_s, max_s=max_retry_delay_s, sleep=sleep
                )
                if existing is not None:
                    return existing
            if attempt >= attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Started:
    """A job created, or re-attached to, by :func:`create_or_attach`.

    Attributes:
        job: The job as last read.
        state: The state file's content (as written).
        resumed: Whether the job is one an earlier attempt created.
    """

    job: Any
    state: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False


def new_request_id() -> str:
    """A fresh request id: 32 hex characters (a valid label value and job-id suffix)."""
    return uuid.uuid4().hex


def create_or_attach(
    state_path: str | None,
    kind: JobKind,
    *,
    get: Callable[[str], Any],
    create: Callable[[str], Any],
    find: Callable[[str], Any | None] | None = None,
    names_job: bool = False,
    inputs: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    named: Callable[[str], Mapping[str, Any]] | None = None,
    request_id: Callable[[], str] = new_request_id,
    state_what: str = "state file",
    retry_delay_s: float = 2.0,
    max_retry_delay_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Started:
    """Creates a job once per request, or re-attaches to the one an earlier attempt of the step created.

    1. A state file naming a job re-attaches to it (``get``); one the job failed in is replaced by a new job
       when ``kind.replace_failed``.
    2. One holding only a request id (an attempt that died between its create call and writing the job's name)
       looks the job up by that id (``find``) before creating anything.
    3. Otherwise the request id is written to the state file *before* the create call (:func:`create_once`), and
       the job's name right after it, before any waiting.

    Args:
        state_path: The state file (local, ``/gcs/...`` or ``gs://``); None keeps no state (no re-attach).
        kind: The kind of job (messages, failed states).
        get: Reads a job by resource name.
        create: Creates the job for a request id (which it sends as a label, the job's id or its display name).
        find: The job created for a request id, or None.
        names_job: Whether ``create`` names the job after the request id, so that a repeated create is refused
            with 409 (Vertex pipeline jobs): a transient create error then repeats the create, and a 409 means
            the job exists (``find``). Otherwise a transient error is followed by ``find`` before another create.
        inputs: What the job is for; a state file recording other values is refused (another request's file).
        fields: What else a new job's state file records.
        named: Extra fields recorded with the job's name (a console URL).
        request_id: Makes a new request id.
        state_what: How the state file is named in messages (``tuning state file``).
        retry_delay_s: The first delay of retried calls (create, get, find).
        max_retry_delay_s: The cap on those delays.
        sleep: Waits between retries.

    Returns:
        The job, the state as written, and whether it was re-attached.

    Raises:
        UserError: The state file belongs to other inputs, or names a job Vertex does not know.
        JobRefused: Vertex refused the create call (400, 403, 404).
        JobFailed: The recorded job failed (unless ``kind.replace_failed``).
    """
    state = read_state(state_path, what=state_what) if state_path else {}
    check_recorded(state, state_path or "", what=state_what, **(inputs or {}))
    retry = functools.partial(retry_transient, initial_s=retry_delay_s, max_s=max_retry_delay_s, sleep=sleep)
    job, resumed = None, False
    if state.get("job_name"):
        try:
            job = retry(lambda: get(state["job_name"]))
        except Exception as exc:
            if status_code(exc) == 404:
                raise UserError(
                    f"the {state_what} names {kind.what.lower()} {state['job_name']}, which Vertex AI does not know "
                    f"({describe_error(exc)}); delete the file to start over",
                    path=state_path,
                ) from exc
            raise
        resumed = True
    elif state.get("request_id") and find is not None:
        job = retry(lambda: find(state["request_id"]))
        resumed = job is not None
    if job is not None and kind.replace_failed and kind.state_of(job) in kind.failed:
        job, resumed, state = None, False, {}  # a new request: a new id, a new job
    if job is None:
        rid = state.get("request_id") or request_id()
        state = {**(fields or {}), **(inputs or {}), "request_id": rid}
        if state_path:
            write_state(state_path, state)  # before the create call: a retry looks for this request's job
        look = None if find is None else (lambda exc: find(rid))
        try:
            job = create_once(
                lambda: create(rid),
                find=None if names_job else look,
                on_conflict=look if names_job else None,
                retry_delay_s=retry_delay_s,
                max_retry_delay_s=max_retry_delay_s,
                sleep=sleep,
            )
        except Exception as exc:
            if status_code(exc) in (400, 403, 404):
                raise JobRefused(f"Vertex AI refused the {kind.what.lower()}: {describe_error(exc)}") from exc
            raise
    name = getattr(job, "name", "") or ""
    if not name:
        raise RuntimeError(f"Vertex AI returned a {kind.what.lower()} without a name")
    if state.get("job_name") != name:
        state = {**state, "job_name": name, **(named(name) if named else {})}
        if state_path:
            write_state(state_path, state)  # before any waiting: from here on a retry re-attaches
    return Started(job=job, state=state, resumed=resumed)


def run_job(
    state_path: str | None,
    kind: JobKind,
    *,
    get: Callable[[str], Any],
    create: Callable[[str], Any],
    poll_interval_s: float,
    max_poll_interval_s: float | None = None,
    timeout_s: float | None = None,
    progress: Callable[[Any], None] | None = None,
    on_start: Callable[[Started], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **attach: Any,
) -> Started:
    """Creates a job once (or re-attaches to it) and waits for it: :func:`create_or_attach`, then :func:`wait_for`.

    Args:
        state_path: The state file; None keeps no state.
        kind: The kind of job.
        get: Reads a job by resource name (re-attaching, and each poll).
        create: Creates the job for a request id.
        poll_interval_s: The first wait between polls.
        max_poll_interval_s: The cap on that wait as it grows by half; None keeps it constant.
        timeout_s: Stop waiting after this long (the job keeps running; a retry re-attaches).
        progress: Called with the job after each poll.
        on_start: Called once the job is created or re-attached to, before the wait.
        sleep: Waits between polls and retries.
        attach: The other arguments of :func:`create_or_attach` (``find``, ``names_job``, ``inputs``...).

    Returns:
        The :class:`Started` record, with the succeeded job as :attr:`Started.job`.

    Raises:
        UserError: See :func:`create_or_attach` (:class:`JobRefused` when Vertex refused the job).
        JobFailed: The job ended failed, cancelled or expired.
        JobTimeout: ``timeout_s`` passed first.
    """
    started = create_or_attach(state_path, kind, get=get, create=create, sleep=sleep, **attach)
    if on_start is not None:
        on_start(started)
    name = started.job.name
    started.job = wait_for(
        started.job,
        lambda: get(name),
        kind,
        poll_interval_s=poll_interval_s,
        max_poll_interval_s=max_poll_interval_s,
        timeout_s=timeout_s,
        progress=progress,
        state_path=state_path or "",
        resumed=started.resumed,
        sleep=sleep,
    )
    return started


# --- long-running operations -----------------------------------------------------------------------------------


def wait_for_operation(
    operation: Any,
    *,
    what: str,
    timeout_s: float | None,
    state_path: str = "",
    poll_interval_s: float = 1.0,
    max_poll_interval_s: float = 20.0,
    max_poll_errors: int = MAX_POLL_ERRORS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Waits for a google-api-core ``Operation`` (an aiplatform long-running operation) and returns its result.

    The polling is api_core's ``DEFAULT_POLLING`` (1 s, growing by half, at most 20 s), with the transient-error
    tolerance of :func:`wait_for` for each refresh.

    Args:
        operation: The operation future a ``create_endpoint``, ``deploy_model``... call returned.
        what: How it is named in messages (``model upload``, ``deployment to projects/../endpoints/E``).
        timeout_s: Stop waiting after this long; None waits for ever.
        state_path: The state file recording the operation (named in the timeout message).
        poll_interval_s: The first wait between refreshes.
        max_poll_interval_s: The cap on that wait.
        max_poll_errors: Transient errors in a row one refresh tolerates.
        sleep: Waits between refreshes.
        clock: A monotonic clock.

    Raises:
        google.api_core.exceptions.GoogleAPICallError: The operation's own error, as api_core maps it.
        JobTimeout: ``timeout_s`` passed first (the operation keeps running).
    """
    started = clock()
    interval = poll_interval_s
    refresh = functools.partial(
        retry_transient,
        operation.done,  # an operation that came back done answers without a request
        attempts=max_poll_errors,
        initial_s=poll_interval_s,
        max_s=max_poll_interval_s,
        sleep=sleep,
    )
    while not refresh():
        if timeout_s is not None and clock() - started >= timeout_s:
            raise _still_running(what, operation.operation.name, "running", timeout_s, state_path)
        sleep(interval)
        interval = min(max_poll_interval_s, interval * 1.5)
    return operation.result()


def operation_resumer(client: Any, result_type: Any) -> Callable[[str], Any]:
    """Re-attaches to an operation of ``client`` (an aiplatform_v1 service client) by its resource name.

    ``client.get_operation`` reads the operation; ``google.api_core.operation.from_gapic`` makes the same future
    the original call returned, polling through ``client.transport.operations_client``.

    Args:
        client: The client whose call started the operation.
        result_type: The operation's result message (``DeployModelResponse``, ``Endpoint``...).
    """

    def resume(name: str) -> Any:
        from google.api_core import operation as gac_operation

        pb = client.get_operation(request={"name": name})
        return gac_operation.from_gapic(pb, client.transport.operations_client, result_type)

    return resume


def run_operation(
    state_path: str,
    state: dict[str, Any],
    key: str,
    *,
    start: Callable[[], Any],
    resume: Callable[[str], Any] | None,
    what: str,
    timeout_s: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Starts a long-running operation once per step, or re-attaches to the one an earlier attempt started.

    The operation's name is recorded in ``state["operations"][key]`` (and written to ``state_path``) right after
    the call that starts it, before any waiting; a retry finding it there waits for that operation instead of
    starting another (a second deployment would be billed too). An operation Vertex no longer knows (404) is
    started again. Once it is done, its name is dropped from ``state`` (the caller records the result).

    Args:
        state_path: The step's state file.
        state: Its content, updated in place.
        key: The operation's key in the state (``upload``, ``create_endpoint``, ``deploy``).
        start: Starts the operation; returns the api_core ``Operation``.
        resume: Re-attaches to an operation by name (:func:`operation_resumer`); None never re-attaches.
        what: How it is named in messages.
        timeout_s: How long to wait for it.
        sleep: Waits between polls.

    Returns:
        The operation's result.
    """
    recorded = (state.get("operations") or {}).get(key)
    operation = None
    if recorded and resume is not None:
        try:
            operation = retry_transient(lambda: resume(recorded), sleep=sleep)
        except Exception as exc:
            if status_code(exc) != 404:
                raise
    if operation is None:
        operation = start()
        state.setdefault("operations", {})[key] = operation.operation.name
        write_state(state_path, state)  # before waiting: a retry waits for this operation
    result = wait_for_operation(operation, what=what, timeout_s=timeout_s, state_path=state_path, sleep=sleep)
    operations = state.get("operations") or {}
    operations.pop(key, None)
    if not operations:
        state.pop("operations", None)
    return result

"""Running a pipeline on this machine with the local KFP runner (no cloud account, no Docker).

Every step runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), with the installed tunekit;
outputs land under ``<output_root>/pipeline_root/<run>/<task>/``.

**What the run prints, and how a step fails.** The runner prints each step's output line by line on this process's
``sys.stdout`` (kfp/local/subprocess_task_handler.py ``run_local_subprocess``; its own log lines go to a
``StreamHandler(sys.stdout)``: kfp/local/logging_utils.py ``local_logger_context``), from the thread that runs the
step (the enhanced orchestrator runs a DAG's tasks on a thread pool). :func:`run_local` puts a :class:`_StepStream`
there for the run: every line goes to the run's log file (ANSI codes removed), and is told to a
:class:`RunDisplay` with the step it came from, as a progress update (:mod:`tunekit.components.common.progress`
lines) or a plain line. Without a display the lines are printed as the runner would.

The runner's retry loop (kfp/local/orchestrator/task_executor.py ``execute_single_task``: up to
``max_retry_count`` more attempts, ``backoff_duration * backoff_factor ** attempt`` seconds apart, whatever the
failure) is taken over for the run: each step's attempts are run one at a time with the same policy, and a step
whose attempt stopped on a user error (the line of :data:`~tunekit.components.common.artifacts.USER_ERROR_PREFIX`,
or a ``UserError`` traceback of a wrapper body) is not tried again: a typo fails once, in seconds, and its one
line is :attr:`LocalRunResult.user_error`. Transient failures are retried as compiled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from tunekit.components.common.artifacts import DEBUG_ENV, USER_ERROR_PREFIX
from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, parameter_values
from tunekit.pipelines.registry import Method

#: ``base_model`` values that make the CLI build a tiny randomly initialised model (no download), for demos.
TINY_PREFIX = "tiny-random:"


@dataclass
class StepRecord:
    """One step of a local run.

    Attributes:
        name: The task's name.
        attempts: Attempts run (1 unless a transient failure was retried).
        seconds: Wall-clock seconds, back-off waits included.
        succeeded: Whether its last attempt succeeded.
        user_error: The user error it stopped on ('' when none).
        error: The one-line error of its last failed attempt: the user error, or the last exception line of a
            traceback it printed ('' when it printed none).
    """

    name: str
    attempts: int = 0
    seconds: float = 0.0
    succeeded: bool = False
    user_error: str = ""
    error: str = ""


class RunDisplay:
    """What a local run tells as it goes (the CLI's summary); every method does nothing here."""

    def step_started(self, name: str) -> None:
        """A step's first attempt starts."""

    def step_retrying(self, name: str, attempt: int, attempts: int, delay_s: float) -> None:
        """A step's attempt failed (not on a user error); the next starts after ``delay_s``."""

    def step_finished(self, step: StepRecord) -> None:
        """A step is done (succeeded, or failed for good)."""

    def progress(self, name: str, label: str, done: int, total: int) -> None:
        """A progress line of step ``name``."""

    def line(self, name: str, text: str) -> None:
        """Any other output line (``name``: the step it came from, '' for the runner's own)."""

    def close(self) -> None:
        """The run is over."""


@dataclass
class LocalRunResult:
    """Where a local run's outputs are.

    Attributes:
        run_dir: The run's folder under the pipeline root.
        succeeded: Whether every step that ran succeeded.
        task_outputs: ``task name -> executor output`` (artifact metadata and parameters) for each step that ran.
        failure: The runner's message when a step failed.
        user_error: The failed step's one-line user error ('' when no step stopped on one).
        failed_step: The step that failed ('' when none did).
        steps: Each step that ran, in the order they finished.
        log_path: The run's full log (every step's output and the runner's lines).
    """

    run_dir: str
    succeeded: bool
    task_outputs: dict[str, dict] = field(default_factory=dict)
    failure: str = ""
    user_error: str = ""
    failed_step: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    log_path: str = ""

    def artifact_dir(self, task: str, artifact: str) -> str:
        """The path of one output artifact of one task."""
        return os.path.join(self.run_dir, task, artifact)

    def metadata(self, task: str, artifact: str = "metrics") -> dict:
        """The metadata of one output artifact of one task (``{}`` when the task did not run or wrote none)."""
        found = self.task_outputs.get(task, {}).get("artifacts", {}).get(artifact, {}).get("artifacts", [])
        return found[-1].get("metadata", {}) if found else {}


def resolve_base_model(base_model: str, output_root: str) -> str:
    """Builds the demo's tiny model for ``tiny-random:<kind>`` values; returns real model names unchanged."""
    if not base_model.startswith(TINY_PREFIX):
        return base_model
    kind = base_model[len(TINY_PREFIX) :] or "t5"
    from tunekit.components.tuning.tiny import ensure_tiny_model

    kinds = {"t5": "seq2seq", "seq2seq": "seq2seq", "causal": "causal", "llama": "causal"}
    if kind not in kinds:
        raise UserError(
            f"unknown tiny model kind '{kind}'; use {TINY_PREFIX}t5 or {TINY_PREFIX}causal", field="base_model"
        )
    target = os.path.join(os.path.abspath(output_root), "models", f"tiny-{kind}")
    from transformers.utils import logging as hf_logging

    # No "Writing model shards" bar of transformers on the CLI's output: the run's summary follows.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # A folder a killed run left half-written (older versions wrote in place) is rebuilt, not trusted.
        return ensure_tiny_model(target, kind=kinds[kind])
    finally:
        if bars:
            hf_logging.enable_progress_bar()


#: Backend values that call Google Cloud (``vertex``, ``vertex_batch``, ``vertex_distillation``...).
CLOUD_BACKEND_PREFIX = "vertex"


def cloud_backends(values: dict) -> list[str]:
    """The parameters (``backend``, ``student_backend``, ``teacher_backend``...) whose backend calls Vertex AI."""
    return [
        name
        for name, value in values.items()
        if (name == "backend" or name.endswith("_backend"))
        and isinstance(value, str)
        and value.startswith(CLOUD_BACKEND_PREFIX)
    ]


def local_parameters(config, output_root: str) -> dict:
    """The pipeline parameters for a local run of ``config``.

    The project and location placeholders only mean something on Vertex AI Pipelines: a run whose backends are all
    local (``backend``, ``student_backend``, ``teacher_backend``... none of them ``vertex*``) gets '' for them; a run
    with a Vertex backend must name the project and the location.

    Raises:
        UserError: A Vertex backend with the project or location left as a placeholder.
    """
    values = parameter_values(config)
    if "base_model" in values:
        values["base_model"] = resolve_base_model(values["base_model"], output_root)
    placeholders = (PROJECT_PLACEHOLDER, LOCATION_PLACEHOLDER)
    cloud = cloud_backends(values)
    if not cloud:
        # The local runner cannot resolve the placeholders, and nothing here calls Google Cloud.
        for key in ("project", "location"):
            if values.get(key) in placeholders:
                values[key] = ""
    elif values.get("project") in placeholders or values.get("location") in placeholders:
        names = ", ".join(f"{name} '{values[name]}'" for name in cloud)
        raise UserError(
            f"a local run with {names} calls Vertex AI: set project and location "
            "(--set project=P --set location=R)",
            field="project",
        )
    if "local_registry" in values and not values["local_registry"]:
        values["local_registry"] = os.path.join(os.path.abspath(output_root), "registry.json")
    return values


def _newest_run(pipeline_root: str, name: str, before: set[str]) -> str:
    runs = [d for d in os.listdir(pipeline_root) if d.startswith(name + "-") and d not in before]
    if not runs:
        raise RuntimeError(f"the local runner left no run folder under {pipeline_root}")
    return os.path.join(pipeline_root, max(runs, key=lambda d: os.path.getmtime(os.path.join(pipeline_root, d))))


#: ANSI escape sequences (the runner colours task names and statuses).
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
#: The last line of a traceback of a UserError raised outside ``artifacts.call`` (in a wrapper's body).
_USER_ERROR_TRACEBACK = re.compile(r"^\s*(?:tunekit\.components\.common\.errors\.)?UserError: (?P<message>.+)$")
#: Environment of the steps: progress as lines (a step writes into the runner's pipe; the display draws bars).
STEP_ENVIRONMENT = {"TUNEKIT_PROGRESS": "lines"}


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return ANSI.sub("", text)


class _StepStream:
    """``sys.stdout`` during a run: each line to the log file and to the display, with the step it came from."""

    def __init__(self, log, display: RunDisplay | None, echo) -> None:
        self.log = log
        self.display = display
        self.echo = echo
        self.lock = threading.Lock()
        self.local = threading.local()

    @property
    def step(self) -> str:
        """The step whose attempt runs on this thread ('' for none)."""
        return getattr(self.local, "step", "")

    def begin(self, step: str) -> None:
        """An attempt of ``step`` starts on this thread."""
        self.local.step = step
        self.local.user_error = ""
        self.local.exception = ""
        self.local.traceback = False
        self.local.buffer = ""

    def error(self) -> str:
        """The user error of this thread's attempt, else the last exception line of a traceback it printed."""
        return self.user_error() or getattr(self.local, "exception", "")

    def user_error(self) -> str:
        """The user error the output of this thread's attempt carried ('' for none)."""
        return getattr(self.local, "user_error", "")

    def write(self, text: str) -> int:
        buffer = getattr(self.local, "buffer", "") + text
        *lines, self.local.buffer = buffer.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        rest = getattr(self.local, "buffer", "")
        if rest:
            self.local.buffer = ""
            self._line(rest)

    def isatty(self) -> bool:
        return False

    def _line(self, raw: str) -> None:
        from tunekit.components.common import progress

        plain = strip_ansi(raw).rstrip()
        with self.lock:
            self.log.write(plain + "\n")
            self.log.flush()
        stripped = plain.strip()
        indent = len(plain) - len(plain.lstrip())
        if stripped.startswith("Traceback (most recent call last)"):
            self.local.traceback = indent  # the runner indents a step's lines; frames are indented further
        elif stripped and getattr(self.local, "traceback", False) is not False and indent <= self.local.traceback:
            # The first line after a traceback's frames, at the traceback's own indent, is its exception.
            self.local.traceback = False
            self.local.exception = stripped
        if stripped.startswith(USER_ERROR_PREFIX):
            self.local.user_error = stripped[len(USER_ERROR_PREFIX) :]
        elif self.step and not self.user_error():
            found = _USER_ERROR_TRACEBACK.match(plain)
            if found is not None:
                self.local.user_error = found["message"].strip()
        if self.echo is not None:
            self.echo.write(raw + "\n")
            return
        if self.display is None:
            return
        parsed = progress.parse_line(stripped)
        if parsed is not None and self.step:
            self.display.progress(self.step, *parsed)
        elif stripped:
            self.display.line(self.step, plain)


def _retry_delay(policy, attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` under a KFP ``RetryPolicy`` (defaults as KFP documents them)."""
    # PipelineTask.set_retry (kfp/dsl/pipeline_task.py): backoff_duration 0s, backoff_factor 2.0,
    # backoff_max_duration 3600s when not set; the local runner waits duration * factor ** (attempt - 1).
    duration = policy.backoff_duration.seconds + policy.backoff_duration.nanos / 1e9
    factor = policy.backoff_factor if policy.backoff_factor > 0 else 2.0
    cap = (
        policy.backoff_max_duration.seconds + policy.backoff_max_duration.nanos / 1e9
        if policy.HasField("backoff_max_duration")
        else 3600.0
    )
    return min(duration * factor ** (attempt - 1), cap)


def _attempts(original, stream: _StepStream, display: RunDisplay, steps: list[StepRecord], sleep=time.sleep):
    """``execute_single_task`` that runs a step's attempts itself: no new attempt after a user error."""
    from kfp.local import status

    def execute_single_task(*args, **kwargs):
        task_name, task_spec = kwargs["task_name"], kwargs["task_spec"]
        policy = task_spec.retry_policy
        retries = max(0, policy.max_retry_count)
        once = type(task_spec)()
        once.CopyFrom(task_spec)
        once.ClearField("retry_policy")
        record = StepRecord(name=task_name)
        started = time.monotonic()
        display.step_started(task_name)
        while True:
            record.attempts += 1
            stream.begin(task_name)
            try:
                outputs, task_status = original(*args, **{**kwargs, "task_spec": once})
            finally:
                stream.flush()
            failed = task_status != status.Status.SUCCESS
            record.user_error = stream.user_error() if failed else ""
            record.error = stream.error() if failed else ""
            if task_status == status.Status.SUCCESS or record.user_error or record.attempts > retries:
                break
            delay = _retry_delay(policy, record.attempts)
            display.step_retrying(task_name, record.attempts, retries + 1, delay)
            logging.info(
                "Task %s failed (attempt %d of %d); next attempt in %.0f s",
                task_name,
                record.attempts,
                retries + 1,
                delay,
            )
            sleep(delay)
        record.seconds = time.monotonic() - started
        record.succeeded = task_status == status.Status.SUCCESS
        steps.append(record)
        display.step_finished(record)
        stream.begin("")
        return outputs, task_status

    return execute_single_task


def log_path_for(output_root: str, name: str) -> str:
    """A new log file's path for a run of ``name`` under ``output_root/logs``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(output_root, "logs", f"{name}-{stamp}")
    path, n = base + ".log", 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}.log"
    return path


def run_local(
    method: Method, config, output_root: str, *, display: RunDisplay | None = None, debug: bool = False
) -> LocalRunResult:
    """Runs ``method``'s pipeline with the local KFP runner and returns where its outputs are.

    Args:
        method: The pipeline.
        config: Its config.
        output_root: Where the run's folders go.
        display: Told about steps, progress and lines as the run goes; None prints the runner's output as it is.
        debug: Steps print a user error's traceback too.

    Raises:
        UserError: The config cannot run locally.
    """
    from kfp import local
    from kfp.local.orchestrator import task_executor

    pipeline_func, _ = method.load()
    output_root = os.path.abspath(output_root)
    pipeline_root = os.path.join(output_root, "pipeline_root")
    try:
        os.makedirs(pipeline_root, exist_ok=True)
    except OSError as exc:  # --output-dir (or a folder above it) is a file, or not writable
        raise UserError(
            f"cannot make the output folder there ({exc.strerror}); give a folder path",
            path=output_root,
            field="--output-dir",
        ) from None
    values = local_parameters(config, output_root)
    before = set(os.listdir(pipeline_root))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    failure = ""
    log_path = log_path_for(output_root, method.name)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    steps: list[StepRecord] = []
    environment = {**STEP_ENVIRONMENT, **({DEBUG_ENV: "1"} if debug else {})}
    saved_environment = {name: os.environ.get(name) for name in environment}
    original = task_executor.execute_single_task
    saved_stdout = sys.stdout
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    with open(log_path, "w", encoding="utf-8", errors="replace") as log, warnings.catch_warnings():
        stream = _StepStream(log, display, echo=saved_stdout if display is None else None)
        task_executor.execute_single_task = _attempts(original, stream, display or RunDisplay(), steps)
        os.environ.update(environment)
        sys.stdout = stream
        # The runner also logs outside its own logger context ("Skipping task ...", "Cleaned up workspace"):
        # those lines go to the stream too, not to whatever handler the root logger had.
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
        root.handlers[:] = [handler]
        # Warnings (the runner's "settings ... have no effect" among them) go to the log the same way.
        logging.captureWarnings(True)
        # The local runner warns about base images without 'python' in their name; ours has Python.
        warnings.simplefilter("ignore", RuntimeWarning)
        logging.getLogger().setLevel(logging.INFO)
        try:
            pipeline_func(**values)
        except RuntimeError as exc:  # the runner's "Inner task failed: ..." after the step printed its error
            failure = strip_ansi(str(exc))
        finally:
            stream.flush()
            sys.stdout = saved_stdout
            logging.captureWarnings(False)
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            task_executor.execute_single_task = original
            for name, value in saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if display is not None:
                display.close()
    run_dir = _newest_run(pipeline_root, method.name, before)
    outputs: dict[str, dict] = {}
    for task_name in sorted(os.listdir(run_dir)):
        executor_output = os.path.join(run_dir, task_name, "executor_output.json")
        if os.path.exists(executor_output):
            with open(executor_output, encoding="utf-8") as handle:
                outputs[task_name] = json.load(handle)
    failed = next((step for step in steps if not step.succeeded), None)
    return LocalRunResult(
        run_dir=run_dir,
        succeeded=not failure,
        task_outputs=outputs,
        failure=failure,
        user_error=failed.user_error if failed else "",
        failed_step=failed.name if failed else "",
        steps=steps,
        log_path=log_path,
    )


def config_summary(config) -> dict:
    """The config as a dict, for printing."""
    return dataclasses.asdict(config)

"""Supervised tuning of Gemini on Vertex AI (google-genai ``client.tunings.tune``), resumable through a state file.

A tuning job runs for hours and costs money, while the pipeline step that waits for it can be retried (preempted
pod, transient error). So the step never creates a second job for the same request, with the protocol of
:func:`~tunekit.components.common.vertex_jobs.create_or_attach`:

1. before creating the job, a request id is written to ``state_path`` and sent as the job label
   ``tunekit-request-id``;
2. right after creation, the job's resource name is written to ``state_path``, before any waiting;
3. on start, a ``state_path`` holding a job name re-attaches to that job; one holding only a request id (a crash
   between the create call and the write) looks the job up by its label before creating anything; so does a
   create call answered with a 5xx or a timeout before it is repeated (a 429 created nothing).

``state_path`` lives in the step's output artifact directory, which survives a retry of the step.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.genai import types

from tunekit.components.common import uris, vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_state
from tunekit.components.common.uris import is_gcs
from tunekit.components.model_clients.vertex import make_genai_client, sanitize_labels

#: Gemini models known to be tunable on Vertex AI: the defaults and the per-model limits (:data:`MAX_ADAPTER_SIZE`)
#: are known for these. The list is advisory, not the authority: Google adds tunable models ("Supported models",
#: https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-supervised-tuning), so another well-formed
#: Gemini id of generation 2.5 or later passes :func:`check_base_model` with a warning and the service decides.
TUNABLE_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3.1-flash-lite",
    "gemini-3.5-flash",
)


@dataclass(frozen=True)
class Lifecycle:
    """What Google's lifecycle page says of one Gemini model.

    Attributes:
        released: Its release date.
        retires: Its retirement date, when the page gives one (a retired id typically answers 404; new access is
            blocked a month before); None when the page gives only an earliest date ("... or later").
        earliest: The earliest retirement date the page promises for a current model ("May 19, 2027 or later").
        replacement: The replacement the page names, '' for a current model.
    """

    released: datetime.date
    retires: datetime.date | None = None
    earliest: datetime.date | None = None
    replacement: str = ""


#: The one table of Gemini lifecycle facts (release, retirement, replacement): Google's "Model versions and
#: lifecycle" page, https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/model-versions.md.txt
#: ("Models available for at least 12 months after release", read on :data:`LIFECYCLE_AS_OF`). The page also says
#: that new access to a model is blocked a month before its retirement date and that requests naming a retired
#: model id typically return 404. Static preflight refuses a retired model (:func:`check_not_retired`); inside a
#: step it is only a warning (:func:`warn_if_retired`): the service is the authority. Update this table when the
#: page changes; tests/tuning/test_vertex_tuning.py checks every default against it.
MODEL_LIFECYCLE: dict[str, Lifecycle] = {
    "gemini-2.5-pro": Lifecycle(datetime.date(2025, 6, 17), datetime.date(2026, 10, 16), None, "gemini-3.5-flash"),
    "gemini-2.5-flash": Lifecycle(
        datetime.date(2025, 6, 17),
        datetime.date(2026, 10, 16),
        None,
        "gemini-3.5-flash-lite or gemini-3.1-flash-lite",
    ),
    "gemini-2.5-flash-lite": Lifecycle(
        datetime.date(2025, 7, 22), datetime.date(2026, 10, 16), None, "gemini-3.1-flash-lite or Gemma 4"
    ),
    "gemini-3.1-flash-lite": Lifecycle(datetime.date(2026, 5, 7), earliest=datetime.date(2027, 5, 7)),
    "gemini-3.5-flash": Lifecycle(datetime.date(2026, 5, 19), earliest=datetime.date(2027, 5, 19)),
    "gemini-3.5-flash-lite": Lifecycle(datetime.date(2026, 7, 21), earliest=datetime.date(2027, 7, 21)),
}
#: When :data:`MODEL_LIFECYCLE` was read off the page.
LIFECYCLE_AS_OF = datetime.date(2026, 12, 6)


def _retired_by(family: str, day: datetime.date) -> bool:
    entry = MODEL_LIFECYCLE.get(family)
    return bool(entry and entry.retires and entry.retires <= day)


#: The models of :data:`TUNABLE_MODELS` not retired as of :data:`LIFECYCLE_AS_OF`: what the docs list.
CURRENT_TUNABLE_MODELS = tuple(m for m in TUNABLE_MODELS if not _retired_by(m, LIFECYCLE_AS_OF))

#: The base model tuned when a config names none: gemini-3.5-flash, current on the lifecycle page
#: (:data:`MODEL_LIFECYCLE`, where gemini-2.5-flash and 2.5 Pro retired on October 16, 2026) and in the
#: supervised-tuning list. Its thinking setting (a ``thinking_level``, Gemini 3's control) is
#: :func:`~tunekit.components.model_clients.vertex.thinking_for`'s.
DEFAULT_BASE_MODEL = "gemini-3.5-flash"
#: The oldest Gemini generation Vertex still tunes: an unknown id of an older one (gemini-1.0-pro, gemini-2.0-flash)
#: is refused statically, since Google adds new tunable models, not old ones.
OLDEST_TUNABLE_GENERATION = (2, 5)
#: A well-formed Gemini model id: ``gemini-MAJOR[.MINOR]-VARIANT``, lowercase, an optional ``-NNN`` version.
_GEMINI_ID = re.compile(r"^gemini-(\d+)(?:\.(\d+))?-[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
#: Adapter sizes Vertex accepts, and the enum google-genai sends for each.
ADAPTER_SIZES = {
    1: types.AdapterSize.ADAPTER_SIZE_ONE,
    2: types.AdapterSize.ADAPTER_SIZE_TWO,
    4: types.AdapterSize.ADAPTER_SIZE_FOUR,
    8: types.AdapterSize.ADAPTER_SIZE_EIGHT,
    16: types.AdapterSize.ADAPTER_SIZE_SIXTEEN,
}
#: The largest adapter size per model, where it is smaller than 16.
MAX_ADAPTER_SIZE = {"gemini-2.5-pro": 8}

#: The label that ties a tuning job to the request (and the state file) that created it.
REQUEST_LABEL = "tunekit-request-id"

SUCCEEDED = vertex_jobs.JOB_SUCCEEDED
_LOG = logging.getLogger("tunekit.tuning.gemini")
_VERSION_SUFFIX = re.compile(r"-\d{3}$")


class TuningJobFailed(vertex_jobs.JobFailed):
    """A Vertex tuning job ended without a tuned model; the message is the job's own error message.

    Attributes:
        job_name: The tuning job's resource name.
        state: Its final state (``JOB_STATE_FAILED``, ``JOB_STATE_CANCELLED``...).
        code: The job's error code, if any.
        job_message: The job's error message, if any.
    """


@dataclass
class TunedGemini:
    """The outcome of a Gemini tuning job.

    Attributes:
        job_name: ``projects/P/locations/L/tuningJobs/J``.
        state: The job's final state (``JOB_STATE_SUCCEEDED``).
        tuned_model: The Model Registry entry, ``projects/P/locations/L/models/M@V``.
        endpoint: The endpoint serving the tuned model, ``projects/P/locations/L/endpoints/E``.
        base_model: The model that was tuned.
        project: The Google Cloud project.
        location: The Vertex AI region.
        training_dataset_uri: The training data.
        validation_dataset_uri: The validation data, if any.
        resumed: Whether this call re-attached to a job an earlier attempt created.
        create_time: When the job was created (RFC 3339), if known.
        end_time: When the job ended (RFC 3339), if known.
        console_url: The job's page in the Google Cloud console.
    """

    job_name: str
    state: str
    tuned_model: str
    endpoint: str
    base_model: str
    project: str
    location: str
    training_dataset_uri: str
    validation_dataset_uri: str | None = None
    resumed: bool = False
    create_time: str | None = None
    end_time: str | None = None
    console_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for artifact metadata and deployment)."""
        return dataclasses.asdict(self)


def normalize_base_model(base_model: str) -> str:
    """``publishers/google/models/gemini-2.5-flash`` and ``gemini-2.5-flash`` both give ``gemini-2.5-flash``."""
    return base_model.strip().removeprefix("publishers/google/models/").removeprefix("models/")


def _family(model: str) -> str:
    return _VERSION_SUFFIX.sub("", normalize_base_model(model).lower())


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.timezone.utc).date()


def retirement(model: str, today: datetime.date | None = None) -> Lifecycle | None:
    """The lifecycle entry of ``model`` when it is retired as of ``today`` (UTC today by default), else None.

    ``publishers/google/models/gemini-2.5-flash`` and ``gemini-2.5-flash-001`` are ``gemini-2.5-flash``; a model
    missing from :data:`MODEL_LIFECYCLE` (a tuned endpoint, an open model, a newer Gemini) is not retired here.
    """
    family = _family(model)
    return MODEL_LIFECYCLE[family] if _retired_by(family, today or _today()) else None


def _retired_text(model: str, entry: Lifecycle) -> str:
    return (
        f"'{model}' was retired on {entry.retires:%B} {entry.retires.day}, {entry.retires.year} (Google's "
        f"'Model versions and lifecycle' page; a retired model id typically answers 404); use "
        f"{entry.replacement} instead"
    )


def check_not_retired(model: str, today: datetime.date | None = None) -> None:
    """Refuses a Gemini model retired as of ``today`` (static preflight of base, teacher, student and judge).

    Raises:
        UserError: The date it retired and its replacement (:data:`MODEL_LIFECYCLE`).
    """
    entry = retirement(model, today)
    if entry is not None:
        raise UserError(_retired_text(model, entry))


def warn_if_retired(model: str, today: datetime.date | None = None) -> bool:
    """Logs a warning on the ``tunekit`` logger when ``model`` is retired; returns whether it is.

    Inside a step a retired id is not refused: Vertex AI is the authority (tuned models of an old base keep their
    own endpoints, and tests run old ids against the fakes).
    """
    entry = retirement(model, today)
    if entry is not None:
        _LOG.warning("%s; sending it anyway: Vertex AI decides", _retired_text(model, entry))
    return entry is not None


def check_tunable_model(base_model: str) -> str:
    """The static check of a Gemini model to tune; returns its family.

    Not retired (:func:`check_not_retired`) and tunable (:func:`check_base_model`).

    Raises:
        UserError: Retired (the date and the replacement), or not a Gemini model Vertex tunes.
    """
    check_not_retired(base_model)
    return check_base_model(base_model)


def check_base_model(base_model: str) -> str:
    """Returns the tunable family of ``base_model`` (a version suffix such as ``-001`` is allowed).

    A model of :data:`TUNABLE_MODELS` passes; so does another well-formed Gemini id of generation 2.5 or later
    (``gemini-3.5-flash-lite``, a model Google added after this list was written), with a warning on the
    ``tunekit`` logger: Vertex AI is the authority on what it tunes, and refuses the job itself if it cannot. A
    retired model (:data:`MODEL_LIFECYCLE`) passes here with a warning too; static preflight refuses it
    (:func:`check_tunable_model`).

    Raises:
        UserError: Not a Gemini model id (``gpt-4``, ``text-bison@002``, a typo such as ``gemni-2.5-flash``), or a
            Gemini generation older than 2.5, which Vertex no longer tunes; with the closest known model.
    """
    name = normalize_base_model(base_model)
    family = _VERSION_SUFFIX.sub("", name)
    warn_if_retired(base_model)
    if family in TUNABLE_MODELS:
        return family
    found = _GEMINI_ID.match(family)
    if found and (int(found.group(1)), int(found.group(2) or 0)) >= OLDEST_TUNABLE_GENERATION:
        _LOG.warning(
            "'%s' is not among the models tunekit knows to be tunable (%s); sending it anyway: Vertex AI decides "
            "whether it can tune it, and no per-model limits are checked here",
            base_model,
            ", ".join(TUNABLE_MODELS),
        )
        return family
    close = difflib.get_close_matches(family, TUNABLE_MODELS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UserError(
        f"'{base_model}' cannot be tuned on Vertex AI; {hint}choose a Gemini model of generation 2.5 or later, "
        f"e.g. one of: {', '.join(TUNABLE_MODELS)}",
        field="base_model",
    )


def adapter_size_enum(adapter_size: int) -> types.AdapterSize:
    """The enum google-genai sends for a LoRA adapter size.

    Raises:
        UserError: Vertex does not accept that size.
    """
    if adapter_size not in ADAPTER_SIZES:
        raise UserError(
            f"adapter size {adapter_size} is not supported; use one of {sorted(ADAPTER_SIZES)}",
            field="adapter_size",
        )
    return ADAPTER_SIZES[adapter_size]


def check_tuning_args(*, base_model: str, **job: Any) -> None:
    """Checks a tuning job of the Gemini model ``base_model`` before any paid call (:func:`check_job_args` too).

    Raises:
        UserError: Naming the argument and what to do.
    """
    check_job_args(family=check_base_model(base_model), **job)


def check_job_args(
    *,
    training_dataset_uri: str,
    validation_dataset_uri: str | None = None,
    epoch_count: int | None = None,
    learning_rate_multiplier: float | None = None,
    adapter_size: int | None = None,
    output_uri: str | None = None,
    family: str | None = None,
    **_others: Any,
) -> None:
    """Checks what Vertex would reject of a tuning job's data and settings, before any paid call.

    Args:
        training_dataset_uri: ``gs://`` URI of the training data.
        validation_dataset_uri: ``gs://`` URI of the validation data, if any.
        epoch_count: Epochs, if set.
        learning_rate_multiplier: Learning-rate multiplier, if set.
        adapter_size: LoRA adapter size, if set.
        output_uri: ``gs://`` prefix for the job's outputs, if any.
        family: The tunable model family (its largest adapter size applies); None when not known.
        _others: The job's other arguments (:func:`run_tuning_job`'s), not checked here.

    Raises:
        UserError: Naming the argument and what to do.
    """
    for field_name, uri in (
        ("training_dataset_uri", training_dataset_uri),
        ("validation_dataset_uri", validation_dataset_uri),
        ("output_uri", output_uri),
    ):
        if uri is not None and not is_gcs(uri):
            raise UserError(
                f"Vertex AI reads tuning data from Cloud Storage: '{uri}' must be a gs:// URI; "
                "upload the file to a bucket first",
                field=field_name,
            )
    if not training_dataset_uri:
        raise UserError("a training dataset is required", field="training_dataset_uri")
    if adapter_size is not None:
        adapter_size_enum(adapter_size)
        largest = MAX_ADAPTER_SIZE.get(family or "")
        if largest is not None and adapter_size > largest:
            raise UserError(
                f"{family} supports adapter sizes up to {largest}, not {adapter_size}", field="adapter_size"
            )
    if epoch_count is not None and (
        isinstance(epoch_count, bool) or int(epoch_count) != epoch_count or epoch_count < 1
    ):
        raise UserError(f"epoch count must be a positive integer, not {epoch_count!r}", field="epoch_count")
    if learning_rate_multiplier is not None and not learning_rate_multiplier > 0:
        raise UserError(
            f"learning rate multiplier must be positive, not {learning_rate_multiplier!r}",
            field="learning_rate_multiplier",
        )


def tuning_config(
    method: types.TuningMethod,
    *,
    validation_dataset_uri: str | None = None,
    epoch_count: int | None = None,
    learning_rate_multiplier: float | None = None,
    adapter_size: int | None = None,
    tuned_model_display_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    encryption_key: str | None = None,
    output_uri: str | None = None,
    **method_fields: Any,
) -> types.CreateTuningJobConfig:
    """A ``CreateTuningJobConfig`` for ``method`` with only the fields that are set (SFT, distillation, preference).

    Unset (or zero) hyperparameters are left out so that Vertex chooses them for the dataset's size.

    Args:
        method: The tuning method.
        validation_dataset_uri: ``gs://`` URI of validation data.
        epoch_count: Epochs.
        learning_rate_multiplier: Multiplier of the default learning rate.
        adapter_size: LoRA adapter size, one of :data:`ADAPTER_SIZES`.
        tuned_model_display_name: The tuned model's display name.
        labels: Job labels (already cleaned).
        encryption_key: Cloud KMS key for CMEK.
        output_uri: ``gs://`` prefix for the job's outputs.
        method_fields: Fields of the method (``base_teacher_model``, ``beta``...), sent when not None.

    Raises:
        UserError: The adapter size is not one Vertex accepts.
    """
    kwargs: dict[str, Any] = {"method": method, **{k: v for k, v in method_fields.items() if v is not None}}
    if validation_dataset_uri:
        kwargs["validation_dataset"] = types.TuningValidationDataset(gcs_uri=validation_dataset_uri)
    if epoch_count:
        kwargs["epoch_count"] = int(epoch_count)
    if learning_rate_multiplier:
        kwargs["learning_rate_multiplier"] = float(learning_rate_multiplier)
    if adapter_size:
        kwargs["adapter_size"] = adapter_size_enum(adapter_size)
    if tuned_model_display_name:
        kwargs["tuned_model_display_name"] = tuned_model_display_name
    if labels:
        kwargs["labels"] = dict(labels)
    if encryption_key:
        kwargs["encryption_spec"] = types.EncryptionSpec(kms_key_name=encryption_key)
    if output_uri:
        kwargs["output_uri"] = output_uri
    return types.CreateTuningJobConfig(**kwargs)


def build_tuning_config(**fields: Any) -> types.CreateTuningJobConfig:
    """The ``CreateTuningJobConfig`` for supervised tuning (the fields of :func:`tuning_config`)."""
    return tuning_config(types.TuningMethod.SUPERVISED_FINE_TUNING, **fields)


def job_timestamp(value: Any) -> str | None:
    """A job time as ISO 8601 text (None stays None)."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def tuning_console_url(job_name: str) -> str:
    """The Cloud console page of a tuning job ('' for a name that is not a full resource name)."""
    parts = job_name.split("/")
    if len(parts) == 6:
        _, project, _, location, _, job_id = parts
        return (
            f"https://console.cloud.google.com/vertex-ai/generative/language/locations/{location}"
            f"/tuning/tuningJob/{job_id}?project={project}"
        )
    return ""


#: The name ending Vertex expects of a tuning dataset object: "TRAINING_DATASET_URI: Cloud Storage URI of your
#: training dataset. The dataset must be formatted as a JSONL file" (Vertex AI, "Tune Gemini models by using
#: supervised fine-tuning", https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-supervised-tuning);
#: every Google sample names one ``*.jsonl``.
JSONL_SUFFIX = ".jsonl"


def jsonl_dataset_uri(uri: str, local_path: str = "") -> str:
    """The ``gs://`` URI of a tuning dataset under a ``.jsonl`` name, copying the data there when it has none.

    A KFP dataset artifact is named by its output (``.../prepare-supervised-data/train_dataset``), not as the JSONL
    object Vertex checks for: such a URI gets a copy of its content at the same name plus ``.jsonl`` (the step's own
    file ``local_path`` when it has one, else the object itself; on Vertex AI Pipelines both are read through the
    ``/gcs`` mount), and that URI is the one sent. A retried step writes the same copy again. '' stays '', and a URI
    that is not in Cloud Storage is returned as it is (:func:`check_job_args` refuses it, naming the field).

    Args:
        uri: The dataset artifact's URI (``gs://...`` or its ``/gcs/...`` mount path).
        local_path: The step's local path of the same data, if it has one.
    """
    gcs = uris.fuse_to_gcs(uri or "")
    if not is_gcs(gcs) or gcs.endswith(JSONL_SUFFIX):
        return gcs
    target = gcs + JSONL_SUFFIX
    source = local_path if local_path and os.path.isfile(local_path) else gcs
    with uris.local_copy(source) as path:
        uris.upload(path, target)
    return target


def find_by_request_id(client: Any, request_id: str) -> types.TuningJob | None:
    """The job labelled with ``request_id``, if the create call of an earlier attempt got through."""
    config = types.ListTuningJobsConfig(filter=f'labels.{REQUEST_LABEL}="{request_id}"', page_size=100)
    # The filter narrows the listing on Vertex; the label check below keeps this correct without it.
    for job in client.tunings.list(config=config):
        if (job.labels or {}).get(REQUEST_LABEL) == request_id:
            return job
    return None


def tune_gemini(*, base_model: str, **job: Any) -> TunedGemini:
    """Tunes a Gemini model on Vertex AI (supervised) and waits for the tuned model, creating at most one job.

    Args:
        base_model: A tunable model id (see :data:`TUNABLE_MODELS`).
        job: The job's arguments, :func:`run_tuning_job`'s (``project``, ``location``, ``training_dataset_uri``,
            ``state_path``, ``labels``, ``client``, polling) and its config's, :func:`tuning_config`'s
            (``validation_dataset_uri``, ``epoch_count``, ``learning_rate_multiplier``, ``adapter_size`` (1, 2,
            4, 8 or 16; gemini-2.5-pro: up to 8), ``tuned_model_display_name``, ``encryption_key``,
            ``output_uri``); Vertex chooses the hyperparameters left unset.

    Returns:
        The tuned model, its endpoint and the job.

    Raises:
        UserError: Bad arguments (checked before any call to Vertex), or a state file from another request.
        TuningJobFailed: The job failed, was cancelled or expired; the message is the job's own.
        TimeoutError: ``timeout_s`` passed before the job ended.
    """
    check_tuning_args(base_model=base_model, **job)
    return run_tuning_job(build_tuning_config, base_model=normalize_base_model(base_model), **job)


def run_tuning_job(
    build_config: Callable[..., types.CreateTuningJobConfig],
    *,
    project: str,
    location: str,
    state_path: str,
    base_model: str,
    training_dataset_uri: str,
    labels: Mapping[str, Any] | None = None,
    client: Any = None,
    poll_interval_s: float = 30.0,
    max_poll_interval_s: float = 300.0,
    timeout_s: float | None = None,
    progress: Callable[[types.TuningJob], None] | None = None,
    state_fields: dict[str, Any] | None = None,
    tuned_base_model: str | None = None,
    kind: str = "Tuning job",
    on_create_error: Callable[[UserError], Exception] | None = None,
    **config_fields: Any,
) -> TunedGemini:
    """Creates a Vertex tuning job, or re-attaches to the one an earlier attempt started, and waits for it.

    The protocol that makes a retried step never pay twice is
    :func:`~tunekit.components.common.vertex_jobs.create_or_attach`'s: a job named in the state file is
    re-attached to; a request id without a job name means an earlier create call may have got through, so the
    job carrying that id as its label (:data:`REQUEST_LABEL`) is looked for; otherwise the request id is written
    to the state file *before* the create call, and the job's name is written *before* any waiting. A state file
    recorded for another base model or training data is refused. The wait is
    :func:`~tunekit.components.common.vertex_jobs.wait_for`'s, and the outcome is recorded in the state file too.

    Args:
        build_config: Builds the job's config from ``config_fields`` (:func:`build_tuning_config`, or a method's
            own builder); it runs before any call to Vertex, so a bad setting fails first.
        project: The Google Cloud project.
        location: The Vertex AI region that runs the job.
        state_path: A small JSON file recording the job; kept in the step's output directory so that a retried
            step re-attaches to the job instead of creating another.
        base_model: The model sent as ``base_model`` (a Gemini id or a tuned model to continue from).
        training_dataset_uri: ``gs://`` URI of the training data.
        labels: Labels on the job (cleaned to Google Cloud's label rules), besides the request id as
            :data:`REQUEST_LABEL`.
        client: A google-genai client; None for ``make_genai_client(project, location)``.
        poll_interval_s: The first wait between polls; it grows by half each poll.
        max_poll_interval_s: The cap on the wait between polls.
        timeout_s: Give up waiting after this many seconds (the job keeps running; a retry re-attaches).
        progress: Called with the job after each poll.
        state_fields: What else a new job's state file records (method, teacher model...).
        tuned_base_model: The base model the result names, when it is not ``base_model``.
        kind: How the job is named in messages (``"Tuning job"``, ``"Distillation job"``...).
        on_create_error: Turns the :class:`~tunekit.components.common.vertex_jobs.JobRefused` of a refused
            create call (a ``UserError``) into the exception to raise instead; by default it is raised as it is.
        config_fields: The config's fields (:func:`tuning_config`'s: ``validation_dataset_uri``, hyperparameters,
            display name, CMEK key, output URI).

    Returns:
        The tuned model, its endpoint and the job.

    Raises:
        UserError: A bad setting, the state file belongs to other inputs or names a job Vertex does not know, or
            Vertex refused the job.
        TuningJobFailed: The job failed, was cancelled or expired.
        TimeoutError: ``timeout_s`` passed before the job ended.
    """
    config = build_config(**config_fields)
    validation_dataset_uri = config_fields.get("validation_dataset_uri")
    client = client if client is not None else make_genai_client(project, location)
    job_kind = vertex_jobs.JobKind(kind, frozenset({SUCCEEDED}), vertex_jobs.JOB_FAILED_STATES, TuningJobFailed)

    def create(request_id: str) -> types.TuningJob:
        job_labels = {**sanitize_labels(dict(labels or {})), REQUEST_LABEL: request_id}
        return client.tunings.tune(
            base_model=base_model,
            training_dataset=types.TuningDataset(gcs_uri=training_dataset_uri),
            config=config.model_copy(update={"labels": job_labels}),
        )

    try:
        started = vertex_jobs.run_job(
            state_path,
            job_kind,
            get=lambda name: client.tunings.get(name=name),
            create=create,
            find=lambda request_id: find_by_request_id(client, request_id),
            inputs={"base_model": base_model, "training_dataset_uri": training_dataset_uri},
            fields={**(state_fields or {}), "project": project, "location": location},
            named=lambda name: {"console_url": tuning_console_url(name)},
            state_what="tuning state file",
            retry_delay_s=min(poll_interval_s, 2.0),
            poll_interval_s=poll_interval_s,
            max_poll_interval_s=max_poll_interval_s,
            timeout_s=timeout_s,
            progress=progress,
        )
    except vertex_jobs.JobRefused as exc:
        if on_create_error is None:
            raise
        raise on_create_error(exc) from exc
    job = started.job
    tuned = job.tuned_model
    if tuned is None or not tuned.model:
        raise RuntimeError(f"{kind} {job.name} succeeded but reports no tuned model")
    result = TunedGemini(
        job_name=job.name or "",
        state=job_kind.state_of(job),
        tuned_model=tuned.model,
        endpoint=tuned.endpoint or "",
        base_model=tuned_base_model or base_model,
        project=project,
        location=location,
        training_dataset_uri=training_dataset_uri,
        validation_dataset_uri=validation_dataset_uri,
        resumed=started.resumed,
        create_time=job_timestamp(job.create_time),
        end_time=job_timestamp(job.end_time),
        console_url=tuning_console_url(job.name or ""),
    )
    write_state(
        state_path,
        {**started.state, "state": result.state, "tuned_model": result.tuned_model, "endpoint": result.endpoint},
    )
    return result


# --- what the tuning steps give their Vertex jobs -----------------------------------------------------------

#: A step's job state file, in its output model folder (which survives a retry of the step).
STATE_FILE = "tuning_state.json"
#: A step's arguments that pass on to its tuning job as they are, but for a pipeline's 0 or '' (unset: None).
JOB_SETTINGS = (
    "validation_dataset_uri",
    "epoch_count",
    "learning_rate_multiplier",
    "adapter_size",
    "tuned_model_display_name",
    "encryption_key",
    "output_uri",
)


def run_labels(
    labels: Mapping[str, Any] | None, pipeline_job_name: str, method: str, stage: str = ""
) -> dict[str, str]:
    """A tuning job's labels: the user's, the pipeline run, the method (and the stage), cleaned to the label rules.

    Args:
        labels: The user's labels; they win over the run and method labels.
        pipeline_job_name: The pipeline run (``tunekit-pipeline-run``); a placeholder (``{{...``) is left out.
        method: The tuning method (``tunekit-method``), e.g. ``supervised-tuning``.
        stage: The method's stage (``tunekit-stage``), if it has several jobs.
    """
    merged = sanitize_labels(dict(labels or {}))
    if pipeline_job_name and not pipeline_job_name.startswith("{{"):
        merged.setdefault("tunekit-pipeline-run", pipeline_job_name)
    merged.setdefault("tunekit-method", method)
    if stage:
        merged["tunekit-stage"] = stage
    return sanitize_labels(merged)


def sft_warm_start(step: Mapping[str, Any], *, method: str) -> dict[str, Any]:
    """The SFT warm start of a tuning method on Vertex, and the model record's fields for it.

    ``step`` is the warm-start step's arguments (its ``locals()``): ``base_model``, ``sft_uri`` and ``sft_path``
    (the SFT rows), ``tuned_model_display_name`` and what :func:`job_options` reads. The job is labelled with
    ``method`` and the stage ``sft-warm-start``; its display name gets ``-sft``.
    """
    name = step.get("tuned_model_display_name") or ""
    result = tune_gemini(
        base_model=step["base_model"],
        training_dataset_uri=jsonl_dataset_uri(step["sft_uri"], step["sft_path"]),
        **job_options(
            step, method=method, stage="sft-warm-start", tuned_model_display_name=f"{name}-sft" if name else ""
        ),
    )
    return {"backend": "vertex", "warm_start": True, "model": result.tuned_model, **result.to_dict()}


def job_options(step: Mapping[str, Any], *, method: str, stage: str = "", **settings: Any) -> dict[str, Any]:
    """The keyword arguments a tuning step gives its job (:func:`tune_gemini` and the methods' front-ends).

    The step's arguments pass on by name, as the KFP wrappers pass theirs to the step: ``project``, ``location``
    and ``poll_interval_s`` as they are, ``labels`` and ``pipeline_job_name`` through :func:`run_labels`,
    ``model_path`` as the folder of the state file (:data:`STATE_FILE`), and those of :data:`JOB_SETTINGS` the step
    has with 0 or '' as None (Vertex chooses).

    Args:
        step: The step's arguments (its ``locals()``).
        method: The tuning method, for the labels.
        stage: The method's stage, for the labels.
        settings: Settings of :data:`JOB_SETTINGS` the step computes itself (they win over ``step``'s).
    """
    values = {**{name: step[name] for name in JOB_SETTINGS if name in step}, **settings}
    return {
        **{name: value or None for name, value in values.items()},
        "project": step["project"],
        "location": step["location"],
        "labels": run_labels(step.get("labels"), step.get("pipeline_job_name", ""), method, stage),
        "state_path": os.path.join(step["model_path"], STATE_FILE),
        "poll_interval_s": step["poll_interval_s"],
    }


# --- managed open-model tuning (Model Garden models through the same tuning service) ---------------------------


@dataclass(frozen=True)
class OpenModel:
    """What Google's "Tune an open model" page says of one open model the tuning service tunes.

    Attributes:
        name: Its display name on the page.
        modes: The tuning modes its "Limitations" row lists (``full``, ``lora``: :data:`TUNING_MODES`); empty
            where that row was not read, and then no mode is refused here (Vertex decides).
    """

    name: str
    modes: tuple[str, ...] = ()


#: The open models Vertex AI's managed tuning tunes, by the exact id the page gives ("Supported models" and
#: "Limitations" of "Tune an open model", https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning,
#: read on :data:`LIFECYCLE_AS_OF`): ``{publisher}/{family}@{version}``, but for Gemma 3 27B IT, which the page
#: names ``google/gemma-3-27b-it``. Llama 3.2 1B and 3B Instruct are listed for full fine-tuning only. The list is
#: advisory like :data:`TUNABLE_MODELS`: another id of the ``{publisher}/{family}@{version}`` form passes with a
#: warning.
OPEN_MODELS: dict[str, OpenModel] = {
    "google/gemma-3-27b-it": OpenModel("Gemma 3 27B IT", ("lora", "full")),
    "meta/llama3_1@llama-3.1-8b": OpenModel("Llama 3.1 8B", ("lora", "full")),
    "meta/llama3_1@llama-3.1-8b-instruct": OpenModel("Llama 3.1 8B Instruct", ("lora", "full")),
    "meta/llama3-2@llama-3.2-1b-instruct": OpenModel("Llama 3.2 1B Instruct", ("full",)),
    "meta/llama3-2@llama-3.2-3b-instruct": OpenModel("Llama 3.2 3B Instruct", ("full",)),
    "meta/llama3-3@llama-3.3-70b-instruct": OpenModel("Llama 3.3 70B Instruct"),
    "qwen/qwen3@qwen3-32b": OpenModel("Qwen 3 32B"),
    "meta/llama4@llama-4-scout-17b-16e-instruct": OpenModel("Llama 4 Scout 17B 16E Instruct"),
}
#: The regions the page lists for open-model tuning.
OPEN_MODEL_REGIONS = ("us-central1", "europe-west4")
#: The tuning modes of open models, and the enum google-genai sends for each (types.py ``TuningMode``;
#: tunings.py puts it at ``supervisedTuningSpec.tuningMode`` / ``distillationSpec.tuningMode``).
TUNING_MODES = {"full": types.TuningMode.TUNING_MODE_FULL, "lora": types.TuningMode.TUNING_MODE_PEFT_ADAPTER}
#: An open model id as the tuning service takes it: ``{publisher}/{family}@{version}``, lowercase.
_OPEN_ID = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*@[a-z0-9][a-z0-9._-]*$")
#: Where the tuning service writes the tuned weights under the job's ``output_uri``: the serving model the
#: deployment step of Google's agent-platform-tuning skill deploys (``OUTPUT_URI/postprocess/node-0/checkpoints/final``,
#: google/skills skills/cloud/agent-platform-tuning/SKILL.md, "Phase 5: Model Deployment").
OPEN_MODEL_FINAL_CHECKPOINT = "postprocess/node-0/checkpoints/final"


def is_open_model(base_model: str) -> bool:
    """Whether ``base_model`` names an open model (``publisher/family[@version]``), not Gemini or a tuned model."""
    name = base_model.strip()
    if not name or name.startswith(("projects/", "publishers/", "models/", "gs://", "/", ".")):
        return False
    return "/" in name and not name.lower().startswith("gemini")


def check_open_model(base_model: str) -> str:
    """The static check of an open model to tune with the managed service; returns the id.

    A documented id (:data:`OPEN_MODELS`) passes; another id of the ``{publisher}/{family}@{version}`` form passes
    with a warning (the service decides). A missing ``@version`` is refused with the documented ids of that family:
    Vertex answers such an id with INVALID_ARGUMENT only once the job is created.

    Raises:
        UserError: Not of the ``{publisher}/{family}@{version}`` form, naming the closest documented id.
    """
    name = base_model.strip()
    if name in OPEN_MODELS:
        return name
    lowered = name.lower()
    if lowered != name and lowered in OPEN_MODELS:
        raise UserError(f"open model ids are lowercase: use '{lowered}'", field="base_model")
    if _OPEN_ID.match(name):
        _LOG.warning(
            "'%s' is not among the open models Google's 'Tune an open model' page lists (%s); sending it anyway: "
            "Vertex AI decides",
            name,
            ", ".join(OPEN_MODELS),
        )
        return name
    family = [m for m in OPEN_MODELS if m.split("@", 1)[0] == lowered.split("@", 1)[0]]
    close = family or difflib.get_close_matches(lowered, list(OPEN_MODELS), n=1)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; documented ids: {', '.join(OPEN_MODELS)}"
    raise UserError(
        f"'{name}' is not an open model id the tuning service takes: open models are named "
        f"'{{publisher}}/{{family}}@{{version}}' (a missing @version is refused with INVALID_ARGUMENT){hint}",
        field="base_model",
    )


def check_tunable(base_model: str) -> str:
    """The static check of a model to tune on Vertex: an open model (:func:`check_open_model`) or Gemini.

    A tuned model to continue from (``projects/.../models/M[@V]``) is checked by :func:`check_start_model`.
    """
    if base_model.strip().startswith("projects/"):
        return check_start_model(base_model)
    if is_open_model(base_model):
        return check_open_model(base_model)
    return check_tunable_model(base_model)


def tuning_mode_enum(mode: str, base_model: str = "") -> types.TuningMode:
    """The enum google-genai sends for ``mode`` (``full`` or ``lora``), checked against what ``base_model`` takes.

    Raises:
        UserError: Not a mode, or one the documented model does not take (Llama 3.2 1B/3B: full only).
    """
    key = (mode or "").strip().lower()
    if key not in TUNING_MODES:
        raise UserError(f"tuning mode '{mode}' is not one of {', '.join(TUNING_MODES)}", field="tuning_mode")
    known = OPEN_MODELS.get(base_model.strip())
    if known is not None and known.modes and key not in known.modes:
        raise UserError(
            f"{known.name} ({base_model}) is tuned with {' or '.join(known.modes)} only, not {key} "
            "(Google's 'Tune an open model' page, Limitations)",
            field="tuning_mode",
        )
    return TUNING_MODES[key]


def check_open_model_job(
    *,
    base_model: str,
    tuning_mode: str = "",
    learning_rate: float | None = None,
    learning_rate_multiplier: float | None = None,
    batch_size: int | None = None,
    adapter_size: int | None = None,
    custom_base_model: str = "",
    output_uri: str | None = None,
    location: str = "",
) -> None:
    """Checks an open-model tuning job's settings before any paid call.

    ``learning_rate`` and ``batch_size`` are open-model settings and ``learning_rate_multiplier`` a Gemini one
    (types.py ``CreateTuningJobConfig``: "Mutually exclusive with `learning_rate`. This feature is only available
    for 1P models"); ``output_uri`` "is only available and required for open source models" (types.py
    ``TuningJob.output_uri``); ``custom_base_model`` is "a Cloud Storage directory that contains the model weights
    in .safetensors format", with ``base_model`` still naming the model it derives from (types.py).

    Raises:
        UserError: Naming the field and what to do.
    """
    check_open_model(base_model)
    if tuning_mode:
        tuning_mode_enum(tuning_mode, base_model)
    if learning_rate_multiplier:
        raise UserError(
            "open models take learning_rate, not learning_rate_multiplier (a Gemini setting); set learning_rate",
            field="learning_rate_multiplier",
        )
    if learning_rate is not None and not learning_rate > 0:
        raise UserError(f"learning rate must be positive, not {learning_rate!r}", field="learning_rate")
    if batch_size is not None and (
        isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1
    ):
        raise UserError(f"batch size must be a positive integer, not {batch_size!r}", field="batch_size")
    if adapter_size:
        adapter_size_enum(adapter_size)
        if (tuning_mode or "").lower() == "full":
            raise UserError(
                "adapter_size is a LoRA setting: leave it 0 with tuning_mode full", field="adapter_size"
            )
    if custom_base_model and not is_gcs(custom_base_model):
        raise UserError(
            f"custom_base_model must be a gs:// folder of .safetensors weights, not '{custom_base_model}'",
            field="custom_base_model",
        )
    if not output_uri:
        raise UserError(
            "tuning an open model needs output_uri, the gs:// folder the tuned weights are written to "
            "(required for open models)",
            field="output_uri",
        )
    if location and location not in OPEN_MODEL_REGIONS:
        _LOG.warning(
            "open-model tuning is documented in %s only, not %s; sending it anyway: Vertex AI decides",
            " and ".join(OPEN_MODEL_REGIONS),
            location,
        )


def open_model_fields(
    *,
    base_model: str,
    tuning_mode: str = "",
    learning_rate: float | None = None,
    batch_size: int | None = None,
    custom_base_model: str = "",
) -> dict[str, Any]:
    """The open-model fields of a ``CreateTuningJobConfig`` (the set ones), for :func:`tuning_config`."""
    fields: dict[str, Any] = {}
    if tuning_mode:
        fields["tuning_mode"] = tuning_mode_enum(tuning_mode, base_model)
    if learning_rate:
        fields["learning_rate"] = float(learning_rate)
    if batch_size:
        fields["batch_size"] = int(batch_size)
    if custom_base_model:
        fields["custom_base_model"] = custom_base_model
    return fields


def open_model_weights_uri(output_uri: str) -> str:
    """The ``gs://`` folder of a finished open-model job's tuned weights (:data:`OPEN_MODEL_FINAL_CHECKPOINT`)."""
    return f"{output_uri.rstrip('/')}/{OPEN_MODEL_FINAL_CHECKPOINT}"


# --- continuous tuning: tuning again from a tuned model or one of its checkpoints ------------------------------

#: "Only supervised tuned base models tuned on or after July 11, 2025 can be used as a base model for continuous
#: tuning"; and a pre-tuned model encrypted with a customer-managed key must be tuned again with the same key
#: (Vertex AI, "Use continuous tuning for Gemini models",
#: https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/continuous-tuning.md.txt).
CONTINUOUS_TUNING_SINCE = datetime.date(2025, 7, 11)
#: A tuned model to continue from, as the continuous-tuning page writes it:
#: ``projects/{project}/locations/{location}/models/{modelId}@{version_id}``, the version (an id or an alias such
#: as ``champion``) optional (the default version).
_START_MODEL = re.compile(r"^projects/[^/]+/locations/[^/]+/models/[^/@]+(?:@[A-Za-z0-9_-]+)?$")


def check_start_model(start_model: str) -> str:
    """The static check of a tuned model to continue tuning from; returns it.

    Raises:
        UserError: Not ``projects/P/locations/L/models/M[@VERSION_OR_ALIAS]``.
    """
    name = start_model.strip()
    if not _START_MODEL.match(name):
        raise UserError(
            f"'{start_model}' is not a tuned model to continue from: give its Model Registry name, "
            "projects/PROJECT/locations/LOCATION/models/MODEL[@VERSION or @ALIAS]",
            field="start_from",
        )
    return name


def _as_date(value: Any) -> datetime.date | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).date() if value.tzinfo else value.date()
    if hasattr(value, "ToDatetime"):  # a protobuf Timestamp
        return value.ToDatetime().date()
    text = str(value)
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def check_continuous_start(start_model: str, *, encryption_key: str = "", model_client: Any = None) -> dict:
    """Checks the continuous-tuning rules on the tuned model to start from, before the job is created.

    Reads the Model Registry version (aiplatform ``GetModel``, which resolves ``@VERSION`` and ``@ALIAS``): it must
    have been tuned on or after :data:`CONTINUOUS_TUNING_SINCE` (its ``version_create_time``, else
    ``create_time``), and a version encrypted with a Cloud KMS key needs the job to use that same key (and a job
    with a key cannot continue from a Google-encrypted model).

    Args:
        start_model: ``projects/P/locations/L/models/M[@V]``.
        encryption_key: The new job's Cloud KMS key ('' for Google-managed).
        model_client: An aiplatform ``ModelServiceClient``; by default a REST one for the model's region.

    Returns:
        What was read: ``model``, ``version_id``, ``tuned_on`` (ISO date or ''), ``kms_key_name``.

    Raises:
        UserError: The model is not found, was tuned before 2025-07-11, or its key differs from the job's.
    """
    name = check_start_model(start_model)
    if model_client is None:
        from google.cloud import aiplatform_v1

        from tunekit.components.model_clients.vertex import make_rest_client

        model_client = make_rest_client(aiplatform_v1.ModelServiceClient, name.split("/")[3])
    try:
        model = model_client.get_model(name=name)
    except Exception as exc:  # google.api_core NotFound / PermissionDenied: the user must fix the name
        raise UserError(
            f"the model to continue tuning from, {name}, cannot be read from the Model Registry ({exc}); check "
            "the name and version",
            field="start_from",
        ) from None
    tuned_on = _as_date(getattr(model, "version_create_time", None)) or _as_date(
        getattr(model, "create_time", None)
    )
    if tuned_on is not None and tuned_on < CONTINUOUS_TUNING_SINCE:
        raise UserError(
            f"{name} was tuned on {tuned_on.isoformat()}; continuous tuning starts only from models tuned on or "
            f"after {CONTINUOUS_TUNING_SINCE.isoformat()} (Vertex AI, 'Use continuous tuning'): start from the "
            "base model instead",
            field="start_from",
        )
    spec = getattr(model, "encryption_spec", None)
    model_key = str(getattr(spec, "kms_key_name", "") or "")
    if model_key != (encryption_key or ""):
        if model_key:
            what = f"is encrypted with {model_key}; set encryption_key to that same key"
        else:
            what = "uses Google-managed encryption; leave encryption_key empty"
        raise UserError(
            f"{name} {what}: a continuous-tuning job must use the pre-tuned model's key (Vertex AI, "
            "'Use continuous tuning')",
            field="encryption_key",
        )
    return {
        "model": name,
        "version_id": str(getattr(model, "version_id", "") or ""),
        "tuned_on": tuned_on.isoformat() if tuned_on else "",
        "kms_key_name": model_key,
    }

"""The config fields that several methods share, each default and meaning written once.

Each method's config dataclass still lists every one of its fields, in its own order, so it stays the one readable
list of the method's parameters; a field that means the same in several methods takes its definition from here::

    from tunekit.pipelines import shared_fields as shared

    purpose: str = shared.purpose(PIPELINE_NAME)
    force: bool = shared.force()

Each function returns a fresh :func:`~tunekit.pipelines.config.field`; its arguments fill in what differs between
methods (the candidate's name, what is resampled, which jobs).
"""

from __future__ import annotations

from typing import Any

from tunekit.pipelines.config import (
    LOCATION_PLACEHOLDER,
    PROJECT_PLACEHOLDER,
    Check,
    checked_by,
    field,
    model_folder,
    one_of,
)

# -- the run's data ---------------------------------------------------------------------------------------------


def required_data(what: str) -> Any:
    """The run's first, required data field (``train_dataset_uri``, ``corpus_uri``): ``what`` it holds."""
    return field("", f"{what}; a local path or gs:// URI. Required.", required=True, exists=True)


def optional_data(what: str) -> Any:
    """An optional data field: ``what`` it holds and what '' means; a local path must exist."""
    return field("", what, exists=True)


# -- Vertex AI tuning jobs --------------------------------------------------------------------------------------


def tuned_model_display_name() -> Any:
    """``tuned_model_display_name``: the display name of the tuned model."""
    return field("", "Vertex: display name of the tuned model ('' lets Vertex name it).")


def epoch_count(of: str = "") -> Any:
    """``epoch_count``: epochs of a tuning job (``of``: which job, e.g. " of the preference job")."""
    return field(0, f"Vertex: epochs{of} (0 lets Vertex choose).", ge=0)


def learning_rate_multiplier() -> Any:
    """``learning_rate_multiplier``: the tuning job's learning-rate multiplier."""
    return field(0.0, "Vertex: learning-rate multiplier (0 lets Vertex choose).", ge=0)


def adapter_size(note: str = "") -> Any:
    """``adapter_size``: the LoRA adapter size (``note``: a model's own limit, e.g. "; 2.5 Pro at most 8")."""
    return field(
        0,
        f"Vertex: LoRA adapter size 1, 2, 4, 8 or 16 (0 lets Vertex choose{note}).",
        checks=[one_of("tunekit.components.tuning.gemini:ADAPTER_SIZES", extra=(0,))],
    )


def gemini_or_causal_base_model() -> Any:
    """``base_model`` of a method tuned as Gemini on Vertex or as a local causal model (preference, reinforcement)."""
    return field(
        "gemini-3.5-flash",
        "Vertex: a tunable Gemini model id. Local: a causal model directory ('tiny-random:causal' builds a tiny one).",
        checks=[
            gemini_base_model(),
            model_folder(["tunekit.pipelines.local_run:TINY_PREFIX"], when={"backend": "local"}),
        ],
    )


def gemini_base_model(backend: str = "backend", values: Any = "vertex") -> Check:
    """The check of a Gemini model to tune when the field ``backend`` is ``values``.

    Vertex AI can tune it, and it is not retired (tuning.gemini's lifecycle table).
    """
    return checked_by(
        "tunekit.components.tuning.gemini:check_tunable_model",
        "a current Gemini model Vertex AI can tune (a version suffix such as -001 is allowed; a retired one is "
        "refused with its replacement)",
        listing="tunekit.components.tuning.gemini:CURRENT_TUNABLE_MODELS",
        when={backend: values},
    )


def vertex_base_model(backend: str = "backend", values: Any = "vertex") -> Check:
    """The check of a model to tune on Vertex AI when the field ``backend`` is ``values``: Gemini or an open model.

    A Gemini id as :func:`gemini_base_model` checks it; an open model id (Model Garden managed tuning) must have
    the ``{publisher}/{family}@{version}`` form (tuning.gemini's :data:`OPEN_MODELS` lists the documented ids).
    """
    return checked_by(
        "tunekit.components.tuning.gemini:check_tunable",
        "a current Gemini model Vertex AI can tune, or an open model id of the form {publisher}/{family}@{version} "
        "(managed open-model tuning; a missing @version is refused)",
        listing="tunekit.components.tuning.gemini:OPEN_MODELS",
        when={backend: values},
    )


# -- managed open-model tuning and continuous tuning (Vertex AI) -------------------------------------------------


def _vertex_only(value: Any, config: Any) -> None:
    """A Vertex setting set with another backend would be dropped: refused instead."""
    from tunekit.components.common.errors import UserError

    backend = getattr(config, "backend", "vertex")
    if value and backend != "vertex":
        raise UserError(
            f"is a Vertex AI tuning setting; the local trainer has no such option (backend is {backend})"
        )


def _open_model_setting(value: Any, config: Any) -> None:
    """A setting only open models take is set while ``base_model`` is Gemini (the job would be refused)."""
    from tunekit.components.common.errors import UserError
    from tunekit.components.tuning.gemini import is_open_model

    _vertex_only(value, config)
    if value and not is_open_model(getattr(config, "base_model", "")):
        raise UserError(f"is an open-model setting; base_model '{config.base_model}' is not an open model")


def check_tuning_mode(value: str, config: Any) -> None:
    """``tuning_mode``: ``full`` or ``lora``, one the open model takes, and only for an open model."""
    from tunekit.components.tuning.gemini import tuning_mode_enum

    if value:
        _open_model_setting(value, config)
        tuning_mode_enum(value, getattr(config, "base_model", ""))


def check_custom_base_model(value: str, config: Any) -> None:
    """``custom_base_model``: a ``gs://`` folder of weights, only for an open model."""
    from tunekit.components.common.errors import UserError

    if value:
        _open_model_setting(value, config)
        if not value.startswith("gs://"):
            raise UserError(f"'{value}' must be a gs:// folder of .safetensors weights; upload it first")
    elif _open_model_on_vertex(config) and not getattr(config, "start_from", ""):
        # Refused before the tuning job is paid for: the evaluation step scores the base beside the tuned weights
        # from the base's weights in Cloud Storage (evaluation.scoring.managed_open_model_dirs); Model Garden's
        # published weights are not read, and deploying the base only to score it would bill an endpoint.
        raise UserError(
            "must be set to tune an open model on Vertex: the evaluation scores the base model beside the tuned "
            f"one from its weights in Cloud Storage; give the gs:// folder of {config.base_model}'s .safetensors "
            "weights and config files"
        )


def _open_model_on_vertex(config: Any) -> bool:
    from tunekit.components.tuning.gemini import is_open_model

    return getattr(config, "backend", "vertex") == "vertex" and is_open_model(getattr(config, "base_model", ""))


def _tuned_model(config: Any) -> str:
    """The model a config tunes: ``base_model``, or a distillation's ``student_model``."""
    return str(getattr(config, "base_model", None) or getattr(config, "student_model", "") or "")


def check_open_model_output(value: str, config: Any) -> None:
    """``output_uri`` is required to tune an open model on Vertex (types.py ``TuningJob.output_uri``)."""
    from tunekit.components.common.errors import UserError
    from tunekit.components.tuning.gemini import is_open_model

    if not value and is_open_model(_tuned_model(config)) and not getattr(config, "start_from", ""):
        raise UserError("must be set to tune an open model: the gs:// folder the tuned weights are written to")


def check_start_from(value: str, config: Any) -> None:
    """``start_from``: a tuned model to continue from, ``projects/P/locations/L/models/M[@VERSION or @ALIAS]``."""
    from tunekit.components.common.errors import UserError
    from tunekit.components.tuning.gemini import check_start_model, is_open_model

    if not value:
        return
    _vertex_only(value, config)
    if value.strip() != "champion":  # resolved when the run starts (retraining.resolve_start_from)
        check_start_model(value)
    if is_open_model(getattr(config, "base_model", "")):
        raise UserError(
            "continuous tuning is documented for Gemini models only; base_model is an open model (leave start_from "
            "empty, or give custom_base_model the weights to start from)"
        )


def check_open_student_mode(value: str, config: Any) -> None:
    """A distillation's ``finetuning`` is the tuning mode of an open-model student on Vertex: one it takes."""
    from tunekit.components.tuning.gemini import is_open_model, tuning_mode_enum

    if value and is_open_model(_tuned_model(config)):
        tuning_mode_enum(value, _tuned_model(config))
        if value != "full":
            from tunekit.components.common.errors import UserError

            # Refused before the job: a LoRA tuning may leave an adapter, and the student's evaluation has no
            # base weights to load it onto (evaluation.scoring.managed_open_model_client).
            raise UserError(
                f"is '{value}': an open-model student on Vertex is tuned with finetuning: full, whose weights its "
                "evaluation and deployment load as they are"
            )


def open_student_mode() -> Check:
    """The check of ``finetuning`` as the tuning mode of an open-model student (student_backend vertex)."""
    return checked_by(
        "tunekit.pipelines.shared_fields:check_open_student_mode",
        "with an open-model student on Vertex: full (its evaluation loads the tuned weights as they are)",
        with_config=True,
        when={"student_backend": "vertex"},
    )


def tuning_mode() -> Any:
    """``tuning_mode``: full fine-tuning or LoRA of an open model tuned on Vertex."""
    return field(
        "",
        "Vertex, open models: 'full' (full fine-tuning) or 'lora' (parameter-efficient); '' lets Vertex choose.",
        checks=[
            one_of("tunekit.components.tuning.gemini:TUNING_MODES", extra=("",)),
            checked_by(
                "tunekit.pipelines.shared_fields:check_tuning_mode",
                "only for an open model on Vertex, and a mode it takes",
                with_config=True,
            ),
        ],
    )


def custom_base_model() -> Any:
    """``custom_base_model``: the user's own weights of an open model, in Cloud Storage."""
    return field(
        "",
        "Vertex, open models: gs:// folder of base_model's .safetensors weights (or your own derived from it); "
        "required, since the evaluation scores the base from them.",
        checks=[
            checked_by(
                "tunekit.pipelines.shared_fields:check_custom_base_model",
                "a gs:// folder, only for an open model on Vertex and required for one",
                with_config=True,
            )
        ],
    )


def start_from() -> Any:
    """``start_from``: continuous tuning from a tuned model, one of its versions, or an alias such as ``champion``."""
    return field(
        "",
        "Vertex: continue tuning from this tuned model, projects/P/locations/L/models/M[@VERSION or @ALIAS], "
        "or 'champion' (the version serving `purpose` when the run starts; the base model while there is none), "
        "instead of base_model ('' tunes base_model); it must have been tuned on or after 2025-07-11, with the "
        "same encryption_key.",
        checks=[
            checked_by(
                "tunekit.pipelines.shared_fields:check_start_from",
                "a tuned Model Registry entry (Gemini, backend vertex)",
                with_config=True,
            )
        ],
    )


def pre_tuned_model_checkpoint_id() -> Any:
    """``pre_tuned_model_checkpoint_id``: a checkpoint of ``start_from`` other than its default one."""
    return field(
        "",
        "Vertex: the checkpoint of start_from to continue from ('' for its default checkpoint).",
        checks=[required_when_set("start_from")],
    )


def required_when_set(other: str) -> Check:
    """The value may be set only when the field ``other`` is set too."""
    return checked_by(
        "tunekit.pipelines.shared_fields:check_needs_start_from",
        f"only with {other}",
        with_config=True,
    )


def check_needs_start_from(value: str, config: Any) -> None:
    """A checkpoint id without ``start_from`` names nothing."""
    from tunekit.components.common.errors import UserError

    if value and not getattr(config, "start_from", ""):
        raise UserError("names a checkpoint of start_from: set start_from too")
    _vertex_only(value, config)


def current_gemini(**when: Any) -> Check:
    """The check of a Gemini model called for generation (a teacher, a judge) when the fields have the values given.

    It must not be retired (tuning.gemini's lifecycle table); another name (a served or tuned model) passes.
    """
    return checked_by(
        "tunekit.components.tuning.gemini:check_not_retired",
        "not a retired Gemini model (refused with its retirement date and replacement)",
        when=when,
    )


def labels(jobs: str = "the tuning job") -> Any:
    """``labels``: the labels of ``jobs`` and of the deployed model."""
    return field({}, f"Labels for {jobs} and the deployed model (lineage labels are added).")


def encryption_key() -> Any:
    """``encryption_key``: the Cloud KMS key of the tuning jobs (CMEK)."""
    return field("", "Vertex: Cloud KMS key name for CMEK ('' for Google-managed keys).")


def output_uri(jobs: str = "job's", open_models: bool = False, backend: str = "backend") -> Any:
    """``output_uri``: the folder of the tuning ``jobs``' outputs ("job's" or "jobs'").

    ``open_models``: the method tunes open models on Vertex too (when the field ``backend`` is ``vertex``), which
    need it (the tuned weights are written there).
    """
    if not open_models:
        return field("", f"Vertex: gs:// folder for the tuning {jobs} outputs ('' for the default).")
    return field(
        "",
        f"Vertex: gs:// folder for the tuning {jobs} outputs ('' for the default); required for an open model "
        "(its tuned weights are written there).",
        checks=[
            checked_by(
                "tunekit.pipelines.shared_fields:check_open_model_output",
                "set for an open model",
                with_config=True,
                when={backend: "vertex"},
            )
        ],
    )


# -- evaluation and the gate ------------------------------------------------------------------------------------


def max_output_tokens() -> Any:
    """``max_output_tokens``: the answer length of the evaluation's generations."""
    return field(64, "Tokens generated per evaluation answer.", ge=1)


def min_improvement(metric: str, note: str = "") -> Any:
    """``min_improvement``: how much ``metric`` (e.g. "the tuned model's primary metric") must beat the base by."""
    # Every metric the gates compare is a score in [0, 1] (components/evaluation/metrics.py, retrieval metrics).
    return field(0.0, f"Gate: {metric} must beat the base by more than this{note}.", ge=-1, le=1)


def beat_champion(candidate: str = "the tuned model", rows: str = "rows") -> Any:
    """``beat_champion``: the candidate must also beat the purpose's champion on the same ``rows``."""
    return field(
        True, f"Gate: {candidate} must also beat the model now deployed for `purpose` on the same {rows}."
    )


def require_significant(over: str = "") -> Any:
    """``require_significant``: improvements must be significant (``over``: what the bootstrap resamples)."""
    return field(False, f"Gate: each required improvement's 95% paired bootstrap interval{over} must lie above 0.")


# -- what every pipeline ends with: the champion's purpose, the registry, the data checks, the cloud -----------


def purpose(pipeline_name: str, champion: str = "the deployed model becomes this purpose's champion") -> Any:
    """``purpose``: what the model serves, by default the pipeline's name; ``champion`` says what it becomes."""
    return field(pipeline_name, f"What the model serves; {champion}.")


def local_registry() -> Any:
    """``local_registry``: the local registry file."""
    return field("", "Local: registry JSON file (the CLI sets one under the output root).")


def strict_validation() -> Any:
    """``strict_validation``: warnings fail validation too."""
    return field(False, "Fail validation on warnings too, not only on errors.")


def force() -> Any:
    """``force``: train on unchanged data too (see :mod:`tunekit.pipelines.retraining`)."""
    return field(False, "Train even when the data's fingerprint equals the one the champion was trained on.")


def project() -> Any:
    """``project``: the Google Cloud project, by default the pipeline job's own."""
    return field(PROJECT_PLACEHOLDER, "Google Cloud project; by default the pipeline job's own.")


def location(used_for: str = "") -> Any:
    """``location``: the Google Cloud region, by default the job's (``used_for``: " for tuning and prediction")."""
    return field(LOCATION_PLACEHOLDER, f"Google Cloud region{used_for}; by default the pipeline job's own.")

"""Gemini students on Vertex AI: supervised tuning on the multi-task data, or the Gemini distillation service.

Two managed ways to get a Gemini student:

- ``vertex`` (default): supervised fine-tuning (:func:`~tunekit.components.tuning.gemini.tune_gemini`) on the
  distilling step-by-step data in the Gemini format: one example with the label prefix and the label, one with the
  rationale prefix and the rationale, per input. Vertex SFT has no per-example loss weight, so ``alpha`` is
  *approximated* by the ratio of label to rationale examples: with ``alpha = 0.5`` every input gives one of each;
  with another alpha the rationale examples are sub-sampled (alpha > 0.5) or repeated (alpha < 0.5) so that the
  rationale examples number ``labels * (1 - alpha) / alpha``. The effective loss is then
  ``alpha * label_loss + (1 - alpha) * rationale_loss`` in expectation over the examples, not per batch, and each
  example's loss is summed over its tokens by Vertex, so long rationales weigh more than their count says.
- ``vertex_distillation``: Vertex's own distillation (``TuningMethod.DISTILLATION`` with ``base_teacher_model``)
  on the prompts alone: the service asks the teacher itself. It is in early access: a project without access gets
  its request refused, and this module says so in the error.

Both create at most one tuning job per step, re-attaching on retry through a state file (see ``tuning.vertex``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from typing import Any

from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.tuning.distillation.local import LABEL_TASK, RATIONALE_TASK

#: Student backends on Vertex AI.
VERTEX_SFT = "vertex"
VERTEX_DISTILLATION = "vertex_distillation"
DEFAULT_GEMINI_STUDENT = "gemini-3.1-flash-lite"


def to_gemini_row(example: Mapping) -> dict:
    """One student example (``prompt``, ``completion``) in the Gemini tuning format."""
    return {
        "contents": [
            {"role": "user", "parts": [{"text": str(example["prompt"])}]},
            {"role": "model", "parts": [{"text": str(example["completion"])}]},
        ]
    }


def balance_for_alpha(examples: Sequence[Mapping], alpha: float, seed: int = 0) -> list[dict]:
    """Approximates the loss weight ``alpha`` by the number of rationale examples per label example.

    Label examples are all kept; rationale examples are sub-sampled or repeated to
    ``round(labels * (1 - alpha) / alpha)``, chosen reproducibly by ``seed``. Other tasks pass through. The result is
    shuffled so that the two tasks mix in every batch.

    Raises:
        UserError: ``alpha`` is not in (0, 1].
    """
    if not 0.0 < alpha <= 1.0:
        raise UserError(
            f"a Gemini student needs 0 < alpha <= 1 (alpha is approximated by example counts); got {alpha}",
            field="alpha",
        )
    labels = [dict(e) for e in examples if e.get("task") == LABEL_TASK]
    rationales = [dict(e) for e in examples if e.get("task") == RATIONALE_TASK]
    others = [dict(e) for e in examples if e.get("task") not in (LABEL_TASK, RATIONALE_TASK)]
    rng = random.Random(seed)
    wanted = round(len(labels) * (1.0 - alpha) / alpha) if rationales else 0
    chosen: list[dict] = []
    while rationales and len(chosen) + len(rationales) <= wanted:
        chosen.extend(rationales)
    if rationales and len(chosen) < wanted:
        chosen.extend(rng.sample(rationales, wanted - len(chosen)))
    rows = labels + chosen + others
    rng.shuffle(rows)
    return rows


def prompt_only_row(example: Mapping) -> dict:
    """A prompt for the distillation service (a user turn, no answer: the teacher writes it)."""
    return {"contents": [{"role": "user", "parts": [{"text": str(example["prompt"])}]}]}


def build_distillation_config(*, base_teacher_model: str, **fields: Any) -> types.CreateTuningJobConfig:
    """The ``CreateTuningJobConfig`` of a DISTILLATION job, with only the fields that are set.

    Args:
        base_teacher_model: The teacher the service asks.
        fields: The fields of :func:`~tunekit.components.tuning.gemini.tuning_config` (validation data, epochs,
            learning-rate multiplier, adapter size, display name, labels, output URI).
    """
    from tunekit.components.tuning.gemini import tuning_config

    return tuning_config(types.TuningMethod.DISTILLATION, base_teacher_model=base_teacher_model, **fields)


ACCESS_HINT = (
    "The Gemini distillation service (tuning method DISTILLATION with a base teacher model) is in early access on "
    "Vertex AI, and this project may not have access to it. Ask Google Cloud for access, or use "
    "student_backend: vertex (supervised tuning of the Gemini student on the distilling step-by-step data)"
)


def distill_gemini(*, student_model: str, teacher_model: str, prompt_dataset_uri: str, **job: Any):
    """Runs a Vertex AI distillation job (``DISTILLATION``) and waits for the student, creating at most one job.

    Args:
        student_model: The Gemini model to tune (a tunable model id).
        teacher_model: The base teacher model (``base_teacher_model``), e.g. ``gemini-2.5-pro``.
        prompt_dataset_uri: ``gs://`` URI of prompt-only rows in the Gemini format.
        job: The job's other arguments, those of :func:`~tunekit.components.tuning.gemini.tune_gemini`
            (``project``, ``location``, ``state_path``, validation data, hyperparameters, labels, client, polling).

    Returns:
        A :class:`~tunekit.components.tuning.gemini.TunedGemini`.

    Raises:
        UserError: Bad arguments, or Vertex refused the job (with :data:`ACCESS_HINT`).
        TuningJobFailed: The job failed.
    """
    from tunekit.components.tuning import gemini as gv

    gv.check_tuning_args(base_model=student_model, training_dataset_uri=prompt_dataset_uri, **job)
    if not teacher_model:
        raise UserError("the distillation service needs a base teacher model", field="teacher_model")
    teacher_model = gv.normalize_base_model(teacher_model)
    return gv.run_tuning_job(
        functools.partial(build_distillation_config, base_teacher_model=teacher_model),
        base_model=gv.normalize_base_model(student_model),
        training_dataset_uri=prompt_dataset_uri,
        state_fields={"method": "DISTILLATION", "base_teacher_model": teacher_model},
        kind="Distillation job",
        on_create_error=lambda exc: UserError(f"{exc.message}. {ACCESS_HINT}", field="student_backend"),
        **job,
    )


def tune_open_student(
    *,
    student_model: str,
    dataset_base_uri: str,
    dataset_dir: str,
    baseline: bool,
    finetuning: str = "",
    learning_rate: float = 0.0,
    batch_size: int = 0,
    **job: Any,
) -> dict[str, Any]:
    """An open-model student tuned by Vertex AI's managed open-model tuning on the distilling step-by-step data.

    The same Gemini-layout files a Gemini student is tuned on (label and rationale examples with their task
    prefixes, the baseline's label examples) go in the chat ``messages`` layout open models are tuned on
    (:func:`~tunekit.components.tuning.supervised.vertex.messages_dataset_uri`); ``finetuning`` (``lora`` or
    ``full``) is the job's tuning mode. Like a Gemini student, ``alpha`` is approximated by example counts.

    Returns:
        The model record's fields (:func:`~tunekit.components.tuning.supervised.vertex.tune_open_model`'s).
    """
    import os

    from tunekit.components.tuning.supervised.vertex import messages_dataset_uri, tune_open_model

    train = "baseline_train_gemini.jsonl" if baseline else "train_gemini.jsonl"
    validation = "validation_gemini.jsonl"
    return tune_open_model(
        base_model=student_model,
        tuning_mode=finetuning,
        learning_rate=learning_rate or None,
        batch_size=batch_size or None,
        training_dataset_uri=messages_dataset_uri(f"{dataset_base_uri}/{train}", os.path.join(dataset_dir, train)),
        **{
            **job,
            "validation_dataset_uri": messages_dataset_uri(
                f"{dataset_base_uri}/{validation}", os.path.join(dataset_dir, validation)
            ),
        },
    )

"""The distilling step-by-step student steps as plain functions of paths and values (the KFP wrappers call these).

``run_build_student_dataset`` turns the rationale rows into the student's data and the evaluation rows;
``run_tune_student`` trains the student with the chosen backend (open model here or on a Vertex custom job,
Gemini SFT, or the Gemini distillation service).

The student dataset artifact is a folder:

- ``train.jsonl``: the student examples (``prompt``, ``completion``, ``task``, ``weight``, ``example_id``; see
  :mod:`.distill`);
- ``baseline_train.jsonl``: label-only examples of the same inputs and labels, for the baseline student;
- ``train_gemini.jsonl`` / ``baseline_train_gemini.jsonl`` / ``prompts_gemini.jsonl``: the same in the Gemini
  format (Gemini student backends; alpha approximated by example counts, see :mod:`.distill_vertex`).

The evaluation artifact is a JSONL file of held-out rows: ``input_text``, ``reference`` (the label the student is
scored against), ``reference_source`` (``gold``, or ``teacher`` when no held-out row has a gold label), and the
row's other columns.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import read_jsonl, write_jsonl
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.tuning.distillation import local as distill
from tunekit.components.tuning.distillation.vertex import (
    DEFAULT_GEMINI_STUDENT,
    VERTEX_DISTILLATION,
    VERTEX_SFT,
    balance_for_alpha,
    prompt_only_row,
    to_gemini_row,
)

LOCAL = "local"
STUDENT_BACKENDS = (LOCAL, VERTEX_SFT, VERTEX_DISTILLATION)
SKIPPED = "skipped"


#: ``student_model`` values that build a tiny randomly initialised student (no download), for demos and tests.
TINY_PREFIX = "tiny-random:"


def resolve_student_model(student_model: str, work_dir: str) -> str:
    """Builds the tiny student of ``tiny-random:t5`` / ``tiny-random:causal`` under ``work_dir/base``.

    Other values (model directories, Gemini model ids) come back unchanged. The tiny model lives inside the step's
    output, so a LoRA adapter trained on it keeps a base model that exists.

    Raises:
        UserError: An unknown tiny kind.
    """
    if not student_model.startswith(TINY_PREFIX):
        return student_model
    from tunekit.components.tuning.tiny import ensure_tiny_model

    kinds = {"t5": "seq2seq", "seq2seq": "seq2seq", "causal": "causal", "llama": "causal"}
    kind = student_model[len(TINY_PREFIX) :] or "t5"
    if kind not in kinds:
        raise UserError(f"unknown tiny student '{student_model}'; use {TINY_PREFIX}t5 or {TINY_PREFIX}causal")
    return ensure_tiny_model(os.path.join(work_dir, "base"), kind=kinds[kind])


def _tokens_for(student_backend: str, student_model: str) -> distill.TokenCounter:
    if student_backend == LOCAL and student_model.startswith(TINY_PREFIX):
        from transformers import ByT5Tokenizer

        return distill.HFTokens(ByT5Tokenizer())
    if student_backend == LOCAL and os.path.isdir(student_model):
        from transformers import AutoTokenizer

        return distill.HFTokens(AutoTokenizer.from_pretrained(student_model))
    return distill.CharTokens()


def split_evaluation(
    rows: list[dict], validation_rows: list[dict], validation_split: float, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """The training rows and the evaluation rows (``input_text``, ``reference``, ``reference_source``).

    Given validation rows are the evaluation rows (those with a gold label). Otherwise ``validation_split`` of the
    rows with a gold label are held out (reproducibly by ``seed``) and do not train the student; when no row has a
    gold label, held-out rows are scored against the teacher's label, and ``reference_source`` says so.

    Raises:
        UserError: No row can be held out or the validation rows have no labels.
    """

    def evaluation_row(row: dict, reference: str, source: str) -> dict:
        return {**row, "input_text": distill.row_input(row), "reference": reference, "reference_source": source}

    if validation_rows:
        held = []
        for row in validation_rows:
            label, source = distill.row_label(row)
            if label is not None and source == "gold":
                held.append(evaluation_row(row, label, "gold"))
        if not held:
            raise UserError("the validation rows have no labels (output_text) to score the student against")
        return rows, held
    if not 0 < validation_split < 1:
        raise UserError("must be between 0 and 1 when no validation dataset is given", field="validation_split")
    gold = [i for i, r in enumerate(rows) if distill.row_label(r)[1] == "gold"]
    candidates = gold or [i for i, r in enumerate(rows) if distill.row_label(r)[1] == "teacher"]
    if len(candidates) < 2:
        raise UserError("too few labelled rows to hold any out for evaluation; give a validation dataset")
    order = list(candidates)
    random.Random(seed).shuffle(order)
    count = min(5000, max(1, round(len(candidates) * validation_split)))
    chosen = set(order[:count])
    held = [evaluation_row(rows[i], *distill.row_label(rows[i])) for i in sorted(chosen)]
    return [r for i, r in enumerate(rows) if i not in chosen], held


def run_build_student_dataset(
    *,
    rationale_path: str,
    validation_path: str,
    output_dir: str,
    eval_path: str,
    mode: str = distill.MULTITASK,
    alpha: float = distill.DEFAULT_ALPHA,
    label_prefix: str = distill.DEFAULT_LABEL_PREFIX,
    rationale_prefix: str = distill.DEFAULT_RATIONALE_PREFIX,
    max_input_tokens: int = distill.MAX_INPUT_TOKENS,
    max_output_tokens: int = distill.MAX_OUTPUT_TOKENS,
    no_truncate: bool = False,
    validation_split: float = 0.1,
    student_backend: str = LOCAL,
    student_model: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """Builds the student's training data (multi-task, plus the label-only baseline's) and the evaluation rows.

    Args:
        rationale_path: Rows from rationale extraction (JSONL).
        validation_path: Validation rows: a JSONL file, a folder with ``validation.jsonl``, or '' / missing.
        output_dir: The student dataset folder (see the module docstring).
        eval_path: The evaluation rows' file.
        mode: ``multitask``, ``standard`` or ``cot``.
        alpha: The label task's loss weight.
        label_prefix: The label task's prefix.
        rationale_prefix: The rationale task's prefix.
        max_input_tokens: Token limit of inputs (7,168 by default, as Vertex's distillation had).
        max_output_tokens: Token limit of targets (1,024 by default).
        no_truncate: Fail on an over-long row instead of truncating it.
        validation_split: Share of gold-labelled rows held out when no validation rows are given.
        student_backend: ``local``, ``vertex`` or ``vertex_distillation``.
        student_model: The student (a local directory's tokenizer counts tokens exactly).
        seed: Seeds the hold-out and the Gemini alpha balancing.

    Returns:
        The counts: the student data's (:class:`.distill.StudentDataStats`), ``baseline_examples``,
        ``eval_rows``, ``eval_reference_gold`` (1 when scored against gold labels), ``gemini_examples``.
    """
    if student_backend not in STUDENT_BACKENDS:
        raise UserError(
            f"unknown student backend '{student_backend}'; use one of {', '.join(STUDENT_BACKENDS)}",
            field="student_backend",
        )
    rows = read_jsonl(rationale_path)
    validation_rows: list[dict] = []
    if validation_path:
        file = (
            os.path.join(validation_path, "validation.jsonl")
            if os.path.isdir(validation_path)
            else validation_path
        )
        if os.path.exists(file):
            validation_rows = read_jsonl(file)
    train_rows, eval_rows = split_evaluation(rows, validation_rows, validation_split, seed)
    tokens = _tokens_for(student_backend, student_model)
    common = dict(
        label_prefix=label_prefix,
        rationale_prefix=rationale_prefix,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        truncate=not no_truncate,
        tokens=tokens,
    )
    examples, stats = distill.build_student_examples(train_rows, mode=mode, alpha=alpha, **common)
    if not examples:
        raise UserError(
            "no training example could be built: no row has a gold label or a usable teacher answer "
            f"(counts: {stats.to_dict()})"
        )
    baseline, _ = distill.build_student_examples(train_rows, mode=distill.STANDARD, **common)
    os.makedirs(output_dir, exist_ok=True)
    write_jsonl(os.path.join(output_dir, "train.jsonl"), examples)
    write_jsonl(os.path.join(output_dir, "baseline_train.jsonl"), baseline)
    counts: dict[str, Any] = {**stats.to_dict(), "baseline_examples": len(baseline)}
    if student_backend != LOCAL:
        gemini = balance_for_alpha(examples, alpha, seed) if mode == distill.MULTITASK and alpha > 0 else examples
        write_jsonl(os.path.join(output_dir, "train_gemini.jsonl"), (to_gemini_row(e) for e in gemini))
        write_jsonl(os.path.join(output_dir, "baseline_train_gemini.jsonl"), (to_gemini_row(e) for e in baseline))
        write_jsonl(os.path.join(output_dir, "prompts_gemini.jsonl"), (prompt_only_row(e) for e in baseline))
        validation_gemini = [
            to_gemini_row(
                {
                    "prompt": distill.serving_prefix(mode, label_prefix) + r["input_text"],
                    "completion": r["reference"],
                }
            )
            for r in eval_rows
        ]
        write_jsonl(os.path.join(output_dir, "validation_gemini.jsonl"), validation_gemini)
        counts["gemini_examples"] = len(gemini)
    write_jsonl(eval_path, eval_rows)
    counts["eval_rows"] = len(eval_rows)
    counts["eval_reference_gold"] = int(all(r["reference_source"] == "gold" for r in eval_rows))
    info = {
        "mode": mode,
        "alpha": alpha,
        "label_prefix": label_prefix,
        "rationale_prefix": rationale_prefix,
        "serving_prefix": distill.serving_prefix(mode, label_prefix),
        "student_backend": student_backend,
        "counts": counts,
    }
    with open(os.path.join(output_dir, distill.STUDENT_DATA_INFO), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
    return counts


def read_data_info(dataset_dir: str) -> dict:
    """The student dataset's recorded settings (mode, prefixes, alpha)."""
    path = os.path.join(dataset_dir, distill.STUDENT_DATA_INFO)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def run_tune_student(
    *,
    student_backend: str,
    student_model: str,
    task: str,
    dataset_dir: str,
    dataset_uri: str,
    model_path: str,
    model_metadata: dict,
    baseline: bool = False,
    enabled: bool = True,
    teacher_model: str = "",
    train_steps: int = 0,
    learning_rate: float = 0.0,
    batch_size: int = 0,
    lora_rank: int = 0,
    finetuning: str = distill.LORA,
    local_options: dict | None = None,
    epoch_count: int = 0,
    learning_rate_multiplier: float = 0.0,
    adapter_size: int = 0,
    tuned_model_display_name: str = "",
    labels: dict | None = None,
    output_uri: str = "",
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    poll_interval_s: float = 30.0,
) -> dict[str, Any]:
    """Trains the student (or, with ``baseline``, the label-only baseline on the same data and budget).

    Args:
        student_backend: ``local`` (open model, weighted multi-task loss), ``vertex`` (Gemini SFT) or
            ``vertex_distillation`` (the Gemini distillation service; a baseline then uses Gemini SFT).
        student_model: A local model directory (``local``) or a tunable Gemini model id.
        task: The pipeline's task (picks the default number of steps).
        dataset_dir: The student dataset folder (local path).
        dataset_uri: Its URI (``gs://`` on Vertex, for the tuning service to read).
        model_path: The output model folder.
        model_metadata: The output model's metadata, filled in.
        baseline: Train the label-only baseline from ``baseline_train.jsonl`` instead of the student.
        enabled: When False, writes a record saying the step was skipped and trains nothing (an unasked baseline).
        teacher_model: The base teacher model of ``vertex_distillation``.
        train_steps: Local: optimizer steps (0: the middle of the SPEC's distillation range for the task).
        learning_rate: Local: learning rate (0: the trainer's default).
        batch_size: Local: inputs per step (0: the trainer's default).
        lora_rank: Local: LoRA rank (0: the trainer's default).
        finetuning: Local: ``lora`` or ``full``.
        local_options: Local: further :class:`.distill.DistillTuningConfig` fields.
        epoch_count: Vertex: epochs (0: Vertex chooses).
        learning_rate_multiplier: Vertex: learning-rate multiplier (0: Vertex chooses).
        adapter_size: Vertex: adapter size (0: Vertex chooses).
        tuned_model_display_name: Vertex: tuned model name.
        labels: Vertex: job labels.
        output_uri: Vertex: output folder.
        project: Google Cloud project.
        location: Vertex AI region.
        pipeline_job_name: The pipeline run, for lineage labels.
        poll_interval_s: Vertex: first wait between polls.

    Returns:
        The model record written to ``model_path/tunekit_model.json``.
    """
    os.makedirs(model_path, exist_ok=True)
    info = read_data_info(dataset_dir)
    mode = distill.STANDARD if baseline else info.get("mode", distill.MULTITASK)
    prefix = "" if baseline else info.get("serving_prefix", distill.serving_prefix(mode))
    record: dict[str, Any] = {
        "backend": student_backend,
        "student_backend": student_backend,
        "base_model": student_model,
        "mode": mode,
        "serving_prefix": prefix,
        "baseline": baseline,
    }
    if not enabled:
        record[SKIPPED] = True
    elif student_backend == LOCAL:
        from tunekit.components.tuning.lora import local_options as local_options_of

        options = local_options_of(
            local_options,
            distill.DistillTuningConfig,
            default_steps=distill.default_train_steps(task),
            train_steps=train_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            lora_rank=lora_rank,
            finetuning=finetuning,
            **({} if baseline else {"alpha": info.get("alpha")}),
        )
        try:
            config = distill.DistillTuningConfig.from_dict(options)
        except UserError as exc:
            raise UserError(exc.message, field="local_options") from None
        train_file = os.path.join(dataset_dir, "baseline_train.jsonl" if baseline else "train.jsonl")
        training = distill.tune_student(student_model, train_file, None, model_path, config)
        record.update(model_dir=model_path, training=training, backend="local")
    elif student_backend in (VERTEX_SFT, VERTEX_DISTILLATION):
        from tunekit.components.tuning.gemini import is_open_model, job_options

        base = uris.fuse_to_gcs(dataset_uri).rstrip("/")
        common = job_options(
            locals(),
            method="distilling-step-by-step",
            tuned_model_display_name=tuned_model_display_name + ("-baseline" if baseline else ""),
            validation_dataset_uri=f"{base}/validation_gemini.jsonl",
        )
        if student_backend == VERTEX_DISTILLATION and not baseline:
            from tunekit.components.tuning.distillation.vertex import distill_gemini

            result = distill_gemini(
                student_model=student_model or DEFAULT_GEMINI_STUDENT,
                teacher_model=teacher_model,
                prompt_dataset_uri=f"{base}/prompts_gemini.jsonl",
                **common,
            )
            # The service's student answers the plain input: it never saw a task prefix.
            record["serving_prefix"] = ""
            record["mode"] = "vertex_distillation"
        elif is_open_model(student_model):
            from tunekit.components.tuning.distillation.vertex import tune_open_student

            # An open-model student: Vertex AI's managed open-model tuning (no endpoint: the weights' folder).
            record.update(
                tune_open_student(
                    student_model=student_model,
                    dataset_base_uri=base,
                    dataset_dir=dataset_dir,
                    baseline=baseline,
                    finetuning=finetuning,
                    learning_rate=learning_rate,
                    batch_size=batch_size,
                    **{k: v for k, v in common.items() if k != "validation_dataset_uri"},
                )
            )
            result = None
        else:
            from tunekit.components.tuning.gemini import tune_gemini

            result = tune_gemini(
                base_model=student_model or DEFAULT_GEMINI_STUDENT,
                training_dataset_uri=f"{base}/{'baseline_train' if baseline else 'train'}_gemini.jsonl",
                **common,
            )
        if result is not None:
            record.update(result.to_dict())
        record["backend"] = "vertex"
    else:
        raise UserError(
            f"unknown student backend '{student_backend}'; use one of {', '.join(STUDENT_BACKENDS)}",
            field="student_backend",
        )
    return ModelRecord.from_dict(record).write(model_path, model_metadata)

"""The rationale-extraction step as a plain function of paths and values (the KFP wrapper calls it).

Input: a JSON Lines file, or a folder holding ``train.jsonl`` (data validation's normalised output); the columns
are those of :mod:`.extract` (text pairs ``input_text``/``output_text`` work for the single-text task types).
Output: the same rows with the rationale columns of :mod:`.extract`, one per input row, in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import dataset_file, read_jsonl, write_jsonl
from tunekit.components.model_clients.base import GenerationConfig, ModelClient
from tunekit.components.model_clients.teachers import make_teacher
from tunekit.components.rationale_extraction.extract import extract_rationales
from tunekit.components.rationale_extraction.parsing import CLASSIFICATION, EXTRACTIVE_QA, GENERIC, TASK_TYPES
from tunekit.components.rationale_extraction.prompts import select_exemplars

#: The rationale task type a pipeline task maps to when none is given.
TASK_TYPE_FOR_TASK = {"classification": CLASSIFICATION, "extractive_qa": EXTRACTIVE_QA}


def rationale_task_type(task: str, task_type: str = "") -> str:
    """The task type of the CoT templates: ``task_type`` if given, else the one that fits the pipeline ``task``.

    Raises:
        UserError: An unknown task type.
    """
    chosen = task_type or TASK_TYPE_FOR_TASK.get(task, GENERIC)
    if chosen not in TASK_TYPES:
        raise UserError(f"unknown rationale task type '{chosen}'; use one of {', '.join(TASK_TYPES)}")
    return chosen


def read_rows(path: str) -> list[dict]:
    """Reads JSON Lines rows; a missing file reads as no rows."""
    return read_jsonl(path) if os.path.exists(path) else []


def load_exemplars(exemplars_uri: str, num_exemplars: int, seed: int = 0) -> list[dict]:
    """Draws ``num_exemplars`` exemplars (rows with a rationale and an answer) from a JSONL file.

    Raises:
        UserError: Exemplars are asked for but no file is given, or it has too few usable rows.
    """
    if num_exemplars <= 0:
        return []
    if not exemplars_uri:
        raise UserError(
            "few-shot chain-of-thought prompts need exemplars: set exemplars_uri (rows with a rationale and an "
            "answer) or num_exemplars: 0",
            field="exemplars_uri",
        )
    with uris.local_copy(exemplars_uri) as local:
        rows = read_rows(local)
    try:
        return select_exemplars(rows, num_exemplars, seed=seed)
    except UserError as exc:
        raise UserError(exc.message, path=exemplars_uri, field="exemplars_uri") from None


def run_extract_rationales(
    *,
    dataset_path: str,
    output_path: str,
    task: str,
    task_type: str = "",
    exemplars_uri: str = "",
    num_exemplars: int = 4,
    teacher_backend: str,
    teacher_model: str,
    teacher_script_uri: str = "",
    teacher_options: dict | None = None,
    teacher_engine_options: dict | None = None,
    project: str = "",
    location: str = "",
    n_samples: int = 1,
    temperature: float = 0.0,
    max_output_tokens: int = 512,
    keep_disagreeing: bool = False,
    instruction: str = "",
    classes: list | None = None,
    price_table: dict | None = None,
    cache_dir: str = "",
    log_metric: Callable[[str, float], None] | None = None,
    client: ModelClient | None = None,
) -> dict[str, Any]:
    """Asks the teacher for a rationale and an answer for every input row; writes the rows with them.

    Args:
        dataset_path: The input rows (a JSONL file, or a folder with ``train.jsonl``).
        output_path: Where the output rows go (JSON Lines).
        task: The pipeline's task (picks the task type when ``task_type`` is '').
        task_type: A task type of :data:`.parsing.TASK_TYPES`, or '' to derive it.
        exemplars_uri: Exemplars with rationales and answers (JSONL).
        num_exemplars: Exemplars per prompt, drawn once with a fixed seed (so prompts, and cache keys, repeat).
        teacher_backend: ``vertex``, ``vertex_batch``, ``openai``, ``hf``, ``fake`` or ``scripted`` (see
            :mod:`.teachers`).
        teacher_model: The teacher model.
        teacher_script_uri: The scripted teacher's completions.
        teacher_options: Backend options (``base_url`` of an OpenAI-compatible server...; see
            :func:`.teachers.make_teacher`).
        teacher_engine_options: The engine's options (concurrency, rate limits, retries).
        project: Google Cloud project (Vertex teacher).
        location: Vertex AI region.
        n_samples: Samples per row (self-consistency); use a temperature above 0 with more than one.
        temperature: Sampling temperature.
        max_output_tokens: The most tokens of one completion.
        keep_disagreeing: Keep rationales whose answer disagrees with the row's label.
        instruction: Replaces the task type's default instruction ('' keeps it).
        classes: The allowed classes of a classification task.
        price_table: Prices per million tokens by model, for the cost estimate (see ``pricing``).
        cache_dir: The response cache's directory ('' for none).
        log_metric: Receives every count and the cost estimate.
        client: A teacher client to use instead of building one (tests).

    Returns:
        The counts of :func:`.extract.extract_rationales`, plus ``estimated_cost_usd`` when the model has a price.
    """
    from tunekit.components.model_clients import pricing

    chosen_type = rationale_task_type(task, task_type)
    with uris.local_copy(dataset_file(dataset_path)) as local:
        rows = read_rows(local)
    if not rows:
        raise UserError("no rows to extract rationales for", path=dataset_path)
    exemplars = load_exemplars(exemplars_uri, num_exemplars)
    teacher = client or make_teacher(
        teacher_backend,
        teacher_model,
        project=project,
        location=location,
        script_uri=teacher_script_uri,
        options=teacher_options,
        engine_options=teacher_engine_options,
        cache_dir=cache_dir,
        price_table=price_table,
    )
    try:
        out, counts = extract_rationales(
            rows,
            teacher,
            task_type=chosen_type,
            exemplars=exemplars,
            config=GenerationConfig(
                max_output_tokens=max_output_tokens, temperature=temperature, candidate_count=1, seed=0
            ),
            n_samples=n_samples,
            keep_disagreeing=keep_disagreeing,
            instruction=instruction or None,
            choices=[str(c) for c in classes] if classes else None,
        )
    finally:
        if client is None:
            teacher.close()
    cost = pricing.estimate_cost(
        teacher_model, counts["input_tokens"], counts["output_tokens"], pricing.parse_price_table(price_table)
    )
    if cost is not None:
        counts["estimated_cost_usd"] = round(cost, 6)
    counts["task_type"] = chosen_type
    write_jsonl(output_path, out)
    if log_metric is not None:
        for key, value in counts.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                log_metric(key, float(value))
    return counts

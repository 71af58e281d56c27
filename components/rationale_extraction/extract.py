"""Rationale extraction: prompt a teacher with chain-of-thought exemplars, keep its rationales and answers.

This is distilling step-by-step's first stage (Hsieh et al., 2023): each input row gets a few-shot CoT prompt
(:func:`.prompts.build_cot_prompt`), the teacher's completion is parsed (:func:`.parsing.parse_completion`), and
the row comes back with the rationale and the teacher's answer. Every input row comes back, in order, with a status;
nothing is dropped. Whether a rationale is fit for training is a column, ``rationale_kept``, and the counts say why
rows were not kept.

Input columns:
    - The task type's fields (see :mod:`.prompts`): ``question`` and ``choices`` (multiple choice), ``premise`` and
      ``hypothesis`` (NLI), ``question`` (math), ``text`` (classification), ``question`` and ``context``
      (extractive QA), ``input`` (generic); ``input_text`` is accepted for the single-text tasks.
    - Optionally a label to check the teacher against, the first present of :data:`LABEL_KEYS`: a gold label
      (``label``, ``answer``, ``output_text``) or another teacher's (``teacher_label``, or ``output_text`` with
      ``label_source: teacher`` as the teacher-labelling step writes it).

Output columns (the input columns are kept as they are):
    - ``rationale`` (str): the teacher's reasoning before its answer, '' when there is none.
    - ``teacher_answer`` (str | None): the normalised answer (see :mod:`.parsing`), None unless ``status`` is ok.
    - ``raw_answer`` (str | None): the answer as the teacher wrote it (for out-of-set and unparseable answers).
    - ``status`` (str): a parse status of :data:`.parsing.PARSE_STATUSES`, or the client's ``blocked`` or
      ``failed``; a completion cut by the token limit that still answered is ``ok``.
    - ``error`` (str): the client's message when the request failed or was blocked, else ''.
    - ``agrees_with_label`` (bool | None): whether the answer matches the row's label; None for unlabelled rows.
    - ``rationale_kept`` (bool): ok, a non-empty rationale, and agreeing with the label (or unlabelled, or
      ``keep_disagreeing``).
    - ``votes`` (int): samples whose answer is the chosen one (self-consistency), 0 when no sample answered.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import (
    BLOCKED,
    EMPTY,
    FAILED,
    TRUNCATED,
    GenerationConfig,
    ModelClient,
    Prompt,
)
from tunekit.components.rationale_extraction import parsing
from tunekit.components.rationale_extraction.parsing import (
    CLASSIFICATION,
    MULTIPLE_CHOICE,
    OK,
    PARSE_STATUSES,
    TASK_TYPES,
    ParsedCompletion,
    answer_key,
    answers_agree,
    parse_completion,
)
from tunekit.components.rationale_extraction.prompts import build_cot_prompt, choices_list

logger = logging.getLogger(__name__)

#: Where a row's label is looked for, in order: gold labels first, then a teacher's from the labelling component.
LABEL_KEYS = ("label", "answer", "output_text", "teacher_label")

#: Every status a row can end with.
ROW_STATUSES = (*PARSE_STATUSES, BLOCKED, FAILED)

_COUNT_KEYS = (
    "kept",
    "dropped",
    "dropped_disagreeing",
    "kept_disagreeing",
    "dropped_no_rationale",
    "labelled",
    "agreeing",
    "disagreeing",
    "short_of_samples",
    "teacher_labelled",
    "input_tokens",
    "output_tokens",
)

#: The columns :func:`extract_rationales` adds to each row.
OUTPUT_COLUMNS = (
    "rationale",
    "teacher_answer",
    "raw_answer",
    "status",
    "error",
    "agrees_with_label",
    "rationale_kept",
    "votes",
)


def label_is_teacher(row: Mapping) -> bool:
    """Whether a row's label came from a teacher (the labelling step's ``label_source``, or ``teacher_label``)."""
    if row.get("label_source") == "teacher":
        return True
    return all(row.get(k) is None or str(row.get(k)).strip() == "" for k in LABEL_KEYS[:-1]) and (
        row.get("teacher_label") is not None and str(row.get("teacher_label")).strip() != ""
    )


def row_label(row: Mapping) -> object:
    """The label a row's teacher answer is checked against: the first present of :data:`LABEL_KEYS`, or None."""
    for key in LABEL_KEYS:
        value = row.get(key)
        if value is not None and str(value).strip() != "":
            return value
    return None


def _row_choices(task_type: str, row: Mapping, choices: Sequence[str] | None) -> list[str] | None:
    if task_type == MULTIPLE_CHOICE:
        return choices_list(row.get("choices") if row.get("choices") is not None else choices)
    if task_type == CLASSIFICATION:
        return list(choices) if choices else None
    return None


def _parse_sample(
    text: str, client_status: str, task_type: str, choices: list[str] | None, context: str | None
) -> ParsedCompletion:
    """Parses one sample; the client's status explains a missing answer better than the parser can."""
    if client_status in (BLOCKED, FAILED):
        return ParsedCompletion("", None, client_status)
    parsed = parse_completion(text, task_type, choices, context=context)
    if client_status == EMPTY and parsed.status != OK:
        return replace(parsed, status=parsing.EMPTY)
    if client_status == TRUNCATED and parsed.status not in (OK, parsing.EMPTY):
        # The token limit, not the teacher, ended this answer (a cut-off expression, a loop): say so.
        return replace(parsed, status=parsing.TRUNCATED, answer=None)
    return parsed


def _vote(task_type: str, samples: list[ParsedCompletion]) -> tuple[ParsedCompletion, int]:
    """Self-consistency: the majority answer among the samples that answered, and one rationale that gives it.

    Ties go to the answer sampled first, so the result does not depend on anything but the samples' order.

    Returns:
        The chosen sample and its votes; the first sample and 0 votes when none answered.
    """
    answered = [s for s in samples if s.status == OK]
    if not answered:
        return samples[0], 0
    votes = Counter(answer_key(task_type, s.answer) for s in answered)
    winner, count = votes.most_common(1)[0]
    agreeing = [s for s in answered if answer_key(task_type, s.answer) == winner]
    # A sample that answered without reasoning is no use as a rationale when another one reasoned.
    with_rationale = [s for s in agreeing if s.rationale]
    return (with_rationale or agreeing)[0], count


def extract_rationales(
    rows: Sequence[Mapping],
    client: ModelClient,
    *,
    task_type: str,
    exemplars: Sequence[Mapping],
    config: GenerationConfig | None = None,
    n_samples: int = 1,
    keep_disagreeing: bool = False,
    instruction: str | None = None,
    choices: Sequence[str] | None = None,
    repeat_prompts: bool = False,
) -> tuple[list[dict], dict]:
    """Prompts the teacher for a rationale and an answer for every row.

    All prompts go to the client in one call, so its concurrency, rate limits and cache apply to the whole set.

    Args:
        rows: Input rows (see the module docstring for their columns).
        client: The teacher.
        task_type: One of :data:`.parsing.TASK_TYPES`.
        exemplars: Few-shot exemplars with rationales and answers (given, or from
            :func:`.prompts.select_exemplars`).
        config: Decoding settings; with ``n_samples`` > 1 use a temperature above 0, or the samples are the same.
        n_samples: Samples per row for self-consistency: the majority answer wins, with a rationale that gives it.
        keep_disagreeing: Keep rationales whose answer disagrees with the row's label (they are counted either way).
        instruction: Replaces the task type's default instruction.
        choices: Options shared by every multiple-choice row without its own, or the allowed classes of a
            classification task.
        repeat_prompts: Sample by sending each prompt ``n_samples`` times instead of asking for
            ``candidate_count`` candidates, for backends without candidates. A response cache keyed by prompt
            answers the repeats from the first answer, so use it only without one.

    Returns:
        The output rows, one per input row in order, and counts: ``total``, ``status_<status>`` for every status,
        ``kept``, ``dropped``, ``dropped_disagreeing``, ``kept_disagreeing``, ``dropped_no_rationale``,
        ``labelled``, ``agreeing``, ``disagreeing``, ``short_of_samples`` (rows that got fewer samples than asked),
        ``teacher_labelled`` (labelled rows whose label came from a teacher), ``input_tokens``, ``output_tokens``,
        and ``accuracy`` (agreement with the gold labels only) when some rows have a gold label.
        An answered row without a rationale counts as ``dropped_no_rationale`` only, whatever its agreement.

    Raises:
        UserError: If the task type or ``n_samples`` is invalid, or a row or exemplar lacks a field.
    """
    if task_type not in TASK_TYPES:
        raise UserError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    if n_samples < 1:
        raise UserError(f"n_samples must be at least 1; got {n_samples}", field="n_samples")
    config = config or GenerationConfig()
    if n_samples > 1 and config.temperature == 0:
        logger.warning("self-consistency with temperature 0: the %d samples will mostly be identical", n_samples)

    prompts = []
    for index, row in enumerate(rows):
        try:
            prompts.append(build_cot_prompt(task_type, exemplars, row, instruction=instruction, choices=choices))
        except UserError as exc:
            # Rows are 1-based in messages, like lines of the JSONL file they came from.
            raise UserError(exc.message, line=index + 1, field=exc.field) from exc

    repeats = n_samples if repeat_prompts else 1
    request_config = replace(config, candidate_count=1 if repeat_prompts else n_samples)
    requests = [Prompt(text) for text in prompts for _ in range(repeats)]
    generations = client.generate(requests, request_config) if requests else []
    if len(generations) != len(requests):
        raise RuntimeError(f"the client returned {len(generations)} generations for {len(requests)} prompts")

    counts: Counter = Counter({f"status_{s}": 0 for s in ROW_STATUSES})
    out = []
    for index, row in enumerate(rows):
        group = generations[index * repeats : (index + 1) * repeats]
        row_choices = _row_choices(task_type, row, choices)
        context = row.get("context")
        samples = []
        for generation in group:
            texts = generation.candidates or [generation.text]
            samples.extend(_parse_sample(t, generation.status, task_type, row_choices, context) for t in texts)
            counts["input_tokens"] += generation.input_tokens
            counts["output_tokens"] += generation.output_tokens
        if len(samples) < n_samples:
            counts["short_of_samples"] += 1
        chosen, votes = _vote(task_type, samples)

        label = row_label(row)
        agrees = None if label is None else answers_agree(task_type, chosen.answer, label, row_choices)
        kept = chosen.status == OK and bool(chosen.rationale) and (agrees is not False or keep_disagreeing)
        errors = [g.error for g in group if g.error]

        counts[f"status_{chosen.status}"] += 1
        if label is not None:
            counts["labelled"] += 1
            counts["agreeing" if agrees else "disagreeing"] += 1
            if label_is_teacher(row):
                counts["teacher_labelled"] += 1
            else:
                counts["gold_agreeing"] += bool(agrees)
        if chosen.status == OK and not chosen.rationale:
            counts["dropped_no_rationale"] += 1
        elif chosen.status == OK and agrees is False:
            counts["kept_disagreeing" if keep_disagreeing else "dropped_disagreeing"] += 1
        counts["kept" if kept else "dropped"] += 1

        out.append(
            {
                **row,
                "rationale": chosen.rationale,
                "teacher_answer": chosen.answer,
                "raw_answer": chosen.raw_answer,
                "status": chosen.status,
                "error": errors[0] if errors and chosen.status != OK else "",
                "agrees_with_label": agrees,
                "rationale_kept": kept,
                "votes": votes,
            }
        )

    result = {"total": len(rows)}
    result.update({f"status_{s}": counts[f"status_{s}"] for s in ROW_STATUSES})
    result.update({key: counts[key] for key in _COUNT_KEYS})
    gold_labelled = counts["labelled"] - counts["teacher_labelled"]
    if gold_labelled:
        # Against gold labels only: agreeing with a label the teacher gave itself says nothing of its accuracy.
        result["accuracy"] = counts["gold_agreeing"] / gold_labelled
    return out, result

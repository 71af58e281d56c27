"""Few-shot chain-of-thought prompts, rendered from one Jinja2 template per task type.

A prompt is an instruction, exemplars (an input, a rationale, and the fixed answer phrase with the answer), and the
query, left open after ``A:`` for the teacher to reason and answer in the exemplars' shape. The answer phrase is
what :mod:`.parsing` looks for; the templates' field labels ("Q:", "Premise:", "Question:") are what it cuts a
runaway continuation at.

Fields of an exemplar or a query, per task type (aliases in parentheses):

- ``multiple_choice``: ``question`` (``input``, ``input_text``), ``choices`` (a list, or
  ``{"text": [...]}``); the options may be given once for every query through ``choices``.
- ``nli``: ``premise``, ``hypothesis``.
- ``math``: ``question`` (``input``, ``input_text``, ``body``).
- ``classification``: ``text`` (``input``, ``input_text``, ``sentence``); the allowed classes come from
  ``choices``.
- ``extractive_qa``: ``question``, ``context``.
- ``generic``: ``input`` (``input_text``, ``text``, ``question``).

An exemplar adds ``rationale`` and its answer (``answer``, else ``label``): an option text, letter or index for
multiple choice; a label name or index of :data:`.parsing.NLI_LABELS` for NLI; anything else as text.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import jinja2

from tunekit.components.common.errors import UserError
from tunekit.components.rationale_extraction.parsing import (
    CLASSIFICATION,
    EXTRACTIVE_QA,
    GENERIC,
    MATH,
    MULTIPLE_CHOICE,
    NLI,
    NLI_LABELS,
    TASK_TYPES,
)

#: The phrase every exemplar's answer follows; the teacher copies it, and the parser finds the answer after it.
ANSWER_PHRASE = "So the answer is"

TEMPLATE_DIR = Path(__file__).parent / "templates"

DEFAULT_INSTRUCTIONS = {
    MULTIPLE_CHOICE: (
        "Answer the multiple-choice question. Reason step by step, then end with "
        f'"{ANSWER_PHRASE}" followed by the letter and the text of one option.'
    ),
    NLI: (
        "Decide whether the premise entails the hypothesis, contradicts it, or neither. Reason step by step, then "
        f'end with "{ANSWER_PHRASE}" followed by entailment, neutral or contradiction.'
    ),
    MATH: (
        "Solve the math word problem. Reason step by step, then end with "
        f'"{ANSWER_PHRASE}" followed by one arithmetic expression over the numbers of the problem.'
    ),
    CLASSIFICATION: (
        "Classify the text into one of the classes below. Reason step by step, then end with "
        f'"{ANSWER_PHRASE}" followed by exactly one class.'
    ),
    EXTRACTIVE_QA: (
        "Answer the question with a span copied from the context. Reason step by step, then end with "
        f'"{ANSWER_PHRASE}" followed by the exact span.'
    ),
    GENERIC: f'Reason step by step about the input, then end with "{ANSWER_PHRASE}" followed by the answer.',
}

#: The fields each task type's template shows, in order.
QUERY_FIELDS = {
    MULTIPLE_CHOICE: ("question", "choices"),
    NLI: ("premise", "hypothesis"),
    MATH: ("question",),
    CLASSIFICATION: ("text",),
    EXTRACTIVE_QA: ("question", "context"),
    GENERIC: ("input",),
}

# Column names users' datasets already have for a field (the PaLM-era text pairs use input_text).
_ALIASES = {
    "question": ("question", "input", "input_text", "body"),
    "text": ("text", "input", "input_text", "sentence"),
    "input": ("input", "input_text", "text", "question"),
}

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def option_letter(index: int) -> str:
    """The letter of the option at ``index`` (0 -> 'a')."""
    if not 0 <= index < len(_LETTERS):
        raise UserError(f"a multiple-choice question has at most {len(_LETTERS)} options; got option {index + 1}")
    return _LETTERS[index]


def choices_list(value: object) -> list[str]:
    """A question's options as a list of strings: a list, or Hugging Face's ``{"text": [...]}``."""
    if isinstance(value, Mapping):
        value = value.get("text")
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise UserError("a multiple-choice question needs a non-empty list of choices", field="choices")
    return [str(c) for c in value]


def format_choices(choices: object) -> str:
    """Renders options one per line: ``(a) first`` / ``(b) second`` ..."""
    return "\n".join(f"({option_letter(i)}) {c}" for i, c in enumerate(choices_list(choices)))


def format_answer(task_type: str, answer: object, choices: Sequence[str] | None = None) -> str:
    """Renders an exemplar's answer as the teacher should write it after the answer phrase.

    Multiple choice gives ``(c) wooded area`` from the option's text, letter or index; NLI gives a label name from a
    name or an index of :data:`NLI_LABELS`; anything else is the answer's text.
    """
    if task_type == MULTIPLE_CHOICE:
        options = choices_list(choices)
        index = _option_index(answer, options)
        return f"({option_letter(index)}) {options[index]}"
    if task_type == NLI:
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(NLI_LABELS):
            return NLI_LABELS[answer]
        if str(answer).strip().lower() not in NLI_LABELS:
            raise UserError(f"an NLI answer is one of {', '.join(NLI_LABELS)} or its index; got {answer!r}")
        return str(answer).strip().lower()
    return str(answer).strip().rstrip(".")


def _option_index(answer: object, options: Sequence[str]) -> int:
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        return answer
    text = str(answer).strip()
    lowered = [o.strip().lower() for o in options]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    letter = text.strip("()").lower()
    if len(letter) == 1 and letter in _LETTERS[: len(options)]:
        return _LETTERS.index(letter)
    raise UserError(f"answer {answer!r} is not one of the options {list(options)}", field="answer")


def query_fields(task_type: str, row: Mapping, choices: Sequence[str] | None = None) -> dict:
    """Takes the fields the task type's template shows from a row, through the known aliases.

    Args:
        task_type: One of :data:`.parsing.TASK_TYPES`.
        row: An input row or an exemplar.
        choices: Options used for a multiple-choice row that has none of its own.

    Returns:
        ``{field: value}`` for the fields in :data:`QUERY_FIELDS`.

    Raises:
        UserError: If a field is missing.
    """
    _check_task(task_type)
    out = {}
    for name in QUERY_FIELDS[task_type]:
        if name == "choices":
            value = row.get("choices") if row.get("choices") is not None else choices
            out[name] = choices_list(value)
            continue
        for key in _ALIASES.get(name, (name,)):
            if row.get(key) is not None:
                out[name] = str(row[key])
                break
        else:
            names = " or ".join(_ALIASES.get(name, (name,)))
            raise UserError(f"a {task_type} row needs the field {names}; it has {sorted(row)}", field=name)
    return out


def exemplar_answer(row: Mapping) -> object:
    """An exemplar's answer: its ``answer``, else its ``label`` (None when it has neither)."""
    for key in ("answer", "label"):
        if row.get(key) is not None and str(row[key]).strip() != "":
            return row[key]
    return None


def select_exemplars(seed_rows: Sequence[Mapping], k: int, *, seed: int = 0) -> list[dict]:
    """Draws ``k`` exemplars from a labelled seed set, among the rows that have a rationale and an answer.

    The draw is seeded, so the prompts (and the response cache keyed by them) are the same on every run.

    Raises:
        UserError: If fewer than ``k`` rows have both.
    """
    usable = [
        dict(r) for r in seed_rows if str(r.get("rationale") or "").strip() and exemplar_answer(r) is not None
    ]
    if len(usable) < k:
        raise UserError(
            f"the seed set has {len(usable)} rows with a rationale and an answer; {k} exemplars were asked for"
        )
    return random.Random(seed).sample(usable, k)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # StrictUndefined: a template that names a field the row lacks fails loudly instead of rendering ''.
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["format_choices"] = format_choices
    return env


def load_template(task_type: str) -> jinja2.Template:
    """The Jinja2 template of a task type (``templates/<task_type>.j2``)."""
    _check_task(task_type)
    return _environment().get_template(f"{task_type}.j2")


def _check_task(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise UserError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")


def _end_sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if not text or text[-1] in ".!?" else text + "."


def build_cot_prompt(
    task_type: str,
    exemplars: Sequence[Mapping],
    query: Mapping | str,
    instruction: str | None = None,
    choices: Sequence[str] | None = None,
) -> str:
    """Renders a few-shot chain-of-thought prompt.

    Args:
        task_type: One of :data:`.parsing.TASK_TYPES`.
        exemplars: Rows with the task's fields (see the module docstring), a ``rationale`` and an answer.
        query: The row to answer, or its main text as a string (not for tasks with two text fields).
        instruction: Replaces :data:`DEFAULT_INSTRUCTIONS` for the task type.
        choices: Multiple choice: options for a query (or exemplar) without its own. Classification: the allowed
            classes, listed in every prompt.

    Returns:
        The prompt, ending with ``A:``.

    Raises:
        UserError: If a field, a rationale, an answer or the classes are missing, or an answer is not an option.
    """
    _check_task(task_type)
    if task_type == CLASSIFICATION and not choices:
        raise UserError("a classification prompt lists its classes: pass choices", field="choices")
    if isinstance(query, str):
        fields = QUERY_FIELDS[task_type]
        if len([f for f in fields if f != "choices"]) != 1:
            raise UserError(f"a {task_type} query has several fields; pass it as a dict")
        query = {fields[0]: query}
    shown = []
    for number, exemplar in enumerate(exemplars, start=1):
        rationale = str(exemplar.get("rationale") or "").strip()
        answer = exemplar_answer(exemplar)
        if not rationale or answer is None:
            raise UserError(f"exemplar {number} needs a rationale and an answer; it has {sorted(exemplar)}")
        view = query_fields(task_type, exemplar, choices if task_type == MULTIPLE_CHOICE else None)
        view["rationale"] = _end_sentence(rationale)
        view["answer_text"] = format_answer(task_type, answer, view.get("choices"))
        shown.append(view)
    return load_template(task_type).render(
        instruction=(instruction or DEFAULT_INSTRUCTIONS[task_type]).strip(),
        exemplars=shown,
        query=query_fields(task_type, query, choices if task_type == MULTIPLE_CHOICE else None),
        classes=list(choices or []),
        answer_phrase=ANSWER_PHRASE,
    )

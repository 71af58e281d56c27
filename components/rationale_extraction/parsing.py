"""Parse chain-of-thought completions into a rationale and an answer.

Pure functions, no I/O. A teacher prompted with few-shot chain-of-thought exemplars writes a rationale, then an
answer phrase ("So the answer is ..."), and then often keeps going: it invents the next exemplar ("Q: ...",
"Premise: ..."), or repeats itself until it hits its token limit. :func:`parse_completion` cuts that runaway
continuation, finds the last answer phrase, and normalises the answer for the task type.

The parser never sees a gold label: the answer comes from the completion alone. :func:`answers_agree` compares a
parsed answer with a label afterwards.

Task types and what :attr:`ParsedCompletion.answer` holds when the status is ``ok``:

- ``multiple_choice``: the text of the chosen option, exactly as it appears in ``choices`` (a letter "(c)" and
  an option text are both mapped to it). Without ``choices`` the parser cannot map anything, so the answer is the
  option text as written after its letter, or the lower-case letter when nothing else is written.
- ``nli``: one of ``entailment``, ``neutral``, ``contradiction`` (yes / no / "it is not possible to tell" and
  other synonyms are mapped).
- ``math``: an arithmetic expression or number as written, cleaned ("(10 * 45)", "450"); it is checked to be
  evaluable by :func:`evaluate_arithmetic`.
- ``classification``: one of ``choices`` (the allowed classes), as spelled there; an answer outside them is
  ``out_of_set``. Without ``choices`` any text is accepted.
- ``extractive_qa``: a span of ``context``, with the context's own spelling; an answer that is not a substring of
  the context is ``out_of_set``. Without a context any text is accepted.
- ``generic``: the text after the answer phrase (a one-line answer without its closing period).
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Task types.
MULTIPLE_CHOICE = "multiple_choice"
NLI = "nli"
MATH = "math"
CLASSIFICATION = "classification"
EXTRACTIVE_QA = "extractive_qa"
GENERIC = "generic"
TASK_TYPES = (MULTIPLE_CHOICE, NLI, MATH, CLASSIFICATION, EXTRACTIVE_QA, GENERIC)

# Parse statuses. ``answer`` is not None exactly when the status is OK.
OK = "ok"  # an answer phrase was found and the answer normalised for the task
NO_ANSWER = "no_answer"  # the completion looks finished but states no answer
TRUNCATED = "truncated"  # the completion (or its answer) stops midway, or loops until it is cut
EMPTY = "empty"  # nothing but whitespace before the runaway continuation
UNPARSEABLE = "unparseable"  # an answer is stated but cannot be read for the task (a variable in an equation)
AMBIGUOUS = "ambiguous"  # the answer names several options ("(a) ocean or (b) sea")
OUT_OF_SET = "out_of_set"  # not one of the choices or classes, or not a span of the context
PARSE_STATUSES = (OK, NO_ANSWER, TRUNCATED, EMPTY, UNPARSEABLE, AMBIGUOUS, OUT_OF_SET)

#: The canonical NLI labels, in the index order e-SNLI and MultiNLI use for their integer labels.
NLI_LABELS = ("entailment", "neutral", "contradiction")

# Longer phrases are tried first, so "it is not possible to tell" wins over any shorter word inside it.
_NLI_SYNONYMS = {
    "entailment": "entailment",
    "entailed": "entailment",
    "entails": "entailment",
    "entail": "entailment",
    "yes": "entailment",
    "true": "entailment",
    "definitely true": "entailment",
    "neutral": "neutral",
    "it is not possible to tell": "neutral",
    "not possible to tell": "neutral",
    "impossible to tell": "neutral",
    "cannot be determined": "neutral",
    "can't be determined": "neutral",
    "cannot tell": "neutral",
    "can't tell": "neutral",
    "undetermined": "neutral",
    "unknown": "neutral",
    "maybe": "neutral",
    "possibly": "neutral",
    "inconclusive": "neutral",
    "contradiction": "contradiction",
    "contradicts": "contradiction",
    "contradictory": "contradiction",
    "contradict": "contradiction",
    "no": "contradiction",
    "false": "contradiction",
    "definitely false": "contradiction",
}
_NLI_PHRASE_RE = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(_NLI_SYNONYMS, key=len, reverse=True)) + r")\b"
)

# The answer phrase: "So the answer is", "The answer is:", "Answer:", "Final answer:", "**Answer:**". A bare
# "The answer must be ..." is left out on purpose: CoT rationales open with it ("The answer must be a place
# where ..."), long before they answer.
_ANSWER_RE = re.compile(
    r"(?:\b(?:so|therefore|thus|hence)\s*,?\s+)?"
    r"(?:\bthe\s+)?(?:\b(?:final|correct|best|right)\s+)?"
    r"\banswer(?:\s+(?:is|would\s+be|will\s+be)\b\s*:?|\s*\**\s*:)\s*\**",
    re.IGNORECASE,
)

# Where an invented next exemplar starts: a field label at the start of a line, after the first line.
_RUNAWAY_RE = re.compile(
    r"\n[ \t]*(?:#+\s*)?(?:Q|A|Question|Premise|Hypothesis|Context|Passage|Text|Sentence|Problem|Input|Example"
    r"|Answer\s+Choices|Options|Choices|Reasonings?|Rationale)\s*\d*\s*:",
    re.IGNORECASE,
)

# The sentence an answer sits in ends at a period followed by a new capitalised sentence, or at a line break.
_SENTENCE_END_RE = re.compile(r"\.\s+(?=[A-Z])|\n")

# An option letter written "(c)", "c)", "c." or as the whole answer.
_LETTER_PAREN_RE = re.compile(r"\(\s*([A-Za-z])\s*\)")
_LETTER_LEAD_RE = re.compile(r"^(?:option\s+|choice\s+)?([A-Za-z])(?:[).:]\s+|[).:]?$)", re.IGNORECASE)

_TERMINAL_CHARS = ".!?)\"'”’]*"


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says.

    Attributes:
        rationale: The text before the answer phrase, without the runaway continuation ('' when there is none).
            When no answer phrase is found it is the whole kept text, so a caller can still look at it.
        answer: The normalised answer (see the module docstring), or None when ``status`` is not ``ok``.
        status: One of :data:`PARSE_STATUSES`.
        raw_answer: The answer text as written after the answer phrase, before normalisation (None when no
            answer phrase was found). Kept for reports on ``out_of_set`` and ``unparseable`` answers.
    """

    rationale: str
    answer: str | None
    status: str
    raw_answer: str | None = None


#: What a chain-of-thought target puts between the rationale and the answer (the teacher prompts' phrase).
COT_ANSWER_PHRASE = "So the answer is"


def answer_from_cot(text: str) -> str:
    """The answer a ``cot`` student wrote after the last answer phrase (the whole text when there is none).

    A distilled ``cot`` student is trained to write its rationale, then "So the answer is" and the label (see
    ``tuning.distillation.local.cot_target``); this takes the label back, without its closing period.
    """
    head, sep, tail = text.rpartition(COT_ANSWER_PHRASE)
    answer = tail if sep else text
    return answer.strip().rstrip(".").strip()


def strip_runaway(text: str) -> str:
    """Returns the completion up to the first invented next exemplar ("Q: ...", "Premise: ...")."""
    match = _RUNAWAY_RE.search(text)
    return (text[: match.start()] if match else text).rstrip()


def parse_completion(
    text: str | None,
    task_type: str,
    choices: Sequence[str] | None = None,
    *,
    context: str | None = None,
) -> ParsedCompletion:
    """Takes the rationale and the answer out of one raw chain-of-thought completion.

    Args:
        text: The raw completion (None is treated as empty).
        task_type: One of :data:`TASK_TYPES`.
        choices: The options of a multiple-choice question, or the allowed classes of a classification task.
        context: The passage of an extractive-QA example; the answer must be a span of it.

    Returns:
        The parsed completion; its status says why there is no answer when there is none.

    Raises:
        ValueError: If ``task_type`` is unknown.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    if not text or not text.strip():
        return ParsedCompletion("", None, EMPTY)
    head = strip_runaway(text).strip()
    if not head:
        return ParsedCompletion("", None, EMPTY)

    matches = list(_ANSWER_RE.finditer(head))
    if not matches:
        return ParsedCompletion(head, None, TRUNCATED if _looks_cut(head) else NO_ANSWER)
    # The last answer phrase is the conclusion; earlier ones are reasoning ("the closest answer is ...").
    match = matches[-1]
    rationale = head[: match.start()].strip()
    tail = head[match.end() :].strip()
    if not tail:
        return ParsedCompletion(rationale, None, TRUNCATED, raw_answer="")
    if task_type == GENERIC:
        # A one-line answer loses the period the exemplars close it with; a longer answer is kept as written.
        raw = tail.removesuffix(".").strip() if "\n" not in tail else tail
    else:
        raw = _first_sentence(tail)
    if not raw:
        return ParsedCompletion(rationale, None, TRUNCATED, raw_answer="")

    if task_type == MULTIPLE_CHOICE:
        answer, status = _normalise_choice(raw, choices)
    elif task_type == NLI:
        answer, status = _normalise_nli(raw)
    elif task_type == MATH:
        answer, status = _normalise_math(raw)
    elif task_type == CLASSIFICATION:
        answer, status = _normalise_class(raw, choices)
    elif task_type == EXTRACTIVE_QA:
        answer, status = _normalise_span(raw, context)
    else:
        answer, status = raw, OK
    return ParsedCompletion(rationale, answer if status == OK else None, status, raw_answer=raw)


def answers_agree(
    task_type: str,
    predicted: str | None,
    gold: object,
    choices: Sequence[str] | None = None,
) -> bool:
    """Says whether a parsed answer matches a label (gold or another teacher's).

    Args:
        task_type: One of :data:`TASK_TYPES`.
        predicted: The parsed answer (None never agrees).
        gold: The label: an option text or letter (multiple choice), a label name or its index in
            :data:`NLI_LABELS` (NLI), an expression or number (math), a class, a span or free text.
        choices: The options of a multiple-choice question, to map a letter or index label to its text.

    Returns:
        True when both say the same thing for the task: the same option, the same NLI label, expressions of
        equal value, or the same text up to case, spacing and end punctuation.
    """
    if predicted is None or gold is None:
        return False
    if task_type == MATH:
        try:
            return math.isclose(
                evaluate_arithmetic(_clean_math(str(predicted))),
                evaluate_arithmetic(_clean_math(str(gold))),
                rel_tol=1e-6,
                abs_tol=1e-6,
            )
        except ValueError:
            return _norm(str(predicted)) == _norm(str(gold))
    if task_type == NLI:
        predicted_label = _nli_label(predicted)
        gold_label = _nli_label(gold)
        return predicted_label is not None and predicted_label == gold_label
    if task_type == MULTIPLE_CHOICE and choices:
        return _choice_index(predicted, choices) is not None and _choice_index(
            predicted, choices
        ) == _choice_index(gold, choices)
    return _norm(str(predicted)) == _norm(str(gold))


def answer_key(task_type: str, answer: str) -> str:
    """Returns a key under which equivalent answers vote together (self-consistency).

    Math answers vote by value, so "(10 * 45)" and "450" are one vote; other answers by normalised text.
    """
    if task_type == MATH:
        try:
            return repr(round(evaluate_arithmetic(_clean_math(answer)), 6))
        except ValueError:
            return _norm(answer)
    return _norm(answer)


# --- safe arithmetic -------------------------------------------------------------------------------------------

_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}
_UNARY_OPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPRESSION_CHARS = 256
_MAX_EXPONENT = 64


def evaluate_arithmetic(expression: str) -> float:
    """Evaluates +, -, *, /, //, ** and parentheses over numbers, and nothing else (no names, no calls).

    Used instead of ``eval``: completions are untrusted text.

    Args:
        expression: An expression such as ``( 10.0 * 45.0 )``.

    Returns:
        Its value.

    Raises:
        ValueError: If it is not such an expression, is too long, divides by zero or raises to a huge power.
    """
    if len(expression) > _MAX_EXPRESSION_CHARS:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from exc
    return float(_evaluate_node(tree.body))


def _evaluate_node(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_evaluate_node(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left, right = _evaluate_node(node.left), _evaluate_node(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > _MAX_EXPONENT or abs(left) > 1e6):
            raise ValueError("power too large")
        try:
            return _BINARY_OPS[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as exc:
            raise ValueError(str(exc)) from exc
    raise ValueError(f"not allowed in an arithmetic expression: {type(node).__name__}")


# --- helpers ---------------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation or quotes: for comparing answer texts."""
    text = re.sub(r"\s+", " ", text.lower()).strip()
    return text.strip(" .,;:!?\"'`*“”‘’")


def _first_sentence(tail: str) -> str:
    """The answer's own sentence, without its closing period and without what the model adds after it."""
    match = _SENTENCE_END_RE.search(tail)
    sentence = tail[: match.start()] if match else tail
    return sentence.strip().rstrip(".").strip()


def _looks_cut(text: str) -> bool:
    """Whether a completion without an answer was cut by the token limit rather than finished.

    It was when it stops mid-sentence, or when its last sentences repeat: a model stuck in a loop runs until it
    is cut, whatever punctuation it happens to stop on.
    """
    if text.rstrip()[-1] not in _TERMINAL_CHARS:
        return True
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    return len(sentences) >= 4 and len(set(sentences[-3:])) == 1


def _choice_index(value: object, choices: Sequence[str]) -> int | None:
    """The index of the option a label or answer names: an index, a letter, or the option's text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(choices) else None
    text = str(value).strip()
    normalised = [_norm(c) for c in choices]
    if _norm(text) in normalised:
        return normalised.index(_norm(text))
    letter = re.fullmatch(r"\(?([A-Za-z])\)?", text)
    if letter and ord(letter.group(1).lower()) - ord("a") < len(choices):
        return ord(letter.group(1).lower()) - ord("a")
    return None


def _match_text(text: str, options: Sequence[str], *, fuzzy: bool = True) -> tuple[int | None, str]:
    """Finds the option a free-text answer names: exact, then contained whole, then (if fuzzy) a close spelling.

    Returns:
        ``(index, status)``: the index with OK, or None with AMBIGUOUS or OUT_OF_SET.
    """
    normalised = [_norm(o) for o in options]
    target = _norm(text)
    if target in normalised:
        return normalised.index(target), OK
    # "(the) wooded area, because ..." names one option inside a longer phrase; prefer the longest option named,
    # and drop shorter options that only appear inside it ("store" inside "grocery store").
    found = [i for i, o in enumerate(normalised) if o and re.search(r"(?<!\w)" + re.escape(o) + r"(?!\w)", target)]
    found = [i for i in found if not any(j != i and normalised[i] in normalised[j] for j in found)]
    distinct = {normalised[i] for i in found}
    if len(distinct) == 1:
        return found[0], OK
    if len(distinct) > 1:
        return None, AMBIGUOUS
    if not fuzzy:
        return None, OUT_OF_SET
    # Teachers misspell or re-inflect options ("skyscraper" for "skyscaper"); accept one clearly closest option.
    scores = sorted(
        ((difflib.SequenceMatcher(None, target, o).ratio(), i) for i, o in enumerate(normalised)), reverse=True
    )
    if scores and scores[0][0] >= 0.85 and (len(scores) == 1 or scores[1][0] < scores[0][0] - 0.05):
        return scores[0][1], OK
    return None, OUT_OF_SET


def _normalise_choice(raw: str, choices: Sequence[str] | None) -> tuple[str | None, str]:
    letters = [m.group(1).lower() for m in _LETTER_PAREN_RE.finditer(raw)]
    if choices:
        # "(s)" in "area(s)" is not an option letter when there is no option (s).
        letters = [x for x in letters if ord(x) - ord("a") < len(choices)]
    text = _LETTER_PAREN_RE.sub(" ", raw)
    if not letters:
        lead = _LETTER_LEAD_RE.match(raw.strip())
        if lead:
            letters = [lead.group(1).lower()]
            text = raw.strip()[lead.end() :]
    text = re.sub(r"\s+", " ", text).strip()
    if len(set(letters)) > 1:
        return None, AMBIGUOUS
    if not choices:
        if text.strip(" .,;:"):
            return text.strip(" .,;:"), OK
        return (letters[0], OK) if letters else (None, UNPARSEABLE)
    if letters:
        index = ord(letters[0]) - ord("a")
        if not 0 <= index < len(choices):
            return None, OUT_OF_SET
        if text:
            # The letter is what the teacher picked; its text is a copy that can be misspelled. Only when the
            # text is exactly another option does the completion contradict itself.
            others = [i for i, c in enumerate(choices) if _norm(c) == _norm(text)]
            if others and index not in others:
                return None, AMBIGUOUS
        return choices[index], OK
    if not text:
        return None, UNPARSEABLE
    index, status = _match_text(text, choices)
    return (choices[index], OK) if index is not None else (None, status)


def _nli_label(value: object) -> str | None:
    """The canonical NLI label of an index or a label text (exact synonyms only)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return NLI_LABELS[value] if 0 <= value < len(NLI_LABELS) else None
    text = _norm(str(value))
    if text.isdigit():
        return _nli_label(int(text))
    return _NLI_SYNONYMS.get(text)


def _normalise_nli(raw: str) -> tuple[str | None, str]:
    text = _norm(_LETTER_PAREN_RE.sub(" ", raw))
    if text in _NLI_SYNONYMS:
        return _NLI_SYNONYMS[text], OK
    if re.search(r"\bnot\s+(?:an?\s+)?(?:entail|neutral|contradict)", text):
        # "not entailment" names what the answer is not, which leaves two labels.
        return None, AMBIGUOUS
    labels = {_NLI_SYNONYMS[m.group(1)] for m in _NLI_PHRASE_RE.finditer(text)}
    if len(labels) == 1:
        return labels.pop(), OK
    return None, AMBIGUOUS if labels else UNPARSEABLE


_UNICODE_MATH = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-", "—": "-", "^": "**"})
_ARITH_PREFIX_RE = re.compile(r"[\d\s.+\-*/()]+")


def _clean_math(text: str) -> str:
    """Writes an answer as a Python arithmetic expression: plain operators, no currency or thousands commas."""
    text = text.translate(_UNICODE_MATH).replace("$", "")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    return text.strip().rstrip(".").strip()


def _normalise_math(raw: str) -> tuple[str | None, str]:
    text = _clean_math(raw)
    match = _ARITH_PREFIX_RE.match(text)
    expression = match.group().strip() if match else ""
    rest = text[match.end() :].strip() if match else text
    if not re.search(r"\d", expression):
        return None, UNPARSEABLE
    unclosed = expression.count("(") - expression.count(")")
    if unclosed > 0 and not rest:
        return None, TRUNCATED
    if rest:
        # "(6 / 2) and (4 / 2)" or "(3, 4)" give several answers; "450 seeds" or "= 450" give one.
        if re.match(r"(?:and|or|,)\s*[\d(]", rest):
            return None, AMBIGUOUS
        if unclosed > 0 or re.match(r"[A-Za-z_]\w*\s*[-+*/=)]", rest) or re.match(r"[A-Za-z]\s*$", rest):
            return None, UNPARSEABLE  # a variable inside the expression: "(26 + x)", "(some - 5)"
    expression = expression.rstrip(".").strip()
    try:
        evaluate_arithmetic(expression)
    except ValueError:
        return None, UNPARSEABLE
    return expression, OK


def _normalise_class(raw: str, choices: Sequence[str] | None) -> tuple[str | None, str]:
    text = re.sub(r"\s+", " ", _LETTER_PAREN_RE.sub(" ", raw)).strip()
    if not choices:
        return (text, OK) if text else (None, UNPARSEABLE)
    # Class names are the user's: spell-fixing could turn an invented label into an allowed one, so only exact or
    # contained matches count, and anything else is flagged out of set.
    index, status = _match_text(text, choices, fuzzy=False)
    return (choices[index], OK) if index is not None else (None, status)


def _normalise_span(raw: str, context: str | None) -> tuple[str | None, str]:
    text = raw.strip().strip("\"'“”‘’`").strip()
    if not text:
        return None, UNPARSEABLE
    if context is None:
        return text, OK
    if text in context:
        return text, OK
    start = context.lower().find(text.lower())
    if start >= 0:
        # The context's own spelling, so the answer is a true substring of it.
        return context[start : start + len(text)], OK
    return None, OUT_OF_SET

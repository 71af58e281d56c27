"""Converters between the preference formats: human preferences, RLHF prompts and Gemini preference data.

Input rows (one JSON object per line; checked by :mod:`.checks` / :func:`.validate.validate_dataset` with method
``preference`` before they get here):

- human preference: ``input_text`` or ``messages`` (``role``/``author`` user/assistant, ending with the user),
  ``candidate_0``, ``candidate_1``, ``choice`` (0 or 1, the preferred candidate);
- prompt: ``input_text`` or ``messages``;
- Gemini preference: ``systemInstruction``?, ``contents`` (text only, ending with a user turn), ``completions``:
  ``[{"score": 1, "completion": {"role": "model", "parts": [{"text"}]}}, {"score": 0, ...}]``.

Output shapes:

- :class:`PreferencePair` (one internal shape for both preference formats) and :class:`PromptRow`;
- :func:`human_to_gemini` / :func:`gemini_to_human`: one row of the other format (lossless for text);
- :func:`to_gemini_sft`: the preferred answer as a Gemini SFT row (the warm start before ``PREFERENCE_TUNING``);
- :func:`to_trl_pair` / :func:`to_trl_prompt`: TRL's ``prompt``/``chosen``/``rejected`` and ``prompt`` columns,
  the prompt rendered by :func:`~tunekit.components.model_clients.base.render_prompt` as every other open-model step renders it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl, write_jsonl
from tunekit.components.data_validation import checks, formats
from tunekit.components.model_clients.base import Turn, render_prompt

HUMAN_PREFERENCE = checks.HUMAN_PREFERENCE
PROMPT = checks.PROMPT
GEMINI_PREFERENCE = checks.GEMINI_PREFERENCE


@dataclass
class PromptRow:
    """A prompt: optional system text and alternating turns ending with the user's.

    Attributes:
        turns: ``user``/``model`` turns; the last is the user's.
        system: The system instruction (Gemini format only), if any.
        line: The 1-based source line.
    """

    turns: list[Turn]
    system: str | None = None
    line: int = 0

    @property
    def text(self) -> str:
        """The prompt as an open model sees it (:func:`~tunekit.components.model_clients.base.render_prompt`)."""
        return render_prompt(self.system, self.turns)


@dataclass
class PreferencePair(PromptRow):
    """A prompt with a preferred (``chosen``) and a dispreferred (``rejected``) answer."""

    chosen: str = ""
    rejected: str = ""
    extra: dict = field(default_factory=dict)


def _fail(message: str, line: int, name: str) -> UserError:
    return UserError(f"{message}; run `tunekit validate` on the file for every finding", line=line, field=name)


def _messages_turns(messages: object, line: int) -> list[Turn]:
    if not isinstance(messages, list) or not messages:
        raise _fail("'messages' must be a non-empty list", line, "messages")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail("each message must be an object", line, f"messages[{index}]")
        role = formats.ROLE_ALIASES.get(str(message.get("role", message.get("author", ""))).lower())
        text = message.get("content")
        if role not in ("user", "model") or not isinstance(text, str):
            raise _fail("each message needs role user/assistant and a string content", line, f"messages[{index}]")
        turns.append(Turn(role, text))
    if turns[-1].role != "user":
        raise _fail("the prompt's last message must be the user's", line, "messages")
    return turns


def _prompt_of(obj: dict, line: int) -> list[Turn]:
    if "input_text" in obj:
        text = obj["input_text"]
        if not isinstance(text, str) or not text.strip():
            raise _fail("'input_text' must be a non-empty string", line, "input_text")
        return [Turn("user", text)]
    if "messages" in obj:
        return _messages_turns(obj["messages"], line)
    raise _fail("a prompt needs 'input_text' or 'messages'", line, "input_text")


def _parts_text(content: object, line: int, name: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) and "text" in p for p in parts):
        raise _fail("expected text parts", line, name)
    return "".join(str(p["text"]) for p in parts)


def _gemini_prompt(obj: dict, line: int) -> tuple[str | None, list[Turn]]:
    system_obj = obj.get("systemInstruction", obj.get("system_instruction"))
    system = _parts_text(system_obj, line, "systemInstruction") if system_obj is not None else None
    contents = obj.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _fail("'contents' must be a non-empty list", line, "contents")
    turns = []
    for index, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            raise _fail("each turn's role must be user or model", line, f"contents[{index}].role")
        turns.append(Turn(role, _parts_text(content, line, f"contents[{index}]")))
    if turns[-1].role != "user":
        raise _fail("the prompt's last turn must be the user's", line, "contents")
    return system, turns


def parse_pair(obj: dict, line: int = 0) -> PreferencePair:
    """One human-preference or Gemini-preference row as a :class:`PreferencePair`.

    Raises:
        UserError: The row is in neither format (naming the line and field).
    """
    fmt = checks.detect(obj, "preference")
    if fmt == HUMAN_PREFERENCE:
        turns = _prompt_of(obj, line)
        first, second, choice = obj.get("candidate_0"), obj.get("candidate_1"), obj.get("choice")
        if not isinstance(first, str) or not isinstance(second, str):
            raise _fail("'candidate_0' and 'candidate_1' must be strings", line, "candidate_0")
        if type(choice) is not int or choice not in (0, 1):
            raise _fail("'choice' must be 0 or 1", line, "choice")
        chosen, rejected = (second, first) if choice else (first, second)
        return PreferencePair(turns=turns, line=line, chosen=chosen, rejected=rejected)
    if fmt == GEMINI_PREFERENCE:
        system, turns = _gemini_prompt(obj, line)
        completions = obj.get("completions")
        if not isinstance(completions, list) or len(completions) != 2:
            raise _fail("'completions' must hold two scored completions", line, "completions")
        by_score = {}
        for index, item in enumerate(completions):
            score = item.get("score") if isinstance(item, dict) else None
            if score not in (0, 1):
                raise _fail("a completion's score must be 1 or 0", line, f"completions[{index}].score")
            by_score[int(score)] = _parts_text(item.get("completion"), line, f"completions[{index}].completion")
        if set(by_score) != {0, 1}:
            raise _fail("one completion must score 1 and the other 0", line, "completions")
        return PreferencePair(turns=turns, system=system, line=line, chosen=by_score[1], rejected=by_score[0])
    raise _fail("not a preference row (no candidates, choice or completions)", line, "candidate_0")


def parse_prompt(obj: dict, line: int = 0) -> PromptRow:
    """The prompt of any preference-method row (prompt, human preference or Gemini preference)."""
    if checks.detect(obj, "preference") == GEMINI_PREFERENCE:
        system, turns = _gemini_prompt(obj, line)
        return PromptRow(turns=turns, system=system, line=line)
    return PromptRow(turns=_prompt_of(obj, line), line=line)


def read_pairs(path: str) -> list[PreferencePair]:
    """Every row of a human- or Gemini-preference JSON Lines file.

    Raises:
        UserError: A row is not a preference row (file, line and field named).
    """
    return _parse_file(path, parse_pair)


def read_prompts(path: str) -> list[PromptRow]:
    """The prompts of a prompt, human-preference or Gemini-preference JSON Lines file."""
    return _parse_file(path, parse_prompt)


def _parse_file(path: str, parse):
    """``parse(obj, line)`` of every row of ``path``; a row's error names the file, line and field."""
    parsed = []
    for line, obj in iter_jsonl(path):
        try:
            parsed.append(parse(obj, line))
        except UserError as exc:
            raise UserError(exc.message, path=path, line=line, field=exc.field) from None
    return parsed


def gemini_contents(turns: Iterable[Turn]) -> list[dict]:
    """Turns as Gemini ``contents`` (text parts)."""
    return [{"role": t.role, "parts": [{"text": t.text}]} for t in turns]


def with_system_instruction(record: dict, system: str | None) -> dict:
    """``record`` with a ``systemInstruction`` first, when there is one."""
    return {"systemInstruction": {"role": "system", "parts": [{"text": system}]}, **record} if system else record


def pair_to_gemini(pair: PreferencePair) -> dict:
    """A pair in the Gemini preference format (preferred answer scored 1, first)."""
    return with_system_instruction(
        {
            "contents": gemini_contents(pair.turns),
            "completions": [
                {"score": 1, "completion": {"role": "model", "parts": [{"text": pair.chosen}]}},
                {"score": 0, "completion": {"role": "model", "parts": [{"text": pair.rejected}]}},
            ],
        },
        pair.system,
    )


def pair_to_human(pair: PreferencePair, choice: int = 0) -> dict:
    """A pair in the human-preference format; ``choice`` says where the preferred answer goes.

    Raises:
        UserError: The pair has a system instruction, which the human-preference format cannot carry.
    """
    if pair.system:
        raise UserError(
            "the human-preference format has no system instruction; keep this row in the Gemini format or fold "
            "the instruction into the first user turn",
            line=pair.line,
            field="systemInstruction",
        )
    if len(pair.turns) == 1:
        row: dict = {"input_text": pair.turns[0].text}
    else:
        row = {
            "messages": [
                {"role": "user" if t.role == "user" else "assistant", "content": t.text} for t in pair.turns
            ]
        }
    candidates = [pair.rejected, pair.chosen] if choice else [pair.chosen, pair.rejected]
    row.update(candidate_0=candidates[0], candidate_1=candidates[1], choice=choice)
    return row


def human_to_gemini(row: dict, line: int = 0) -> dict:
    """One human-preference row in the Gemini preference format."""
    return pair_to_gemini(parse_pair(row, line))


def gemini_to_human(row: dict, line: int = 0) -> dict:
    """One Gemini preference row in the human-preference format (preferred answer as ``candidate_0``)."""
    return pair_to_human(parse_pair(row, line))


def to_gemini_sft(pair: PreferencePair) -> dict:
    """The prompt and its preferred answer as a Gemini SFT row (``contents`` ending with the model's turn)."""
    return with_system_instruction(
        {"contents": [*gemini_contents(pair.turns), *gemini_contents([Turn("model", pair.chosen)])]}, pair.system
    )


def to_prompt_row(prompt: PromptRow) -> dict:
    """A prompt as an RLHF prompt-dataset row (``input_text`` or ``messages``).

    Raises:
        UserError: The prompt has a system instruction, which the prompt format cannot carry.
    """
    if prompt.system:
        raise UserError(
            "the RLHF prompt format has no system instruction", line=prompt.line, field="systemInstruction"
        )
    if len(prompt.turns) == 1:
        return {"input_text": prompt.turns[0].text}
    return {
        "messages": [
            {"role": "user" if t.role == "user" else "assistant", "content": t.text} for t in prompt.turns
        ]
    }


def to_trl_pair(pair: PreferencePair) -> dict:
    """TRL's explicit-prompt preference row: ``prompt``, ``chosen``, ``rejected`` (plain text)."""
    return {"prompt": pair.text, "chosen": pair.chosen, "rejected": pair.rejected}


def to_trl_prompt(prompt: PromptRow) -> dict:
    """TRL's prompt-only row: ``prompt`` (plain text)."""
    return {"prompt": prompt.text}


def convert_file(input_path: str, output_path: str, to: str) -> int:
    """Converts a preference file: ``to`` is ``gemini_preference``, ``human_preference``, ``prompt`` or ``sft``.

    Returns:
        The number of rows written (every input row gives exactly one).

    Raises:
        UserError: An unknown target, or a row that cannot be converted (file, line, field).
    """
    targets = {
        GEMINI_PREFERENCE: lambda p: pair_to_gemini(p),
        HUMAN_PREFERENCE: lambda p: pair_to_human(p),
        "sft": to_gemini_sft,
    }
    if to not in (*targets, PROMPT):
        raise UserError(f"unknown target format '{to}'; use one of {', '.join([*targets, PROMPT])}", field="to")
    rows = read_prompts(input_path) if to == PROMPT else read_pairs(input_path)
    convert = to_prompt_row if to == PROMPT else targets[to]
    out = []
    for row in rows:
        try:
            out.append(convert(row))
        except UserError as exc:
            raise UserError(exc.message, path=input_path, line=row.line, field=exc.field) from None
    return write_jsonl(output_path, out)

"""The prompt dataset of reinforcement tuning: its rows, their references, in Vertex's reinforcement-tuning format.

A row is a prompt and the references its rewards compare with, in one of two layouts:

- ``{"prompt": "...", "references": {"answer": "42"}}`` (optionally ``"system"``: a system instruction);
- Vertex's own (google-genai 2.34 ``types.ReinforcementTuningExample``): ``{"contents": [...], "references":
  {...}, "systemInstruction"?: {...}}``, ``contents`` ending with the user's turn.

Every row comes out in Vertex's layout (what ``REINFORCEMENT_TUNING`` reads and what the local trainer renders).
References are a map of strings on Vertex (``ReinforcementTuningExample.references: dict[str, str]``): a number
is written as its JSON text; a list, object, boolean or null is refused rather than changed. Every reference key
the rewards need (``required``) must be in every row, and any other key of a row is refused: nothing given is
silently dropped.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl

PROMPT_KEYS = ("prompt", "system", "references")
GEMINI_KEYS = ("contents", "systemInstruction", "references")


def _text_parts(content: Any, path: str, line: int, field: str) -> str:
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        raise UserError("expected a content with a 'parts' list", path=path, line=line, field=field)
    texts = []
    for index, part in enumerate(content["parts"]):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise UserError(
                "only text parts are supported ({'text': ...})",
                path=path,
                line=line,
                field=f"{field}.parts[{index}]",
            )
        texts.append(part["text"])
    return "".join(texts)


def _references(value: Any, path: str, line: int) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError("'references' must be an object of name: value", path=path, line=line, field="references")
    out = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[str(key)] = item
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out[str(key)] = json.dumps(item)
        else:
            raise UserError(
                f"a reference is a string or a number (Vertex's references are a map of strings), not "
                f"{type(item).__name__}",
                path=path,
                line=line,
                field=f"references.{key}",
            )
    return out


def parse_row(obj: dict, path: str, line: int) -> dict:
    """One row in Vertex's reinforcement-tuning layout (see the module's docstring)."""
    layout = GEMINI_KEYS if "contents" in obj else PROMPT_KEYS
    for key in obj:
        if key not in layout:
            close = difflib.get_close_matches(key, layout, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(
                f"unknown field; {hint}a row has {', '.join(layout)} (put values the rewards compare with under "
                "references)",
                path=path,
                line=line,
                field=key,
            )
    row: dict[str, Any] = {}
    if "contents" in obj:
        contents = obj["contents"]
        if not isinstance(contents, list) or not contents:
            raise UserError("'contents' must be a non-empty list of turns", path=path, line=line, field="contents")
        for index, turn in enumerate(contents):
            _text_parts(turn, path, line, f"contents[{index}]")
            if turn.get("role") not in ("user", "model"):
                raise UserError(
                    "a turn's role is 'user' or 'model'", path=path, line=line, field=f"contents[{index}].role"
                )
        if contents[-1].get("role") != "user":
            raise UserError(
                "the prompt must end with the user's turn (the model answers it)",
                path=path,
                line=line,
                field=f"contents[{len(contents) - 1}].role",
            )
        if "systemInstruction" in obj:
            _text_parts(obj["systemInstruction"], path, line, "systemInstruction")
            row["systemInstruction"] = obj["systemInstruction"]
        row["contents"] = contents
    else:
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise UserError(
                "expected a non-empty 'prompt' string (or Vertex's 'contents')",
                path=path,
                line=line,
                field="prompt",
            )
        system = obj.get("system")
        if system is not None and not isinstance(system, str):
            raise UserError("'system' must be a string", path=path, line=line, field="system")
        if system:
            row["systemInstruction"] = {"role": "system", "parts": [{"text": system}]}
        row["contents"] = [{"role": "user", "parts": [{"text": prompt}]}]
    row["references"] = _references(obj.get("references"), path, line)
    return row


def read_prompt_rows(path: str, required: Iterable[str] = ()) -> list[dict]:
    """Every row of a prompt dataset, checked, in Vertex's layout.

    Args:
        path: A local JSON Lines file.
        required: The reference keys the rewards read (every row must have each).

    Raises:
        UserError: The first bad row: file, line and field, and what to do.
    """
    needed = list(required)
    rows = []
    for line, obj in iter_jsonl(path):
        row = parse_row(obj, path, line)
        missing = [key for key in needed if key not in row["references"]]
        if missing:
            raise UserError(
                f"the rewards compare with references.{missing[0]}, which this row lacks; add it to every row "
                "(or change the reward file)",
                path=path,
                line=line,
                field=f"references.{missing[0]}",
            )
        row["line"] = line
        rows.append(row)
    if not rows:
        raise UserError("the prompt dataset has no rows", path=path)
    return rows


def vertex_row(row: dict) -> dict:
    """A checked row as Vertex reads it (without tunekit's ``line``)."""
    return {key: value for key, value in row.items() if key != "line"}

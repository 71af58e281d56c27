"""Dataset formats users bring, and their conversion to one internal shape.

Formats (see SPEC "Dataset formats users bring"):

- ``text_pair``: ``{"input_text": str, "output_text": str}`` (``output_text`` optional for distillation).
- ``chat``: ``{"messages": [{"role": "system"|"user"|"model", "content": str}, ...]}``.
- ``gemini``: ``{"systemInstruction"?: {"parts": [{"text": str}]}, "contents": [{"role": "user"|"model",
  "parts": [{"text": str} | {"fileData": {"mimeType": str, "fileUri": "gs://..."}}]}]}``.

Every supervised example becomes an :class:`Example` (an optional system text and alternating turns), from which
the Gemini tuning format (Vertex) and prompt/completion pairs (local training) are produced. Files are read with
the one JSON Lines reader (:mod:`tunekit.components.common.jsonl`); prompts are rendered with
:func:`tunekit.components.model_clients.base.render_prompt`, the layout every open-model step uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl
from tunekit.components.model_clients.base import Turn, render_prompt

TEXT_PAIR = "text_pair"
CHAT = "chat"
GEMINI = "gemini"
SUPERVISED_FORMATS = (TEXT_PAIR, CHAT, GEMINI)

#: Role names accepted in chat data and what they mean in Gemini's vocabulary.
ROLE_ALIASES = {"user": "user", "model": "model", "assistant": "model", "system": "system"}


@dataclass
class Example:
    """A supervised example in one internal shape.

    Attributes:
        turns: Alternating user/model turns; a supervised example ends with a model turn.
        system: The system instruction, if any.
        line: The 1-based line of the source file it came from.
    """

    turns: list[Turn]
    system: str | None = None
    line: int = 0

    @property
    def prompt_turns(self) -> list[Turn]:
        """All turns before the final model turn."""
        return self.turns[:-1] if self.turns and self.turns[-1].role == "model" else list(self.turns)

    @property
    def target(self) -> str | None:
        """The final model turn's text, if the example ends with one."""
        return self.turns[-1].text if self.turns and self.turns[-1].role == "model" else None


def detect_format(obj: dict) -> str | None:
    """Returns the supervised format ``obj`` is in, or None when no known format fits."""
    if "contents" in obj:
        return GEMINI
    if "messages" in obj:
        return CHAT
    if "input_text" in obj:
        return TEXT_PAIR
    return None


def _text(value: object, *, path: str, line: int, name: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"expected a string, found {type(value).__name__}", path=path, line=line, field=name)
    return value


def to_example(obj: dict, fmt: str, *, path: str = "", line: int = 0) -> Example:
    """Converts one row in format ``fmt`` to an :class:`Example`.

    Raises:
        UserError: A required field is missing or has the wrong type.
    """
    if fmt == TEXT_PAIR:
        if "input_text" not in obj:
            raise UserError("missing; every row needs 'input_text'", path=path, line=line, field="input_text")
        turns = [Turn("user", _text(obj["input_text"], path=path, line=line, name="input_text"))]
        if obj.get("output_text") is not None:
            turns.append(Turn("model", _text(obj["output_text"], path=path, line=line, name="output_text")))
        return Example(turns=turns, line=line)
    if fmt == CHAT:
        messages = obj.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UserError("expected a non-empty list of messages", path=path, line=line, field="messages")
        system = None
        turns = []
        for index, message in enumerate(messages):
            name = f"messages[{index}]"
            if not isinstance(message, dict):
                raise UserError("expected an object with 'role' and 'content'", path=path, line=line, field=name)
            role = ROLE_ALIASES.get(str(message.get("role", message.get("author", ""))).lower())
            if role is None:
                raise UserError(
                    "role must be one of system, user, model", path=path, line=line, field=f"{name}.role"
                )
            content = _text(message.get("content"), path=path, line=line, name=f"{name}.content")
            if role == "system":
                system = content if system is None else system + "\n" + content
            else:
                turns.append(Turn(role, content))
        return Example(turns=turns, system=system, line=line)
    if fmt == GEMINI:
        contents = obj.get("contents")
        if not isinstance(contents, list) or not contents:
            raise UserError("expected a non-empty list of turns", path=path, line=line, field="contents")
        system = None
        instruction = obj.get("systemInstruction", obj.get("system_instruction"))
        if instruction is not None:
            parts = instruction.get("parts", []) if isinstance(instruction, dict) else None
            if not isinstance(parts, list):
                raise UserError("expected {'parts': [...]}", path=path, line=line, field="systemInstruction")
            system = "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
        turns = []
        for index, content in enumerate(contents):
            name = f"contents[{index}]"
            if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
                raise UserError("expected {'role': ..., 'parts': [...]}", path=path, line=line, field=name)
            role = ROLE_ALIASES.get(str(content.get("role", "")).lower())
            if role not in ("user", "model"):
                raise UserError("role must be 'user' or 'model'", path=path, line=line, field=f"{name}.role")
            texts, files = [], []
            for part in content["parts"]:
                if isinstance(part, dict) and "text" in part:
                    texts.append(_text(part["text"], path=path, line=line, name=f"{name}.parts.text"))
                elif isinstance(part, dict) and "fileData" in part:
                    files.append(part["fileData"])
                else:
                    raise UserError(
                        "each part needs 'text' or 'fileData'", path=path, line=line, field=f"{name}.parts"
                    )
            turns.append(Turn(role, "".join(texts), files))
        return Example(turns=turns, system=system, line=line)
    raise UserError(f"unknown format '{fmt}'; use one of {', '.join(SUPERVISED_FORMATS)}", path=path)


def load_examples(path: str, fmt: str | None = None) -> tuple[str, list[Example]]:
    """Reads a whole supervised dataset.

    Args:
        path: A local JSON Lines file.
        fmt: The format, or None to detect it from the first row.

    Returns:
        The format and the examples, in file order.

    Raises:
        UserError: The file is unreadable, empty, of an unknown format, or a row is malformed.
    """
    examples: list[Example] = []
    for line, obj in iter_jsonl(path):
        if fmt is None:
            fmt = detect_format(obj)
            if fmt is None:
                raise UserError(
                    "unknown format: expected 'input_text'/'output_text', 'messages' or 'contents' "
                    f"(found fields: {', '.join(sorted(obj)) or 'none'})",
                    path=path,
                    line=line,
                )
        examples.append(to_example(obj, fmt, path=path, line=line))
    if not examples:
        raise UserError("the dataset is empty; it needs at least one example", path=path)
    return fmt or TEXT_PAIR, examples


def to_gemini(example: Example) -> dict:
    """Renders an example in the Gemini tuning format (``contents`` with ``systemInstruction``)."""
    record: dict = {}
    if example.system:
        record["systemInstruction"] = {"role": "system", "parts": [{"text": example.system}]}
    contents = []
    for turn in example.turns:
        parts: list[dict] = [{"fileData": f} for f in turn.files]
        if turn.text or not parts:
            parts.append({"text": turn.text})
        contents.append({"role": turn.role, "parts": parts})
    record["contents"] = contents
    return record


def to_prompt_completion(example: Example) -> dict:
    """Renders an example as ``{"prompt": str, "completion": str}`` for local training and evaluation."""
    return {"prompt": render_prompt(example.system, example.prompt_turns), "completion": example.target or ""}

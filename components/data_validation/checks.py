"""Row checks, one per dataset format; each reports findings and returns what the dataset checks need.

Input columns per format (one JSON object per line):

- ``text_pair``: ``input_text`` (str), ``output_text`` (str; optional for distillation).
- ``chat``: ``messages``: ``[{"role"|"author": "system"|"user"|"model"|"assistant", "content": str}]``.
- ``gemini``: ``systemInstruction``: ``{"role"?, "parts": [{"text"}]}`` (optional), ``contents``:
  ``[{"role": "user"|"model", "parts": [{"text": str} | {"fileData": {"mimeType", "fileUri": "gs://..."}}]}]``.
- ``human_preference``: ``input_text`` or ``messages`` (user/assistant, ending with user), ``candidate_0``,
  ``candidate_1`` (str), ``choice`` (0 or 1).
- ``prompt``: the RLHF prompt dataset, ``input_text`` or ``messages`` only.
- ``gemini_preference``: ``systemInstruction`` (optional), ``contents`` (text only, ending with a user turn),
  ``completions``: ``[{"score": 1, "completion": {"role": "model", "parts": [...]}}, {"score": 0, ...}]``.

Output of every check (:data:`Row`): ``(prompt, output, input_tokens, output_tokens, files, input_key,
output_key)``, or None when the row has an error and is left out of the dataset checks. ``prompt`` is the
instruction-bearing text (system text and user turns), ``output`` the target text (None when unlabelled),
``input_key``/``output_key`` what duplicates are detected on.
"""

from __future__ import annotations

from typing import TypeGuard

from tunekit.components.data_validation import formats
from tunekit.components.data_validation.findings import Findings
from tunekit.components.data_validation.limits import TOKENS_PER_FILE_PART, estimate_tokens
from tunekit.components.data_validation.reader import json_type

TEXT_PAIR = formats.TEXT_PAIR
CHAT = formats.CHAT
GEMINI = formats.GEMINI
HUMAN_PREFERENCE = "human_preference"
PROMPT = "prompt"
GEMINI_PREFERENCE = "gemini_preference"
ALL_FORMATS = (TEXT_PAIR, CHAT, GEMINI, HUMAN_PREFERENCE, PROMPT, GEMINI_PREFERENCE)

#: Formats each method accepts (the first is assumed when a row fits none).
FORMATS_BY_METHOD = {
    "supervised": (TEXT_PAIR, CHAT, GEMINI),
    "distillation": (TEXT_PAIR, GEMINI),
    "preference": (HUMAN_PREFERENCE, PROMPT, GEMINI_PREFERENCE),
}

Row = tuple  # (prompt, output, input_tokens, output_tokens, files, input_key, output_key)

_SEP = "\x1f"  # joins the parts of a duplicate key; never appears in real text
_TEXT_PAIR_FIELDS = frozenset(("input_text", "output_text"))
_CHAT_FIELDS = frozenset(("messages",))
_GEMINI_FIELDS = frozenset(("contents", "systemInstruction", "system_instruction"))
_CONTENT_FIELDS = frozenset(("role", "parts"))
_PART_FIELDS = frozenset(("text", "fileData", "file_data"))
_MESSAGE_FIELDS = frozenset(("role", "author", "content"))
_HUMAN_PREFERENCE_FIELDS = frozenset(("input_text", "messages", "candidate_0", "candidate_1", "choice"))
_PROMPT_FIELDS = frozenset(("input_text", "messages"))
_GEMINI_PREFERENCE_FIELDS = frozenset(("contents", "systemInstruction", "system_instruction", "completions"))
_USER_MODEL = {"user": "user", "model": "model"}
_CHAT_ROLES = {"user": "user", "model": "model", "assistant": "model", "system": "system"}


def detect(obj: dict, method: str) -> str | None:
    """The format of one row for ``method``, or None when no known format fits."""
    if method == "preference":
        if "completions" in obj or "contents" in obj:
            return GEMINI_PREFERENCE
        if "candidate_0" in obj or "candidate_1" in obj or "choice" in obj:
            return HUMAN_PREFERENCE
        if "input_text" in obj or "messages" in obj:
            return PROMPT
        return None
    return formats.detect_format(obj)


class RowChecker:
    """Checks rows of one file in one format.

    Args:
        findings: Where findings go.
        path: The file, as reported.
        method: ``supervised``, ``distillation`` or ``preference``.
        fmt: One of :data:`ALL_FORMATS`.
    """

    def __init__(self, findings: Findings, path: str, method: str, fmt: str):
        self.findings = findings
        self.path = path
        self.method = method
        self.fmt = fmt
        self.check = {
            TEXT_PAIR: self.text_pair,
            CHAT: self.chat,
            GEMINI: self.gemini,
            HUMAN_PREFERENCE: self.human_preference,
            PROMPT: self.prompt,
            GEMINI_PREFERENCE: self.gemini_preference,
        }[fmt]
        # SFT data ends with the model's answer; an unlabelled distillation row may end with the prompt.
        self.output_required = method == "supervised"

    # -- helpers -------------------------------------------------------------------------------------------

    def _add(self, kind: str, line: int, field: str | None, message: str) -> None:
        self.findings.add(kind, self.path, line, field, message)

    def _unknown(self, obj: dict, known: frozenset, line: int, prefix: str = "") -> None:
        for key in obj:
            if key not in known:
                self._add("unknown_field", line, prefix + str(key), f"unknown field '{key}' (ignored)")

    def _string(self, obj: dict, key: str, line: int, field: str, required: bool = True) -> str | None:
        """The non-empty string at ``obj[key]``; reports and returns None otherwise ('' when optional and absent)."""
        value = obj.get(key)
        if type(value) is str:
            if not value or value.isspace():
                self._add("empty_text", line, field, "empty or whitespace-only text")
                return None
            return value
        if value is None:
            if key not in obj and not required:
                return ""
            if key in obj:
                self._add("wrong_type", line, field, "null; expected a string")
            else:
                self._add("missing_field", line, field, f"missing '{key}'")
            return None
        self._add("wrong_type", line, field, f"expected a string, found a {json_type(value)}")
        return None

    def _is_object(self, value: object, line: int, field: str, kind: str = "wrong_type") -> TypeGuard[dict]:
        """Whether ``value`` is a JSON object; reports ``kind`` otherwise."""
        if type(value) is dict:
            return True
        self._add(kind, line, field, f"expected an object, found a {json_type(value)}")
        return False

    def _non_empty_list(self, value: object, line: int, field: str, items: str) -> TypeGuard[list]:
        """Whether ``value`` is a non-empty list (of ``items``, for the message); reports why not."""
        if type(value) is not list:
            kind = "missing_field" if value is None else "wrong_type"
            self._add(kind, line, field, f"expected a non-empty list of {items}")
            return False
        if not value:
            self._add("empty_text", line, field, f"the list of {items} is empty")
            return False
        return True

    def _turn_order(self, role: str, previous: str | None, line: int, field: str) -> bool:
        """Whether a ``role`` turn may follow a ``previous`` one (None: it comes first); reports why not."""
        if role == previous:
            self._add("role_order", line, field, f"two {role} turns in a row; turns must alternate")
            return False
        if previous is None and role != "user":
            self._add("role_order", line, field, "the conversation must start with a user turn")
            return False
        return True

    # -- text pairs ----------------------------------------------------------------------------------------

    def text_pair(self, obj: dict, line: int) -> Row | None:
        """``{"input_text", "output_text"}``; ``output_text`` optional for distillation."""
        if len(obj) > 2 or (len(obj) == 2 and "output_text" not in obj):
            self._unknown(obj, _TEXT_PAIR_FIELDS, line)
        prompt = self._string(obj, "input_text", line, "input_text")
        output = self._string(obj, "output_text", line, "output_text", required=self.output_required)
        if prompt is None or output is None:
            return None
        if output == "":
            output = None
        out_tokens = estimate_tokens(output) if output is not None else 0
        return (prompt, output, estimate_tokens(prompt), out_tokens, 0, prompt, output)

    # -- chat messages -------------------------------------------------------------------------------------

    def _messages(
        self, messages: object, line: int, *, preference: bool
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """Checks a ``messages`` list; returns the system text and the (role, text) turns, or None."""
        if not self._non_empty_list(messages, line, "messages", "messages"):
            return None
        system: list[str] = []
        turns: list[tuple[str, str]] = []
        ok = True
        for index, message in enumerate(messages):
            name = f"messages[{index}]"
            if not self._is_object(message, line, name):
                ok = False
                continue
            if len(message) > 2:
                self._unknown(message, _MESSAGE_FIELDS, line, name + ".")
            raw_role = message.get("role", message.get("author"))
            role = _CHAT_ROLES.get(raw_role.lower()) if type(raw_role) is str else None
            if role is None:
                allowed = "user or assistant" if preference else "system, user or model"
                if raw_role is None:
                    self._add(
                        "missing_field", line, f"{name}.role", f"missing 'role' (or 'author'); use {allowed}"
                    )
                else:
                    self._add("invalid_role", line, f"{name}.role", f"role {raw_role!r}; use {allowed}")
                ok = False
                continue
            text = self._string(message, "content", line, f"{name}.content")
            if text is None:
                ok = False
                continue
            if role == "system":
                if preference or index != 0:
                    self._add("role_order", line, f"{name}.role", "a system message may only come first")
                    ok = False
                system.append(text)
                continue
            if not self._turn_order(role, turns[-1][0] if turns else None, line, f"{name}.role"):
                ok = False
            turns.append((role, text))
        if not ok:
            return None
        if not turns:
            self._add("missing_field", line, "messages", "no user turn")
            return None
        return "\n".join(system), turns

    def chat(self, obj: dict, line: int) -> Row | None:
        """``{"messages": [...]}`` for supervised tuning: ends with a model turn."""
        if len(obj) > 1:
            self._unknown(obj, _CHAT_FIELDS, line)
        checked = self._messages(obj.get("messages"), line, preference=False)
        if checked is None:
            return None
        system, turns = checked
        if turns[-1][0] != "model":
            self._add("last_turn", line, "messages", "the last message must be the model's answer")
            return None
        return _conversation_row(system, turns, 0)

    # -- Gemini contents -----------------------------------------------------------------------------------

    def _system_instruction(self, obj: dict, line: int) -> str | None:
        key = "systemInstruction" if "systemInstruction" in obj else "system_instruction"
        value = obj.get(key)
        if value is None:
            return ""
        if type(value) is not dict or type(value.get("parts")) is not list:
            self._add("wrong_type", line, key, "expected {'parts': [{'text': ...}]}")
            return None
        parts = value["parts"]
        if len(parts) == 1 and type(parts[0]) is dict and type(parts[0].get("text")) is str and len(value) <= 2:
            if len(value) == 2 and "role" not in value:
                self._unknown(value, _CONTENT_FIELDS, line, key + ".")
            return parts[0]["text"]
        texts = []
        for index, part in enumerate(parts):
            if type(part) is not dict or type(part.get("text")) is not str:
                self._add("wrong_type", line, f"{key}.parts[{index}]", "expected {'text': '...'}")
                return None
            texts.append(part["text"])
        self._unknown(value, _CONTENT_FIELDS, line, key + ".")
        return "\n".join(texts)

    def _contents(
        self, contents: object, line: int, *, text_only: bool
    ) -> tuple[list[tuple[str, str]], int] | None:
        """Checks a ``contents`` list; returns the (role, text) turns and the number of file parts, or None."""
        if not self._non_empty_list(contents, line, "contents", "turns"):
            return None
        turns: list[tuple[str, str]] = []
        files = 0
        ok = True
        previous = None
        for index, content in enumerate(contents):
            if type(content) is not dict:
                self._add("wrong_type", line, f"contents[{index}]", "expected {'role': ..., 'parts': [...]}")
                ok = False
                continue
            if len(content) != 2 or "role" not in content or "parts" not in content:
                self._unknown(content, _CONTENT_FIELDS, line, f"contents[{index}].")
            raw_role = content.get("role")
            role = _USER_MODEL.get(raw_role) if type(raw_role) is str else None
            if role is None:
                if raw_role is None:
                    self._add(
                        "missing_field", line, f"contents[{index}].role", "missing 'role'; use user or model"
                    )
                elif raw_role == "system":
                    self._add(
                        "invalid_role",
                        line,
                        f"contents[{index}].role",
                        "role 'system' inside contents; put system text in 'systemInstruction'",
                    )
                else:
                    self._add(
                        "invalid_role", line, f"contents[{index}].role", f"role {raw_role!r}; use user or model"
                    )
                ok = False
            elif not self._turn_order(role, previous, line, f"contents[{index}].role"):
                ok = False
            previous = role
            parts = content.get("parts")
            if type(parts) is not list or not parts:
                self._add(
                    "missing_field" if parts is None else "wrong_type",
                    line,
                    f"contents[{index}].parts",
                    "expected a non-empty list of parts",
                )
                ok = False
                continue
            text = ""
            turn_files = 0
            for pindex, part in enumerate(parts):
                name = f"contents[{index}].parts[{pindex}]"
                if not self._is_object(part, line, name):
                    ok = False
                    continue
                value = part.get("text")
                if value is not None:
                    if type(value) is not str:
                        self._add(
                            "wrong_type", line, name + ".text", f"expected a string, found a {json_type(value)}"
                        )
                        ok = False
                    else:
                        text += value
                    if len(part) > 1:
                        self._unknown(part, _PART_FIELDS, line, name + ".")
                    continue
                data = part.get("fileData", part.get("file_data"))
                if data is None:
                    self._add("missing_field", line, name, "each part needs 'text' or 'fileData'")
                    ok = False
                    continue
                if text_only:
                    self._add("text_only", line, name, "a fileData part in preference data")
                    ok = False
                    continue
                if len(part) > 1:
                    self._unknown(part, _PART_FIELDS, line, name + ".")
                if not self._file_data(data, line, name + ".fileData"):
                    ok = False
                turn_files += 1
            if ok and not turn_files and (not text or text.isspace()):
                self._add("empty_text", line, f"contents[{index}].parts", "the turn has no text")
                ok = False
            files += turn_files
            if role is not None:
                turns.append((role, text))
        if not ok:
            return None
        return turns, files

    def _file_data(self, data: object, line: int, field: str) -> bool:
        if not self._is_object(data, line, field, "invalid_file_data"):
            return False
        uri = data.get("fileUri", data.get("file_uri"))
        mime = data.get("mimeType", data.get("mime_type"))
        if type(uri) is not str or not uri or type(mime) is not str or not mime:
            self._add("invalid_file_data", line, field, "missing or empty 'fileUri' or 'mimeType'")
            return False
        if not uri.startswith("gs://"):
            self._add("file_uri_not_gcs", line, field + ".fileUri", f"{uri[:80]!r} is not a gs:// URI")
            return False
        return True

    def gemini(self, obj: dict, line: int) -> Row | None:
        """``{"systemInstruction"?, "contents"}``; SFT rows end with a model turn."""
        if len(obj) > 2 or "contents" not in obj or (len(obj) == 2 and "systemInstruction" not in obj):
            self._unknown(obj, _GEMINI_FIELDS, line)
        system = self._system_instruction(obj, line)
        contents = obj.get("contents")
        # Most rows are canonical text turns: check those in one tight loop, the rest with full reporting.
        turns = _canonical_text_turns(contents) if type(contents) is list else None
        if turns is not None:
            files = 0
        else:
            checked = self._contents(contents, line, text_only=False)
            if checked is None:
                return None
            turns, files = checked
        if system is None:
            return None
        if turns[-1][0] != "model" and self.output_required:
            self._add(
                "last_turn", line, f"contents[{len(turns) - 1}].role", "the last turn must be the model's answer"
            )
            return None
        return _conversation_row(system, turns, files)

    # -- preference ----------------------------------------------------------------------------------------

    def _preference_prompt(self, obj: dict, line: int) -> tuple[str, str] | None:
        """The prompt of a human-preference or RLHF-prompt row: (prompt text, duplicate key), or None."""
        if "messages" in obj and "input_text" not in obj:
            checked = self._messages(obj["messages"], line, preference=True)
            if checked is None:
                return None
            _, turns = checked
            if turns[-1][0] != "user":
                self._add("last_turn", line, "messages", "the prompt's last message must be the user's")
                return None
            prompt = "\n".join(text for role, text in turns if role == "user")
            return prompt, _SEP.join(role + ":" + text for role, text in turns)
        if "messages" in obj:
            self._add("unknown_field", line, "messages", "both 'input_text' and 'messages'; 'messages' is ignored")
        prompt = self._string(obj, "input_text", line, "input_text")
        return None if prompt is None else (prompt, prompt)

    def human_preference(self, obj: dict, line: int) -> Row | None:
        """``{"input_text"|"messages", "candidate_0", "candidate_1", "choice"}``."""
        self._unknown(obj, _HUMAN_PREFERENCE_FIELDS, line)
        prompt = self._preference_prompt(obj, line)
        first = self._string(obj, "candidate_0", line, "candidate_0")
        second = self._string(obj, "candidate_1", line, "candidate_1")
        choice = obj.get("choice")
        ok = prompt is not None and first is not None and second is not None
        if "choice" not in obj:
            self._add("missing_field", line, "choice", "missing 'choice'")
            ok = False
        elif type(choice) is not int or choice not in (0, 1):
            self._add("invalid_choice", line, "choice", f"choice is {json_dumps_short(choice)}; expected 0 or 1")
            ok = False
        if first is not None and second is not None and first.strip() == second.strip():
            self._add("identical_candidates", line, "candidate_1", "candidate_0 and candidate_1 are the same text")
            ok = False
        if not ok:
            return None
        preferred = second if choice else first
        tokens = estimate_tokens(first) + estimate_tokens(second)
        key = prompt[1] + _SEP + _SEP.join(sorted((first, second)))
        return (prompt[0], preferred, estimate_tokens(prompt[0]), tokens, 0, key, preferred)

    def prompt(self, obj: dict, line: int) -> Row | None:
        """The RLHF prompt dataset: ``{"input_text"}`` or ``{"messages"}`` ending with a user turn."""
        self._unknown(obj, _PROMPT_FIELDS, line)
        prompt = self._preference_prompt(obj, line)
        if prompt is None:
            return None
        return (prompt[0], None, estimate_tokens(prompt[0]), 0, 0, prompt[1], None)

    def _completion(self, completion: object, line: int, field: str) -> str | None:
        """The text of one ``{"role": "model", "parts": [{"text"}]}`` completion, or None (reported)."""
        if type(completion) is not dict:
            kind = "missing_field" if completion is None else "wrong_type"
            self._add(kind, line, field, "expected {'role': 'model', 'parts': [{'text': ...}]}")
            return None
        self._unknown(completion, _CONTENT_FIELDS, line, field + ".")
        if completion.get("role", "model") != "model":
            self._add("invalid_role", line, field + ".role", "a completion's role must be 'model'")
            return None
        parts = completion.get("parts")
        if type(parts) is not list or not parts:
            self._add("wrong_type", line, field + ".parts", "expected a non-empty list of text parts")
            return None
        texts = []
        for index, part in enumerate(parts):
            if type(part) is not dict or type(part.get("text")) is not str:
                kind = (
                    "text_only"
                    if type(part) is dict and ("fileData" in part or "file_data" in part)
                    else "wrong_type"
                )
                self._add(kind, line, f"{field}.parts[{index}]", "expected {'text': '...'}")
                return None
            texts.append(part["text"])
        text = "".join(texts)
        if not text or text.isspace():
            self._add("empty_text", line, field, "the completion has no text")
            return None
        return text

    def gemini_preference(self, obj: dict, line: int) -> Row | None:
        """``{"systemInstruction"?, "contents", "completions"}``: contents end with a user turn, text only."""
        self._unknown(obj, _GEMINI_PREFERENCE_FIELDS, line)
        system = self._system_instruction(obj, line)
        checked = self._contents(obj.get("contents"), line, text_only=True)
        ok = system is not None and checked is not None
        if checked is not None and checked[0][-1][0] != "user":
            self._add("last_turn", line, "contents", "the prompt's last turn must be the user's")
            ok = False
        completions = obj.get("completions")
        texts: dict[int, str] = {}
        if type(completions) is not list or len(completions) != 2:
            found = f"{len(completions)} completions" if type(completions) is list else json_type(completions)
            if completions is None:
                self._add("missing_field", line, "completions", "missing 'completions'")
            else:
                self._add("invalid_completions", line, "completions", f"expected two completions, found {found}")
            ok = False
        else:
            for index, item in enumerate(completions):
                name = f"completions[{index}]"
                if type(item) is not dict:
                    self._add("invalid_completions", line, name, "expected {'score': ..., 'completion': {...}}")
                    ok = False
                    continue
                self._unknown(item, frozenset(("score", "completion")), line, name + ".")
                score = item.get("score")
                if type(score) not in (int, float) or score not in (0, 1):
                    self._add(
                        "invalid_completions",
                        line,
                        name + ".score",
                        f"score is {json_dumps_short(score)}; expected 1 or 0",
                    )
                    ok = False
                    continue
                answer = self._completion(item.get("completion"), line, name + ".completion")
                if answer is None:
                    ok = False
                    continue
                texts[int(score)] = answer
            if ok and len(texts) != 2:
                self._add("invalid_completions", line, "completions", "both completions have the same score")
                ok = False
            if ok and texts[0].strip() == texts[1].strip():
                self._add("identical_candidates", line, "completions", "the two completions are the same text")
                ok = False
        if not ok:
            return None
        row = _conversation_row(system, checked[0], 0)
        tokens = estimate_tokens(texts[0]) + estimate_tokens(texts[1])
        key = row[5] + _SEP + _SEP.join(sorted(texts.values()))
        return (row[0], texts[1], row[2], tokens, 0, key, texts[1])


def _canonical_text_turns(contents: list) -> list[tuple[str, str]] | None:
    """The (role, text) turns when every turn is ``{"role", "parts": [{"text": non-empty}]}`` in valid order.

    None means "not canonical": the full check then runs and reports what is wrong, if anything.
    """
    turns = []
    previous = "model"  # so that the first turn must be the user's
    for content in contents:
        if type(content) is not dict or len(content) != 2:
            return None
        role = content.get("role")
        parts = content.get("parts")
        if role == previous or (role != "user" and role != "model"):
            return None
        if type(parts) is not list or len(parts) != 1:
            return None
        part = parts[0]
        if type(part) is not dict or len(part) != 1:
            return None
        text = part.get("text")
        if type(text) is not str or not text or text.isspace():
            return None
        turns.append((role, text))
        previous = role
    return turns or None


def _estimate(text: str) -> int:
    # estimate_tokens, inlined for the hot path
    return (len(text) + 3) >> 2 if text.isascii() else estimate_tokens(text)


def _conversation_row(system: str, turns: list[tuple[str, str]], files: int) -> Row:
    """The dataset-check view of a conversation: the final model turn (if any) is the output."""
    if len(turns) == 2 and not files and turns[1][0] == "model":
        user = turns[0][1]
        output = turns[1][1]
        if system:
            tokens = ((len(system) + 3) >> 2 if system.isascii() else estimate_tokens(system)) + (
                (len(user) + 3) >> 2 if user.isascii() else estimate_tokens(user)
            )
            return (
                system + "\n" + user,
                output,
                tokens,
                _estimate(output),
                0,
                system + _SEP + "user:" + user,
                output,
            )
        return (user, output, _estimate(user), _estimate(output), 0, _SEP + "user:" + user, output)
    if turns[-1][0] == "model":
        prompt_turns, output = turns[:-1], turns[-1][1]
    else:
        prompt_turns, output = turns, None
    user_text = "\n".join(text for role, text in prompt_turns if role == "user")
    prompt = system + "\n" + user_text if system else user_text
    in_tokens = estimate_tokens(system) if system else 0
    for _, text in prompt_turns:
        in_tokens += estimate_tokens(text)
    in_tokens += files * TOKENS_PER_FILE_PART
    key = system + _SEP + _SEP.join(role + ":" + text for role, text in prompt_turns)
    out_tokens = estimate_tokens(output) if output is not None else 0
    return (prompt, output, in_tokens, out_tokens, files, key, output)


def json_dumps_short(value: object) -> str:
    """A short JSON rendering of a value for messages."""
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

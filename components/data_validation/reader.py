"""Streaming JSON Lines reader that reports problems as findings instead of stopping at the first one.

Memory does not grow with the file: lines are read one at a time through a large buffer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from tunekit.components.data_validation.findings import Findings

BOM = b"\xef\xbb\xbf"
_BUFFER = 1 << 20


class UnreadableFile(Exception):
    """The file cannot be opened (missing, a directory, no permission)."""


def open_binary(path: str):
    """Opens ``path`` for reading bytes.

    Raises:
        UnreadableFile: With a message that says what to do.
    """
    if os.path.isdir(path):
        raise UnreadableFile("is a directory; give a file")
    try:
        return open(path, "rb", buffering=_BUFFER)
    except FileNotFoundError:
        raise UnreadableFile("file not found; check the path") from None
    except OSError as exc:
        raise UnreadableFile(f"cannot be read ({exc.strerror or exc}); check its permissions") from None


def _starts_with_array(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(BOM):
        head = head[3:]
    return head.lstrip().startswith(b"[")


def read_jsonl(path: str, findings: Findings) -> Iterator[tuple[int, dict]]:
    """Yields ``(line, object)`` for every line of ``path`` that is a JSON object; reports the others.

    Reported: a byte-order mark, invalid UTF-8, a JSON array instead of JSON Lines (the file is then not read
    further), blank lines, invalid JSON, and lines that are not objects.

    Raises:
        UnreadableFile: The file cannot be opened.
    """
    handle = open_binary(path)
    with handle:
        if _starts_with_array(path):
            findings.add(
                "json_array",
                path,
                1,
                None,
                "the file is one JSON array, not JSON Lines",
                "write one JSON object per line, e.g. with `jq -c '.[]' in.json > out.jsonl`",
            )
            return
        loads = json.loads
        number = 0
        for raw in handle:
            number += 1
            if number == 1 and raw.startswith(BOM):
                findings.add("bom", path, 1, None, "the file starts with a UTF-8 byte-order mark")
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                findings.add(
                    "invalid_utf8", path, number, None, f"invalid UTF-8 at byte {exc.start + 1} of the line"
                )
                continue
            try:
                obj = loads(text)
            except (ValueError, RecursionError) as exc:
                if not text.strip():
                    findings.add("blank_line", path, number, None, "blank line")
                    continue
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                column = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                findings.add("invalid_json", path, number, None, f"not valid JSON ({detail}{column})")
                continue
            if type(obj) is not dict:
                findings.add("not_object", path, number, None, f"a JSON {_json_type(obj)}, not an object")
                continue
            yield number, obj


def reread(path: str, lines: Iterable[int]) -> Iterator[tuple[int, dict]]:
    """Yields the objects on ``lines`` of ``path`` again (a second, cheap pass: only those lines are parsed)."""
    wanted = set(lines)
    if not wanted:
        return
    last = max(wanted)
    with open(path, "rb", buffering=_BUFFER) as handle:
        for number, raw in enumerate(handle, start=1):
            if number in wanted:
                if number == 1 and raw.startswith(BOM):
                    raw = raw[3:]
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (ValueError, RecursionError):
                    continue
                if type(obj) is dict:
                    yield number, obj
            if number >= last:
                return


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else type(value).__name__


json_type = _json_type

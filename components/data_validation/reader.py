"""Streaming JSON Lines reader that reports problems as findings instead of stopping at the first one.

Memory does not grow with the file: lines are read one at a time through a large buffer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator

from tunekit.components.data_validation.findings import Findings

BOM = b"\xef\xbb\xbf"
_BUFFER = 1 << 20
#: How long a named pipe (FIFO) may stay without a writer or data before validation gives up on it.
FIFO_WAIT_SECONDS = 30.0
#: A ``\\uD800``-``\\uDFFF`` escape: the only way a lone surrogate gets into a decoded JSON string.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


@contextlib.contextmanager
def readable_copy(path: str) -> Iterator[str]:
    """Yields a path that can be read more than once holding what ``path`` holds.

    A regular file (or a missing one, or a directory: reported later) is yielded as is. Anything else (a pipe
    such as ``<(cat f)`` or ``/dev/stdin``, a FIFO, a character device) can be read only once, so it is copied
    to a temporary folder first (private to the user), removed afterwards. A FIFO that gets no writer within :data:`FIFO_WAIT_SECONDS`
    and a terminal are :class:`UnreadableFile` instead of a hang.

    Raises:
        UnreadableFile: The input is a terminal, or a pipe nobody writes to, or cannot be read.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        yield path
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        yield path
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UnreadableFile(f"cannot be read ({exc.strerror or exc}); check its permissions") from None
    try:
        if os.isatty(fd):
            raise UnreadableFile("is a terminal; pipe the data in (e.g. `cat data.jsonl | tunekit validate -`)")
        if stat.S_ISFIFO(mode):
            # Opened without blocking; wait (bounded) until a writer sends data or closes its end.
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            if not poller.poll(int(FIFO_WAIT_SECONDS * 1000)):
                raise UnreadableFile(
                    f"is a named pipe (FIFO) with no data after {FIFO_WAIT_SECONDS:g} s; pipe data into it "
                    "(e.g. `cat data.jsonl > FIFO`) or give a regular file"
                )
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb", buffering=_BUFFER)
    except BaseException:
        os.close(fd)
        raise
    # The copy's folder is removed however this ends: a read error, an interrupt (Ctrl-C while a large pipe is
    # copied), or the caller's block raising.
    with handle, tempfile.TemporaryDirectory(prefix="tunekit-input-") as folder:
        copy = os.path.join(folder, "input")
        with open(copy, "wb") as out:
            try:
                shutil.copyfileobj(handle, out, _BUFFER)
            except OSError as exc:
                raise UnreadableFile(f"cannot be read ({exc.strerror or exc})") from None
        yield copy


def lone_surrogate(value: object, field: str = "") -> tuple[str, str] | None:
    """``(field, escape)`` of the first string (or key) in ``value`` holding a lone UTF-16 surrogate, or None."""
    if type(value) is str:
        for char in value:
            if "\ud800" <= char <= "\udfff":
                return field or "value", f"\\u{ord(char):04x}"
        return None
    if type(value) is dict:
        for key, item in value.items():
            found = lone_surrogate(key, field or "key") or lone_surrogate(
                item, f"{field}.{key}" if field else str(key)
            )
            if found:
                return found
    elif type(value) is list:
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{field}[{index}]")
            if found:
                return found
    return None


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
            # A single-byte search first (memchr): most lines have no escape at all.
            if b"\\" in raw and _SURROGATE_ESCAPE.search(raw):
                found = lone_surrogate(obj)
                if found:
                    field, escape = found
                    findings.add(
                        "lone_surrogate",
                        path,
                        number,
                        field,
                        f"text holds a lone surrogate ({escape}); fix the encoding",
                    )
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

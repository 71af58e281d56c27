"""Streaming JSON Lines reader that reports problems as findings instead of stopping at the first one.

Memory does not grow with the file: lines are read one at a time through a large buffer.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator

from tunekit.components.data_validation.findings import Findings

BOM = b"\xef\xbb\xbf"
#: The first two bytes of every gzip file (RFC 1952, section 2.3.1).
GZIP_MAGIC = b"\x1f\x8b"

#: Findings that stand for a file's rows: a file without rows but with these is not also "empty".
LINE_PROBLEMS = (
    "json_array",
    "compressed_file",
    "invalid_utf8",
    "invalid_json",
    "not_object",
    "duplicate_key",
    "non_finite_number",
    "lone_surrogate",
)
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


def _head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4096)


def _starts_with_array(head: bytes) -> bool:
    if head.startswith(BOM):
        head = head[3:]
    return head.lstrip().startswith(b"[")


def is_gzip(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts with the gzip magic number (RFC 1952: 1f 8b)."""
    return head.startswith(GZIP_MAGIC)


def report_gzip(path: str, findings: Findings) -> None:
    """Reports ``path`` as a gzip file, with the command that decompresses it."""
    findings.add(
        "compressed_file",
        path,
        None,
        None,
        "this is a gzip file, not text",
        f"decompress it (gunzip {path}) and validate the uncompressed file",
    )


class _Decoder:
    """A JSON decoder that notes what :func:`json.loads` accepts silently: duplicate keys, NaN and Infinity.

    RFC 8259 has no NaN or Infinity literals (section 6) and says an object's names SHOULD be unique (section 4):
    Python reads both, keeping the last of duplicate keys, while other readers reject them or keep the first.
    """

    def __init__(self):
        self.duplicate_keys: list[str] = []
        self.constants: list[str] = []
        self.decode = json.JSONDecoder(object_pairs_hook=self._object, parse_constant=self._constant).decode

    def _object(self, pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.duplicate_keys.append(key)
                seen.add(key)
        return obj

    def _constant(self, name: str) -> float:
        self.constants.append(name)
        return float(name)

    def reset(self) -> None:
        self.duplicate_keys.clear()
        self.constants.clear()


def _parse_error(exc: Exception) -> str:
    """What a failed parse says, in words: the decoder's message and column, or what Python's limits refused."""
    if isinstance(exc, json.JSONDecodeError):
        # Some messages already end in "at" ("Unterminated string starting at"): no "at at column".
        joiner = " column" if exc.msg.endswith(" at") else " at column"
        return f"{exc.msg}{joiner} {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(exc):
        limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
        return f"a number has more than {limit:,} digits, more than Python reads"
    return str(exc)


def non_finite(value: object, field: str = "") -> tuple[str, str] | None:
    """``(field, literal)`` of the first NaN or infinite number in ``value``, or None."""
    if type(value) is float:
        return None if math.isfinite(value) else (field or "value", repr(value))
    if type(value) is dict:
        for key, item in value.items():
            found = non_finite(item, f"{field}.{key}" if field else str(key))
            if found:
                return found
    elif type(value) is list:
        for index, item in enumerate(value):
            found = non_finite(item, f"{field}[{index}]")
            if found:
                return found
    return None


def read_jsonl(path: str, findings: Findings) -> Iterator[tuple[int, dict]]:
    """Yields ``(line, object)`` for every line of ``path`` that is a JSON object; reports the others.

    Reported: a gzip file or a JSON array instead of JSON Lines (the file is then not read further), a
    byte-order mark, invalid UTF-8, blank lines, invalid JSON, lines that are not objects, and what Python's JSON
    reader would pass silently: NaN and Infinity literals and duplicate keys (those lines are not yielded).

    Raises:
        UnreadableFile: The file cannot be opened.
    """
    handle = open_binary(path)
    with handle:
        head = _head(path)
        if is_gzip(head):
            report_gzip(path, findings)
            return
        if _starts_with_array(head):
            findings.add(
                "json_array",
                path,
                1,
                None,
                "the file is one JSON array, not JSON Lines",
                "write one JSON object per line, e.g. with `jq -c '.[]' in.json > out.jsonl`",
            )
            return
        decoder = _Decoder()
        loads = decoder.decode
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
                decoder.reset()
                if not text.strip():
                    findings.add("blank_line", path, number, None, "blank line")
                    continue
                findings.add("invalid_json", path, number, None, f"not valid JSON ({_parse_error(exc)})")
                continue
            if type(obj) is not dict:
                decoder.reset()
                findings.add("not_object", path, number, None, f"a JSON {_json_type(obj)}, not an object")
                continue
            if decoder.duplicate_keys or decoder.constants:
                _report_silent_json(path, number, obj, decoder, findings)
                decoder.reset()
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


def _report_silent_json(path: str, number: int, obj: dict, decoder: _Decoder, findings: Findings) -> None:
    for key in dict.fromkeys(decoder.duplicate_keys):
        findings.add(
            "duplicate_key",
            path,
            number,
            key,
            f"key '{key[:60]}' appears more than once in one object; readers disagree on which value counts",
        )
    if decoder.constants:
        field = (non_finite(obj) or ("value", ""))[0]
        findings.add(
            "non_finite_number",
            path,
            number,
            field,
            f"{decoder.constants[0]} is not valid JSON (RFC 8259 has no NaN or Infinity literals)",
        )


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

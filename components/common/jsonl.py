"""The JSON Lines reader and writer every stage uses (one owner for the format's rules).

Reading: blank lines are skipped, a UTF-8 byte-order mark on the first line is dropped, and a problem (a missing
file, bytes that are not UTF-8, a JSON array instead of JSON Lines, a line that is not a JSON object) is a
:class:`~.errors.UserError` naming the file and line. Writing goes through a temporary file in the same folder
and ``os.replace``, so a killed step never leaves half a dataset behind. (The validator's own streaming reader,
``data_validation.reader``, reports every bad line as a finding instead of stopping at the first.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tunekit.components.common.errors import UserError


def dataset_file(path: str, split: str = "train") -> str:
    """The JSON Lines file of a dataset artifact: the file itself, or ``<folder>/<split>.jsonl``.

    Data validation's normalised output is a folder of ``train.jsonl`` and ``validation.jsonl``.
    """
    return os.path.join(path, f"{split}.jsonl") if os.path.isdir(path) else path


def iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
    """Yields ``(line_number, object)`` for each non-blank line of a JSON Lines file.

    Raises:
        UserError: The file is missing, not UTF-8, a JSON array, or a line is not a JSON object.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UserError("file not found; check the path", path=path) from None
    except IsADirectoryError:
        raise UserError("is a directory; give a JSON Lines file", path=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8", path=path, line=number
                ) from None
            if not text.strip():
                continue
            if number == 1 and text.lstrip().startswith("["):
                raise UserError(
                    "this is a JSON array, not JSON Lines; write one JSON object per line", path=path, line=1
                )
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"not valid JSON ({exc.msg} at column {exc.colno})", path=path, line=number
                ) from None
            if not isinstance(obj, dict):
                raise UserError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=number)
            yield number, obj


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Every object of a JSON Lines file, in order (see :func:`iter_jsonl` for the rules and errors)."""
    return [obj for _, obj in iter_jsonl(path)]


def write_jsonl(path: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Writes ``rows`` as JSON Lines (UTF-8, one object a line) atomically; returns how many were written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return count

"""Errors that are the user's to fix: they carry a one-line message and never a traceback at the CLI."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or configuration; the message says what is wrong, where, and what to do.

    Args:
        message: What is wrong and what to do about it.
        path: The file concerned, if any.
        line: The 1-based line number in that file, if any.
        field: The field concerned, if any.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None, field: str | None = None
    ):
        self.message = message
        self.path = path
        self.line = line
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        """Returns ``file:line: field: message`` with the parts that are known."""
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "", self.message) if p]
        return ": ".join(parts)

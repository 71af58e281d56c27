"""Errors that are the user's to fix: they carry a one-line message and never a traceback at the CLI."""

from __future__ import annotations

import re


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


#: What fixes missing or unusable Application Default Credentials (google-auth's ``google.auth.default``
#: looks in GOOGLE_APPLICATION_CREDENTIALS, then gcloud's ADC file, then the metadata server: google/auth/_default.py).
LOGIN = "gcloud auth application-default login"


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _http_code(exc: BaseException) -> int | None:
    """The HTTP status of a google-api-core or google-genai API error (None for other exceptions)."""
    from google.api_core import exceptions as core

    if isinstance(exc, core.GoogleAPICallError):
        return exc.code if isinstance(exc.code, int) else None
    try:
        from google.genai import errors as genai_errors
    except ImportError:  # pragma: no cover - google-genai is a dependency
        return None
    if isinstance(exc, genai_errors.APIError):
        return exc.code
    return None


def _api_message(exc: BaseException) -> str:
    return _one_line(getattr(exc, "message", "") or exc)


def cloud_user_error(exc: BaseException, *, project: str = "") -> UserError | None:
    """The one-line :class:`UserError` a Google Cloud credentials, permission or quota error means, or None.

    The one translation of these errors for every Vertex command (the CLI's ``main`` calls it): google-auth's
    ``DefaultCredentialsError`` (no credentials) and ``RefreshError`` (expired or revoked), google-api-core's
    ``Unauthenticated`` (401), ``PermissionDenied``/``Forbidden`` (403, including an API not enabled:
    ``SERVICE_DISABLED``) and ``ResourceExhausted``/``TooManyRequests`` (429, quota), and google-genai's
    ``errors.ClientError`` with the same codes. The exception's cause chain is searched, so an SDK's wrapper
    around one of them is translated too. Each line says what to run.

    Args:
        exc: The exception a command raised.
        project: The command's project, named in the commands the line suggests ('' for a placeholder).
    """
    from google.auth import exceptions as auth

    where = f" --project {project}" if project else " --project PROJECT"
    for error in _chain(exc):
        if isinstance(error, auth.DefaultCredentialsError):
            return UserError(
                f"no usable Google Cloud credentials ({_one_line(error)}): run '{LOGIN}', or point "
                "GOOGLE_APPLICATION_CREDENTIALS at a service account key file"
            )
        if isinstance(error, auth.RefreshError):
            return UserError(
                f"the Google Cloud credentials could not be refreshed ({_one_line(error)}): run '{LOGIN}' again"
            )
        code = _http_code(error)
        if code is None:
            continue
        message = _api_message(error)
        if code == 401:
            return UserError(f"Google Cloud refused the credentials ({message}): run '{LOGIN}'")
        if code == 403:
            service = re.search(r"\b([a-z0-9-]+\.googleapis\.com)\b", message)
            if service and re.search(r"SERVICE_DISABLED|has not been used|is disabled", message):
                return UserError(
                    f"the API {service.group(1)} is not enabled ({message}): run "
                    f"'gcloud services enable {service.group(1)}{where}'"
                )
            return UserError(
                f"permission denied ({message}): grant the account the role the call needs, e.g. "
                f"'gcloud projects add-iam-policy-binding {project or 'PROJECT'} --member=user:ACCOUNT "
                "--role=roles/aiplatform.user' (see 'gcloud auth list' for the account)"
            )
        if code == 429:
            return UserError(
                f"quota exceeded ({message}): wait and run again, or ask for more quota at "
                f"https://console.cloud.google.com/iam-admin/quotas?project={project or 'PROJECT'}"
            )
    return None

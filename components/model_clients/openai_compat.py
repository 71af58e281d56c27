"""Any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp server, TGI...) as a :class:`Backend`.

Requests go to ``{base_url}/chat/completions`` with httpx's async client; ``base_url`` is the API root, usually
ending in ``/v1`` (``http://localhost:8000/v1`` for vLLM, ``http://localhost:11434/v1`` for Ollama). The API key, if
the server wants one, is read from an environment variable at run time, never stored in a compiled pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx

from tunekit.components.model_clients.base import (
    BLOCKED,
    EMPTY,
    FAILED,
    OK,
    TRUNCATED,
    Generation,
    GenerationConfig,
    Prompt,
)
from tunekit.components.model_clients.engine import Backend, RetryableError, parse_retry_after

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def prompt_to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """The prompt as chat messages (``model`` turns become ``assistant``)."""
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    for role, text in prompt.history:
        messages.append({"role": "assistant" if role in ("model", "assistant") else "user", "content": text})
    messages.append({"role": "user", "content": prompt.text})
    return messages


def request_body(model: str, prompt: Prompt, config: GenerationConfig) -> dict[str, Any]:
    """The ``/chat/completions`` request body for one prompt."""
    return {
        "model": model,
        "messages": prompt_to_messages(prompt),
        **config.request_fields(max_tokens="max_tokens", count="n"),
    }


def response_to_generation(payload: dict[str, Any]) -> Generation:
    """Reads a chat-completions response: text, status from ``finish_reason``, token usage.

    ``length`` is truncated, ``content_filter`` blocked, no text empty.
    """
    usage = payload.get("usage") or {}
    tokens = {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    choices = sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))
    if not choices:
        return Generation(text="", status=EMPTY, error="no choices in the response", **tokens)
    texts = [str(((c.get("message") or {}).get("content")) or c.get("text") or "") for c in choices]
    extra = {"candidates": texts} if len(texts) > 1 else {}
    reason = choices[0].get("finish_reason") or ""
    if reason == "content_filter":
        return Generation(text=texts[0], status=BLOCKED, error="finish reason content_filter", **tokens, **extra)
    if reason == "length":
        return Generation(text=texts[0], status=TRUNCATED, error="hit max_tokens (length)", **tokens, **extra)
    if not texts[0].strip():
        return Generation(
            text="", status=EMPTY, error=f"no text (finish reason {reason or 'none'})", **tokens, **extra
        )
    return Generation(text=texts[0], status=OK, **tokens, **extra)


class OpenAICompatBackend(Backend):
    """Chat completions on an OpenAI-compatible server.

    Args:
        model: The model name the server knows.
        base_url: The API root, e.g. ``http://localhost:8000/v1``.
        api_key_env: The environment variable holding the API key (read when the backend is built); '' for none.
        headers: Extra HTTP headers.
        max_connections: The connection pool's size (the engine's concurrency is the real bound).
    """

    name = "openai"
    cache_namespace = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        headers: dict[str, str] | None = None,
        max_connections: int = 256,
    ):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    def describe(self) -> dict[str, Any]:
        """Backend, model and URL for the report."""
        return {"backend": self.name, "model": self.model, "base_url": self.base_url}

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self._max_connections, max_keepalive_connections=self._max_connections
            )
            self._client = httpx.AsyncClient(headers=self._headers, limits=limits)
        return self._client

    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Sends one prompt (``max_batch`` is 1)."""
        (prompt,) = prompts
        payload, failed = await post_json(
            self._http(), f"{self.base_url}/chat/completions", request_body(self.model, prompt, config), timeout_s
        )
        return [failed if failed is not None else response_to_generation(payload)]

    async def aclose(self) -> None:
        """Closes the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def post_json(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], timeout_s: float | None
) -> tuple[dict[str, Any], Generation | None]:
    """POSTs ``body`` to a model server; ``(answer, None)``, or ``({}, a failed Generation)`` for a refused request.

    Shared by the HTTP backends (this module's and :class:`~.backends.VertexVLLMBackend`): timeouts, broken
    connections, :data:`RETRYABLE_STATUS` answers (with their ``Retry-After``) and unreadable answers raise
    :class:`RetryableError`; another 4xx/5xx fails the prompt with the server's message.
    """
    try:
        response = await http.post(url, json=body, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise RetryableError(f"timeout: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise RetryableError(f"connection error: {type(exc).__name__}: {exc}") from exc
    if response.status_code in RETRYABLE_STATUS:
        raise RetryableError(
            f"{response.status_code}: {_error_message(response)}",
            status=response.status_code,
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        )
    if response.status_code >= 400:
        return {}, Generation(text="", status=FAILED, error=f"{response.status_code}: {_error_message(response)}")
    try:
        return response.json(), None
    except ValueError:
        raise RetryableError(f"unreadable answer: {response.text[:200]!r}") from None


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:200]
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or response.text[:200])

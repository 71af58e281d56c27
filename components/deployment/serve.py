"""``tunekit serve``: an OpenAI-compatible HTTP server for a locally tuned model.

Routes (JSON, under ``/v1`` so that ``base_url`` is ``http://HOST:PORT/v1`` as for vLLM or Ollama):

- ``GET /v1/models``: the one model served;
- ``POST /v1/chat/completions`` (generative models): ``messages`` (``system``, ``user``, ``assistant``),
  ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``, ``n``, ``seed``; the answer has
  ``choices[].message.content``, ``finish_reason`` (``stop`` or ``length``) and ``usage`` (prompt, completion and
  total tokens, counted with the model's tokenizer). ``stream`` is not supported (400);
- ``POST /v1/embeddings`` (sentence-transformers models): ``input`` (a string or a list of strings); the answer
  has ``data[].embedding`` and ``usage.prompt_tokens``;
- ``GET /health``.

The model is a local directory: a Hugging Face seq2seq or causal model, a LoRA adapter saved by the local tuning
step (its base model is read from ``adapter_config.json`` and the adapter merged in), or a sentence-transformers
model saved by the embedding tuning step; or ``registry:PURPOSE``, the local registry's champion for that purpose.
A distilled student's ``serving_prefix`` (in its ``tunekit_model.json``) is put before the last user message, as at
evaluation time. Requests are answered one at a time (the model is not shared between threads); the server itself
is the standard library's ``ThreadingHTTPServer``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord

REGISTRY_PREFIX = "registry:"
GENERATE = "generate"
EMBED = "embed"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TOKENS_LIMIT = 4096


class RequestError(Exception):
    """A request the server refuses (HTTP 400 or 404), with an OpenAI-style error body."""

    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param


@dataclass
class ModelSpec:
    """Where a served model comes from.

    Attributes:
        path: The model directory.
        kind: ``generate`` or ``embed``.
        name: The model id the server reports.
        serving_prefix: Put before the last user message (distilled students).
    """

    path: str
    kind: str
    name: str
    serving_prefix: str = ""


def _read_info(path: str) -> dict:
    try:
        return ModelRecord.read(path).to_dict()
    except (OSError, UserError):
        return {}


def model_kind(path: str) -> str:
    """``embed`` for a sentence-transformers directory, ``generate`` for a transformers model or LoRA adapter.

    Raises:
        UserError: ``path`` is not a directory, or holds no model.
    """
    if not os.path.isdir(path):
        raise UserError("model directory not found; give a local model directory or registry:PURPOSE", path=path)
    if os.path.isfile(os.path.join(path, "modules.json")) or os.path.isfile(
        os.path.join(path, "config_sentence_transformers.json")
    ):
        return EMBED
    if os.path.isfile(os.path.join(path, "adapter_config.json")) or os.path.isfile(
        os.path.join(path, "config.json")
    ):
        return GENERATE
    raise UserError(
        "not a model directory (no config.json, adapter_config.json or modules.json); give the folder a tuning "
        "step wrote",
        path=path,
    )


def resolve_model(spec: str, *, registry: str = "", name: str = "") -> ModelSpec:
    """Turns ``MODEL`` (a directory or ``registry:PURPOSE``) into a :class:`ModelSpec`.

    Args:
        spec: A model directory, or ``registry:PURPOSE`` for the local registry's champion.
        registry: The local registry file (for ``registry:``).
        name: The model id to report ('' for the purpose, or the directory's name).

    Raises:
        UserError: No registry, no champion for the purpose, or not a model directory.
    """
    if spec.startswith(REGISTRY_PREFIX):
        from tunekit.components.deployment import local_registry
        from tunekit.components.deployment.champion import find_champion

        purpose = spec[len(REGISTRY_PREFIX) :]
        if not purpose:
            raise UserError("registry:PURPOSE needs a purpose, e.g. registry:supervised-tuning")
        if not os.path.exists(registry):
            raise UserError("no registry file; run a local pipeline first or pass --registry", path=registry)
        found = find_champion(purpose, backend="local", local_registry=registry)
        if found is None:
            known = ", ".join(p for p in local_registry.purposes(registry) if p) or "none"
            raise UserError(f"purpose '{purpose}' has no champion (purposes there: {known})", path=registry)
        path = found.model
        default_name = purpose
    else:
        path = spec
        default_name = os.path.basename(os.path.normpath(spec)) or spec
    kind = model_kind(path)
    info = _read_info(path)
    return ModelSpec(
        path=path, kind=kind, name=name or default_name, serving_prefix=str(info.get("serving_prefix") or "")
    )


class GenerativeModel:
    """A loaded generative model answering chat requests."""

    kind = GENERATE

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        from tunekit.components.model_clients.hf import HFLocalClient

        self.spec = spec
        self.client = HFLocalClient(spec.path, device=device, batch_size=1)

    def chat(self, body: dict) -> dict:
        """Answers one ``/v1/chat/completions`` request body."""
        from tunekit.components.model_clients.base import TRUNCATED, GenerationConfig

        prompt = messages_to_prompt(body.get("messages"), self.spec.serving_prefix)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 256))
        temperature = body.get("temperature", 0.0)
        top_p = body.get("top_p", 1.0)
        n = body.get("n", 1)
        seed = body.get("seed")
        if (
            not isinstance(max_tokens, int)
            or isinstance(max_tokens, bool)
            or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
        ):
            raise RequestError(f"max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}", param="max_tokens")
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise RequestError("temperature must be a number from 0 to 2", param="temperature")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise RequestError("top_p must be a number above 0 and at most 1", param="top_p")
        if not isinstance(n, int) or not 1 <= n <= 8:
            raise RequestError("n must be an integer from 1 to 8", param="n")
        if seed is not None and not isinstance(seed, int):
            raise RequestError("seed must be an integer", param="seed")
        config = GenerationConfig(
            max_output_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), seed=seed
        )
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index in range(n):
            (generation,) = self.client.generate([prompt], config)
            if generation.status == "failed":
                raise RequestError(f"generation failed: {generation.error}", status=500)
            prompt_tokens = generation.input_tokens
            completion_tokens += generation.output_tokens
            choices.append(
                {
                    "index": index,
                    "message": {"role": "assistant", "content": generation.text},
                    "finish_reason": "length" if generation.status == TRUNCATED else "stop",
                }
            )
        return {
            "id": f"chatcmpl-{time.time_ns():x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.spec.name,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class EmbeddingModel:
    """A loaded sentence-transformers model answering embedding requests."""

    kind = EMBED

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.model = SentenceTransformer(spec.path, device=device, local_files_only=True)

    def embed(self, body: dict) -> dict:
        """Answers one ``/v1/embeddings`` request body."""
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError("input must be a string or a non-empty list of strings", param="input")
        if body.get("encoding_format", "float") != "float":
            raise RequestError("only encoding_format 'float' is supported", param="encoding_format")
        vectors = self.model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        tokens = sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])
        return {
            "object": "list",
            "model": self.spec.name,
            "data": [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
                for i, vector in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def messages_to_prompt(messages: Any, serving_prefix: str = ""):
    """OpenAI chat messages as a tunekit :class:`~tunekit.components.model_clients.base.Prompt`.

    System messages become the prompt's system text; the last message must be the user's; earlier ``user`` and
    ``assistant`` turns become the history. Content may be a string or a list of ``{"type": "text"}`` parts.
    """
    from tunekit.components.model_clients.base import Prompt

    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{i}] must be an object", param="messages")
        role, content = message.get("role"), message.get("content")
        if isinstance(content, list):
            parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            if len(parts) != len(content):
                raise RequestError(f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(parts)
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string", param="messages")
        if role in ("system", "developer"):
            system.append(content)
        elif role in ("user", "assistant"):
            turns.append(("user" if role == "user" else "model", content))
        else:
            raise RequestError(f"messages[{i}].role '{role}' is not supported", param="messages")
    if not turns or turns[-1][0] != "user":
        raise RequestError("the last message must be the user's", param="messages")
    return Prompt(text=serving_prefix + turns[-1][1], system="\n".join(system) or None, history=tuple(turns[:-1]))


def load_model(spec: ModelSpec, device: str = "cpu") -> GenerativeModel | EmbeddingModel:
    """Loads the model a :class:`ModelSpec` names."""
    return EmbeddingModel(spec, device) if spec.kind == EMBED else GenerativeModel(spec, device)


def make_server(model: GenerativeModel | EmbeddingModel, host: str = "127.0.0.1", port: int = 8000):
    """A ``ThreadingHTTPServer`` serving ``model`` (not started; call ``serve_forever``).

    Raises:
        UserError: The address cannot be bound (e.g. the port is in use).
    """
    lock = threading.Lock()
    created = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tunekit-serve"

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, param: str | None = None) -> None:
            kind = "invalid_request_error" if status < 500 else "server_error"
            self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                entry = {"id": model.spec.name, "object": "model", "created": created, "owned_by": "tunekit"}
                self._send(200, {"object": "list", "data": [entry]})
            elif path in ("/health", "/v1/health"):
                self._send(200, {"status": "ok", "model": model.spec.name, "kind": model.kind})
            else:
                self._error(404, f"no route GET {path}")

        def do_POST(self):  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    raise RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", status=413)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    raise RequestError("the request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise RequestError("the request body must be a JSON object")
                if path in ("/v1/chat/completions", "/chat/completions"):
                    if model.kind != GENERATE:
                        raise RequestError(f"{model.spec.name} is an embedding model: use /v1/embeddings", 404)
                    if body.get("stream"):
                        raise RequestError("stream is not supported by tunekit serve", param="stream")
                    with lock:
                        payload = model.chat(body)
                elif path in ("/v1/embeddings", "/embeddings"):
                    if model.kind != EMBED:
                        raise RequestError(
                            f"{model.spec.name} is a generative model: use /v1/chat/completions", 404
                        )
                    with lock:
                        payload = model.embed(body)
                else:
                    raise RequestError(f"no route POST {path}", 404)
            except RequestError as exc:
                self._error(exc.status, str(exc), exc.param)
                return
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
                self._error(500, f"{type(exc).__name__}: {exc}")
                return
            self._send(200, payload)

        def log_message(self, format, *args):  # noqa: A002 (http.server's naming)
            if getattr(self.server, "quiet", False):
                return
            super().log_message(format, *args)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    server.daemon_threads = True
    return server

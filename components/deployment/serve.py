"""``tunekit serve``: an OpenAI-compatible HTTP server for a locally tuned model, on FastAPI and uvicorn.

Routes (JSON, under ``/v1`` so that ``base_url`` is ``http://HOST:PORT/v1`` as for vLLM or Ollama; each also
answers without the ``/v1`` prefix):

- ``GET /v1/models`` and ``GET /v1/models/{id}``: the one model served;
- ``POST /v1/chat/completions`` (generative models): ``messages`` (``system``/``developer``, ``user``,
  ``assistant``), ``max_tokens`` (or ``max_completion_tokens``), ``temperature``, ``top_p``, ``n``, ``seed``,
  ``stop``, ``stream`` (with ``stream_options.include_usage``); the answer has ``choices[].message.content``,
  ``finish_reason`` (``stop`` or ``length``) and ``usage`` (prompt, completion and total tokens, counted with the
  model's tokenizer);
- ``POST /v1/completions`` (generative models): ``prompt`` (a string or a list of strings), the same settings;
  ``choices[].text``;
- ``POST /v1/embeddings`` (sentence-transformers models): ``input`` (a string or a list of strings); the answer
  has ``data[].embedding`` and ``usage.prompt_tokens``;
- ``GET /health``.

A ``model`` other than the served one is a 404 with OpenAI's ``model_not_found`` code; errors are OpenAI-shaped
(``{"error": {"message", "type", "param", "code"}}``) and one line. Bodies over ``max_body_bytes`` are refused
with 413 and the connection closed, whether the size is declared or only seen while the body streams in; a
malformed request (a bad ``Content-Length`` such as ``-1``, bad chunking) is a 400 from the HTTP parser (h11)
and the connection closed. An idle connection is closed after ``timeout_keep_alive`` seconds (uvicorn's setting,
also before the first request, which uvicorn alone does not do), a request whose head or body has not arrived
within ``request_timeout`` seconds is dropped (408 for a body), and a request the model has not answered within
``generation_timeout`` seconds (queued or generating) gets a 504.

The model runs in one worker thread (torch's generate is not shared between threads), so the event loop keeps
answering ``/health`` and ``/v1/models`` and reading requests while the model works; queued requests whose
client has already had its 504 are dropped before they start. ``stream: true`` sends the answer as server-sent
events in OpenAI's ``chat.completion.chunk`` / ``text_completion`` format once it is generated (one content chunk
per choice, then the finish reason, ``usage`` if asked, then ``data: [DONE]``): clients that stream work, but
tokens are not sent one by one.

The model is a local directory: a Hugging Face seq2seq or causal model, a LoRA adapter saved by the local tuning
step (its base model is read from ``adapter_config.json`` and the adapter merged in), or a sentence-transformers
model saved by the embedding tuning step; or ``registry:PURPOSE``, the local registry's champion for that purpose.
A distilled student's ``serving_prefix`` (in its ``tunekit_model.json``) is put before the last user message, as at
evaluation time; prompts are rendered by the same code as at training and evaluation time
(``model_clients.hf``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.model_clients.base import FAILED, TRUNCATED, GenerationConfig, Prompt

REGISTRY_PREFIX = "registry:"
GENERATE = "generate"
EMBED = "embed"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TOKENS_LIMIT = 4096
MAX_N = 8
#: uvicorn's own default (``uvicorn.config.Config(timeout_keep_alive=5)``): an idle connection is closed after it.
TIMEOUT_KEEP_ALIVE = 5.0
#: The most seconds a request's head and body may take to arrive (slow clients hold a connection otherwise).
REQUEST_TIMEOUT = 30.0
#: The most seconds a request may wait for and use the model before it gets a 504.
GENERATION_TIMEOUT = 300.0

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the server refuses, with an OpenAI-style error body.

    Attributes:
        status: The HTTP status.
        param: The request field at fault, if one is.
        code: OpenAI's error code where it has one (``model_not_found``).
        close: Close the connection after the answer (the rest of the body was not read).
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        close: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.close = close


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object (``type`` ``invalid_request_error`` for 4xx, ``server_error`` for 5xx)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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


@dataclass(frozen=True)
class Sampling:
    """A generation request's settings.

    Attributes:
        config: The decoding settings shared with every backend.
        n: Answers per prompt.
        stop: Sequences the answer is cut at (``finish_reason`` ``stop``).
    """

    config: GenerationConfig
    n: int = 1
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """One generated choice: its text, and ``stop`` or ``length``."""

    text: str
    finish_reason: str


class GenerativeModel:
    """A loaded generative model (its :class:`~tunekit.components.model_clients.hf.HFLocalClient`)."""

    kind = GENERATE

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        from tunekit.components.model_clients.hf import HFLocalClient

        self.spec = spec
        self.client = HFLocalClient(spec.path, device=device, batch_size=1)

    def generate(self, prompts: list[Prompt], sampling: Sampling) -> tuple[list[Answer], dict]:
        """``sampling.n`` answers per prompt (prompt by prompt) and the usage; not thread-safe (torch).

        Raises:
            RequestError: The model failed (500).
        """
        answers: list[Answer] = []
        prompt_tokens = completion_tokens = 0
        for prompt in prompts:
            for _ in range(sampling.n):
                (generation,) = self.client.generate([prompt], sampling.config)
                if generation.status == FAILED:
                    raise RequestError(f"generation failed: {generation.error}", status=500)
                text, finish = generation.text, "length" if generation.status == TRUNCATED else "stop"
                cut = [i for i in (text.find(s) for s in sampling.stop) if i >= 0]
                if cut:
                    text, finish = text[: min(cut)], "stop"
                answers.append(Answer(text, finish))
                completion_tokens += generation.output_tokens
            prompt_tokens += generation.input_tokens
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return answers, usage


class EmbeddingModel:
    """A loaded sentence-transformers model answering embedding requests."""

    kind = EMBED

    def __init__(self, spec: ModelSpec, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.model = SentenceTransformer(spec.path, device=device, local_files_only=True)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """The vectors of ``texts`` and their token count; not thread-safe (torch)."""
        vectors = self.model.encode(texts, convert_to_numpy=True, show_progress_bar=False)
        tokens = sum(len(ids) for ids in self.model.tokenizer(texts)["input_ids"])
        return [[float(x) for x in vector] for vector in vectors], tokens


# The request fields each route reads. A field that would change the answer and is not implemented is refused
# unless it holds its neutral value (OpenAI's default), so nothing a client asks for is silently ignored; ``user``
# (an end-user id for abuse monitoring) does not change an answer and is accepted.
_GENERATION_FIELDS = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "stop",
    "stream",
    "stream_options",
}
CHAT_FIELDS = _GENERATION_FIELDS | {"messages", "max_completion_tokens", "user"}
COMPLETION_FIELDS = _GENERATION_FIELDS | {"prompt", "user"}
EMBEDDING_FIELDS = {"model", "input", "encoding_format", "user"}
NEUTRAL_VALUES: dict[str, tuple] = {
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "tools": ([],),
    "tool_choice": ("none", "auto"),  # with no tools, both mean a plain answer
    "parallel_tool_calls": (True, False),
    "response_format": ({"type": "text"},),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
}


def check_fields(body: dict, known: set[str]) -> None:
    """Refuses a field the route does not read, unless it holds its neutral value (or null)."""
    for key, value in body.items():
        if key in known or value is None or value in NEUTRAL_VALUES.get(key, ()):
            continue
        if key in NEUTRAL_VALUES:
            raise RequestError(f"{key} is not supported by tunekit serve; leave it out", param=key)
        raise RequestError(f"unknown field '{key}'; see GET /v1/models and the tunekit serve docs", param=key)


def parse_sampling(body: dict) -> Sampling:
    """The decoding settings of a completion request, checked.

    Raises:
        RequestError: A setting out of range (400, naming the field).
    """
    max_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(max_key)
    max_tokens = 256 if max_tokens is None else max_tokens
    temperature = body.get("temperature")
    temperature = 0.0 if temperature is None else temperature
    top_p = body.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    n = body.get("n")
    n = 1 if n is None else n
    seed, stop = body.get("seed"), body.get("stop")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise RequestError(f"{max_key} must be an integer from 1 to {MAX_TOKENS_LIMIT}", param=max_key)
    if not is_number(temperature) or not 0 <= temperature <= 2:
        raise RequestError("temperature must be a number from 0 to 2", param="temperature")
    if not is_number(top_p) or not 0 < top_p <= 1:
        raise RequestError("top_p must be a number above 0 and at most 1", param="top_p")
    if not is_int(n) or not 1 <= n <= MAX_N:
        raise RequestError(f"n must be an integer from 1 to {MAX_N}", param="n")
    if seed is not None and not is_int(seed):
        raise RequestError("seed must be an integer", param="seed")
    if isinstance(stop, str):
        stop = [stop]
    stop = stop or []
    # OpenAI takes up to 4 stop sequences.
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise RequestError("stop must be a non-empty string or a list of up to 4 of them", param="stop")
    config = GenerationConfig(
        max_output_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), seed=seed
    )
    return Sampling(config=config, n=n, stop=tuple(stop))


def parse_stream(body: dict) -> tuple[bool, bool]:
    """``(stream, include_usage)`` of a request."""
    stream, options = body.get("stream"), body.get("stream_options")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        raise RequestError("stream_options may hold only include_usage", param="stream_options")
    if options and not stream:
        raise RequestError("stream_options needs stream: true", param="stream_options")
    return bool(stream), bool((options or {}).get("include_usage"))


def parse_prompts(body: dict, serving_prefix: str = "") -> list[Prompt]:
    """``/v1/completions``' ``prompt`` (a string or a list of strings) as prompts."""
    texts = body.get("prompt")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError("prompt must be a string or a non-empty list of strings", param="prompt")
    return [Prompt(text=serving_prefix + text) for text in texts]


def parse_inputs(body: dict) -> list[str]:
    """``/v1/embeddings``' ``input`` (a string or a list of strings), checked."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError("input must be a string or a non-empty list of strings", param="input")
    if body.get("encoding_format") not in (None, "float"):
        raise RequestError("only encoding_format 'float' is supported", param="encoding_format")
    return texts


def messages_to_prompt(messages: Any, serving_prefix: str = ""):
    """OpenAI chat messages as a tunekit :class:`~tunekit.components.model_clients.base.Prompt`.

    System messages become the prompt's system text; the last message must be the user's; earlier ``user`` and
    ``assistant`` turns become the history. Content may be a string or a list of ``{"type": "text"}`` parts.
    """
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


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _sse(events: list[dict]):
    """Server-sent events as OpenAI streams them: ``data: {json}`` blocks, then ``data: [DONE]``."""

    async def body():
        for event in events:
            yield f"data: {json.dumps(event)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def make_app(
    model: GenerativeModel | EmbeddingModel,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    request_timeout: float = REQUEST_TIMEOUT,
    generation_timeout: float = GENERATION_TIMEOUT,
) -> FastAPI:
    """The ASGI app serving ``model`` (its worker thread is ``app.state.executor``)."""
    app = FastAPI(title="tunekit serve", openapi_url=None, docs_url=None, redoc_url=None)
    # One worker: the model is used by one thread at a time; the event loop never runs it.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunekit-model")
    app.state.executor = executor
    name = model.spec.name
    created = int(time.time())

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        headers = {"connection": "close"} if exc.close else None
        return JSONResponse(
            error_body(_one_line(str(exc)), exc.status, exc.param, exc.code), exc.status, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        else:
            message = str(exc.detail)
        return JSONResponse(error_body(message, exc.status_code), exc.status_code, headers=exc.headers)

    async def read_json(request: Request) -> dict:
        """The body as a JSON object, read under the size limit and the request timeout."""
        too_big = RequestError(f"the request body is over {max_body_bytes} bytes", status=413, close=True)
        declared = request.headers.get("content-length")
        # h11 has already refused a Content-Length that is not digits (-1, 1e3) with a 400.
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise too_big
        raw = bytearray()
        try:
            async with asyncio.timeout(request_timeout):
                # The limit holds for what arrives, not only for what the header says (chunked bodies).
                async for chunk in request.stream():
                    raw += chunk
                    if len(raw) > max_body_bytes:
                        raise too_big
        except TimeoutError:
            raise RequestError(
                f"the request body did not arrive within {request_timeout:g} s", status=408, close=True
            ) from None
        except ClientDisconnect:
            raise RequestError("the client went away before sending its body", close=True) from None
        if not raw.strip():
            raise RequestError("the request body is empty; send a JSON object")
        try:
            # UTF-8 only, as JSON over HTTP is (RFC 8259 section 8.1); json.loads alone would guess UTF-16/32.
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RequestError(f"the request body is not UTF-8 JSON (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise RequestError(
                f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def check_route(kind: str, body: dict) -> None:
        if model.kind != kind:
            use = "/v1/embeddings" if model.kind == EMBED else "/v1/chat/completions or /v1/completions"
            kind_name = "an embedding" if model.kind == EMBED else "a generative"
            raise RequestError(f"{name} is {kind_name} model: use {use}", status=404)
        asked = body.get("model")
        if asked is not None and asked != name:
            raise RequestError(
                f"the model '{asked}' does not exist; this server serves '{name}' (GET /v1/models)",
                status=404,
                param="model",
                code="model_not_found",
            )

    async def run(fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in the model's thread, within the generation timeout (waiting in line included)."""
        future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        try:
            # On timeout the future is cancelled: a request still in line is dropped; one already running
            # finishes in its thread, and the next waits for it.
            return await asyncio.wait_for(future, generation_timeout)
        except TimeoutError:
            raise RequestError(
                f"the model did not answer within {generation_timeout:g} s (the generation timeout); retry, "
                "or ask for fewer tokens",
                status=504,
            ) from None
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
            logger.exception("the model failed on a request")
            raise RequestError(f"the model failed: {type(exc).__name__}: {exc}", status=500) from None

    def ids(prefix: str) -> tuple[str, int]:
        return f"{prefix}-{time.time_ns():x}", int(time.time())

    def model_entry() -> dict:
        return {"id": name, "object": "model", "created": created, "owned_by": "tunekit"}

    async def list_models() -> dict:
        return {"object": "list", "data": [model_entry()]}

    async def get_model(model_id: str) -> dict:
        if model_id != name:
            raise RequestError(
                f"the model '{model_id}' does not exist; this server serves '{name}'",
                status=404,
                param="model",
                code="model_not_found",
            )
        return model_entry()

    async def health() -> dict:
        return {"status": "ok", "model": name, "kind": model.kind}

    async def chat_completions(request: Request):
        body = await read_json(request)
        check_route(GENERATE, body)
        check_fields(body, CHAT_FIELDS)
        prompt = messages_to_prompt(body.get("messages"), model.spec.serving_prefix)
        sampling = parse_sampling(body)
        stream, include_usage = parse_stream(body)
        answers, usage = await run(model.generate, [prompt], sampling)
        answer_id, now = ids("chatcmpl")
        head = {"id": answer_id, "created": now, "model": name}
        if not stream:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": a.text},
                    "finish_reason": a.finish_reason,
                }
                for i, a in enumerate(answers)
            ]
            return {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        chunk = {**head, "object": "chat.completion.chunk"}
        events = []
        for i, a in enumerate(answers):
            delta = {"role": "assistant", "content": a.text}
            events.append({**chunk, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
            events.append({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": a.finish_reason}]})
        if include_usage:
            events.append({**chunk, "choices": [], "usage": usage})
        return _sse(events)

    async def completions(request: Request):
        body = await read_json(request)
        check_route(GENERATE, body)
        check_fields(body, COMPLETION_FIELDS)
        prompts = parse_prompts(body, model.spec.serving_prefix)
        sampling = parse_sampling(body)
        stream, include_usage = parse_stream(body)
        answers, usage = await run(model.generate, prompts, sampling)
        answer_id, now = ids("cmpl")
        head = {"id": answer_id, "object": "text_completion", "created": now, "model": name}
        choices = [
            {"index": i, "text": a.text, "logprobs": None, "finish_reason": a.finish_reason}
            for i, a in enumerate(answers)
        ]
        if not stream:
            return {**head, "choices": choices, "usage": usage}
        events = [{**head, "choices": [{**c, "finish_reason": None}]} for c in choices] + [
            {**head, "choices": [{**c, "text": ""}]} for c in choices
        ]
        if include_usage:
            events.append({**head, "choices": [], "usage": usage})
        return _sse(events)

    async def embeddings(request: Request):
        body = await read_json(request)
        check_route(EMBED, body)
        check_fields(body, EMBEDDING_FIELDS)
        texts = parse_inputs(body)
        vectors, tokens = await run(model.embed, texts)
        return {
            "object": "list",
            "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    for prefix in ("/v1", ""):
        app.add_api_route(f"{prefix}/models", list_models, methods=["GET"])
        app.add_api_route(prefix + "/models/{model_id:path}", get_model, methods=["GET"])
        app.add_api_route(f"{prefix}/health", health, methods=["GET"])
        app.add_api_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"])
        app.add_api_route(f"{prefix}/completions", completions, methods=["POST"])
        app.add_api_route(f"{prefix}/embeddings", embeddings, methods=["POST"])
    return app


class _TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with two gaps closed.

    uvicorn arms ``timeout_keep_alive`` only after a response, and any byte cancels it, so a connection that
    never sends a request, or sends half a request head, stays open for ever (uvicorn pull request #1192, not
    merged). Here the keep-alive timer also starts when the connection is made, and a head timer closes a
    connection whose request head has not arrived ``head_timeout`` seconds after the connection or the last
    response. Requests uvicorn's h11 parser refuses (``Content-Length: -1``, bad chunking) get the same 400 and
    closed connection as from uvicorn, with an OpenAI-style JSON body instead of plain text.
    """

    head_timeout: float = REQUEST_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request head arrived
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm_head_timer()  # before super(): a pipelined request it starts cancels the timer
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        data = json.dumps(
            error_body(
                # h11's limit on a request head: DEFAULT_MAX_INCOMPLETE_EVENT_SIZE, 16 KiB (uvicorn's default).
                "the request is not valid HTTP/1.1: its request line, headers, Content-Length or chunked body is "
                "malformed, or its head is over 16 KiB",
                400,
            )
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        try:
            for event in (h11.Response(status_code=400, headers=headers), h11.Data(data=data), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # a response was already under way: just close
            pass
        self.transport.close()


class Server:
    """``model``'s app on uvicorn, on a socket bound at construction (so port 0 and a busy port are known early).

    Attributes:
        server_address: ``(host, port)`` bound.
    """

    def __init__(
        self,
        app: FastAPI,
        sock: socket.socket,
        *,
        timeout_keep_alive: float = TIMEOUT_KEEP_ALIVE,
        request_timeout: float = REQUEST_TIMEOUT,
        quiet: bool = False,
    ):
        self.socket = sock
        self.server_address = tuple(sock.getsockname()[:2])
        self._executor: ThreadPoolExecutor = app.state.executor
        protocol = type("TunekitH11Protocol", (_TimedH11Protocol,), {"head_timeout": request_timeout})
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            lifespan="off",
            timeout_keep_alive=timeout_keep_alive,
            # Ctrl-C waits this long for answers under way, then stops.
            timeout_graceful_shutdown=5,
            log_level="warning" if quiet else "info",
            access_log=not quiet,
        )
        self._server = uvicorn.Server(config)
        self._started = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serves until :meth:`shutdown` or a signal (Ctrl-C; uvicorn re-raises it once it has stopped).

        ``poll_interval`` is taken for ``socketserver``'s signature; uvicorn looks for a shutdown every 0.1 s.
        """
        self._started.set()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stops :meth:`serve_forever` (from another thread) and waits for it."""
        self._server.should_exit = True
        if self._started.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        """Closes the socket and drops requests still waiting for the model."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.socket.close()


def make_server(
    model: GenerativeModel | EmbeddingModel,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    timeout_keep_alive: float = TIMEOUT_KEEP_ALIVE,
    request_timeout: float = REQUEST_TIMEOUT,
    generation_timeout: float = GENERATION_TIMEOUT,
    quiet: bool = False,
) -> Server:
    """A :class:`Server` for ``model`` on ``host:port`` (bound, not started; call ``serve_forever``).

    Raises:
        UserError: The address cannot be bound (e.g. the port is in use).
    """
    app = make_app(
        model,
        max_body_bytes=max_body_bytes,
        request_timeout=request_timeout,
        generation_timeout=generation_timeout,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    return Server(app, sock, timeout_keep_alive=timeout_keep_alive, request_timeout=request_timeout, quiet=quiet)

"""The backends behind :class:`~.engine.Engine`, and :func:`make_engine`, which builds one from plain options.

- ``vertex``: Gemini on Vertex AI online, through google-genai's async client (``client.aio``); with a
  ``staging_uri``, sets of at least ``batch_threshold`` uncached prompts go to batch prediction instead.
- ``vertex_batch``: Vertex batch prediction always (:mod:`.batch`).
- ``openai``: any OpenAI-compatible ``/chat/completions`` server (:mod:`.openai_compat`).
- ``vertex_vllm``: an open model on a Vertex AI endpoint served by Model Garden's vLLM container (``:predict``);
  the champion of an open model trained on Vertex (not a config choice: :data:`BACKENDS` lists those).
- ``hf``: a local Hugging Face model (:class:`.hf.HFLocalClient`), in batches on a worker thread.
- ``fake``: scripted answers (:class:`.base.FakeClient`), for tests and demos.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

from google.genai import errors as genai_errors

from tunekit.components.common.errors import UserError
from tunekit.components.common.vertex_jobs import describe_error, is_transient, status_code
from tunekit.components.model_clients import pricing
from tunekit.components.model_clients.base import (
    FAILED,
    FakeClient,
    Generation,
    GenerationConfig,
    ModelClient,
    Prompt,
)
from tunekit.components.model_clients.cache import ResponseCache
from tunekit.components.model_clients.engine import (
    Backend,
    Engine,
    EngineConfig,
    RetryableError,
    parse_retry_after,
)
from tunekit.components.model_clients.vertex import (
    generation_config_to_genai,
    make_genai_client,
    prompt_to_contents,
    response_to_generation,
)

BACKENDS = ("vertex", "vertex_batch", "openai", "hf", "fake")


class VertexOnlineBackend(Backend):
    """Gemini on Vertex AI online (``generateContent``) through google-genai's async client.

    Args:
        model: A publisher model id (``gemini-2.5-flash``) or an endpoint resource name (a tuned model).
        project: The Google Cloud project.
        location: The Vertex AI region.
        client: A google-genai client; by default :func:`.vertex.make_genai_client`'s (which honours
            ``TUNEKIT_VERTEX_BASE_URL`` at run time).
    """

    name = "vertex"
    cache_namespace = "vertex"

    def __init__(self, model: str, project: str, location: str, client: Any = None, base_model: str = ""):
        self.model = model
        # A tuned model's endpoint thinks as the family it was tuned from (vertex.thinking_for).
        self.base_model = base_model
        self.project = project
        self.location = location
        self._client = client if client is not None else make_genai_client(project, location)

    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Sends one prompt.

        A transient error (:func:`~tunekit.components.common.vertex_jobs.is_transient`: quota, server errors,
        broken connections) raises :class:`RetryableError`; another API error fails the prompt.
        """
        (prompt,) = prompts
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model,
                contents=prompt_to_contents(prompt),
                config=generation_config_to_genai(
                    config, prompt.system, timeout_s, model=self.model, base_model=self.base_model
                ),
            )
        except Exception as exc:
            if is_transient(exc):
                headers = getattr(getattr(exc, "response", None), "headers", None) or {}
                raise RetryableError(
                    describe_error(exc),
                    status=status_code(exc),
                    retry_after_s=parse_retry_after(headers.get("retry-after")),
                ) from exc
            if isinstance(exc, genai_errors.APIError):
                return [Generation(text="", status=FAILED, error=describe_error(exc))]
            raise
        return [response_to_generation(response)]

    async def aclose(self) -> None:
        """Closes google-genai's async connections on the engine's loop (they cannot outlive it)."""
        await self._client.aio.aclose()


def vllm_instance(prompt: Prompt, config: GenerationConfig, tokenizer: Any = None) -> dict[str, Any]:
    """One ``:predict`` instance for Model Garden's vLLM container: the prompt as the open model sees it.

    With the model's ``tokenizer``, the prompt is :func:`~.hf.encode_prompt`'s text (:func:`~.hf.prompt_string`:
    the model's chat template applied, as at training and behind ``tunekit serve``), without a ``bos`` the tokenizer
    adds itself: vLLM tokenizes a text ``prompt`` with ``tokenizer.encode(prompt)``, special tokens included
    (vllm-project/vllm, vllm/inputs/preprocess.py, ``InputPreprocessor._tokenize_prompt``), so the container sees
    exactly the trained ids. Without one, the bare rendered text (:func:`~.hf.prompt_text`), right only for a
    tokenizer with no chat template and no ``bos``. ``raw_response`` asks for the generated text alone rather than
    the container's "Prompt: ... Output: ..." layout. Source: Google's Model Garden vLLM notebook
    (GoogleCloudPlatform/vertex-ai-samples, notebooks/community/model_garden/model_garden_pytorch_llama3_1_deployment.ipynb,
    "Raw predict": instances of ``prompt``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``raw_response``;
    ``response.predictions`` one text per instance), the container tunekit deploys open models with
    (``deployment.rollout``).
    """
    from tunekit.components.model_clients.hf import prompt_string, prompt_text

    text = prompt_text(prompt)
    instance: dict[str, Any] = {
        "prompt": prompt_string(tokenizer, text) if tokenizer is not None else text,
        "max_tokens": config.max_output_tokens,
        "temperature": config.temperature,
        "raw_response": True,
    }
    if config.temperature > 0:
        instance["top_p"] = config.top_p
    return instance


#: The files of a Hugging Face model folder that make its tokenizer (never its weights).
TOKENIZER_FILES = (
    "config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def load_served_tokenizer(folder: str) -> Any:
    """The tokenizer of an open model's folder (local, ``/gcs/...`` or ``gs://``): its tokenizer files only.

    A ``gs://`` folder is read through the Cloud Storage FUSE mount when there is one (Vertex AI custom jobs and
    pipeline steps), else only :data:`TOKENIZER_FILES` are downloaded (kilobytes to a few megabytes, no weights).

    Raises:
        UserError: The folder has no tokenizer.
    """
    import tempfile

    from transformers import AutoTokenizer

    from tunekit.components.common import uris

    def load(path: str) -> Any:
        try:
            return AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise UserError(
                f"no tokenizer could be loaded from the model's folder ({error}); give the folder the model was "
                "uploaded from (its tokenizer files)",
                path=folder,
                field="tokenizer",
            ) from error

    if not uris.is_gcs(folder):
        return load(folder)
    if os.path.isdir(uris.gcs_to_fuse(folder)):
        return load(uris.gcs_to_fuse(folder))
    from google.cloud import storage  # only off Vertex, where no FUSE mount exists

    bucket_name, _, prefix = folder[len("gs://") :].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    bucket = storage.Client().bucket(bucket_name)
    with tempfile.TemporaryDirectory() as tmp:
        for name in TOKENIZER_FILES:
            blob = bucket.blob(prefix + name)
            if blob.exists():
                blob.download_to_filename(os.path.join(tmp, name))
        return load(tmp)


def vllm_text(prediction: Any, prompt_text: str) -> str:
    """The generated text of one prediction (the ``Prompt:/Output:`` layout taken off, should it come back)."""
    text = prediction if isinstance(prediction, str) else str(prediction or "")
    head = f"Prompt:\n{prompt_text.strip()}\nOutput:\n"
    return text[len(head) :] if text.startswith(head) else text


class VertexVLLMBackend(Backend):
    """An open model served on a Vertex AI endpoint by Model Garden's vLLM container, through ``:predict``.

    ``POST {endpoint}:predict`` with one :func:`vllm_instance` per answer wanted (``candidate_count`` copies of
    the prompt), Google credentials on the request (:class:`~.vertex.GoogleBearerAuth`), and the HTTP errors,
    retries and timeouts of the OpenAI-compatible backend (:func:`~.openai_compat.post_json`). The container
    reports neither token counts nor a finish reason, so answers are ``ok`` (or ``empty``) with 0 tokens: a
    dedicated endpoint is billed by the node-hour, not by the token.

    Args:
        endpoint: ``projects/P/locations/L/endpoints/E``.
        location: The Vertex AI region (the regional API root).
        auth: httpx authentication (tests); by default :class:`~.vertex.GoogleBearerAuth`.
        tokenizer: The served model's folder (its tokenizer files: :func:`load_served_tokenizer`), or a loaded
            tokenizer; prompts are then rendered as at training (:func:`vllm_instance`). None: the bare text.
    """

    name = "vertex_vllm"
    cache_namespace = "vertex_vllm"

    def __init__(self, endpoint: str, location: str, auth: Any = None, tokenizer: Any = None):
        from tunekit.components.model_clients.vertex import GoogleBearerAuth, vertex_api_root

        self.tokenizer = load_served_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self.model = endpoint
        self.url = f"{vertex_api_root(location)}/v1/{endpoint}:predict"
        self._auth = auth if auth is not None else GoogleBearerAuth()
        self._client: Any = None

    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Sends one prompt (its ``candidate_count`` samples as that many instances)."""
        import httpx

        from tunekit.components.model_clients.base import EMPTY, OK
        from tunekit.components.model_clients.openai_compat import post_json

        (prompt,) = prompts
        if self._client is None:
            self._client = httpx.AsyncClient(auth=self._auth)
        instance = vllm_instance(prompt, config, self.tokenizer)
        count = max(1, config.candidate_count)
        payload, failed = await post_json(self._client, self.url, {"instances": [instance] * count}, timeout_s)
        if failed is not None:
            return [failed]
        texts = [vllm_text(p, instance["prompt"]) for p in payload.get("predictions") or []]
        if not texts:
            return [Generation(text="", status=EMPTY, error="no predictions in the response")]
        extra = {"candidates": texts} if count > 1 else {}
        if not texts[0].strip():
            return [Generation(text="", status=EMPTY, error="no text in the prediction", **extra)]
        return [Generation(text=texts[0], status=OK, **extra)]

    async def aclose(self) -> None:
        """Closes the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class ClientBackend(Backend):
    """A synchronous :class:`ModelClient` (a local model, the fake) as a backend, run on a worker thread.

    Args:
        client: The client.
        name: The backend's name (``hf``, ``fake``).
        model: The model's name in cache keys and reports.
        max_batch: Prompts per call (a local model's batch size).
    """

    def __init__(self, client: ModelClient, name: str, model: str, max_batch: int = 1):
        self.client = client
        self.name = name
        self.cache_namespace = name
        self.model = model
        self.max_batch = max(1, max_batch)

    async def agenerate(
        self, prompts: Sequence[Prompt], config: GenerationConfig, timeout_s: float | None
    ) -> list[Generation]:
        """Runs the client's ``generate`` on a thread, so the engine's loop keeps running."""
        return await asyncio.to_thread(self.client.generate, list(prompts), config)

    async def aclose(self) -> None:
        """Closes the client."""
        self.client.close()


def _fake_client(options: Mapping[str, Any]) -> FakeClient:
    answers = dict(options.get("answers") or {})
    default = options.get("default")
    echo = bool(options.get("echo", False))

    def answer(prompt: Prompt) -> str:
        if prompt.text in answers:
            return str(answers[prompt.text])
        for needle, text in answers.items():
            # Few-shot prompts wrap the input: an answer keyed by the input's text still finds it.
            if needle and needle in prompt.text:
                return str(text)
        if default is not None:
            return str(default)
        return f"echo: {prompt.text}" if echo else ""

    return FakeClient(answer)


def make_engine(
    backend: str,
    model: str,
    *,
    options: Mapping[str, Any] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    price_table: Mapping[str, Any] | None = None,
) -> Engine:
    """Builds an :class:`Engine` from plain options (what a pipeline parameter can hold).

    Args:
        backend: One of :data:`BACKENDS`.
        model: The model: a Gemini model or endpoint, the served model name, a local model directory, or any
            name for the fake.
        options: Backend options. ``vertex``/``vertex_batch``: ``project``, ``location``, ``staging_uri`` (a
            ``gs://`` prefix for batch input and output), ``batch_threshold`` (``vertex`` only; 0 never batches),
            ``poll_interval_s``. ``vertex_vllm``: ``location``, ``tokenizer`` (the served model's folder, whose
            tokenizer renders prompts as at training). ``openai``: ``base_url``, ``api_key_env``, ``headers``. ``hf``:
            ``adapter_dir``, ``batch_size``, ``device``. ``fake``: ``answers`` (prompt or input text -> answer),
            ``default``, ``echo``.
        engine_options: :class:`EngineConfig` fields.
        cache_dir: The response cache's directory (local, ``/gcs/...`` or ``gs://``); None for no cache.
        price_table: Prices per model (:func:`.pricing.parse_price_table`), on top of the defaults.

    Raises:
        UserError: An unknown backend or a missing option.
    """
    options = dict(options or {})
    engine_options = dict(engine_options or {})
    batch_backend = None
    batch_threshold = 0
    if backend in ("vertex", "vertex_batch"):
        project, location = options.get("project", ""), options.get("location", "")
        if not project or not location:
            raise UserError("the vertex backends need a project and a location", field="options")
        staging = options.get("staging_uri", "")
        state_dir = cache_dir if cache_dir else None
        if backend == "vertex":
            primary: Backend = VertexOnlineBackend(
                model, project, location, base_model=str(options.get("base_model", "") or "")
            )
            batch_threshold = int(options.get("batch_threshold", 0) or 0)
            if staging and batch_threshold:
                batch_backend = _batch_backend(model, project, location, staging, state_dir, options)
        else:
            if not staging:
                raise UserError("batch prediction needs a staging_uri (gs://...)", field="options")
            primary = _batch_backend(model, project, location, staging, state_dir, options)
    elif backend == "vertex_vllm":
        primary = VertexVLLMBackend(
            model, str(options.get("location", "")), tokenizer=options.get("tokenizer") or None
        )
    elif backend == "openai":
        from tunekit.components.model_clients.openai_compat import OpenAICompatBackend

        if not options.get("base_url"):
            raise UserError("the openai backend needs a base_url (e.g. http://localhost:8000/v1)", field="options")
        primary = OpenAICompatBackend(
            model,
            options["base_url"],
            api_key_env=options.get("api_key_env", "OPENAI_API_KEY"),
            headers=options.get("headers"),
        )
    elif backend == "hf":
        from tunekit.components.model_clients.hf import HFLocalClient

        kwargs = {k: options[k] for k in ("batch_size", "device") if k in options}
        client = HFLocalClient(model, options.get("adapter_dir") or None, **kwargs)
        name = model + (f"+{options['adapter_dir']}" if options.get("adapter_dir") else "")
        primary = ClientBackend(client, "hf", name, max_batch=getattr(client, "batch_size", 8))
        # One model, one batch at a time: more workers would only queue on the same device.
        engine_options.setdefault("concurrency", 1)
    elif backend == "fake":
        primary = ClientBackend(_fake_client(options), "fake", model)
    else:
        raise UserError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}", field="backend")
    cache = ResponseCache(cache_dir) if cache_dir else None
    return Engine(
        primary,
        EngineConfig.from_dict(engine_options),
        cache,
        pricing.parse_price_table(price_table),
        batch_backend=batch_backend,
        batch_threshold=batch_threshold,
    )


#: The batch job's state file, kept in the response cache's folder.
BATCH_STATE_NAME = "batch_state.json"


def _batch_backend(
    model: str, project: str, location: str, staging: str, state_dir: str | None, options: Mapping[str, Any]
) -> Backend:
    from tunekit.components.model_clients.batch import VertexBatchBackend

    # The state sits next to the response cache, wherever it is: a gs:// cache keeps a gs:// state object, so a
    # retried step (a new container, no local files) re-attaches to its job instead of paying for a second one.
    state_path = None
    if state_dir:
        state_path = (
            f"{state_dir.rstrip('/')}/{BATCH_STATE_NAME}"
            if state_dir.startswith("gs://")
            else os.path.join(state_dir, BATCH_STATE_NAME)
        )
    return VertexBatchBackend(
        model,
        project,
        location,
        staging_uri=staging,
        state_path=state_path,
        poll_interval_s=float(options.get("poll_interval_s", 30.0)),
    )

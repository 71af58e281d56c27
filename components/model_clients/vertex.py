"""Gemini on Vertex AI through google-genai: the client factories and a :class:`ModelClient` for Gemini models.

``make_genai_client`` is the one place that builds a google-genai client for Vertex, and ``make_rest_client`` the
one that builds aiplatform's generated service clients (pipelines, models, endpoints). When the environment
variable ``TUNEKIT_VERTEX_BASE_URL`` is set *at run time* (tests set it to an offline fake of the Vertex REST API),
both talk to that URL with a static token instead of Application Default Credentials.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.common.vertex_jobs import backoff_delay, describe_error, is_transient
from tunekit.components.model_clients.base import (
    BLOCKED,
    EMPTY,
    FAILED,
    OK,
    TRUNCATED,
    Generation,
    GenerationConfig,
    ModelClient,
    Prompt,
)

#: When set at run time, every Vertex client talks to this base URL (an offline fake) with a static token.
BASE_URL_ENV = "TUNEKIT_VERTEX_BASE_URL"
#: The static bearer token sent to ``TUNEKIT_VERTEX_BASE_URL`` (``fake-token`` when unset).
TOKEN_ENV = "TUNEKIT_VERTEX_TOKEN"

#: Finish reasons that mean the answer was withheld by a filter.
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)


def base_url_override() -> str | None:
    """The fake's base URL from ``TUNEKIT_VERTEX_BASE_URL``, read now (never at import), or None."""
    return os.environ.get(BASE_URL_ENV) or None


def static_credentials():
    """Static OAuth credentials for the fake: no metadata server, no ADC lookup, no refresh."""
    from google.oauth2.credentials import Credentials

    return Credentials(token=os.environ.get(TOKEN_ENV, "fake-token"))


#: The environment variables google-genai 2.34 reads to choose its API when the client is built without a flag
#: (google/genai/_api_client.py, ``BaseApiClient.__init__``): "true" or "1" (any case) means the Gemini Enterprise
#: Agent Platform API (formerly Vertex AI), anything else the Gemini Developer API; GOOGLE_GENAI_USE_ENTERPRISE, the
#: new name, wins over the legacy GOOGLE_GENAI_USE_VERTEXAI when both are set.
API_ENV_VARS = ("GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_USE_VERTEXAI")


def check_enterprise_api() -> None:
    """Fails when the environment asks google-genai for the Gemini Developer API, which tunekit cannot use.

    Every Gemini call tunekit makes (tuning jobs, tuned-model endpoints, batch prediction, the evaluation service)
    exists only on the Gemini Enterprise Agent Platform (Vertex AI) API, so its clients are built for it; a
    variable of :data:`API_ENV_VARS` saying otherwise is read as google-genai reads it and refused, not ignored.

    Raises:
        UserError: The deciding variable is set to something other than true/1.
    """
    for name in API_ENV_VARS:
        value = os.environ.get(name)
        if value is None:
            continue
        if value.lower() not in ("true", "1"):
            raise UserError(
                f"{name}={value} selects the Gemini Developer API, but tunekit's Gemini calls (tuning, tuned "
                f"endpoints, batch prediction) need the Gemini Enterprise Agent Platform (Vertex AI) API: unset "
                f"{name} or set it to true",
                field=name,
            )
        return


def make_genai_client(project: str, location: str) -> genai.Client:
    """Builds a google-genai client for the Gemini Enterprise Agent Platform (Vertex AI) API.

    ``GOOGLE_GENAI_USE_ENTERPRISE`` and ``GOOGLE_GENAI_USE_VERTEXAI`` are honoured as google-genai reads them
    (:func:`check_enterprise_api`), and an empty ``project`` or ``location`` falls back to the SDK's own
    ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION``.

    Args:
        project: The Google Cloud project ('' for ``GOOGLE_CLOUD_PROJECT``).
        location: The Vertex AI region (``us-central1``...) or ``global`` ('' for ``GOOGLE_CLOUD_LOCATION``).

    Returns:
        A client using Application Default Credentials, or, when ``TUNEKIT_VERTEX_BASE_URL`` is set, one that
        talks to that URL with a static token.

    Raises:
        UserError: The environment asks for the Gemini Developer API.
    """
    check_enterprise_api()
    # ``enterprise`` is google-genai 2.34's name of the flag; ``vertexai`` is its legacy alias.
    options: dict[str, Any] = {"enterprise": True, "project": project or None, "location": location or None}
    base_url = base_url_override()
    if base_url:
        options.update(credentials=static_credentials(), http_options=types.HttpOptions(base_url=base_url))
    return genai.Client(**options)


def make_rest_client(client_class: type, location: str) -> Any:
    """An aiplatform_v1 service client (``PipelineServiceClient``, ``ModelServiceClient``...) over REST.

    Args:
        client_class: The generated client class.
        location: The Vertex AI region (the regional endpoint ``{location}-aiplatform.googleapis.com``).

    Returns:
        A client using Application Default Credentials, or, when ``TUNEKIT_VERTEX_BASE_URL`` is set, one that
        talks to that URL with a static token (the REST transport keeps an explicit ``http://`` scheme, which a
        loopback fake needs).
    """
    base_url = base_url_override()
    if base_url:
        return client_class(
            credentials=static_credentials(), transport="rest", client_options={"api_endpoint": base_url}
        )
    return client_class(transport="rest", client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"})


def vertex_api_root(location: str) -> str:
    """The Vertex AI REST root for ``location``: ``TUNEKIT_VERTEX_BASE_URL`` when set, else the regional endpoint."""
    return (base_url_override() or f"https://{location}-aiplatform.googleapis.com").rstrip("/")


class GoogleBearerAuth(httpx.Auth):
    """httpx authentication with Google credentials: ``Authorization: Bearer`` with a token refreshed when stale.

    For the HTTP calls that go to Vertex AI without a generated client (a custom-container endpoint's
    ``:predict``). Application Default Credentials by default, or the fake's static token when
    ``TUNEKIT_VERTEX_BASE_URL`` is set; a refresh blocks the calling thread briefly (once an hour).
    """

    def __init__(self, credentials: Any = None):
        self._credentials = credentials
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid access token."""
        with self._lock:
            if self._credentials is None:
                if base_url_override():
                    self._credentials = static_credentials()
                else:
                    import google.auth

                    self._credentials, _ = google.auth.default(
                        scopes=["https://www.googleapis.com/auth/cloud-platform"]
                    )
            if not self._credentials.valid:
                from google.auth.transport.requests import Request

                self._credentials.refresh(Request())
            return self._credentials.token

    def auth_flow(self, request: httpx.Request):
        """Adds the bearer token to ``request``."""
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


def sanitize_labels(labels: dict[str, Any] | None) -> dict[str, str]:
    """Makes labels acceptable to Google Cloud: lowercase ``[a-z0-9_-]``, at most 63 characters.

    Keys must start with a letter; values may be empty. Run names and fingerprints are turned into labels here,
    so bad characters are replaced rather than rejected.

    Args:
        labels: Labels as given; None for none.

    Returns:
        The cleaned labels (at most 64 of them, as Google Cloud allows).
    """
    out: dict[str, str] = {}
    for key, value in (labels or {}).items():
        clean_key = _LABEL_BAD.sub("-", str(key).lower()).strip("-")[:63]
        if not clean_key:
            continue
        if not clean_key[0].isalpha():
            clean_key = ("k-" + clean_key)[:63]
        out[clean_key] = _LABEL_BAD.sub("-", "" if value is None else str(value).lower())[:63]
    return dict(list(out.items())[:64])


def _finish_reason(candidate: types.Candidate) -> str:
    reason = candidate.finish_reason
    if reason is None:
        return ""
    return reason.value if hasattr(reason, "value") else str(reason)


def _candidate_text(candidate: types.Candidate) -> str:
    # Thought summaries are not the answer.
    parts = (candidate.content.parts or []) if candidate.content else []
    return "".join(p.text for p in parts if p.text and not p.thought)


def response_to_generation(response: types.GenerateContentResponse) -> Generation:
    """Turns a generateContent response into a :class:`Generation` with a status and token counts.

    Args:
        response: The response of ``client.models.generate_content``.

    Returns:
        ``blocked`` when the prompt or the answer was filtered, ``truncated`` at ``MAX_TOKENS`` (the partial text
        is kept), ``empty`` when there is no text, ``ok`` otherwise.
    """
    usage = response.usage_metadata
    input_tokens = (usage.prompt_token_count or 0) if usage else 0
    # Thinking tokens are billed as output.
    output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens}

    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = getattr(feedback.block_reason, "value", feedback.block_reason)
        message = f"prompt blocked: {reason}"
        if feedback.block_reason_message:
            message += f" ({feedback.block_reason_message})"
        return Generation(text="", status=BLOCKED, error=message, **tokens)

    candidates = response.candidates or []
    if not candidates:
        return Generation(text="", status=EMPTY, error="no candidates in the response", **tokens)
    texts = [_candidate_text(c) for c in candidates]
    first = candidates[0]
    reason = _finish_reason(first)
    extra = {"candidates": texts} if len(texts) > 1 else {}
    if reason in BLOCKING_FINISH_REASONS:
        detail = f": {first.finish_message}" if first.finish_message else ""
        return Generation(
            text=texts[0], status=BLOCKED, error=f"finish reason {reason}{detail}", **tokens, **extra
        )
    if reason == "MAX_TOKENS":
        return Generation(
            text=texts[0], status=TRUNCATED, error="hit max_output_tokens (MAX_TOKENS)", **tokens, **extra
        )
    if not texts[0].strip():
        return Generation(
            text="", status=EMPTY, error=f"no text (finish reason {reason or 'none'})", **tokens, **extra
        )
    return Generation(text=texts[0], status=OK, **tokens, **extra)


def prompt_to_contents(prompt: Prompt) -> list[types.Content]:
    """The history turns and the prompt's text as Gemini contents (roles ``user``/``model``)."""
    contents = []
    for role, text in prompt.history:
        gemini_role = "model" if role in ("model", "assistant") else "user"
        contents.append(types.Content(role=gemini_role, parts=[types.Part(text=text)]))
    contents.append(types.Content(role="user", parts=[types.Part(text=prompt.text)]))
    return contents


#: 2.5 Pro's smallest thinking budget: it cannot turn thinking off (budget range 128-32,768; "cannot disable").
#: Source: Vertex AI "Thinking" page, https://cloud.google.com/vertex-ai/generative-ai/docs/thinking (thinking
#: budgets per model: 2.5 Pro 128-32,768; 2.5 Flash 0-24,576 with 0 turning thinking off; 2.5 Flash-Lite 0 or
#: 512-24,576), and google-genai 2.34 ``types.ThinkingConfig.thinking_budget`` ("0 is DISABLED. -1 is AUTOMATIC").
PRO_25_MIN_THINKING_BUDGET = 128
#: Output headroom added on Gemini 3 Pro, whose lowest thinking level (``LOW``) has no documented token cap: a
#: tunekit choice, not a Google number (thinking tokens count against ``maxOutputTokens``, same "Thinking" page).
GEMINI_3_PRO_HEADROOM = 1024

_ENDPOINT_NAME = re.compile(r"(^|/)endpoints/[^/]+$")
_GEMINI_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?-([a-z-]+)")


def thinking_for(model: str, base_model: str = "") -> tuple[types.ThinkingConfig | None, int]:
    """The thinking setting of a Gemini model family, and the output tokens to add for what it still thinks.

    On Gemini 2.5+ thinking is on and dynamic unless the request says otherwise, and thinking tokens count
    against ``maxOutputTokens``: a short answer budget (the judge's 8 tokens) is spent thinking and the answer
    comes back empty with ``MAX_TOKENS``. So every Gemini request states its thinking, the least each family
    allows:

    - 2.5 Flash and Flash-Lite: ``thinking_budget=0`` (off);
    - 2.5 Pro: ``thinking_budget=128`` (it cannot be turned off), and 128 more output tokens;
    - Gemini 3.x: ``thinking_level`` instead of a budget (a budget is the 2.5 control): ``MINIMAL`` on Flash /
      Flash-Lite, ``LOW`` on Pro (Gemini 3 Pro accepts only ``LOW`` and ``HIGH``), plus
      :data:`GEMINI_3_PRO_HEADROOM` output tokens on Pro;
    - older Gemini models (1.5, 2.0), which do not think: nothing (they reject a thinking config).

    Sources: https://cloud.google.com/vertex-ai/generative-ai/docs/thinking and
    https://cloud.google.com/vertex-ai/generative-ai/docs/start/get-started-with-gemini-3 ("By default, Gemini 3
    Pro and Gemini 3 Flash use dynamic thinking ... you can constrain the model's thinking_level"); the levels are
    google-genai 2.34's ``types.ThinkingLevel`` (``MINIMAL``, ``LOW``, ``MEDIUM``, ``HIGH``).

    Args:
        model: A publisher model id (``gemini-2.5-flash``, ``publishers/google/models/gemini-2.5-pro``) or an
            endpoint resource name (a tuned model).
        base_model: For an endpoint, the model it was tuned from: a tuned model thinks as its base family. Without
            it an endpoint's family is unknown and nothing is set (a non-thinking base would reject the field).

    Returns:
        ``(ThinkingConfig or None, extra output tokens)``.
    """
    name = base_model if (_ENDPOINT_NAME.search(model) and base_model) else model
    found = _GEMINI_VERSION.search(name.rsplit("/", 1)[-1].lower())
    if not found:
        return None, 0
    major, minor, variant = int(found.group(1)), int(found.group(2) or 0), found.group(3)
    pro = variant.startswith("pro")
    if major >= 3:
        if pro:
            return types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW), GEMINI_3_PRO_HEADROOM
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel.MINIMAL), 0
    if (major, minor) >= (2, 5):
        if pro:
            return types.ThinkingConfig(thinking_budget=PRO_25_MIN_THINKING_BUDGET), PRO_25_MIN_THINKING_BUDGET
        return types.ThinkingConfig(thinking_budget=0), 0
    return None, 0


def generation_config_to_genai(
    config: GenerationConfig,
    system: str | None = None,
    timeout_s: float | None = None,
    *,
    model: str = "",
    base_model: str = "",
) -> types.GenerateContentConfig:
    """Maps the backend-neutral :class:`GenerationConfig` to google-genai's ``GenerateContentConfig``.

    This is the one place a Gemini request's config is built, its thinking setting included
    (:func:`thinking_for`): ``max_output_tokens`` stays the answer's budget, raised by what the family still
    thinks.

    Args:
        config: Decoding settings.
        system: The prompt's system instruction, if any.
        timeout_s: Per-request timeout in seconds, if any.
        model: The model the request goes to (its family decides the thinking setting); '' sets none.
        base_model: For a tuned model's endpoint, the model it was tuned from.
    """
    kwargs = config.request_fields(max_tokens="max_output_tokens", count="candidate_count")
    thinking, extra_tokens = thinking_for(model, base_model)
    if thinking is not None:
        kwargs["thinking_config"] = thinking
        kwargs["max_output_tokens"] = config.max_output_tokens + extra_tokens
    if system:
        kwargs["system_instruction"] = system
    if timeout_s:
        # google-genai takes milliseconds.
        kwargs["http_options"] = types.HttpOptions(timeout=max(1, int(timeout_s * 1000)))
    return types.GenerateContentConfig(**kwargs)


class VertexGeminiClient(ModelClient):
    """Gemini on Vertex AI (a publisher model or a tuned model's endpoint) as a :class:`ModelClient`.

    Prompts are sent concurrently (at most ``concurrency`` at a time); transient errors (quota, server errors,
    timeouts: :func:`~tunekit.components.common.vertex_jobs.is_transient`) are retried with capped exponential
    backoff and jitter. A prompt that still fails
    comes back with status ``failed`` and the error; the others are unaffected.

    Args:
        model: A publisher model id (``gemini-2.5-flash``) or an endpoint resource name
            (``projects/P/locations/L/endpoints/E``, where a tuned model is served).
        project: The Google Cloud project.
        location: The Vertex AI region.
        client: A google-genai client; by default one from :func:`make_genai_client`.
        concurrency: The most requests in flight at once.
        timeout_s: Per-request timeout in seconds.
        max_attempts: Tries per prompt, the first included.
        initial_backoff_s: The first retry's nominal delay; it doubles each retry.
        max_backoff_s: The cap on one retry's delay.
        base_model: For an endpoint, the model it was tuned from (its thinking setting is the base family's,
            :func:`thinking_for`).
    """

    backend = "vertex"

    def __init__(
        self,
        model: str,
        project: str,
        location: str,
        client: genai.Client | None = None,
        concurrency: int = 8,
        timeout_s: float = 60,
        *,
        max_attempts: int = 5,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        base_model: str = "",
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model = model
        self.base_model = base_model
        self.project = project
        self.location = location
        self._owns_client = client is None
        self._client = client if client is not None else make_genai_client(project, location)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self._lock = threading.Lock()
        #: Retries made so far (all prompts), for reports.
        self.retries = 0

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Generates one :class:`Generation` per prompt, in order.

        Args:
            prompts: What to ask.
            config: Decoding settings; defaults to :class:`GenerationConfig`'s.

        Returns:
            One result per prompt, in the prompts' order.
        """
        config = config or GenerationConfig()
        if not prompts:
            return []
        workers = min(self.concurrency, len(prompts))
        if workers == 1:
            return [self._generate_one(p, config) for p in prompts]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vertex-gemini") as pool:
            return list(pool.map(lambda p: self._generate_one(p, config), prompts))

    def _generate_one(self, prompt: Prompt, config: GenerationConfig) -> Generation:
        request_config = generation_config_to_genai(
            config, prompt.system, self.timeout_s, model=self.model, base_model=self.base_model
        )
        contents = prompt_to_contents(prompt)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.models.generate_content(
                    model=self.model, contents=contents, config=request_config
                )
            except (genai_errors.APIError, httpx.TransportError) as exc:
                if attempt < self.max_attempts and is_transient(exc):
                    with self._lock:
                        self.retries += 1
                    time.sleep(backoff_delay(attempt, self.initial_backoff_s, self.max_backoff_s))
                    continue
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                return Generation(text="", status=FAILED, error=describe_error(exc) + tries)
            return response_to_generation(response)
        raise AssertionError("unreachable: the loop returns on its last attempt")

    def close(self) -> None:
        """Closes the google-genai client when this object created it."""
        if self._owns_client:
            self._client.close()

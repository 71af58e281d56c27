"""Limits and recommendations from the SPEC, per method, model and task, and the token estimate.

Token counts here are estimates (about four characters per token for ASCII text, three UTF-8 bytes per token
otherwise, and a fixed cost per file part); the report says so. Exact counts come from the Vertex count-tokens API
when the caller passes a counter (see :func:`tunekit.components.data_validation.validate.validate_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass

SUPERVISED = "supervised"
DISTILLATION = "distillation"
PREFERENCE = "preference"
EMBEDDING = "embedding"
METHODS = (SUPERVISED, DISTILLATION, PREFERENCE, EMBEDDING)

TASKS = ("classification", "summarization", "extractive_qa", "chat", "generic")

#: Gemini models tunable on Vertex AI (SPEC, 2026).
TUNABLE_GEMINI = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3.1-flash-lite",
    "gemini-3.5-flash",
)
#: PaLM models: retired on 2025-04-09; their data formats are still accepted.
RETIRED_PALM = ("text-bison", "chat-bison", "text-unicorn", "code-bison")

GB = 1024**3
#: Gemini counts an image as 258 tokens; video and audio cost more, so this is a floor.
TOKENS_PER_FILE_PART = 258


@dataclass(frozen=True)
class Limits:
    """Hard limits that Vertex enforces (errors) and reference limits (warnings).

    Attributes:
        max_tokens_per_example: Input plus output tokens per example, or None when no limit applies.
        max_input_tokens: Input tokens beyond which the input is truncated (distillation), or None.
        max_output_tokens: Output tokens beyond which the output is truncated (distillation), or None.
        max_file_bytes: Largest training file, or None.
        max_examples: Most training examples (text), or None.
        max_multimodal_examples: Most training examples when rows carry files, or None.
        max_validation_examples: Most validation examples, or None.
        reference_max_examples: Examples beyond which the method's reference setup was not meant to go (warning).
    """

    max_tokens_per_example: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_file_bytes: int | None = None
    max_examples: int | None = None
    max_multimodal_examples: int | None = None
    max_validation_examples: int | None = None
    reference_max_examples: int | None = None


GEMINI_SFT = Limits(
    max_tokens_per_example=131_072,
    max_file_bytes=1 * GB,
    max_examples=10_000_000,
    max_multimodal_examples=300_000,
    max_validation_examples=5_000,
)
GEMINI_PREFERENCE = Limits(max_tokens_per_example=131_072, max_file_bytes=1 * GB, max_examples=10_000_000)
#: PaLM-era distillation: inputs over 7,168 tokens and outputs over 1,024 are truncated; at most 10,000 examples.
DISTILLATION_LIMITS = Limits(max_input_tokens=7_168, max_output_tokens=1_024, reference_max_examples=10_000)
NO_LIMITS = Limits()

#: Backends of the embedding method: Google's tune-text-embedding-model template, or sentence-transformers here.
EMBEDDING_VERTEX = "vertex"
EMBEDDING_LOCAL = "local"
EMBEDDING_BACKENDS = (EMBEDDING_VERTEX, EMBEDDING_LOCAL)


@dataclass(frozen=True)
class EmbeddingLimits:
    """Dataset size requirements of Google's tune-text-embedding-model template.

    Source: "Dataset size requirements" in Google's "Tune text embeddings" page,
    https://cloud.google.com/vertex-ai/generative-ai/docs/models/tune-embeddings (now also at
    https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/embeddings): 9 to 10,000
    queries, 9 to 500,000 corpus documents, at least 3 query ids in each label file and at least 9 across all
    splits, fewer than 500,000 labels in all.
    """

    min_queries: int = 9
    max_queries: int = 10_000
    min_documents: int = 9
    max_documents: int = 500_000
    min_query_ids_per_label_file: int = 3
    min_query_ids_in_all_splits: int = 9
    #: "The total number of labels must be less than 500,000": 499,999 is the most.
    max_labels: int = 499_999


EMBEDDING_TEMPLATE = EmbeddingLimits()
#: The template's smallest ``train_steps``: aiplatform's ``TextEmbeddingModel.tune_model`` refuses fewer
#: (``vertexai/language_models/_language_models.py``, "train_steps must be greater than or equal to 30").
MIN_EMBEDDING_TRAIN_STEPS = 30

#: task -> (min examples for SFT, min examples for distillation), from the SPEC's recommendations table.
RECOMMENDED_EXAMPLES: dict[str, tuple[int, int | None]] = {
    "classification": (100, 100),
    "summarization": (100, 100),
    "extractive_qa": (100, 100),
    "chat": (200, None),
}
#: Unlabelled distillation data: more than this many examples is recommended.
MIN_UNLABELLED_DISTILLATION = 1_000


def is_gemini(model: str | None) -> bool:
    """Whether ``model`` names a Gemini model (None: the Vertex default, which is Gemini)."""
    return model is None or model == "" or model.split("/")[-1].startswith("gemini")


def limits_for(method: str, model: str | None) -> Limits:
    """The limits that apply to ``method`` with ``model`` (an open model has no Vertex limits)."""
    if method == DISTILLATION:
        return DISTILLATION_LIMITS
    if not is_gemini(model):
        return NO_LIMITS
    if method == SUPERVISED:
        return GEMINI_SFT
    if method == PREFERENCE:
        return GEMINI_PREFERENCE
    return NO_LIMITS


def estimate_tokens(text: str) -> int:
    """An estimate of the tokens in ``text``: ~4 characters per token for ASCII, ~3 UTF-8 bytes otherwise."""
    if text.isascii():  # O(1) in CPython: the string keeps the flag
        return (len(text) + 3) >> 2
    return (len(text.encode("utf-8", "surrogatepass")) + 2) // 3

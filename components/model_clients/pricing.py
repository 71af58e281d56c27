"""Token prices and cost estimates.

Prices are US dollars per million tokens, input and output apart, as Vertex AI states them. The defaults
(:data:`DEFAULT_PRICES`) are Vertex AI's online list prices of three Gemini models as of mid-2025 (standard tier,
prompts up to 200K tokens, thinking tokens billed as output); prices change, so check the Vertex AI generative AI
pricing page and pass your own ``price_table`` for figures you quote. Batch prediction is billed at half the online
price (:data:`BATCH_DISCOUNT`). Tuned-model endpoints and open models have no list price: a model missing from the
table gets no cost in the report (None, not zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tunekit.components.common.errors import UserError

#: The share of the online price a batch prediction costs: half (SPEC: Gemini batch prediction, 50% of online).
BATCH_DISCOUNT = 0.5
#: When :data:`DEFAULT_PRICES` were read off Vertex AI's pricing page; check it for today's prices.
DEFAULT_PRICES_AS_OF = "2025-07"


@dataclass(frozen=True)
class Price:
    """The price of a model's tokens.

    Attributes:
        input_per_million: Dollars per million input (prompt) tokens.
        output_per_million: Dollars per million output tokens (thinking tokens included).
    """

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for the given token counts."""
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


#: Online list prices (USD per million tokens, prompts up to 200K tokens) as of :data:`DEFAULT_PRICES_AS_OF`;
#: check the Vertex AI pricing page and override them with a price table. These three models retired on
#: October 16, 2026 (tuning.gemini.MODEL_LIFECYCLE); their prices stay for the cost of runs made on them. The
#: current models (gemini-3.5-flash, gemini-3.5-flash-lite, gemini-3.1-flash-lite) have no entry: Vertex AI's
#: pricing page for them was not among the sources read (2026-12-06), and no price is guessed, so they are
#: unpriced (None, not zero) until a ``price_table`` gives theirs.
DEFAULT_PRICES: dict[str, Price] = {
    "gemini-2.5-pro": Price(1.25, 10.0),
    "gemini-2.5-flash": Price(0.30, 2.50),
    "gemini-2.5-flash-lite": Price(0.10, 0.40),
}


def parse_price_table(table: Mapping[str, object] | None, *, include_defaults: bool = True) -> dict[str, Price]:
    """Reads a price table given as plain data (a pipeline parameter or YAML).

    Args:
        table: ``{model: {"input": dollars_per_million, "output": dollars_per_million}}``; a value may also be a
            two-item list ``[input, output]`` or a :class:`Price`.
        include_defaults: Start from :data:`DEFAULT_PRICES` (the table's entries win).

    Returns:
        Prices by model name.

    Raises:
        UserError: An entry is not a pair of non-negative numbers.
    """
    prices = dict(DEFAULT_PRICES) if include_defaults else {}
    for model, value in (table or {}).items():
        try:
            if isinstance(value, Price):
                price = value
            elif isinstance(value, Mapping):
                price = Price(float(value["input"]), float(value["output"]))
            else:
                first, second = value  # type: ignore[misc]
                price = Price(float(first), float(second))
        except (KeyError, TypeError, ValueError):
            raise UserError(
                f"price of {model!r} must be {{'input': dollars, 'output': dollars}} per million tokens; got {value!r}",
                field="price_table",
            ) from None
        if price.input_per_million < 0 or price.output_per_million < 0:
            raise UserError(f"price of {model!r} is negative", field="price_table")
        prices[str(model)] = price
    return prices


def price_for(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: an exact entry, else the longest entry the name ends with or starts with.

    ``publishers/google/models/gemini-2.5-flash`` and ``gemini-2.5-flash-001`` both find ``gemini-2.5-flash``;
    ``gemini-2.5-flash-lite`` keeps its own entry because longer names are tried first.
    """
    if model in prices:
        return prices[model]
    short = model.rsplit("/", 1)[-1]
    for name in sorted(prices, key=len, reverse=True):
        if short == name or short.startswith(name + "-") or short.startswith(name + "@"):
            return prices[name]
    return None


def estimate_cost(
    model: str, input_tokens: int, output_tokens: int, prices: Mapping[str, Price], *, batch: bool = False
) -> float | None:
    """Dollars for the tokens at ``model``'s price (half for batch prediction), or None when it has no price."""
    price = price_for(model, prices)
    if price is None:
        return None
    return price.cost(input_tokens, output_tokens) * (BATCH_DISCOUNT if batch else 1.0)


def estimate_tokens(text: str) -> int:
    """A model-free token estimate for dry runs and rate limiting: about four characters a token.

    It is close for English with SentencePiece and BPE vocabularies; the real count comes back in each answer's
    usage and replaces this estimate in the report.
    """
    return max(1, math.ceil(len(text) / 4)) if text else 0


# --- tuning prices --------------------------------------------------------------------------------------------

#: When :data:`TUNING_PRICES` were read; check Google's pricing pages for today's prices.
TUNING_PRICES_AS_OF = "2026-06"

#: Managed tuning list prices in US dollars per million *training* tokens (a dataset's tokens times its epochs).
#: The open models' (Model Garden managed OSS tuning) are those of Google's own cost script in the ``google/skills``
#: repository's agent-platform-tuning references, mid-2026, as issue 16 quotes them. Gemini tuning is billed per
#: training token too, but Vertex AI's pricing page for the current Gemini models' tuning was not among the sources
#: read (2026-12-06): they have no entry, and a model without one is unpriced (None, not zero) until a
#: ``tuning_price_table`` gives its price. Tuning on this machine has no per-token price either.
TUNING_PRICES: dict[str, float] = {
    "gemma-3-1b": 0.47,
    "llama-3.1-8b": 0.67,
    "qwen3-32b": 6.57,
}


def parse_tuning_price_table(
    table: Mapping[str, object] | None, *, include_defaults: bool = True
) -> dict[str, float]:
    """Reads ``{model: dollars per million training tokens}`` (the table's entries win over :data:`TUNING_PRICES`).

    Raises:
        UserError: A price is not a non-negative number.
    """
    prices = dict(TUNING_PRICES) if include_defaults else {}
    for model, value in (table or {}).items():
        try:
            price = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UserError(
                f"tuning price of {model!r} must be dollars per million training tokens; got {value!r}",
                field="tuning_price_table",
            ) from None
        if price < 0:
            raise UserError(f"tuning price of {model!r} is negative", field="tuning_price_table")
        prices[str(model)] = price
    return prices


def tuning_price_for(model: str, prices: Mapping[str, float] | None = None) -> float | None:
    """Dollars per million training tokens of tuning ``model``, or None when it has no price.

    An exact entry, else the longest entry the model's own name (after ``@`` in an open model's
    ``{publisher}/{family}@{version}``, else after the last ``/``) equals or starts with before a ``-``:
    ``meta/llama3_1@llama-3.1-8b-instruct`` finds ``llama-3.1-8b``.
    """
    prices = TUNING_PRICES if prices is None else prices
    if model in prices:
        return prices[model]
    short = model.rsplit("@", 1)[-1].rsplit("/", 1)[-1].lower()
    for name in sorted(prices, key=len, reverse=True):
        if short == name or short.startswith(name + "-"):
            return prices[name]
    return None

"""The tuning bill, before and after: training tokens counted before the job, billed tokens read after it.

Managed tuning is billed per *training token*: the tokens of the training dataset times the epochs (Gemini
supervised tuning and Model Garden's managed open-model tuning alike; the open models' prices are per million
training tokens). A preference example counts its prompt twice, once with each completion, plus both completions
(Vertex AI's preference-tuning page, as issue 16 cites it: "2 x prompt + completion").

- Before the job, :func:`estimate` prices the counted tokens: on Vertex counted by the model's own tokenizer through
  ``countTokens`` (google-genai ``client.models.count_tokens``; free, "Requests to the GetTokens API are not
  billed", https://ai.google.dev/gemini-api/docs/billing), locally by the open model's tokenizer
  (:func:`count_local_tokens`).
- After the job, :func:`billed` reads ``TuningJob.tuning_data_stats`` (google-genai 2.34 types.py
  ``SupervisedTuningDataStats.total_billable_token_count``, ``PreferenceOptimizationDataStats`` likewise: "Number
  of billable tokens in the tuning dataset", so one pass over the data) times the job's epochs.

Prices are :data:`~tunekit.components.model_clients.pricing.TUNING_PRICES` (dated; a model without a price is
unpriced: ``dollars`` None, said so in :meth:`TuningCost.line`, never zero).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tunekit.components.common.jsonl import iter_jsonl
from tunekit.components.model_clients.pricing import TUNING_PRICES_AS_OF, tuning_price_for

#: Rows sent in one countTokens request (their contents together; the count is their sum).
COUNT_BATCH_ROWS = 50


@dataclass
class TuningCost:
    """What a tuning run costs, or is expected to.

    Attributes:
        model: The model tuned.
        dataset_tokens: Tokens of one pass over the training data.
        epochs: Passes over the data (a local run of ``max_steps`` may make a fraction of one); None when not known
            (the service's default before the job).
        training_tokens: ``dataset_tokens * epochs``; None when the epochs are not known.
        price_per_million: Dollars per million training tokens; None when the model has no price.
        dollars: The cost; None when unpriced or the epochs are not known.
        counted_by: ``countTokens``, ``tokenizer`` or ``tuning_data_stats``.
        examples: Training examples counted.
        prices_as_of: When the price table was read.
    """

    model: str
    dataset_tokens: int
    epochs: float | None
    training_tokens: int | None
    price_per_million: float | None
    dollars: float | None
    counted_by: str
    examples: int = 0
    prices_as_of: str = TUNING_PRICES_AS_OF

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the tuning step's metadata, the report)."""
        return dataclasses.asdict(self)

    def line(self, when: str = "estimated") -> str:
        """One line for the log: tokens, epochs and dollars, or why there are no dollars."""
        epochs = f"x {self.epochs} epochs" if self.epochs else "x the service's default epochs (not known yet)"
        head = f"tuning cost {when} ({self.counted_by}): {self.dataset_tokens:,} tokens {epochs}"
        if self.price_per_million is None:
            return (
                f"{head}; {self.model} has no tuning price in the table (prices of {self.prices_as_of}): unpriced"
            )
        if self.dollars is None:
            return f"{head}; ${self.price_per_million:.2f} per 1M training tokens"
        return (
            f"{head} = {self.training_tokens:,} training tokens x ${self.price_per_million:.2f}/1M = "
            f"${self.dollars:.2f} (prices of {self.prices_as_of})"
        )


def estimate(
    model: str,
    dataset_tokens: int,
    epochs: float | None,
    *,
    counted_by: str,
    examples: int = 0,
    prices: Mapping[str, float] | None = None,
) -> TuningCost:
    """Prices ``dataset_tokens`` x ``epochs`` training tokens of ``model`` (None epochs: not known)."""
    epochs = (int(epochs) if float(epochs).is_integer() else round(float(epochs), 3)) if epochs else None
    training = round(dataset_tokens * epochs) if epochs else None
    price = tuning_price_for(model, prices)
    dollars = training * price / 1e6 if training is not None and price is not None else None
    return TuningCost(model, int(dataset_tokens), epochs, training, price, dollars, counted_by, examples)


def preference_example_tokens(prompt: int, chosen: int, rejected: int) -> int:
    """A preference example's training tokens: its prompt once with each completion, and both completions."""
    return 2 * prompt + chosen + rejected


# --- counting -------------------------------------------------------------------------------------------------


def _gemini_contents(row: Mapping[str, Any]) -> list[dict]:
    """A Gemini tuning row's contents, its system instruction counted as one more turn."""
    contents = [dict(c) for c in row.get("contents") or []]
    system = row.get("systemInstruction") or row.get("system_instruction")
    if system and system.get("parts"):
        contents.insert(0, {"role": "user", "parts": list(system["parts"])})
    return contents


def _row_texts(row: Mapping[str, Any]) -> list[str]:
    """Every text of a training row in any layout tuning sends.

    Gemini ``contents`` (and its system instruction), chat ``messages`` (``content``), or ``prompt``/``completion``.
    """
    texts = [
        str(p.get("text", "")) for c in _gemini_contents(row) for p in c.get("parts", []) if isinstance(p, dict)
    ]
    for message in row.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
    texts += [str(row[k]) for k in ("prompt", "completion") if isinstance(row.get(k), str)]
    return texts


def _batches(rows: Iterable[list[dict]], size: int) -> Iterable[list[dict]]:
    batch: list[dict] = []
    count = 0
    for contents in rows:
        batch.extend(contents)
        count += 1
        if count == size:
            yield batch
            batch, count = [], 0
    if batch:
        yield batch


def count_gemini_tokens(
    path: str, model: str, client: Any, *, batch_rows: int = COUNT_BATCH_ROWS
) -> tuple[int, int]:
    """``(tokens, examples)`` of a Gemini tuning file (``contents`` rows), counted by ``model``'s ``countTokens``.

    The rows go :data:`COUNT_BATCH_ROWS` at a time (one request's count is the sum of its contents'), so a
    dataset of N rows takes N/50 requests.
    """
    rows = [_gemini_contents(row) for _, row in iter_jsonl(path)]
    total = 0
    for batch in _batches(iter(rows), batch_rows):
        response = client.models.count_tokens(model=model, contents=batch)
        total += int(response.total_tokens or 0)
    return total, len(rows)


def count_preference_tokens(
    path: str, model: str, client: Any, *, batch_rows: int = COUNT_BATCH_ROWS
) -> tuple[int, int]:
    """``(training tokens of one pass, examples)`` of a Gemini preference file, counted by ``countTokens``.

    Each row's prompt (``systemInstruction`` and ``contents``) counts twice, once with each of its scored
    ``completions``, and the completions once each (:func:`preference_example_tokens`).
    """
    prompts: list[list[dict]] = []
    completions: list[list[dict]] = []
    for _, row in iter_jsonl(path):
        prompts.append(_gemini_contents(row))
        completions.append(
            [
                dict(c["completion"])
                for c in row.get("completions") or []
                if isinstance(c, dict) and c.get("completion")
            ]
        )
    prompt_total = completion_total = 0
    for batch in _batches(iter(prompts), batch_rows):
        prompt_total += int(client.models.count_tokens(model=model, contents=batch).total_tokens or 0)
    for batch in _batches(iter(completions), batch_rows):
        completion_total += int(client.models.count_tokens(model=model, contents=batch).total_tokens or 0)
    return preference_example_tokens(prompt_total, completion_total, 0), len(prompts)


def count_local_tokens(path: str, tokenizer: Any) -> tuple[int, int]:
    """``(tokens, examples)`` of a prompt/completion file, counted by an open model's tokenizer."""
    total = examples = 0
    for _, row in iter_jsonl(path):
        for key in ("prompt", "completion"):
            text = row.get(key)
            if text:
                total += len(tokenizer(str(text), add_special_tokens=False)["input_ids"])
        examples += 1
    return total, examples


# --- after the job --------------------------------------------------------------------------------------------


def job_epochs(job: Any) -> int | None:
    """The epochs a finished tuning job ran (its spec's hyperparameters), or None when it does not say."""
    for spec_name in ("supervised_tuning_spec", "preference_optimization_spec"):
        spec = getattr(job, spec_name, None)
        hyper = getattr(spec, "hyper_parameters", None) if spec is not None else None
        if hyper is not None and getattr(hyper, "epoch_count", None):
            return int(hyper.epoch_count)
    return None


def billed(
    job: Any, model: str, epochs: int | None = None, prices: Mapping[str, float] | None = None
) -> TuningCost | None:
    """The billed tokens of a finished job (``tuning_data_stats``) and their price; None when it reports none.

    ``epochs`` is used when the job's spec does not say how many it ran.
    """
    stats = getattr(job, "tuning_data_stats", None)
    if stats is None:
        return None
    for name in ("supervised_tuning_data_stats", "preference_optimization_data_stats"):
        found = getattr(stats, name, None)
        if found is not None and found.total_billable_token_count is not None:
            return estimate(
                model,
                int(found.total_billable_token_count),
                job_epochs(job) or epochs,
                counted_by="tuning_data_stats",
                examples=int(found.tuning_dataset_example_count or 0),
                prices=prices,
            )
    return None


def gemini_tuning_costs(
    *,
    base_model: str,
    train_path: str,
    epochs: int | None,
    client: Any,
) -> TuningCost:
    """The estimate before a Gemini (or managed open-model) tuning job: countTokens x epochs x the price."""
    tokens, examples = count_gemini_tokens(train_path, base_model, client)
    return estimate(base_model, tokens, epochs, counted_by="countTokens", examples=examples)


# --- what a tuning step records -------------------------------------------------------------------------------


def _is_gemini(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith("gemini-")


def vertex_estimate(
    base_model: str,
    train_path: str,
    epochs: int | None,
    *,
    project: str,
    location: str,
    client: Any = None,
    preference: bool = False,
) -> TuningCost:
    """The estimate a Vertex tuning step prints and records before its job.

    A Gemini model's tokens are counted by its ``countTokens``; an open model (``{publisher}/{family}@{version}``)
    has no countTokens on Vertex's publisher endpoint, so its tokens are the model-free estimate of about four
    characters a token (:func:`~tunekit.components.model_clients.pricing.estimate_tokens`, ``counted_by``
    ``characters/4``); the billed count after the job replaces it. ``preference``: the file is Gemini preference
    data (:func:`count_preference_tokens`).
    """
    if preference:
        if client is None:
            from tunekit.components.model_clients.vertex import make_genai_client

            client = make_genai_client(project, location)
        tokens, examples = count_preference_tokens(train_path, base_model, client)
        result = estimate(base_model, tokens, epochs, counted_by="countTokens", examples=examples)
    elif _is_gemini(base_model):
        if client is None:
            from tunekit.components.model_clients.vertex import make_genai_client

            client = make_genai_client(project, location)
        result = gemini_tuning_costs(base_model=base_model, train_path=train_path, epochs=epochs, client=client)
    else:
        from tunekit.components.model_clients.pricing import estimate_tokens

        tokens = examples = 0
        for _, row in iter_jsonl(train_path):
            tokens += sum(estimate_tokens(text) for text in _row_texts(row))
            examples += 1
        result = estimate(base_model, tokens, epochs, counted_by="characters/4", examples=examples)
    print(result.line("estimated before the job"), flush=True)
    return result


def vertex_billed(
    before: TuningCost | None,
    job_name: str,
    *,
    project: str,
    location: str,
    client: Any = None,
    model: str = "",
    epochs: int | None = None,
) -> dict[str, Any]:
    """The tuning step's record of its cost; prints the billed line.

    ``tuning_cost`` is ``{"estimate": ..., "billed": ...}`` (the model record keeps it whole; the billed part is
    read from the finished job, None when it reports no tuning_data_stats), and the numbers the artifact's
    metadata shows are flat beside it: ``estimated_training_tokens``, ``estimated_tuning_dollars``,
    ``billed_training_tokens``, ``billed_tuning_dollars`` (absent when not known: unpriced is not zero).
    ``model`` and ``epochs`` price the billed tokens when there was no estimate (``before`` None).
    """
    after = None
    if job_name:
        if client is None:
            from tunekit.components.model_clients.vertex import make_genai_client

            client = make_genai_client(project, location)
        model = before.model if before is not None else model
        epochs = before.epochs if before is not None else epochs
        after = billed(client.tunings.get(name=job_name), model, epochs)
    if after is not None:
        print(after.line("billed"), flush=True)
    return cost_record(before, after)


def cost_record(before: TuningCost | None, after: TuningCost | None) -> dict[str, Any]:
    """What a tuning step adds to its model record (see :func:`vertex_billed`)."""
    record: dict[str, Any] = {
        "tuning_cost": {
            "estimate": before.to_dict() if before is not None else None,
            "billed": after.to_dict() if after is not None else None,
        }
    }
    for prefix, found in (("estimated", before), ("billed", after)):
        if found is not None and found.training_tokens is not None:
            record[f"{prefix}_training_tokens"] = found.training_tokens
        if found is not None and found.dollars is not None:
            record[f"{prefix}_tuning_dollars"] = found.dollars
    return record


def local_estimate(base_model: str, train_path: str, config: Any) -> TuningCost:
    """The estimate a local tuning step prints and records before training.

    The base model's tokenizer counts the training rows; the epochs are the run's (``epochs``, or ``max_steps`` x
    the examples a step takes, over every process, / the rows). A local run has no per-token price: it is
    unpriced (the machine's time is its cost).
    """
    import os

    from transformers import AutoTokenizer

    from tunekit.components.common.errors import UserError
    from tunekit.components.tuning.trainers import world_size

    if not os.path.isdir(base_model):
        # The trainer's own check, first: nothing is downloaded at run time.
        raise UserError("base model directory not found; give a local model directory", path=base_model)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    tokens, examples = count_local_tokens(train_path, tokenizer)
    if getattr(config, "max_steps", 0) and examples:
        per_step = config.batch_size * config.gradient_accumulation_steps * world_size()
        epochs: float | None = config.max_steps * per_step / examples
    else:
        epochs = getattr(config, "epochs", None)
    result = estimate(base_model, tokens, epochs, counted_by="tokenizer", examples=examples, prices={})
    print(result.line("estimated before training"), flush=True)
    return result

"""Normalising a supervised dataset for the chosen backend, and holding out an evaluation split.

Input: any supervised format (``text_pair``, ``chat``, ``gemini``; see ``data_validation.formats``).
Output columns:

- backend ``vertex``: the Gemini tuning format (``systemInstruction``?, ``contents``), one row per example.
- backend ``local``: ``prompt`` and ``completion`` strings, one row per example.

Every input row is written to exactly one output file (train or validation); the counts say so.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.data_validation import formats

BACKENDS = ("vertex", "local")


@dataclass
class PreparedData:
    """What ``prepare_supervised`` wrote.

    Attributes:
        train_rows: Rows written to the training file.
        validation_rows: Rows written to the validation file.
        held_out: Whether the validation rows were split off the training data.
        source_format: The detected input format.
        fingerprint: SHA-256 of the input files' bytes (training, then validation), for lineage.
    """

    train_rows: int
    validation_rows: int
    held_out: bool
    source_format: str
    fingerprint: str


def fingerprint_files(*paths: str) -> str:
    """SHA-256 over the bytes of the given files, in order (empty paths skipped)."""
    digest = hashlib.sha256()
    for path in paths:
        if not path:
            continue
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def record_counts(counts: Mapping[str, Any], metrics: Any, metadata: dict, **extra: Any) -> None:
    """Logs a data step's counts as metrics and records them, with ``extra``, in its output dataset's metadata.

    Args:
        counts: What the step counted (numbers).
        metrics: The step's metrics output (anything with ``log_metric``: a KFP ``Metrics`` artifact).
        metadata: The output dataset's ``metadata``.
        extra: More metadata (its layout, its fingerprint...).
    """
    for key, value in counts.items():
        metrics.log_metric(key, float(value))
    metadata.update(counts)
    metadata.update(extra)


def _render(example: formats.Example, backend: str) -> dict:
    return formats.to_gemini(example) if backend == "vertex" else formats.to_prompt_completion(example)


def _load_supervised(path: str) -> tuple[str, list[formats.Example]]:
    fmt, examples = formats.load_examples(path)
    for example in examples:
        if example.target is None:
            raise UserError(
                "the example has no answer to learn from: it must end with a model turn (or have 'output_text')",
                path=path,
                line=example.line,
            )
    return fmt, examples


def prepare_supervised(
    train_path: str,
    validation_path: str | None,
    *,
    backend: str,
    train_out: str,
    validation_out: str,
    validation_split: float = 0.1,
    seed: int = 0,
) -> PreparedData:
    """Converts the datasets for ``backend`` and writes them to ``train_out`` and ``validation_out``.

    Without a validation file, ``validation_split`` of the training rows (at least one, at most 5,000 — Vertex's
    limit) are held out, chosen reproducibly by ``seed``, so the tuned model is always evaluated on rows it did not
    train on.

    Raises:
        UserError: Unknown backend, unreadable data, examples that do not end with a model turn, or too few rows
            to hold any out.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}", field="backend")
    fmt, train = _load_supervised(train_path)
    held_out = False
    if validation_path:
        _, validation = _load_supervised(validation_path)
    else:
        if not 0 < validation_split < 1:
            raise UserError(
                "must be between 0 and 1 when no validation dataset is given", field="validation_split"
            )
        if len(train) < 2:
            raise UserError(
                "a single example cannot be split into training and validation; give a validation dataset",
                path=train_path,
            )
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        count = min(5000, max(1, round(len(train) * validation_split)))
        chosen = set(order[:count])
        validation = [e for i, e in enumerate(train) if i in chosen]
        train = [e for i, e in enumerate(train) if i not in chosen]
        held_out = True
    write_jsonl(train_out, [_render(e, backend) for e in train])
    write_jsonl(validation_out, [_render(e, backend) for e in validation])
    return PreparedData(
        train_rows=len(train),
        validation_rows=len(validation),
        held_out=held_out,
        source_format=fmt,
        fingerprint=fingerprint_files(train_path, validation_path or ""),
    )

"""Tuning an open embedding model with sentence-transformers: in-batch negatives, optional mined hard negatives.

Input columns (see :mod:`tunekit.components.model_clients.embeddings` for the file layouts): the corpus (``_id``,
``title``?, ``text``), the queries (``_id``, ``text``) and the train labels (``query-id``, ``corpus-id``,
``score``). Every relevant ``(query, document)`` label becomes one training pair.

Loss: :class:`sentence_transformers.losses.MultipleNegativesRankingLoss`: for each query in a batch, its document
must score above every other document of the batch (the in-batch negatives) and above its own hard negatives.
With ``hard_negatives > 0``, each pair gets that many negatives mined with the *base* model: the corpus documents
it ranks highest for the query that are not labelled relevant. Batches never hold the same document twice, since
a duplicate would be a false in-batch negative.

Output: a sentence-transformers model directory (``SentenceTransformer(output_dir)`` loads it) and
``training_summary.json`` beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.model_clients.embeddings import (
    SentenceTransformerEncoder,
    check_references,
    load_corpus,
    load_labels,
    load_queries,
    load_sentence_transformer,
    rank_documents,
    resolve_model_path,
)
from tunekit.components.tuning.lora import warmup_then_decay

SUMMARY_FILE = "training_summary.json"
#: The ``backend`` values :func:`run_tune_embedding` dispatches on.
BACKENDS = ("local", "vertex")


@dataclass
class EmbeddingTuningOptions:
    """Training settings of the open-model backend.

    Attributes:
        steps: Optimizer steps (each one batch).
        batch_size: Pairs per batch; every other document of the batch is a negative for each query.
        learning_rate: AdamW peak learning rate (linear warm-up, then linear decay to 0).
        warmup_ratio: Share of the steps spent warming up.
        hard_negatives: Negatives mined per pair with the base model (0: in-batch negatives only).
        hard_negative_skip: Top-ranked non-relevant documents skipped before mining (guards against
            unlabelled positives).
        scale: MNRL's similarity scale (inverse temperature).
        max_seq_length: Token limit per text (0 keeps the model's own).
        seed: Random seed of the batch order and the initialisation.
        weight_decay: AdamW weight decay.
    """

    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    hard_negatives: int = 0
    hard_negative_skip: int = 0
    scale: float = 20.0
    max_seq_length: int = 0
    seed: int = 0
    weight_decay: float = 0.01


def build_pairs(
    corpus: dict[str, str], queries: dict[str, str], labels: dict[str, dict[str, float]]
) -> list[tuple[str, str, str]]:
    """``(query-id, corpus-id, query text)`` for every relevant label, in label order."""
    return [(q, d, queries[q]) for q, relevant in labels.items() for d in relevant]


def mine_hard_negatives(
    model,
    corpus: dict[str, str],
    queries: dict[str, str],
    labels: dict[str, dict[str, float]],
    *,
    count: int,
    skip: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, list[str]]:
    """For each labelled query, the ``count`` documents ``model`` ranks highest that are not labelled relevant.

    Args:
        model: A loaded SentenceTransformer (the base model: its mistakes are what tuning should fix).
        corpus: ``_id -> text``.
        queries: ``_id -> text``.
        labels: ``query-id -> {corpus-id: score}``.
        count: Negatives per query.
        skip: Non-relevant documents skipped at the top of each ranking first.
        batch_size: Texts per encoder call.
        progress: Show progress bars.

    Returns:
        ``query-id -> corpus ids`` (best-ranked first).
    """
    depth = min(len(corpus), skip + count + max(len(r) for r in labels.values()))
    rankings, _ = rank_documents(
        SentenceTransformerEncoder.of(model),
        corpus,
        {q: queries[q] for q in labels},
        depth,
        batch_size=batch_size,
        name="mining",
        progress=progress,
    )
    mined: dict[str, list[str]] = {}
    for query_id, ranked in rankings.items():
        candidates = [d for d in ranked if d not in labels[query_id]]
        mined[query_id] = candidates[skip : skip + count]
    return mined


def _batches(pairs: list, batch_size: int, steps: int, rng: random.Random) -> list[list]:
    """``steps`` batches of pairs, reshuffled each epoch, never two pairs with the same document in one batch."""
    batches: list[list] = []
    while len(batches) < steps:
        order = pairs[:]
        rng.shuffle(order)
        while order and len(batches) < steps:
            batch, seen, rest = [], set(), []
            for pair in order:
                if len(batch) < batch_size and pair[1] not in seen:
                    batch.append(pair)
                    seen.add(pair[1])
                else:
                    rest.append(pair)
            batches.append(batch)
            order = rest
    return batches


def tune_embedding_model(
    *,
    base_model: str,
    corpus_path: str,
    queries_path: str,
    train_labels_path: str,
    output_dir: str,
    options: EmbeddingTuningOptions | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Tunes ``base_model`` on the train labels and saves the tuned model to ``output_dir``.

    Args:
        base_model: A sentence-transformers model directory, or
            :data:`~tunekit.components.model_clients.embeddings.BUNDLED_MINILM`.
        corpus_path: Corpus JSONL.
        queries_path: Queries JSONL.
        train_labels_path: Train label TSV.
        output_dir: Where the tuned model is saved.
        options: Training settings (defaults: :class:`EmbeddingTuningOptions`).
        device: Torch device; None picks one.
        progress: Show progress bars.

    Returns:
        A summary: base model, pairs, steps, first/last losses, seconds, options.

    Raises:
        UserError: Bad data or options.
    """
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    options = options or EmbeddingTuningOptions()
    if options.steps < 1 or options.batch_size < 2:
        raise UserError(
            "steps must be >= 1 and batch_size >= 2 (in-batch negatives need two pairs)", field="steps"
        )
    corpus = load_corpus(corpus_path)
    queries = load_queries(queries_path)
    labels = load_labels(train_labels_path)
    check_references(labels, queries, corpus, train_labels_path)
    pairs = build_pairs(corpus, queries, labels)
    if len(pairs) < 2:
        raise UserError("training needs at least two relevant (query, document) labels", path=train_labels_path)

    started = time.perf_counter()
    random.seed(options.seed)
    torch.manual_seed(options.seed)
    model = load_sentence_transformer(base_model, device=device)
    if options.max_seq_length:
        model.max_seq_length = options.max_seq_length
    negatives: dict[str, list[str]] = {}
    if options.hard_negatives > 0:
        model.eval()
        negatives = mine_hard_negatives(
            model,
            corpus,
            queries,
            labels,
            count=options.hard_negatives,
            skip=options.hard_negative_skip,
            progress=progress,
        )
        # Queries with too few candidates (a tiny corpus) fall back to in-batch negatives only.
        pairs_with_negatives = [p for p in pairs if len(negatives.get(p[0], [])) == options.hard_negatives]
        if len(pairs_with_negatives) >= 2:
            pairs = pairs_with_negatives

    loss_fn = MultipleNegativesRankingLoss(model, scale=options.scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    scheduler = warmup_then_decay(optimizer, options.steps, options.warmup_ratio)
    batches = _batches(pairs, min(options.batch_size, len(pairs)), options.steps, random.Random(options.seed))
    use_negatives = bool(negatives) and all(p[0] in negatives for p in pairs)
    losses: list[float] = []
    model.train()
    with Progress(
        TextColumn("tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("tuning", total=len(batches), loss=float("nan"))
        for batch in batches:
            columns = [[p[2] for p in batch], [corpus[p[1]] for p in batch]]
            if use_negatives:
                for i in range(options.hard_negatives):
                    columns.append([corpus[negatives[p[0]][i]] for p in batch])
            features = [
                {k: v.to(model.device) if hasattr(v, "to") else v for k, v in model.preprocess(col).items()}
                for col in columns
            ]
            loss = loss_fn(features, labels=None)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(task, advance=1, loss=losses[-1])
    model.eval()
    os.makedirs(output_dir, exist_ok=True)
    model.save(output_dir, create_model_card=False)
    window = max(1, len(losses) // 10)
    summary = {
        "base_model": base_model,
        "base_model_path": resolve_model_path(base_model),
        "pairs": len(pairs),
        "queries": len(labels),
        "documents": len(corpus),
        "steps": len(losses),
        "hard_negatives": options.hard_negatives if use_negatives else 0,
        "first_loss": sum(losses[:window]) / window,
        "last_loss": sum(losses[-window:]) / window,
        "seconds": time.perf_counter() - started,
        "options": asdict(options),
    }
    with open(os.path.join(output_dir, SUMMARY_FILE), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def run_tune_embedding(
    *,
    backend: str,
    base_model: str,
    corpus_uri: str,
    queries_uri: str,
    train_labels_uri: str,
    test_labels_uri: str,
    validation_labels_uri: str,
    model_path: str,
    model_uri: str,
    model_metadata: dict,
    train_steps: int = 100,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    hard_negatives: int = 0,
    learning_rate_multiplier: float = 1.0,
    output_dimensionality: int = 0,
    task_type: str = "DEFAULT",
    labels: dict | None = None,
    encryption_key: str = "",
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    progress: bool = True,
    vertex_options: dict | None = None,
) -> dict:
    """The tuning step: dispatches to the backend and writes ``tunekit_model.json`` under ``model_path``.

    Local: sentence-transformers tuning; the model is saved in ``model_path``. Vertex: Google's template, with
    ``train_steps`` as its ``iterations`` and ``batch_size`` as its ``batch_size``; its run's artifacts go under the
    tuned-model artifact's own ``gs://`` folder, and its state file under ``model_path`` (a retry re-attaches).
    ``vertex_options`` passes further keyword arguments to
    :func:`~tunekit.components.tuning.embedding.vertex.tune_text_embedding` (poll intervals, timeout, client).
    """
    from tunekit.components.common import uris

    os.makedirs(model_path, exist_ok=True)
    # The files every run trains on, by the stem of their arguments' names (``corpus_uri``, ``corpus_path``...).
    data = {"corpus": corpus_uri, "queries": queries_uri, "train_labels": train_labels_uri}
    if backend == "local":
        with contextlib.ExitStack() as stack:
            paths = {f"{name}_path": stack.enter_context(uris.local_copy(uri)) for name, uri in data.items()}
            training = tune_embedding_model(
                base_model=base_model,
                output_dir=model_path,
                options=EmbeddingTuningOptions(
                    steps=train_steps,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                    hard_negatives=hard_negatives,
                ),
                progress=progress,
                **paths,
            )
        summary = {"backend": "local", "base_model": base_model, "model_dir": model_path, "training": training}
    elif backend == "vertex":
        from tunekit.components.tuning.embedding.vertex import tune_text_embedding
        from tunekit.components.tuning.gemini import STATE_FILE, run_labels

        data.update(test_labels=test_labels_uri, validation_labels=validation_labels_uri)
        result = tune_text_embedding(
            project=project,
            location=location,
            base_model=base_model,
            pipeline_root=uris.fuse_to_gcs(model_uri).rstrip("/") + "/template_run",
            state_path=os.path.join(model_path, STATE_FILE),
            batch_size=batch_size,
            iterations=train_steps,
            learning_rate_multiplier=learning_rate_multiplier,
            output_dimensionality=output_dimensionality,
            task_type=task_type,
            labels=run_labels(labels, pipeline_job_name, "embedding-tuning"),
            encryption_key=encryption_key,
            **{f"{name}_uri": uris.fuse_to_gcs(uri) for name, uri in data.items()},
            **(vertex_options or {}),
        )
        summary = {"backend": "vertex", **result.to_dict()}
    else:
        raise UserError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}", field="backend")
    return ModelRecord.from_dict(summary).write(model_path, model_metadata)

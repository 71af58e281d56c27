"""Tuning an open embedding model with sentence-transformers: in-batch negatives, optional mined hard negatives.

Input columns (see :mod:`tunekit.components.model_clients.embeddings` for the file layouts): the corpus (``_id``,
``title``?, ``text``), the queries (``_id``, ``text``) and the train labels (``query-id``, ``corpus-id``,
``score``). Every relevant ``(query, document)`` label becomes one training pair.

Trainer: sentence-transformers' ``SentenceTransformerTrainer`` (Hugging Face ``Trainer`` underneath: AdamW,
linear warm-up and decay, gradient clipping at 1.0, checkpoints and resume, ``torchrun``) with
:class:`~sentence_transformers.sentence_transformer.losses.MultipleNegativesRankingLoss`: for each query in a batch,
its document must score above every other document of the batch (the in-batch negatives) and above its own hard
negatives. With ``hard_negatives > 0``, each pair gets that many negatives mined with the *base* model (the corpus
documents it ranks highest for the query that are not labelled relevant) as the dataset's third and further
columns. Batches never hold the same text twice (``BatchSamplers.NO_DUPLICATES``), since a duplicate document
would be a false in-batch negative.

Output: a sentence-transformers model directory (``SentenceTransformer(output_dir)`` loads it),
``training_summary.json`` and ``training_log.json`` (the trainer's log history: the loss and learning rate of every
logging window) beside it.
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
from tunekit.components.common.state import write_text
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
        save_steps: Steps between checkpoints in the step's output folder (0: every tenth of the run); a re-run
            resumes from the last complete one.
        logging_steps: Steps per entry of the training log (the mean loss of the window).
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
    save_steps: int = 0
    logging_steps: int = 1


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


def _training_dataset(pairs, corpus, negatives, count: int):
    """The trainer's dataset: ``anchor``, ``positive`` and, with mined negatives, ``negative_1..count`` columns.

    MultipleNegativesRankingLoss reads the columns in order: the query, its document, then its hard negatives.
    """
    from datasets import Dataset

    columns: dict[str, list[str]] = {"anchor": [p[2] for p in pairs], "positive": [corpus[p[1]] for p in pairs]}
    for i in range(count):
        columns[f"negative_{i + 1}"] = [corpus[negatives[p[0]][i]] for p in pairs]
    return Dataset.from_dict(columns)


def _progress_bar(progress: bool):
    """A rich progress bar fed by the trainer's step callback (``progress(step, total, loss)``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        disable=not progress,
    )
    task = bar.add_task("tuning", total=None, loss=float("nan"))

    def update(step: int, total: int, loss: float) -> None:
        bar.update(task, completed=step, total=total, loss=loss)

    return bar, update


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
    """Tunes ``base_model`` on the train labels with ``SentenceTransformerTrainer``; saves it to ``output_dir``.

    Checkpoints go to ``output_dir/checkpoints`` every ``options.save_steps`` steps; a re-run with the same model,
    data and options resumes from the last complete one (see :mod:`tunekit.components.tuning.trainers`) and they
    are deleted once the tuned model is saved. Under ``torchrun`` each process trains on its share of every batch
    and the embeddings are gathered across processes, so the in-batch negatives are those of the whole batch.

    Args:
        base_model: A sentence-transformers model directory, or
            :data:`~tunekit.components.model_clients.embeddings.BUNDLED_MINILM`.
        corpus_path: Corpus JSONL.
        queries_path: Queries JSONL.
        train_labels_path: Train label TSV.
        output_dir: Where the tuned model, ``training_summary.json`` and ``training_log.json`` are saved.
        options: Training settings (defaults: :class:`EmbeddingTuningOptions`).
        device: Torch device; None picks one.
        progress: Show progress bars.

    Returns:
        A summary: base model, pairs, steps, first/last losses, seconds, options, the step resumed from.

    Raises:
        UserError: Bad data or options.
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from tunekit.components.tuning import trainers

    options = options or EmbeddingTuningOptions()
    if options.steps < 1 or options.batch_size < 2:
        raise UserError(
            "steps must be >= 1 and batch_size >= 2 (in-batch negatives need two pairs)", field="steps"
        )
    if not 0.0 <= options.warmup_ratio < 1.0:
        raise UserError(f"warmup_ratio must be in [0, 1), not {options.warmup_ratio}", field="warmup_ratio")
    if options.save_steps < 0 or options.logging_steps < 1:
        raise UserError("save_steps must be 0 or more and logging_steps at least 1", field="save_steps")
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
    use_negatives = bool(negatives) and all(len(negatives.get(p[0], [])) == options.hard_negatives for p in pairs)
    dataset = _training_dataset(pairs, corpus, negatives, options.hard_negatives if use_negatives else 0)

    processes = trainers.world_size()
    on_cpu = str(model.device) == "cpu"
    args = SentenceTransformerTrainingArguments(
        output_dir=trainers.checkpoint_folder(output_dir),
        max_steps=options.steps,
        # batch_size is the whole batch (every other document of it is a negative): each process takes its share.
        per_device_train_batch_size=max(1, min(options.batch_size, len(pairs)) // processes),
        learning_rate=options.learning_rate,
        weight_decay=options.weight_decay,
        lr_scheduler_type="linear",
        # A float below 1 is a share of the steps (TrainingArguments.warmup_steps).
        warmup_steps=options.warmup_ratio,
        max_grad_norm=1.0,
        seed=options.seed,
        data_seed=options.seed,
        # No batch holds the same text twice: a duplicate document would be a false in-batch negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_strategy="steps",
        logging_steps=options.logging_steps,
        save_strategy="steps",
        # 0: every tenth of the run (a float below 1 is a share of the steps).
        save_steps=options.save_steps if options.save_steps > 0 else 0.1,
        save_total_limit=2,
        use_cpu=on_cpu,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=not on_cpu,
    )
    loss = MultipleNegativesRankingLoss(model, scale=options.scale, gather_across_devices=processes > 1)
    bar, update = _progress_bar(progress)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=loss,
        callbacks=[trainers.step_callback(update)],
    )
    trainers.quiet(trainer)
    run = trainers.fingerprint(
        "embedding", options, resolve_model_path(base_model), corpus_path, queries_path, train_labels_path
    )
    with bar:
        metrics = trainers.train(trainer, run)
    log, _ = trainers.split_log_history(trainer.state.log_history)
    losses = [float(e["loss"]) for e in log]
    model.eval()
    summary = {
        "base_model": base_model,
        "base_model_path": resolve_model_path(base_model),
        "trainer": type(trainer).__name__,
        "pairs": len(pairs),
        "queries": len(labels),
        "documents": len(corpus),
        "steps": trainer.state.global_step,
        "hard_negatives": options.hard_negatives if use_negatives else 0,
        "first_loss": _window_mean(losses, first=True),
        "last_loss": _window_mean(losses, first=False),
        "seconds": time.perf_counter() - started,
        "processes": processes,
        "resumed_from": metrics["resumed_from"],
        "options": asdict(options),
    }
    if trainer.is_world_process_zero():
        os.makedirs(output_dir, exist_ok=True)
        model.save(output_dir, create_model_card=False)
        write_text(os.path.join(output_dir, SUMMARY_FILE), json.dumps(summary, indent=2))
        trainers.write_training_log(output_dir, {"config": asdict(options), "log": log, "summary": summary})
    trainers.clear_checkpoints(trainer)
    return summary


def _window_mean(losses: list[float], *, first: bool) -> float:
    """The mean of the first (or last) tenth of the logged losses (at least one); NaN when none was logged."""
    if not losses:
        return float("nan")
    window = max(1, len(losses) // 10)
    part = losses[:window] if first else losses[-window:]
    return sum(part) / len(part)


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

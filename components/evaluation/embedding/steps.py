"""Retrieval evaluation of embedding models: exact search over a corpus and the usual IR metrics.

Input files: a corpus, queries and a label TSV in BEIR's layout (see
:mod:`tunekit.components.model_clients.embeddings`, which also holds the encoders and the exact search).

Output: per model, ``ndcg_at_10``, ``recall_at_1``, ``recall_at_10``, ``recall_at_100`` and ``mrr_at_10``, averaged
over the labelled queries, plus the time it took to embed the corpus.

The gate compares nDCG@10 of the tuned model with the base model's and, when a model is deployed for the same
purpose, the champion's, computed here on the same test queries, with paired bootstrap intervals over the queries
(:mod:`~tunekit.components.evaluation.gate`).

Retrieval is exact: all query and document embeddings are L2-normalised and scored with one matrix product per
block of queries (no approximate index), so the figures do not depend on index parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation.gate import (
    BASE,
    CANDIDATE,
    CHAMPION,
    GateDecision,
    GatePolicy,
    decide,
    describe_champion,
    error_text,
    load_champion,
    locate_champion,
    require_endpoint,
)
from tunekit.components.evaluation.result import EvaluationResult, gate_markdown
from tunekit.components.model_clients.embeddings import (
    Encoder,
    SentenceTransformerEncoder,
    VertexEmbeddingEncoder,
    check_references,
    load_corpus,
    load_labels,
    load_queries,
    rank_documents,
)

#: The metrics reported for every model, in table order; ``ndcg_at_10`` is the one the gate compares.
METRICS = ("ndcg_at_10", "recall_at_1", "recall_at_10", "recall_at_100", "mrr_at_10")
PRIMARY_METRIC = "ndcg_at_10"


# --- metrics -------------------------------------------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, float], k: int) -> float:
    """nDCG@k with linear gains (the label score) and a ``log2(rank + 1)`` discount, as pytrec_eval computes it."""
    dcg = sum(relevant.get(doc_id, 0.0) / math.log2(rank + 2) for rank, doc_id in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: dict[str, float], k: int) -> float:
    """Share of the relevant documents found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevant: dict[str, float], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top ``k`` (0 when there is none)."""
    for rank, doc_id in enumerate(ranked[:k], 1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def score_rankings(rankings: dict[str, Sequence[str]], labels: dict[str, dict[str, float]]) -> dict[str, float]:
    """Averages :data:`METRICS` over the labelled queries.

    Args:
        rankings: ``query-id -> document ids``, best first (at least 100 long where the corpus allows).
        labels: ``query-id -> {corpus-id: score}``; queries with no relevant document are skipped.

    Returns:
        ``metric name -> mean value``; also ``queries``, the number of queries averaged over.
    """
    judged = [q for q, rel in labels.items() if rel]
    if not judged:
        raise UserError("no query has a relevant document (score > 0) in the labels")
    totals = dict.fromkeys(METRICS, 0.0)
    for query_id in judged:
        ranked = list(rankings.get(query_id, ()))
        relevant = labels[query_id]
        totals["ndcg_at_10"] += ndcg_at_k(ranked, relevant, 10)
        totals["recall_at_1"] += recall_at_k(ranked, relevant, 1)
        totals["recall_at_10"] += recall_at_k(ranked, relevant, 10)
        totals["recall_at_100"] += recall_at_k(ranked, relevant, 100)
        totals["mrr_at_10"] += mrr_at_k(ranked, relevant, 10)
    result = {name: value / len(judged) for name, value in totals.items()}
    result["queries"] = float(len(judged))
    return result


# --- retrieval ---------------------------------------------------------------------------------------------


@dataclass
class RetrievalResult:
    """One model's retrieval quality on one label set.

    Attributes:
        metrics: ``metric -> value`` (see :data:`METRICS`), plus ``queries``.
        documents: Number of documents embedded.
        corpus_seconds: Wall time to embed the corpus.
        rankings: ``query-id -> top document ids`` (best first).
    """

    metrics: dict[str, float]
    documents: int
    corpus_seconds: float
    rankings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def seconds_per_1000_documents(self) -> float:
        """Embedding time per 1,000 documents."""
        return 1000.0 * self.corpus_seconds / max(self.documents, 1)


def evaluate_retrieval(
    encoder: Encoder,
    corpus: dict[str, str],
    queries: dict[str, str],
    labels: dict[str, dict[str, float]],
    *,
    batch_size: int = 64,
    top_k: int = 100,
    progress: bool = True,
    name: str = "model",
) -> RetrievalResult:
    """Embeds the corpus and the labelled queries, retrieves exactly, and scores the rankings.

    Args:
        encoder: The model to evaluate.
        corpus: ``_id -> text`` of every document (retrieval is over the whole corpus).
        queries: ``_id -> text``; only the labelled ones are embedded.
        labels: ``query-id -> {corpus-id: score}``.
        batch_size: Texts per call of the encoder.
        top_k: How many documents to retrieve per query (at least 100 for recall@100).
        progress: Show progress bars.
        name: The model's name in the progress bars.
    """
    query_ids = [q for q, rel in labels.items() if rel]
    missing = [q for q in query_ids if q not in queries]
    if missing:
        raise UserError(f"query-id '{missing[0]}' is in the labels but not in the queries file")
    rankings, corpus_seconds = rank_documents(
        encoder,
        corpus,
        {q: queries[q] for q in query_ids},
        max(top_k, 10),
        batch_size=batch_size,
        name=name,
        progress=progress,
    )
    return RetrievalResult(
        metrics=score_rankings(rankings, labels),
        documents=len(corpus),
        corpus_seconds=corpus_seconds,
        rankings=rankings,
    )


def normalize_metric_name(name: str) -> str:
    """Maps a reported metric name (``NDCG@10``, ``test/ndcg@10``...) to ours (``ndcg_at_10``), or ''."""
    key = name.lower().replace("@", "_at_").replace("/", "_").replace("-", "_")
    for metric in METRICS:
        if key == metric or key.endswith("_" + metric):
            return metric
    return ""


def template_metrics(reported: dict[str, float]) -> dict[str, float]:
    """Our metric names from the Vertex template evaluator's own (test-set figures win over others)."""
    out: dict[str, float] = {}
    for name in sorted(reported, key=lambda n: "test" in n.lower()):
        metric = normalize_metric_name(name)
        if metric:
            out[metric] = float(reported[name])
    return out


def query_scores(result: RetrievalResult, labels: dict[str, dict[str, float]], k: int = 10) -> list[float]:
    """nDCG@k of every judged query (labels order), whose mean is the result's ``ndcg_at_10`` for k=10."""
    return [ndcg_at_k(result.rankings.get(q, []), rel, k) for q, rel in labels.items() if rel]


def render_markdown(metrics: dict[str, dict[str, float]], decision: GateDecision, note: str = "") -> str:
    """A Markdown table of the models' metrics and the gate's decision."""
    names = list(metrics)
    lines = ["# Retrieval evaluation", "", "| metric | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " --- |" * len(names))
    for metric in (*METRICS, "queries", "seconds_per_1000_documents"):
        cells = []
        for name in names:
            value = metrics[name].get(metric)
            cells.append("n/a" if value is None else f"{value:.4f}" if metric != "queries" else f"{value:.0f}")
        marker = " (gate)" if metric == PRIMARY_METRIC else ""
        lines.append(f"| {metric}{marker} | " + " | ".join(cells) + " |")
    lines += ["", gate_markdown(decision)]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _champion_encoder(champion, *, project: str, location: str, output_dimensionality: int) -> Encoder:
    if champion.backend == "local":
        return SentenceTransformerEncoder(champion.model)
    endpoint = require_endpoint(champion.endpoint, champion.model)
    return VertexEmbeddingEncoder(endpoint, project, location, output_dimensionality)


def run_evaluate_embedding(
    *,
    backend: str,
    base_model: str,
    tuned_model_path: str,
    tuned_info: dict,
    corpus_uri: str,
    queries_uri: str,
    test_labels_uri: str,
    summary_path: str,
    min_improvement: float = 0.0,
    output_dimensionality: int = 0,
    batch_size: int = 64,
    project: str = "",
    location: str = "",
    progress: bool = True,
    base_encoder: Encoder | None = None,
    purpose: str = "",
    local_registry: str = "",
    policy: GatePolicy | None = None,
    champion_encoder: Encoder | None = None,
) -> EvaluationResult:
    """Scores the base and the tuned model on the test labels and decides whether to deploy.

    Local: both models are embedded here (exact search, all metrics). Vertex: the base model is embedded here
    through the prediction API; the tuned model is not deployed yet, so its figures are the ones Google's template
    evaluator reported on the same test labels (nDCG@10 at least), read from ``tuned_info`` (the tuned model's
    record, ``metrics``).

    The champion (the model deployed for ``purpose`` now; its directory locally, its endpoint on Vertex) is
    embedded here on the same queries, and the gate requires the tuned model to beat it (``policy``).

    Returns:
        The evaluation: ``metrics`` of ``base`` and ``tuned`` (plus ``champion``), the gate's decision; a
        Markdown summary is written to ``summary_path``.
    """
    from tunekit.components.common import uris

    policy = policy or GatePolicy(min_improvement=min_improvement)
    with (
        uris.local_copy(corpus_uri) as corpus_path,
        uris.local_copy(queries_uri) as queries_path,
        uris.local_copy(test_labels_uri) as labels_path,
    ):
        corpus = load_corpus(corpus_path)
        queries = load_queries(queries_path)
        labels = load_labels(labels_path)
    check_references(labels, queries, corpus, test_labels_uri)
    note = ""
    results: dict[str, dict[str, float]] = {}
    per_query: dict[str, list[float]] = {}
    if backend not in ("local", "vertex"):
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")
    champion = locate_champion(
        purpose, backend=backend, local_registry=local_registry, project=project, location=location
    )
    champion_error = ""
    if champion_encoder is None:
        champion_encoder, champion_error = load_champion(
            champion,
            lambda c: _champion_encoder(
                c, project=project, location=location, output_dimensionality=output_dimensionality
            ),
        )
    if backend == "local":
        encoders = {
            BASE: base_encoder or SentenceTransformerEncoder(base_model),
            CANDIDATE: SentenceTransformerEncoder(tuned_model_path),
        }
    else:
        encoders = {
            BASE: base_encoder or VertexEmbeddingEncoder(base_model, project, location, output_dimensionality)
        }
        results[CANDIDATE] = template_metrics(tuned_info.get("metrics") or {})
        note = "The tuned model's figures are those reported by Google's tune-text-embedding-model evaluator."
    if champion_encoder is not None and not champion_error:
        encoders[CHAMPION] = champion_encoder
    for name, encoder in encoders.items():
        try:
            result = evaluate_retrieval(
                encoder,
                corpus,
                queries,
                labels,
                # A Vertex encoder splits its texts into requests of the size its model takes (a tuned endpoint: 5).
                batch_size=batch_size,
                progress=progress,
                name=name,
            )
        except Exception as exc:  # noqa: BLE001 - the champion's failure is the gate's to report
            if name != CHAMPION:
                raise
            champion_error = error_text(exc)
            continue
        results[name] = {**result.metrics, "seconds_per_1000_documents": result.seconds_per_1000_documents}
        per_query[name] = query_scores(result, labels)
    if CHAMPION in results and not per_query.get(CANDIDATE):
        note += (
            " The champion's figures are computed here on the same test queries; the tuned model's come from the "
            "template, so the comparison has no confidence interval."
        )
    decision = decide(
        metric=PRIMARY_METRIC,
        candidate_scores=per_query.get(CANDIDATE),
        base_scores=per_query.get(BASE),
        candidate_value=results[CANDIDATE].get(PRIMARY_METRIC, float("nan")),
        base_value=results[BASE].get(PRIMARY_METRIC, 0.0),
        champion_scores=per_query.get(CHAMPION),
        champion_value=results[CHAMPION][PRIMARY_METRIC] if CHAMPION in results else None,
        champion_label=describe_champion(champion),
        champion_error=champion_error,
        policy=policy,
    )
    evaluation = EvaluationResult(
        method="embedding",
        primary_metric=PRIMARY_METRIC,
        decision=decision,
        metrics=results,
        summary=render_markdown(results, decision, note),
        extras={"per_query": per_query, "note": note},
    )
    evaluation.write(summary_path=summary_path)
    return evaluation

"""Retrieval evaluation of embedding models: exact search over a corpus and the usual IR metrics.

Input files (the layout Vertex AI's ``tune-text-embedding-model`` template reads, BEIR's layout):

- corpus, JSON Lines: ``_id`` (string), ``title`` (optional string), ``text`` (string);
- queries, JSON Lines: ``_id`` (string), ``text`` (string);
- labels, TSV with the header ``query-id	corpus-id	score``: one relevant document per row; ``score`` is the
  graded relevance (a positive integer; rows with a score of 0 or less are not relevant).

Output: per model, ``ndcg_at_10``, ``recall_at_1``, ``recall_at_10``, ``recall_at_100`` and ``mrr_at_10``, averaged
over the labelled queries, plus the time it took to embed the corpus.

The gate compares nDCG@10 of the tuned model with the base model's and, when a model is deployed for the same
purpose, the champion's, computed here on the same test queries, with paired bootstrap intervals over the queries
(:mod:`~tunekit.components.evaluation.gate`).

Retrieval is exact: all query and document embeddings are L2-normalised and scored with one matrix product per
block of queries (no approximate index), so the figures do not depend on index parameters.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tunekit.components.common.errors import UserError

#: The metrics reported for every model, in table order; ``ndcg_at_10`` is the one the gate compares.
METRICS = ("ndcg_at_10", "recall_at_1", "recall_at_10", "recall_at_100", "mrr_at_10")
PRIMARY_METRIC = "ndcg_at_10"
LABEL_COLUMNS = ("query-id", "corpus-id", "score")
_HEADER = "\t".join(LABEL_COLUMNS)


# --- data ----------------------------------------------------------------------------------------------------


def document_text(title: str, text: str) -> str:
    """The text embedded for a corpus row: the title on its own line before the text, when there is one."""
    title = (title or "").strip()
    return f"{title}\n{text}" if title else text


def _read_jsonl(path: str, kind: str) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"not valid JSON ({exc.msg})", path=path, line=line_no) from None
                if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
                    raise UserError(f"a {kind} row needs '_id' and a string 'text'", path=path, line=line_no)
                obj["_line"] = line_no
                rows.append(obj)
    except FileNotFoundError:
        raise UserError(f"{kind} file not found", path=path) from None
    if not rows:
        raise UserError(f"the {kind} file is empty", path=path)
    return rows


def load_corpus(path: str) -> dict[str, str]:
    """Reads a corpus JSONL file into ``{_id: title + text}`` (in file order).

    Raises:
        UserError: Missing file, bad JSON, a row without ``_id``/``text``, or a duplicate ``_id``.
    """
    corpus: dict[str, str] = {}
    for obj in _read_jsonl(path, "corpus"):
        doc_id = str(obj["_id"])
        if doc_id in corpus:
            raise UserError(f"duplicate corpus _id '{doc_id}'", path=path, line=obj["_line"])
        corpus[doc_id] = document_text(str(obj.get("title") or ""), obj["text"])
    return corpus


def load_queries(path: str) -> dict[str, str]:
    """Reads a queries JSONL file into ``{_id: text}``.

    Raises:
        UserError: Missing file, bad JSON, a row without ``_id``/``text``, or a duplicate ``_id``.
    """
    queries: dict[str, str] = {}
    for obj in _read_jsonl(path, "queries"):
        query_id = str(obj["_id"])
        if query_id in queries:
            raise UserError(f"duplicate query _id '{query_id}'", path=path, line=obj["_line"])
        queries[query_id] = obj["text"]
    return queries


def load_labels(path: str) -> dict[str, dict[str, float]]:
    """Reads a label TSV into ``{query-id: {corpus-id: score}}``, keeping only relevant rows (score > 0).

    Raises:
        UserError: Missing file, wrong header, or a score that is not a number.
    """
    labels: dict[str, dict[str, float]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header[:3]) != LABEL_COLUMNS:
                raise UserError(f"the first line must be the header {_HEADER!r}", path=path, line=1)
            for line_no, row in enumerate(reader, 2):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) < 2:
                    raise UserError("expected query-id, corpus-id and score", path=path, line=line_no)
                raw_score = row[2].strip() if len(row) > 2 and row[2].strip() else "1"
                try:
                    score = float(raw_score)
                except ValueError:
                    raise UserError(f"score '{raw_score}' is not a number", path=path, line=line_no) from None
                if score > 0:
                    labels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    except FileNotFoundError:
        raise UserError("label file not found", path=path) from None
    return labels


def check_references(
    labels: dict[str, dict[str, float]], queries: dict[str, str], corpus: dict[str, str], path: str
) -> None:
    """Fails when a label names a query or a document that does not exist.

    Raises:
        UserError: Naming the first unknown id.
    """
    for query_id, relevant in labels.items():
        if query_id not in queries:
            raise UserError(f"query-id '{query_id}' is not in the queries file", path=path)
        for doc_id in relevant:
            if doc_id not in corpus:
                raise UserError(f"corpus-id '{doc_id}' is not in the corpus file", path=path)


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


# --- embedding and search --------------------------------------------------------------------------------------


class Encoder(Protocol):
    """Turns texts into embeddings; queries and documents may be embedded differently (task types, prompts)."""

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """One row per text."""
        ...

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """One row per text."""
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalises rows (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed_in_batches(
    encode: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    description: str = "embedding",
    progress: bool = True,
) -> np.ndarray:
    """Embeds ``texts`` ``batch_size`` at a time with a progress bar; returns L2-normalised float32 rows."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    chunks: list[np.ndarray] = []
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=len(texts))
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            vectors = np.asarray(encode(batch), dtype=np.float32)
            if vectors.shape[0] != len(batch):
                raise RuntimeError(f"the encoder returned {vectors.shape[0]} embeddings for {len(batch)} texts")
            chunks.append(vectors)
            bar.advance(task, len(batch))
    return normalize(np.concatenate(chunks, axis=0))


def search(query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Exact top-``k`` by cosine similarity (inner product of normalised rows); returns document indices.

    Queries are scored a block at a time so that memory stays at ``block x documents`` floats.
    """
    k = min(k, doc_vectors.shape[0])
    out = np.empty((query_vectors.shape[0], k), dtype=np.int64)
    for start in range(0, query_vectors.shape[0], block):
        scores = query_vectors[start : start + block] @ doc_vectors.T
        # argpartition finds the top k in linear time; only those k are then sorted.
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + block] = np.take_along_axis(top, order, axis=1)
    return out


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
    doc_ids = list(corpus)
    started = time.perf_counter()
    doc_vectors = embed_in_batches(
        encoder.encode_documents,
        [corpus[d] for d in doc_ids],
        batch_size=batch_size,
        description=f"{name}: corpus",
        progress=progress,
    )
    corpus_seconds = time.perf_counter() - started
    query_vectors = embed_in_batches(
        encoder.encode_queries,
        [queries[q] for q in query_ids],
        batch_size=batch_size,
        description=f"{name}: queries",
        progress=progress,
    )
    top = search(query_vectors, doc_vectors, max(top_k, 10))
    rankings = {q: [doc_ids[i] for i in row] for q, row in zip(query_ids, top, strict=True)}
    return RetrievalResult(
        metrics=score_rankings(rankings, labels),
        documents=len(doc_ids),
        corpus_seconds=corpus_seconds,
        rankings=rankings,
    )


# --- encoders --------------------------------------------------------------------------------------------------


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`Encoder` (the model's own query/document prompts apply).

    Args:
        model_dir: A sentence-transformers model directory, or :data:`~tunekit.components.tuning.embedding.local.BUNDLED_MINILM`.
        device: Torch device ('cpu', 'cuda'); None picks one.
    """

    def __init__(self, model_dir: str, device: str | None = None):
        from tunekit.components.tuning.embedding.local import load_sentence_transformer

        self.model = load_sentence_transformer(model_dir, device=device)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        return encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embeds queries."""
        return self._encode(texts, "query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Embeds documents."""
        return self._encode(texts, "document")


class VertexEmbeddingEncoder:
    """A Vertex AI text-embedding model (publisher model or endpoint) as an :class:`Encoder`.

    Queries are sent with ``task_type`` ``RETRIEVAL_QUERY`` and documents with ``RETRIEVAL_DOCUMENT``, as Google
    recommends for retrieval.

    Args:
        model: A publisher model id (``text-embedding-005``) or an endpoint resource name.
        project: The Google Cloud project.
        location: The Vertex AI region.
        output_dimensionality: Embedding size (0 for the model's own).
        client: A ``PredictionServiceClient``; by default one over REST (aimed at the fake when
            ``TUNEKIT_VERTEX_BASE_URL`` is set at run time).
    """

    def __init__(self, model: str, project: str, location: str, output_dimensionality: int = 0, client=None):
        if "/" not in model:
            model = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
        self.model = model
        self.output_dimensionality = output_dimensionality
        if client is None:
            from google.cloud import aiplatform_v1

            from tunekit.components.model_clients.vertex import base_url_override, static_credentials

            base_url = base_url_override()
            options = {"api_endpoint": base_url or f"{location}-aiplatform.googleapis.com"}
            credentials = static_credentials() if base_url else None
            client = aiplatform_v1.PredictionServiceClient(
                credentials=credentials, transport="rest", client_options=options
            )
        self.client = client

    def _encode(self, texts: list[str], task_type: str) -> np.ndarray:
        from google.protobuf import json_format, struct_pb2

        def value(obj) -> struct_pb2.Value:
            return json_format.ParseDict(obj, struct_pb2.Value())

        parameters = {"outputDimensionality": self.output_dimensionality} if self.output_dimensionality else {}
        response = self.client.predict(
            endpoint=self.model,
            instances=[value({"content": text, "task_type": task_type}) for text in texts],
            parameters=value(parameters) if parameters else None,
        )
        rows = [json_format.MessageToDict(p) for p in response._pb.predictions]
        return np.asarray([row["embeddings"]["values"] for row in rows], dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embeds queries."""
        return self._encode(texts, "RETRIEVAL_QUERY")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Embeds documents."""
        return self._encode(texts, "RETRIEVAL_DOCUMENT")


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


@dataclass
class GateDecision:
    """Whether to deploy, and why."""

    passed: bool
    reason: str


def decide(base: dict[str, float], tuned: dict[str, float], min_improvement: float = 0.0) -> GateDecision:
    """Passes when the tuned nDCG@10 beats the base's by more than ``min_improvement`` (absolute, 0-1 scale).

    A missing tuned figure fails the gate: a model that cannot be measured is not deployed.
    """
    new = tuned.get(PRIMARY_METRIC)
    old = base.get(PRIMARY_METRIC, 0.0)
    if new is None or math.isnan(new):
        return GateDecision(False, f"do not deploy: the tuned model has no {PRIMARY_METRIC}")
    delta = new - old
    passed = delta > min_improvement
    verdict = "deploy: " if passed else "do not deploy: "
    return GateDecision(
        passed,
        f"{verdict}tuned {PRIMARY_METRIC} {new:.4f} vs base {old:.4f} (change {delta:+.4f}, required > "
        f"{min_improvement:+.4f})",
    )


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
    lines += ["", f"**Gate:** {decision.reason}"]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


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
    policy=None,
    champion_encoder: Encoder | None = None,
) -> tuple[dict[str, dict[str, float]], GateDecision]:
    """Scores the base and the tuned model on the test labels and decides whether to deploy.

    Local: both models are embedded here (exact search, all metrics). Vertex: the base model is embedded here
    through the prediction API; the tuned model is not deployed yet, so its figures are the ones Google's template
    evaluator reported on the same test labels (nDCG@10 at least).

    The champion (the model deployed for ``purpose`` now; its directory locally, its endpoint on Vertex) is
    embedded here on the same queries, and the gate requires the tuned model to beat it (``policy``).

    Returns:
        ``{"base": metrics, "tuned": metrics}`` (plus ``"champion"``) and the gate's decision
        (:class:`~tunekit.components.evaluation.gate.GateDecision`); a Markdown summary is written
        to ``summary_path``.
    """
    from tunekit.components.common import uris
    from tunekit.components.evaluation import gate as cc

    policy = policy or cc.GatePolicy(min_improvement=min_improvement)

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
    champion = (
        cc.locate_champion(
            purpose, backend=backend, local_registry=local_registry, project=project, location=location
        )
        if purpose
        else None
    )
    champion_error = ""
    if champion is not None and champion_encoder is None:
        try:
            if champion.backend == "local":
                champion_encoder = SentenceTransformerEncoder(champion.model)
            elif champion.endpoint:
                champion_encoder = VertexEmbeddingEncoder(
                    champion.endpoint, project, location, output_dimensionality
                )
            else:
                raise ValueError(f"no endpoint is recorded for {champion.model}")
        except Exception as exc:  # noqa: BLE001 - any failure to load the champion is reported by the gate
            champion_error = f"{type(exc).__name__}: {exc}"
    if backend == "local":
        encoders = {
            "base": base_encoder or SentenceTransformerEncoder(base_model),
            "tuned": SentenceTransformerEncoder(tuned_model_path),
        }
    else:
        encoders = {
            "base": base_encoder or VertexEmbeddingEncoder(base_model, project, location, output_dimensionality)
        }
        results["tuned"] = template_metrics(tuned_info.get("metrics") or {})
        note = "The tuned model's figures are those reported by Google's tune-text-embedding-model evaluator."
    if champion_encoder is not None and not champion_error:
        encoders["champion"] = champion_encoder
    for name, encoder in encoders.items():
        try:
            result = evaluate_retrieval(
                encoder,
                corpus,
                queries,
                labels,
                batch_size=batch_size if backend == "local" else min(batch_size, 32),
                progress=progress,
                name=name,
            )
        except Exception as exc:  # noqa: BLE001 - the champion's failure is the gate's to report
            if name != "champion":
                raise
            champion_error = f"{type(exc).__name__}: {exc}"
            continue
        results[name] = {**result.metrics, "seconds_per_1000_documents": result.seconds_per_1000_documents}
        per_query[name] = query_scores(result, labels)
    tuned_value = results["tuned"].get(PRIMARY_METRIC, float("nan"))
    if "champion" in results and not per_query.get("tuned"):
        note += (
            " The champion's figures are computed here on the same test queries; the tuned model's come from the "
            "template, so the comparison has no confidence interval."
        )
    decision = cc.decide(
        metric=PRIMARY_METRIC,
        candidate_scores=per_query.get("tuned"),
        base_scores=per_query.get("base"),
        candidate_value=tuned_value,
        base_value=results["base"].get(PRIMARY_METRIC, 0.0),
        champion_scores=per_query.get("champion"),
        champion_value=results["champion"][PRIMARY_METRIC] if "champion" in results else None,
        champion_label=cc.describe_champion(champion) if champion is not None else "",
        champion_error=champion_error,
        policy=policy,
    )
    with open(summary_path, "w", encoding="utf-8") as handle:
        handle.write(render_markdown(results, decision, note))
    return results, decision

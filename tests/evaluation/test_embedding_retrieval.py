"""Retrieval metrics on hand-made rankings, exact search, the label/corpus readers, the gate."""

import json
import math

import numpy as np
import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation.embedding import steps as r
from tunekit.components.evaluation.gate import GatePolicy, decide
from tunekit.components.model_clients import embeddings as e


def test_ndcg_hand_computed():
    relevant = {"a": 1.0, "b": 1.0}
    assert r.ndcg_at_k(["a", "b", "x"], relevant, 10) == pytest.approx(1.0)
    # one hit at rank 2 of two relevant: (1/log2 3) / (1 + 1/log2 3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert r.ndcg_at_k(["x", "a", "y"], relevant, 10) == pytest.approx(expected)
    assert r.ndcg_at_k(["x"] * 10 + ["a"], relevant, 10) == 0.0


def test_graded_ndcg_prefers_the_more_relevant_first():
    relevant = {"a": 2.0, "b": 1.0}
    assert r.ndcg_at_k(["a", "b"], relevant, 10) == pytest.approx(1.0)
    assert r.ndcg_at_k(["b", "a"], relevant, 10) < 1.0


def test_recall_and_mrr():
    relevant = {"a": 1.0, "b": 1.0}
    ranked = ["x", "a", "y", "b"]
    assert r.recall_at_k(ranked, relevant, 1) == 0.0
    assert r.recall_at_k(ranked, relevant, 2) == 0.5
    assert r.recall_at_k(ranked, relevant, 10) == 1.0
    assert r.mrr_at_k(ranked, relevant, 10) == 0.5
    assert r.mrr_at_k(ranked, relevant, 1) == 0.0


def test_score_rankings_averages_over_judged_queries():
    labels = {"q1": {"a": 1.0}, "q2": {"b": 1.0}}
    metrics = r.score_rankings({"q1": ["a"], "q2": ["x", "y"]}, labels)
    assert metrics["ndcg_at_10"] == 0.5 and metrics["recall_at_1"] == 0.5 and metrics["queries"] == 2
    assert set(r.METRICS) <= set(metrics)


def test_exact_search_matches_brute_force():
    rng = np.random.default_rng(0)
    docs = e.normalize(rng.normal(size=(300, 16)))
    queries = e.normalize(rng.normal(size=(7, 16)))
    top = e.search(queries, docs, 5, block=3)
    brute = np.argsort(-(queries @ docs.T), axis=1)[:, :5]
    assert (top == brute).all()
    assert e.search(queries, docs[:3], 10).shape == (7, 3)


class KeywordEncoder:
    """One dimension per vocabulary word: retrieval by word overlap, fully predictable."""

    vocab = ["printer", "router", "jam", "reboot", "paper", "wifi"]

    def _vec(self, texts):
        return np.array([[t.lower().count(w) + 1e-3 for w in self.vocab] for t in texts], dtype=np.float32)

    encode_queries = _vec
    encode_documents = _vec


def test_evaluate_retrieval_with_a_predictable_encoder():
    corpus = {"d1": "printer paper jam", "d2": "router wifi reboot", "d3": "printer reboot"}
    queries = {"q1": "paper jam", "q2": "wifi", "q3": "unlabelled"}
    labels = {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}}
    result = r.evaluate_retrieval(KeywordEncoder(), corpus, queries, labels, batch_size=2, progress=False)
    assert result.metrics["ndcg_at_10"] == pytest.approx(1.0)
    assert result.rankings["q1"][0] == "d1" and "q3" not in result.rankings
    assert result.documents == 3 and result.seconds_per_1000_documents >= 0


def test_readers(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "title": "T", "text": "body"}\n\n{"_id": 2, "text": "two"}\n')
    assert e.load_corpus(str(corpus)) == {"d1": "T\nbody", "2": "two"}
    labels = tmp_path / "labels.tsv"
    labels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\t2\t0\nq2\td1\n")
    assert e.load_labels(str(labels)) == {"q1": {"d1": 1.0}, "q2": {"d1": 1.0}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("qid\tdid\tscore\n")
    with pytest.raises(UserError, match="header"):
        e.load_labels(str(bad))
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n')
    with pytest.raises(UserError, match="duplicate") as info:
        e.load_queries(str(dup))
    assert info.value.line == 2
    with pytest.raises(UserError, match="not in the corpus"):
        e.check_references({"q": {"zz": 1.0}}, {"q": "x"}, {"d1": "y"}, "labels.tsv")


def test_gate_and_template_metric_names():
    def gate(base, tuned, min_improvement=0.0):
        return decide(
            metric=r.PRIMARY_METRIC,
            candidate_scores=None,
            base_scores=None,
            candidate_value=tuned,
            base_value=base,
            policy=GatePolicy(min_improvement=min_improvement),
        )

    assert gate(0.30, 0.36, 0.05).passed
    assert not gate(0.30, 0.34, 0.05).passed
    # A tuned model that cannot be measured is not deployed.
    decision = gate(0.30, float("nan"))
    assert not decision.passed and "a figure is missing" in decision.reason
    assert r.template_metrics({"NDCG@10": 0.5, "test/ndcg@10": 0.6, "loss": 1.0}) == {"ndcg_at_10": 0.6}


# --- a tuned embedding champion on Vertex (issue 14 item 5) ----------------------------------------------------


@pytest.fixture
def pipelines_fake(monkeypatch):
    """The fake Vertex AI of endpoints, the Model Registry and prediction; loopback only."""
    from fake_vertex_pipelines import serve_fake_pipelines

    yield from serve_fake_pipelines(monkeypatch)


WORDS = [
    "printer",
    "router",
    "invoice",
    "password",
    "laptop",
    "monitor",
    "refund",
    "shipping",
    "keyboard",
    "badge",
]


def _search_data(tmp_path):
    corpus = [
        {"_id": f"d{i}", "title": f"{w} guide", "text": f"how to fix the {w} issue"} for i, w in enumerate(WORDS)
    ]
    queries = [{"_id": f"q{i}", "text": f"my {w} is broken"} for i, w in enumerate(WORDS)]
    for name, rows in (("corpus", corpus), ("queries", queries)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(WORDS)))
    (tmp_path / "test.tsv").write_text(labels)
    return {k: str(tmp_path / f) for k, f in (("corpus_uri", "corpus.jsonl"), ("queries_uri", "queries.jsonl"))}


def test_the_run_after_a_vertex_deployment_scores_the_tuned_champion_and_can_pass(tmp_path, pipelines_fake):
    """Run 1 deploys its tuned embedding model; run 2 embeds the corpus with it on its endpoint, the way a tuned
    model is called (content, task_type and title per instance, at most 5 a request, plain vectors back), and its
    candidate beats it. Before: the champion's answers were read as a publisher model's and it "could not be
    scored", so every run after the first deployment failed the gate."""
    from fake_vertex_pipelines import LOCATION, PROJECT

    from tunekit.components.deployment.embedding import run_deploy_embedding

    vertex = {"project": PROJECT, "location": LOCATION}
    first = pipelines_fake.add_model("tuned-embedding-model").split("@")[0]
    run_deploy_embedding(
        backend="vertex",
        model_path=str(tmp_path / "run1"),
        model_info={"tuned_model": first, "base_model": "text-embedding-005"},
        metrics={"tuned_ndcg_at_10": 0.9},
        gate_reason="no champion yet",
        purpose="support-search",
        pipeline_job_name="run-1",
        local_registry_path="",
        deployment_path=str(tmp_path / "run1" / "deployment.json"),
        **vertex,
    )
    (endpoint,) = pipelines_fake.endpoints
    data = _search_data(tmp_path)
    result = r.run_evaluate_embedding(
        backend="vertex",
        base_model="text-embedding-005",
        tuned_model_path=str(tmp_path / "run2"),
        tuned_info={"metrics": {"test/ndcg@10": 0.999}},
        test_labels_uri=str(tmp_path / "test.tsv"),
        summary_path=str(tmp_path / "summary.md"),
        progress=False,
        purpose="support-search",
        **data,
        **vertex,
    )
    assert "could not be scored" not in result.reason
    assert "champion" in result.metrics and 0 < result.metrics["champion"]["ndcg_at_10"] < 0.999
    assert result.passed and [c.against for c in result.comparisons] == ["base", "champion"]
    calls = [body for _, path, body in pipelines_fake.requests if f"{endpoint}:predict" in path]
    assert sum(len(b["instances"]) for b in calls) == 2 * len(WORDS)  # every document and query, once
    assert max(len(b["instances"]) for b in calls) <= e.TUNED_ENDPOINT_BATCH
    documents = [i for b in calls for i in b["instances"] if i["task_type"] == "RETRIEVAL_DOCUMENT"]
    assert documents[0] == {
        "content": "how to fix the printer issue",
        "task_type": "RETRIEVAL_DOCUMENT",
        "title": "printer guide",
    }
    queries = [i for b in calls for i in b["instances"] if i["task_type"] == "RETRIEVAL_QUERY"]
    assert queries[0] == {"content": "my printer is broken", "task_type": "RETRIEVAL_QUERY", "title": ""}


def test_a_tuned_endpoint_refuses_instances_without_title(pipelines_fake):
    """The fake answers as a tuned model does: an instance without ``title`` is refused (the old request)."""
    from fake_vertex_pipelines import LOCATION, PROJECT
    from google.api_core import exceptions

    model = pipelines_fake.add_model("tuned-embedding-model", with_endpoint=True)
    (endpoint,) = pipelines_fake.endpoints
    encoder = e.VertexEmbeddingEncoder(endpoint, PROJECT, LOCATION)
    from google.protobuf import json_format, struct_pb2

    old_request = {"content": "no title here", "task_type": "RETRIEVAL_DOCUMENT"}  # what the encoder sent before
    with pytest.raises(exceptions.BadRequest, match="lacks title"):
        encoder.client.predict(
            endpoint=endpoint, instances=[json_format.ParseDict(old_request, struct_pb2.Value())]
        )
    vectors = encoder.encode_documents([e.document_text("", "no title here")])
    assert vectors.shape == (1, 64) and model.endswith("@1")

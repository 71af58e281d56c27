"""Retrieval metrics on hand-made rankings, exact search, the label/corpus readers, the gate."""

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

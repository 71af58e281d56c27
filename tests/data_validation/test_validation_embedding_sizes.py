"""Embedding sets against the size requirements of Google's tune-text-embedding-model template.

Errors with the ``vertex`` backend (the template would fail after its job starts); infos with ``local``
(sentence-transformers trains on any size). Source of the numbers: see limits.EmbeddingLimits.
"""

import contextlib
import io
import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.data_validation import cli, limits
from tunekit.components.data_validation.steps import ValidationFailed, run_validation
from tunekit.components.data_validation.validate import validate_dataset

TRAIN = ((1, 1), (2, 2), (3, 3), (7, 7), (8, 8), (0, 0))
TEST = ((4, 4), (5, 5), (6, 6))


def write_set(folder, queries=9, documents=9, train=TRAIN, test=TEST):
    """An embedding set of ``queries`` queries and ``documents`` documents; labels as (query, document) numbers.

    By default the smallest set the template takes: 9 queries, 9 documents, 6 + 3 query ids in two label files.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def jsonl(name, prefix, count, word):
        path = folder / name
        path.write_text(
            "".join(json.dumps({"_id": f"{prefix}{i}", "text": f"{word} {i}"}) + "\n" for i in range(count))
        )
        return str(path)

    def tsv(name, pairs):
        path = folder / name
        path.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{q}\td{d}\t1\n" for q, d in pairs))
        return str(path)

    paths = {
        "corpus": jsonl("corpus.jsonl", "d", documents, "document"),
        "queries": jsonl("queries.jsonl", "q", queries, "query"),
        "train_labels": tsv("train.tsv", train),
    }
    if test:
        paths["test_labels"] = tsv("test.tsv", test)
    return paths


def size_findings(report):
    return sorted(
        (f.path.rsplit("/", 1)[-1], f.severity, f.message)
        for f in report.findings
        if f.kind == "embedding_set_size"
    )


def test_the_issues_small_set_fails_for_vertex_and_is_noted_for_local(tmp_path):
    # Issue 14 item 8: 5 queries, 5 documents and 2 labels passed as VALID.
    paths = write_set(tmp_path, queries=5, documents=5, train=((0, 0), (1, 1)), test=())
    report = validate_dataset(paths, method="embedding")
    assert not report.ok
    found = size_findings(report)
    assert [(name, severity) for name, severity, _ in found] == [
        ("corpus.jsonl", "error"),
        ("queries.jsonl", "error"),
        ("train.tsv", "error"),
        ("train.tsv", "error"),
    ]
    messages = " | ".join(message for _, _, message in found)
    assert "5 queries; Google's embedding tuning template takes 9 to 10,000" in messages
    assert "5 documents" in messages and "9 to 500,000" in messages
    assert "2 distinct query id(s); " in messages and "at least 3 in each label file" in messages
    assert "at least 9 across all splits" in messages
    local = validate_dataset(paths, method="embedding", backend="local", strict=True)
    assert local.ok and [severity for _, severity, _ in size_findings(local)] == ["info"] * 4
    assert all("backend 'vertex'" in f.hint for f in local.findings if f.kind == "embedding_set_size")


def test_the_smallest_set_the_template_takes_passes(tmp_path):
    paths = write_set(tmp_path)
    report = validate_dataset(paths, method="embedding", strict=True)
    assert report.ok and size_findings(report) == [], report.text_summary()
    assert report.summary["backend"] == "vertex"


def test_each_label_file_needs_three_query_ids(tmp_path):
    paths = write_set(tmp_path, train=((q, q) for q in range(7)), test=((7, 7), (8, 8), (8, 1)))
    found = size_findings(validate_dataset(paths, method="embedding"))
    assert found == [
        (
            "test.tsv",
            "error",
            "2 distinct query id(s); Google's embedding tuning template takes at least 3 in each label file",
        )
    ]


def test_more_queries_than_the_template_takes_is_an_error(tmp_path):
    paths = write_set(tmp_path, queries=limits.EMBEDDING_TEMPLATE.max_queries + 1)
    assert [name for name, _, _ in size_findings(validate_dataset(paths, method="embedding"))] == ["queries.jsonl"]
    paths = write_set(tmp_path / "at-limit", queries=limits.EMBEDDING_TEMPLATE.max_queries)
    assert size_findings(validate_dataset(paths, method="embedding")) == []


def test_documents_and_labels_over_the_limits(tmp_path, monkeypatch):
    # Small stand-ins for 500,000 documents and labels: the rule is what is tested, with the limits scaled down.
    monkeypatch.setattr(limits, "EMBEDDING_TEMPLATE", limits.EmbeddingLimits(max_documents=10, max_labels=5))
    paths = write_set(tmp_path, documents=11)
    found = size_findings(validate_dataset(paths, method="embedding"))
    assert [(name, message) for name, _, message in found] == [
        ("corpus.jsonl", "11 documents; Google's embedding tuning template takes 9 to 10"),
        ("train.tsv", "9 labels in all; Google's embedding tuning template takes fewer than 6"),
    ]


def test_backend_is_checked_and_only_for_embedding_sets(tmp_path):
    paths = write_set(tmp_path)
    with pytest.raises(UserError, match="unknown embedding backend 'gpu'"):
        validate_dataset(paths, method="embedding", backend="gpu")
    train = tmp_path / "t.jsonl"
    train.write_text(json.dumps({"input_text": "a", "output_text": "b"}) + "\n")
    with pytest.raises(UserError, match="embedding sets only"):
        validate_dataset({"train": str(train)}, method="supervised", backend="local")


def cli_run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_cli_backend_flag(tmp_path):
    paths = write_set(tmp_path, queries=5, documents=5, train=((0, 0), (1, 1), (2, 2)), test=())
    argv = ["--corpus", paths["corpus"], "--queries", paths["queries"], "--train-labels", paths["train_labels"]]
    argv += ["--report", str(tmp_path / "r.json")]
    status, out, _ = cli_run(*argv)
    assert status == 1 and "embedding_set_size" in out
    status, out, _ = cli_run(*argv, "--backend", "local", "--strict")
    assert status == 0 and "VALID" in out
    status, _, err = cli_run(paths["queries"], "--backend", "local")
    assert status == 2 and "--backend is for embedding sets" in err


def test_the_pipeline_step_fails_before_the_paid_template_run_only_for_vertex(tmp_path):
    paths = write_set(tmp_path / "data", queries=5, documents=5, train=((0, 0), (1, 1), (2, 2)), test=())
    outputs = dict(
        report_path=str(tmp_path / "r.json"), html_path=str(tmp_path / "r.html"), log_metric=lambda *_: None
    )
    common = dict(method="embedding", task="", base_model="", strict=True, **outputs)
    with pytest.raises(ValidationFailed, match="embedding_set_size"):
        run_validation(paths, backend="vertex", **common)
    assert run_validation(paths, backend="local", **common).ok

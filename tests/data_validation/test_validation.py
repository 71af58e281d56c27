"""Data validation: valid data of every format passes, dataset checks, report outputs, CLI and token counting."""

import json
import os
import re

import pytest

from tunekit.components.data_validation import cli
from tunekit.components.data_validation.quality import Histogram, class_list, qa_context, template_signature
from tunekit.components.data_validation.tokens import vertex_token_counter
from tunekit.components.data_validation.validate import validate_dataset


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def route(i, label):
    return {
        "input_text": f"Route the message to one team: billing, shipping or account.\nMessage: case {i}\nTeam:",
        "output_text": label,
    }


CLASSIFICATION = [route(i, ("billing", "shipping", "account")[i % 3]) for i in range(120)]


def gemini_row(i):
    return {
        "systemInstruction": {"role": "system", "parts": [{"text": "Answer briefly."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"fileData": {"mimeType": "image/png", "fileUri": f"gs://b/{i}.png"}},
                    {"text": f"What is in picture {i}?"},
                ],
            },
            {"role": "model", "parts": [{"text": f"A cat number {i}."}]},
            {"role": "user", "parts": [{"text": "And its colour?"}]},
            {"role": "model", "parts": [{"text": "Grey."}]},
        ],
    }


VALID = {
    "text_pair": ("supervised", [route(i, "billing") for i in range(3)]),
    "chat": (
        "supervised",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"hi {i}"},
                    {"role": "model", "content": "hello"},
                ]
            }
            for i in range(3)
        ],
    ),
    "gemini": ("supervised", [gemini_row(i) for i in range(3)]),
    "distillation": (
        "distillation",
        [{"input_text": f"q {i}"} for i in range(3)] + [{"input_text": "q x", "output_text": "a"}],
    ),
    "human_preference": (
        "preference",
        [
            {"input_text": f"Say hi {i}", "candidate_0": "Hi!", "candidate_1": "Go away.", "choice": i % 2}
            for i in range(3)
        ]
        + [
            {
                "messages": [
                    {"author": "user", "content": "hey"},
                    {"author": "assistant", "content": "yes?"},
                    {"author": "user", "content": "hi"},
                ],
                "candidate_0": "a",
                "candidate_1": "b",
                "choice": 1,
            }
        ],
    ),
    "prompt": ("preference", [{"input_text": f"Say hi {i}"} for i in range(3)]),
    "gemini_preference": (
        "preference",
        [
            {
                "systemInstruction": {"parts": [{"text": "Be kind."}]},
                "contents": [{"role": "user", "parts": [{"text": f"Say hi {i}"}]}],
                "completions": [
                    {"score": 1, "completion": {"role": "model", "parts": [{"text": "Hi!"}]}},
                    {"score": 0, "completion": {"role": "model", "parts": [{"text": "No."}]}},
                ],
            }
            for i in range(3)
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_data_of_every_format_passes_strict(tmp_path, name):
    method, rows = VALID[name]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    validation = write_jsonl(tmp_path / "validation.jsonl", rows[:1]) if method == "supervised" else ""
    report = validate_dataset(
        {"train": path, "validation": validation}, method=method, strict=True, model="gemini-2.5-flash"
    )
    # Small files, by design: only the overlap between the two files and "few unlabelled" are expected.
    unexpected = {
        k
        for k in report.counts_by_kind()
        if k not in ("train_validation_overlap", "few_unlabelled", "labelled_mix")
    }
    assert not unexpected, report.text_summary()
    expected_format = {"distillation": "text_pair"}.get(name, name)
    assert report.summary["files"]["train"]["format"] == expected_format


def test_valid_embedding_set_passes(tmp_path):
    # The smallest set Google's template takes: 9 queries and 9 documents, 3 query ids in each label file.
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"_id": "d1", "title": "t", "text": "a"}] + [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(2, 10)],
    )
    queries = write_jsonl(
        tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(1, 10)]
    )
    labels = tmp_path / "train.tsv"
    labels.write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(1, 7)) + "q2\td1\t0.5\n"
    )
    test = tmp_path / "test.tsv"
    test.write_text("query-id\tcorpus-id\tscore\nq2\td1\t0\nq7\td7\t1\nq8\td8\t1\nq9\td9\t1\n")
    report = validate_dataset(
        {"corpus": corpus, "queries": queries, "train_labels": str(labels), "test_labels": str(test)},
        method="embedding",
        strict=True,
    )
    assert report.counts_by_kind() == {"train_validation_overlap": 1}
    assert report.summary["files"]["train_labels"]["rows"] == 7


def test_classification_report_has_labels_and_classes(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", CLASSIFICATION)
    report = validate_dataset({"train": path}, method="supervised", task="classification")
    stats = report.summary["files"]["train"]
    assert stats["labels"] == {"billing": 40, "shipping": 40, "account": 40}
    assert stats["classes_in_instruction"] == ["billing", "shipping", "account"]
    assert stats["dominant_template"]["share"] == 1.0
    assert report.ok and "too_few_examples" not in report.counts_by_kind()


def test_findings_are_counted_exactly_but_kept_bounded(tmp_path):
    rows = [{"input_text": "", "output_text": "x"}] * 500
    report = validate_dataset({"train": write_jsonl(tmp_path / "t.jsonl", rows)}, method="supervised")
    assert report.counts_by_kind()["empty_text"] == 500
    assert len([f for f in report.findings if f.kind == "empty_text"]) == 50
    assert report.metrics()["findings_empty_text"] == 500.0


def test_many_duplicates_are_confirmed_exactly(tmp_path):
    rows = [
        {"input_text": f"q{i % 1000}", "output_text": "same" if i < 3000 else f"other{i}"} for i in range(4000)
    ]
    report = validate_dataset({"train": write_jsonl(tmp_path / "t.jsonl", rows)}, method="supervised")
    stats = report.summary["files"]["train"]
    assert stats["duplicates"] == 2000
    assert stats["conflicting_duplicates"] == 1000


def test_strict_fails_on_warnings_only(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [dict(route(1, "billing"), note="x")])
    assert validate_dataset({"train": path}, method="supervised").ok
    assert not validate_dataset({"train": path}, method="supervised", strict=True).ok


def test_retired_and_unknown_models_are_warned_about(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [route(1, "billing")])
    kinds = validate_dataset({"train": path}, method="supervised", model="text-bison@002").counts_by_kind()
    assert kinds.get("unsupported_model") == 1
    kinds = validate_dataset({"train": path}, method="supervised", model="gemini-1.0-pro").counts_by_kind()
    assert kinds.get("unsupported_model") == 1
    # An open model has no Vertex limits: a long example is fine.
    long = write_jsonl(tmp_path / "long.jsonl", [{"input_text": "word " * 200_000, "output_text": "a"}])
    assert validate_dataset({"train": long}, method="supervised", model="tiny-random:t5").ok
    assert not validate_dataset({"train": long}, method="supervised", model="gemini-2.5-flash").ok


def test_normalised_output_with_dedupe(tmp_path):
    rows = [
        route(1, "billing"),
        route(1, "billing"),
        {"messages": [{"role": "user", "content": "a"}]},
        route(2, "account"),
    ]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "out"
    validate_dataset({"train": path}, method="supervised", dedupe=True, normalised_dir=str(out))
    lines = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert len(lines) == 2  # the duplicate and the invalid (mixed-format) row are left out
    assert lines[0]["contents"][1] == {"role": "model", "parts": [{"text": "billing"}]}


def test_exact_token_counts_come_from_an_injected_counter(tmp_path):
    row = {"input_text": "word " * 120_000, "output_text": "a"}  # ~150k tokens by the estimate
    path = write_jsonl(tmp_path / "t.jsonl", [row, route(1, "billing")])
    assert validate_dataset({"train": path}, method="supervised").counts_by_kind()["too_many_tokens"] == 1
    report = validate_dataset({"train": path}, method="supervised", token_counter=lambda r: 120_001)
    assert "too_many_tokens" not in report.counts_by_kind()
    report = validate_dataset({"train": path}, method="supervised", token_counter=lambda r: 140_000)
    assert [f.message for f in report.findings if f.kind == "too_many_tokens"][0].startswith(
        "140,000 tokens (counted"
    )


def test_vertex_token_counter_builds_the_request_from_a_row():
    calls = []

    class FakeModels:
        def count_tokens(self, *, model, contents, config):
            calls.append((model, contents, config))
            return type("Response", (), {"total_tokens": 42})()

    client = type("Client", (), {"models": FakeModels()})()
    count = vertex_token_counter("p", "us-central1", "gemini-2.5-flash", client=client)
    assert count({"input_text": "a", "output_text": "b"}) == 42
    model, contents, config = calls[0]
    assert model == "gemini-2.5-flash" and [c["role"] for c in contents] == ["user", "model"] and config is None
    assert count(VALID["gemini_preference"][1][0]) == 42
    assert len(calls[1][1]) == 3 and calls[1][2].system_instruction == "Be kind."


def test_histogram_percentiles_are_within_a_bucket():
    histogram = Histogram()
    for n in range(1, 100_001):
        histogram.add(n)
    assert histogram.max == 100_000
    for q in (50, 90, 99):
        exact = q * 1000
        assert abs(histogram.percentile(q) - exact) / exact < 0.04


def test_prompt_heuristics():
    assert class_list("Classify the review. Options: positive, negative or neutral.\nReview: x") == (
        "positive",
        "negative",
        "neutral",
    )
    assert class_list("Summarise this text.") is None
    assert qa_context("question: who?\ncontext: Ann met Bo.\nanswer:").strip() == "Ann met Bo."
    a = template_signature("Classify: x\nReview: great\nLabel:")
    b = template_signature("Classify: y\nReview: awful, really\nLabel:")
    assert a == b and a != template_signature("Review: great\nClassify: x")


def test_report_renders_self_contained_html_and_json(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", CLASSIFICATION + [{"input_text": "<script>", "output_text": ""}])
    report = validate_dataset({"train": path}, method="supervised", task="classification")
    page = report.render_html()
    assert page.count("<svg") >= 3  # input lengths, output lengths, labels
    assert "<script>" not in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "INVALID" in page and "empty_text" in page
    report.write_json(tmp_path / "r.json")
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded["ok"] is False and loaded["counts_by_kind"]["empty_text"] == 1
    assert loaded["findings"][0]["line"] == 121


# -- CLI ------------------------------------------------------------------------------------------------------


def run_cli(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err


def test_cli_exit_codes_and_summary(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", CLASSIFICATION)
    bad = write_jsonl(tmp_path / "bad.jsonl", CLASSIFICATION[:3] + [{"input_text": 1}])
    report = tmp_path / "report.json"
    status, out, _ = run_cli(capsys, good, "--task", "classification", "--strict", "--report", str(report))
    assert status == 0 and "VALID" in out and str(report) in out and report.exists()
    status, out, _ = run_cli(capsys, bad, "--report", str(report))
    assert status == 1 and "bad.jsonl:4" in out and "wrong_type" in out
    status, out, _ = run_cli(capsys, good, str(tmp_path / "missing.jsonl"), "--report", str(report))
    assert status == 2 and "file not found" in out
    status, _, err = run_cli(capsys, "--method", "nonsense", good)
    assert status == 2 and "invalid choice" in err
    status, _, err = run_cli(capsys)
    assert status == 2 and "training FILE" in err
    status, out, _ = run_cli(capsys, bad, "--json", "--report", str(report))
    assert status == 1 and json.loads(out)["counts_by_kind"] == {
        "missing_field": 1,
        "no_validation_set": 1,
        "wrong_type": 1,
    }


def test_cli_guesses_preference_and_validates_embedding_sets(tmp_path, capsys):
    pref = write_jsonl(tmp_path / "p.jsonl", VALID["human_preference"][1])
    status, out, _ = run_cli(capsys, pref, "--report", str(tmp_path / "r.json"))
    assert status == 0 and "human_preference" in out
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "d1", "text": "a"}])
    queries = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "x"}])
    labels = tmp_path / "l.tsv"
    labels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td9\t1\n")
    status, out, _ = run_cli(
        capsys,
        "--corpus",
        corpus,
        "--queries",
        queries,
        "--train-labels",
        str(labels),
        "--report",
        str(tmp_path / "r.json"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert status == 1 and "unknown_corpus_id" in out and os.path.exists(tmp_path / "r.html")
    status, _, err = run_cli(capsys, pref, "--corpus", corpus)
    assert status == 2

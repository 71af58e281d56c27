"""JSON that Python's reader passes silently or misdescribes: NaN/Infinity, duplicate keys, huge numbers, gzip."""

import gzip
import json

import pytest

from tunekit.components.data_validation.validate import validate_dataset


def findings(tmp_path, text: bytes, name="train.jsonl"):
    path = tmp_path / name
    path.write_bytes(text)
    report = validate_dataset({"train": str(path)}, method="supervised")
    return report, [(f.kind, f.line, f.field, f.message) for f in report.findings if f.severity == "error"]


def row(**extra):
    return {"input_text": "Route: billing or shipping?\nMessage: late parcel", "output_text": "shipping", **extra}


@pytest.mark.parametrize(
    ("literal", "field"),
    [("NaN", "score"), ("Infinity", "score"), ("-Infinity", "meta.weights[1]")],
)
def test_nan_and_infinity_are_errors_naming_line_and_field(tmp_path, literal, field):
    good = json.dumps(row())
    if field == "score":
        bad = good[:-1] + f', "score": {literal}}}'
    else:
        bad = good[:-1] + f', "meta": {{"weights": [1.0, {literal}]}}}}'
    report, errors = findings(tmp_path, f"{good}\n{bad}\n".encode())
    assert not report.ok
    assert [(kind, line, f) for kind, line, f, _ in errors] == [("non_finite_number", 2, field)]
    assert literal in errors[0][3]
    assert report.summary["files"]["train"]["valid_rows"] == 1


def test_duplicate_keys_are_errors_naming_the_key_even_when_nested(tmp_path):
    top = '{"input_text": "a", "output_text": "b", "output_text": "c"}'
    nested = json.dumps(row())[:-1] + ', "meta": {"k": 1, "k": 2}}'
    report, errors = findings(tmp_path, f"{top}\n{nested}\n{json.dumps(row())}\n".encode())
    assert [(kind, line, field) for kind, line, field, _ in errors] == [
        ("duplicate_key", 1, "output_text"),
        ("duplicate_key", 2, "k"),
    ]
    assert not report.ok and report.summary["files"]["train"]["valid_rows"] == 1


def test_parse_error_messages_read_well(tmp_path):
    huge = "1" * 5000
    # The last line has no newline, so its string runs to the end of the file: "Unterminated string starting at".
    text = f'{{"input_text": {huge}, "output_text": "x"}}\n{{"input_text": "abc'.encode()
    _, errors = findings(tmp_path, text)
    messages = {line: message for _, line, _, message in errors}
    assert "4,300 digits" in messages[1] and "nested" not in messages[1]
    assert messages[2] == "not valid JSON (Unterminated string starting at column 16)"


def test_a_gzip_file_is_one_error_saying_how_to_decompress_it(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    report, errors = findings(tmp_path, gzip.compress((json.dumps(row()) + "\n").encode()), path.name)
    assert [(kind, line) for kind, line, _, _ in errors] == [("compressed_file", None)]
    (finding,) = [f for f in report.findings if f.kind == "compressed_file"]
    assert "gzip" in finding.message and f"gunzip {path}" in finding.hint


def test_a_gzip_label_file_in_an_embedding_set_is_reported_as_gzip(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(9)))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(9)))
    labels = tmp_path / "train.tsv.gz"
    labels.write_bytes(gzip.compress(b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"))
    report = validate_dataset(
        {"corpus": str(corpus), "queries": str(queries), "train_labels": str(labels)}, method="embedding"
    )
    kinds = {f.kind for f in report.findings if f.path == str(labels)}
    assert "compressed_file" in kinds and "invalid_utf8" not in kinds and "missing_header" not in kinds

"""The validation components under the KFP local runner: outputs written, the step fails on invalid data."""

import json
import os

import pytest
from kfp import local

from tunekit.components.data_validation.component import validate_data, validate_embedding_data


@pytest.fixture()
def runner(tmp_path):
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True
    )


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


ROWS = [
    {
        "input_text": f"Route the message to one team: billing or account.\nMessage: case {i}\nTeam:",
        "output_text": "billing" if i % 2 else "account",
    }
    for i in range(10)
]


def test_validate_data_writes_report_html_metrics_and_normalised_data(tmp_path, runner):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS + [ROWS[0]])
    validation = write_jsonl(tmp_path / "validation.jsonl", ROWS[:2])
    task = validate_data(
        train_dataset_uri=train,
        validation_dataset_uri=validation,
        method="supervised",
        task="classification",
        base_model="gemini-2.5-flash",
        strict=False,
        dedupe=True,
    )
    report = json.loads(open(task.outputs["report"].path).read())
    assert report["ok"] is True and report["counts_by_kind"]["duplicate"] == 1
    assert "<svg" in open(task.outputs["html_report"].path).read()
    assert task.outputs["metrics"].metadata["findings_duplicate"] == 1.0
    normalised = task.outputs["normalised_dataset"].path
    assert len(open(os.path.join(normalised, "train.jsonl")).read().splitlines()) == 10
    assert sorted(os.listdir(normalised)) == ["train.jsonl", "validation.jsonl"]


def test_validate_data_fails_the_step_on_errors(tmp_path, runner):
    train = write_jsonl(tmp_path / "train.jsonl", ROWS + [{"input_text": "no answer"}])
    with pytest.raises(RuntimeError):
        validate_data(
            train_dataset_uri=train,
            validation_dataset_uri="",
            method="supervised",
            task="generic",
            base_model="gemini-2.5-flash",
            strict=False,
        )


def test_validate_embedding_data(tmp_path, runner):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "text": "a"}])
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q1", "text": "x"}])
    (tmp_path / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    task = validate_embedding_data(
        corpus_uri=corpus,
        queries_uri=queries,
        train_labels_uri=str(tmp_path / "train.tsv"),
        test_labels_uri="",
        validation_labels_uri="",
        strict=True,
        backend="local",  # one query: too few for Google's template, a note for sentence-transformers
    )
    report = json.loads(open(task.outputs["report"].path).read())
    assert report["ok"] is True and report["counts_by_kind"]["embedding_set_size"] == 4

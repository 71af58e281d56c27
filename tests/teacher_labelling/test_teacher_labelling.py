"""Teacher labelling: prompts, label normalisation, accuracy against gold, and the component in the local runner."""

import json
import os

import pytest
from fake_vertex import FakeAnswer, FakeVertex, allow_loopback_only

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.backends import make_engine
from tunekit.components.teacher_labelling.label import (
    LabellingConfig,
    build_prompt,
    label_rows,
    normalise_label,
    row_context,
)

CLASSES = ["billing", "shipping", "other"]


def test_normalise_classification_maps_to_allowed_classes_and_flags_the_rest():
    assert normalise_label("classification", " Billing.", CLASSES) == ("billing", "ok", "")
    assert normalise_label("classification", '"shipping"\nInput: next one', CLASSES)[:2] == ("shipping", "ok")
    assert normalise_label("classification", "Output: the class is other", CLASSES)[:2] == ("other", "ok")
    label, status, error = normalise_label("classification", "refund", CLASSES)
    assert (label, status) == (None, "out_of_set") and "refund" in error
    assert normalise_label("classification", "billing or shipping", CLASSES)[1] == "out_of_set"
    assert normalise_label("classification", "   ", CLASSES)[1] == "empty"


def test_normalise_extractive_qa_checks_the_context():
    context = "The Eiffel Tower is in Paris, France."
    assert normalise_label("extractive_qa", "paris", context=context) == ("Paris", "ok", "")
    assert normalise_label("extractive_qa", '"Paris, France."', context=context)[:2] == ("Paris, France.", "ok")
    assert normalise_label("extractive_qa", "London", context=context)[1] == "out_of_set"
    assert normalise_label("summarization", "  Free text, kept.  ") == ("Free text, kept.", "ok", "")


def test_row_context_from_column_or_input_section():
    assert row_context({"context": "C"}) == "C"
    text = "question: Where is it?\ncontext: It is in Paris.\n"
    assert row_context({"input_text": text}) == "It is in Paris."
    assert row_context({"input_text": "context: first\nquestion: q"}) == "first"
    assert row_context({"input_text": "no sections"}) is None


def test_prompt_lists_classes_and_exemplars_in_order():
    config = LabellingConfig(task="classification", classes=CLASSES)
    prompt = build_prompt(
        config, [{"input_text": "where is my parcel", "output_text": "shipping"}], "card charged"
    )
    assert "Classes: billing, shipping, other" in prompt.text
    assert prompt.text.index("Input: where is my parcel\nOutput: shipping") < prompt.text.index(
        "Input: card charged"
    )
    assert prompt.text.endswith("Input: card charged\nOutput:")
    with pytest.raises(UserError):
        LabellingConfig(task="classification")


def _rows():
    return [
        {"input_text": "I was charged twice", "output_text": "billing"},
        {"input_text": "parcel never came", "output_text": "shipping"},
        {"input_text": "hello there", "output_text": "other"},
        {"input_text": "refund my card"},
        {"input_text": "box is lost"},
        {"input_text": "what is this"},
        {"input_text": "blocked one"},
    ]


TEACHER = {
    "I was charged twice": "billing",
    "parcel never came": "billing",  # wrong on purpose: accuracy is not 100%
    "hello there": "Other.",
    "refund my card": "Billing",
    "box is lost": "shipping",
    "what is this": "a question",  # not an allowed class
}


def test_label_rows_every_row_kept_with_status_and_accuracy(tmp_path):
    engine = make_engine("fake", "teacher", options={"answers": TEACHER}, cache_dir=str(tmp_path))
    config = LabellingConfig(task="classification", classes=CLASSES, num_exemplars=0)
    result = label_rows(_rows(), engine, config)
    rows = result.rows
    assert len(rows) == 7
    assert [r["label_status"] for r in rows] == ["ok", "ok", "ok", "ok", "ok", "out_of_set", "empty"]
    assert [r["output_text"] for r in rows] == ["billing", "shipping", "other", "billing", "shipping", None, None]
    assert [r["label_source"] for r in rows] == ["gold"] * 3 + ["teacher"] * 2 + ["none"] * 2
    assert [r["teacher_correct"] for r in rows[:3]] == [True, False, True]
    report = result.report
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["labelled_by_teacher"] == 2 and report["unusable"] == 2
    assert report["statuses"] == {"ok": 5, "out_of_set": 1, "empty": 1}
    engine.close()

    # A re-run answers from the cache: no call is paid twice.
    again = make_engine("fake", "teacher", options={"answers": {}}, cache_dir=str(tmp_path))
    rerun = label_rows(_rows(), again, config)
    assert [r["output_text"] for r in rerun.rows] == [r["output_text"] for r in rows]
    assert rerun.report["engine"]["calls"] == 0 and all(r["from_cache"] for r in rerun.rows[:6])
    again.close()


def test_exemplars_from_the_input_are_not_evaluated_and_dry_run_sends_nothing():
    engine = make_engine("fake", "teacher", options={"answers": TEACHER})
    config = LabellingConfig(task="classification", classes=CLASSES, num_exemplars=2, seed=1)
    result = label_rows(_rows(), engine, config)
    not_requested = [i for i, r in enumerate(result.rows) if r["label_status"] == "not_requested"]
    assert len(not_requested) == 2 and all(i < 3 for i in not_requested)
    assert result.report["gold_evaluated"] == 1 and result.report["exemplars"] == 2
    fake = engine.primary.client
    assert "Output: " + result.rows[not_requested[0]]["output_text"] in fake.calls[0].text
    engine.close()

    engine = make_engine("fake", "teacher", options={"answers": TEACHER})
    estimate = label_rows(_rows(), engine, LabellingConfig(task="generic", num_exemplars=0), dry_run_only=True)
    assert engine.primary.client.calls == []
    assert estimate.report["to_send"] == 7 and estimate.report["statuses"] == {"dry_run": 7}
    engine.close()


def test_vertex_teacher_statuses_in_rows(monkeypatch):
    refused = allow_loopback_only(monkeypatch)
    context = "The Eiffel Tower is in Paris."

    def respond(text):
        if "Where is the tower" in text.rsplit("Input:", 1)[1]:
            return "Paris"
        if "unsafe" in text:
            return FakeAnswer("", finish_reason="SAFETY")
        return "Berlin"

    with FakeVertex(responder=respond) as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        engine = make_engine(
            "vertex",
            "gemini-2.5-flash",
            options={"project": "test-project", "location": "us-central1"},
            engine_options={"initial_backoff_s": 0.01},
        )
        rows = [
            {"input_text": f"question: Where is the tower?\ncontext: {context}"},
            {"input_text": f"question: Where is it?\ncontext: {context}"},
            {"input_text": f"question: unsafe?\ncontext: {context}"},
        ]
        result = label_rows(rows, engine, LabellingConfig(task="extractive_qa", num_exemplars=0))
        assert [r["label_status"] for r in result.rows] == ["ok", "out_of_set", "blocked"]
        assert result.rows[0]["output_text"] == "Paris"
        assert result.report["engine"]["input_tokens"] > 0
        engine.close()
    assert refused == []


_COMPONENT_ANSWERS = {"refund my card": "billing", "box is lost": "shipping", "what is this": "other"}


def _component_answer(text: str) -> str:
    return _COMPONENT_ANSWERS.get(text.rsplit("Input: ", 1)[1].split("\n")[0], "other")


def _labelling_pipeline(tmp_path, monkeypatch, fake=None, path=None, **options):
    """The labelling component in the local runner (aimed at ``fake``, if any); returns a run of it on ``path``.

    ``path`` defaults to a JSONL file of the test rows; ``options`` override the component's arguments.
    """
    from kfp import dsl, local

    from tunekit.components.teacher_labelling.component import label_with_teacher

    if path is None:
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    for key, value in (
        fake.env() if fake else {}
    ).items():  # the Vertex base URL (STORAGE_EMULATOR_HOST for gs://)
        monkeypatch.setenv(key, value)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    arguments = {"task": "classification", "classes": CLASSES, "teacher_model": "gemini-2.5-flash", **options}

    @dsl.pipeline
    def labelling(path: str) -> dsl.Dataset:
        importer = dsl.importer(artifact_uri=path, artifact_class=dsl.Dataset)
        return label_with_teacher(input_dataset=importer.output, **arguments).outputs["labelled_dataset"]

    def run() -> str:
        return labelling(path=str(path)).output.path

    return run


def _jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


VERTEX = {"project": "test-project", "location": "us-central1", "num_exemplars": 2}


def test_component_in_the_local_runner(tmp_path, monkeypatch):
    with FakeVertex(responder=_component_answer) as fake:
        run = _labelling_pipeline(
            tmp_path,
            monkeypatch,
            fake,
            teacher_backend="vertex",
            engine_options={"initial_backoff_s": 0.01},
            **VERTEX,
        )
        rows = _jsonl(run())
        assert len(rows) == 7
        assert [r["output_text"] for r in rows[3:]] == ["billing", "shipping", "other", "other"]
        assert {r["label_status"] for r in rows} <= {"ok", "not_requested"}
        billed = fake.stats()["billed_calls"]
        assert billed == 5  # four unlabelled rows and the one gold row not used as an exemplar


@pytest.mark.skipif(os.path.isdir("/gcs"), reason="a /gcs mount would take the place of the storage client")
def test_component_with_vertex_batch_in_the_local_runner(tmp_path, monkeypatch):
    """vertex_batch through the component: JSONL input uploaded, one batch job, answers read back, cache on gs://."""
    root = tmp_path / "gcs"
    with FakeVertex(responder=_component_answer, gcs_root=str(root), polls_to_finish=2) as fake:
        run = _labelling_pipeline(
            tmp_path,
            monkeypatch,
            fake,
            teacher_backend="vertex_batch",
            backend_options={"staging_uri": "gs://bucket/stage", "poll_interval_s": 0.01},
            cache_uri="gs://bucket/cache",
            **VERTEX,
        )
        rows = _jsonl(run())
        assert len(rows) == 7
        assert [r["output_text"] for r in rows[3:]] == ["billing", "shipping", "other", "other"]
        (job,) = fake.batch_jobs.values()  # five prompts, one batch job
        assert job["state"] == "JOB_STATE_SUCCEEDED"
        assert fake.requests_to(r":generateContent$") == []  # no online call: batch only
        assert fake.stats()["billed_calls"] == 5  # each prompt billed once, inside the job
        (request_file,) = (root / "bucket" / "stage").glob("*/input.jsonl")
        assert len(request_file.read_text().splitlines()) == 5
        assert list((root / "bucket" / "cache").glob("responses-*.jsonl"))  # the answers, uploaded

        # A re-run with the same cache sends nothing: no second batch job.
        again = _jsonl(run())
        assert len(fake.batch_jobs) == 1 and fake.stats()["billed_calls"] == 5
        assert [r["output_text"] for r in again] == [r["output_text"] for r in rows]


def test_component_passes_rows_through_in_cot_mode(tmp_path, monkeypatch):
    """label_mode 'cot' (the DSS pipeline's default): the rows come back unchanged, no backend is even built."""
    folder = tmp_path / "normalised"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    run = _labelling_pipeline(
        tmp_path,
        monkeypatch,
        path=folder,
        label_mode="cot",
        classes=[],  # would be refused if the step labelled anything
        teacher_backend="vertex",  # no project: would be refused if a backend were built
    )
    assert open(run()).read() == (folder / "train.jsonl").read_text()


def test_labelling_metrics_count_calls_that_may_have_been_billed():
    # A call that timed out after it was sent may be billed: the step's metrics show it beside the answered calls.
    from tunekit.components.teacher_labelling.label import report_metrics

    metrics = report_metrics({"rows": 3, "engine": {"calls": 2, "unanswered_billed": 1, "billed_calls": 3}})
    assert metrics["calls"] == 2.0 and metrics["unanswered_billed"] == 1.0 and metrics["billed_calls"] == 3.0

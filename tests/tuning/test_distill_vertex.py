"""Gemini students on Vertex AI, against the fake Vertex API: the SFT and DISTILLATION request bodies."""

import json

import pytest
from fake_vertex import FakeVertex, serve_fake_vertex
from tuning_helpers import ON_FAKE_VERTEX, created_jobs

from tunekit.components.common.errors import UserError
from tunekit.components.tuning.distillation.steps import run_build_student_dataset, run_tune_student

ROWS = [
    {
        "input_text": f"Mia has {i} pens, buys 2 more. How many?",
        **({"output_text": str(i + 2)} if i < 6 else {}),
        "rationale": f"{i} + 2 = {i + 2}.",
        "rationale_kept": True,
        "teacher_answer": str(i + 2),
        "status": "ok",
    }
    for i in range(12)
]


class DistillationFake(FakeVertex):
    """The fake, also accepting DISTILLATION jobs (``distillationSpec`` with a prompt dataset)."""

    def _create_job(self, m, body):
        spec = body.get("distillationSpec")
        if spec and "promptDatasetUri" in spec:
            body = {**body, "supervisedTuningSpec": {"trainingDatasetUri": spec["promptDatasetUri"]}}
            status, job = super()._create_job(m, body)
            if status == 200:
                with self._lock:
                    self.jobs[job["name"]].pop("supervisedTuningSpec", None)
            return status, job
        return super()._create_job(m, body)


@pytest.fixture
def server(monkeypatch):
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1)


@pytest.fixture
def distillation_server(monkeypatch):
    yield from serve_fake_vertex(monkeypatch, DistillationFake, polls_to_finish=1)


@pytest.fixture
def data(tmp_path):
    source = tmp_path / "rationales.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "student"
    run_build_student_dataset(
        rationale_path=str(source),
        validation_path="",
        output_dir=str(out),
        eval_path=str(tmp_path / "eval.jsonl"),
        validation_split=0.2,
        student_backend="vertex",
        alpha=0.5,
    )
    return out


def tune(data, tmp_path, backend, **kwargs):
    meta = {}
    record = run_tune_student(
        student_backend=backend,
        student_model="gemini-2.5-flash-lite",
        task="generic",
        dataset_dir=str(data),
        # Artifacts live under the pipeline root in Cloud Storage, mounted at /gcs on Vertex.
        dataset_uri="/gcs/bucket/root/build/student_dataset",
        model_path=str(tmp_path / "model"),
        model_metadata=meta,
        teacher_model="gemini-2.5-pro",
        epoch_count=2,
        labels={"Team": "ML"},
        pipeline_job_name="dss-run-1",
        **ON_FAKE_VERTEX,
        **kwargs,
    )
    return record, meta


def test_gemini_student_sft_on_the_multitask_data(server, data, tmp_path):
    record, meta = tune(data, tmp_path, "vertex")
    (body,) = created_jobs(server)
    assert body["baseModel"] == "gemini-2.5-flash-lite"
    spec = body["supervisedTuningSpec"]
    assert spec["trainingDatasetUri"] == "gs://bucket/root/build/student_dataset/train_gemini.jsonl"
    assert spec["validationDatasetUri"] == "gs://bucket/root/build/student_dataset/validation_gemini.jsonl"
    assert spec["hyperParameters"]["epochCount"] == "2" or spec["hyperParameters"]["epochCount"] == 2
    assert body["labels"]["tunekit-method"] == "distilling-step-by-step" and body["labels"]["team"] == "ml"
    assert record["endpoint"].startswith("projects/test-project/locations/us-central1/endpoints/")
    assert meta["serving_prefix"] == "predict: " and meta["backend"] == "vertex"
    # The multi-task file: as many rationale as label examples at alpha 0.5, prefixes telling them apart.
    rows = [json.loads(line) for line in (data / "train_gemini.jsonl").read_text().splitlines()]
    prompts = [r["contents"][0]["parts"][0]["text"] for r in rows]
    assert sum(p.startswith("predict: ") for p in prompts) == sum(p.startswith("explain: ") for p in prompts) > 0


def test_baseline_uses_label_only_data(server, data, tmp_path):
    record, _ = tune(data, tmp_path, "vertex", baseline=True)
    (body,) = created_jobs(server)
    assert body["supervisedTuningSpec"]["trainingDatasetUri"].endswith("/baseline_train_gemini.jsonl")
    assert record["serving_prefix"] == ""


def test_gemini_distillation_service_request(distillation_server, data, tmp_path):
    record, meta = tune(data, tmp_path, "vertex_distillation")
    (body,) = created_jobs(distillation_server)
    assert "supervisedTuningSpec" not in body
    spec = body["distillationSpec"]
    assert spec["baseTeacherModel"] == "gemini-2.5-pro"
    assert spec["promptDatasetUri"] == "gs://bucket/root/build/student_dataset/prompts_gemini.jsonl"
    assert body["baseModel"] == "gemini-2.5-flash-lite"
    assert record["mode"] == "vertex_distillation" and meta["serving_prefix"] == ""
    prompts = [json.loads(line) for line in (data / "prompts_gemini.jsonl").read_text().splitlines()]
    assert all([c["role"] for c in p["contents"]] == ["user"] for p in prompts)
    state = json.loads((tmp_path / "model" / "tuning_state.json").read_text())
    assert state["method"] == "DISTILLATION" and state["job_name"] == record["job_name"]


def test_distillation_refused_says_early_access(server, data, tmp_path):
    # The plain fake refuses DISTILLATION jobs with a 400, as Vertex does for a project without access.
    with pytest.raises(UserError, match="early access"):
        tune(data, tmp_path, "vertex_distillation")

"""Managed open-model tuning (Model Garden models through client.tunings.tune) against the fake Vertex API."""

import json
import os

import pytest
from fake_vertex import serve_fake_vertex
from tuning_helpers import ON_FAKE_VERTEX, created_jobs

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.tuning import gemini
from tunekit.components.tuning.supervised.steps import run_prepare, run_tune
from tunekit.pipelines.config import load_config
from tunekit.pipelines.supervised_tuning import SupervisedTuningConfig

ROWS = [{"input_text": f"Route this ticket: my invoice {i} is wrong", "output_text": "billing"} for i in range(12)]
LLAMA = "meta/llama3_1@llama-3.1-8b-instruct"
OUTPUT = "gs://bucket/tuning-out"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=str(tmp_path / "gcs"))


def _prepare(tmp_path):
    normalised = tmp_path / "normalised"
    normalised.mkdir(exist_ok=True)
    (normalised / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    run_prepare(
        backend="vertex",
        normalised_dir=str(normalised),
        validation_split=0.25,
        train_path=str(tmp_path / "prepared_train.jsonl"),
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        train_metadata={},
        validation_metadata={},
    )


def _tune(tmp_path, **overrides):
    args = dict(
        backend="vertex",
        base_model=LLAMA,
        task="classification",
        train_path=str(tmp_path / "prepared_train.jsonl"),
        train_uri="/gcs/bucket/root/prepare/train_dataset",
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        validation_uri="gs://bucket/root/prepare/validation_dataset",
        model_path=str(tmp_path / "tuned_model"),
        model_metadata={},
        epoch_count=2,
        learning_rate=2e-4,
        batch_size=8,
        adapter_size=16,
        tuning_mode="lora",
        output_uri=OUTPUT,
        pipeline_job_name="supervised-tuning-20261206",
        **ON_FAKE_VERTEX,
    )
    args.update(overrides)
    return run_tune(**args)


def test_open_model_job_sends_what_the_sdk_documents_and_records_the_weights(tmp_path, fake):
    _prepare(tmp_path)
    record = _tune(tmp_path, custom_base_model="gs://bucket/my-weights")
    (body,) = created_jobs(fake)
    assert body["baseModel"] == LLAMA
    spec = body["supervisedTuningSpec"]
    # tunings.py _CreateTuningJobConfig_to_vertex: tuningMode and the hyperparameters in supervisedTuningSpec,
    # customBaseModel and outputUri at the top.
    assert spec["tuningMode"] == "TUNING_MODE_PEFT_ADAPTER"
    assert spec["hyperParameters"] == {
        "epochCount": 2,
        "learningRate": 2e-4,
        "batchSize": 8,
        "adapterSize": "ADAPTER_SIZE_SIXTEEN",
    }
    assert body["customBaseModel"] == "gs://bucket/my-weights"
    assert body["outputUri"] == OUTPUT
    # The data goes in the chat messages layout, beside the artifact.
    assert spec["trainingDatasetUri"] == "gs://bucket/root/prepare/train_dataset.messages.jsonl"
    with open(fake.gcs_path(spec["trainingDatasetUri"])) as handle:
        first = json.loads(handle.readline())
    assert [m["role"] for m in first["messages"]][-2:] == ["user", "assistant"]
    assert first["messages"][-1]["content"] == "billing"
    # The record names the tuned weights under output_uri and no endpoint: the deploy step serves them.
    stored = ModelRecord.read(str(tmp_path / "tuned_model"))
    assert stored.backend == "vertex" and stored.endpoint == ""
    assert stored.model_dir == f"{OUTPUT}/postprocess/node-0/checkpoints/final"
    assert stored.details["open_model"] is True and stored.details["tuning_mode"] == "lora"
    assert stored.tuned_model == record["tuned_model"] and stored.tuned_model.endswith("@1")


def test_full_tuning_and_a_retry_reattaches_instead_of_paying_twice(tmp_path, fake):
    _prepare(tmp_path)
    first = _tune(tmp_path, tuning_mode="full", adapter_size=0, base_model="meta/llama3-2@llama-3.2-1b-instruct")
    again = _tune(tmp_path, tuning_mode="full", adapter_size=0, base_model="meta/llama3-2@llama-3.2-1b-instruct")
    (body,) = created_jobs(fake)
    assert body["supervisedTuningSpec"]["tuningMode"] == "TUNING_MODE_FULL"
    assert again["job_name"] == first["job_name"] and again["resumed"] is True


def test_evaluation_of_a_managed_open_model_tuning_without_base_weights_names_custom_base_model(tmp_path, fake):
    """The base is scored from its weights in Cloud Storage (tests/evaluation/test_open_model_evaluation.py scores
    both); without custom_base_model the step says so in one line instead of gating without the base."""
    from tunekit.components.evaluation.supervised.steps import run_evaluate

    _prepare(tmp_path)
    _tune(tmp_path)
    with pytest.raises(UserError, match="custom_base_model") as info:
        run_evaluate(
            backend="vertex",
            task="classification",
            base_model=LLAMA,
            model_path=str(tmp_path / "tuned_model"),
            model_metadata={},
            validation_path=str(tmp_path / "prepared_val.jsonl"),
            predictions_path=str(tmp_path / "pred.jsonl"),
            summary_path=str(tmp_path / "summary.md"),
            project="test-project",
            location="us-central1",
        )
    assert info.value.field == "custom_base_model"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"base_model": "meta/llama3_1"}, "base_model", "did you mean meta/llama3_1@llama-3.1-8b"),
        ({"base_model": "Meta/Llama3_1@llama-3.1-8b-instruct"}, "base_model", "lowercase"),
        ({"output_uri": ""}, "output_uri", "needs output_uri"),
        ({"learning_rate_multiplier": 0.5}, "learning_rate_multiplier", "learning_rate"),
        ({"base_model": "meta/llama3-2@llama-3.2-3b-instruct"}, "tuning_mode", "full only"),
        ({"tuning_mode": "qlora"}, "tuning_mode", "not one of"),
        ({"custom_base_model": "/home/me/weights"}, "custom_base_model", "gs://"),
        ({"tuning_mode": "full"}, "adapter_size", "LoRA setting"),
    ],
)
def test_bad_open_model_settings_fail_before_any_job(tmp_path, fake, overrides, field, message):
    _prepare(tmp_path)
    with pytest.raises(UserError, match=message) as info:
        _tune(tmp_path, **overrides)
    assert info.value.field == field
    assert created_jobs(fake) == []


def test_open_model_settings_are_refused_for_gemini(tmp_path, fake):
    _prepare(tmp_path)
    with pytest.raises(UserError, match="open-model setting") as info:
        _tune(tmp_path, base_model="gemini-3.5-flash", tuning_mode="lora", learning_rate=0.0, batch_size=0)
    assert info.value.field == "tuning_mode"
    assert created_jobs(fake) == []


def test_the_fake_refuses_an_open_model_id_without_its_version(fake):
    # What Vertex answers when the static check is bypassed: the job is refused, not created.
    client = fake.genai_client()
    from google.genai import types

    with pytest.raises(Exception, match="publisher/family@version"):
        client.tunings.tune(
            base_model="meta/llama3_1",
            training_dataset=types.TuningDataset(gcs_uri="gs://b/train.jsonl"),
            config=types.CreateTuningJobConfig(output_uri=OUTPUT),
        )


def test_documented_ids_pass_and_unknown_well_formed_ids_warn(caplog):
    for model in gemini.OPEN_MODELS:
        assert gemini.check_open_model(model) == model
    assert gemini.check_open_model("google/gemma3@gemma-3-1b-it") == "google/gemma3@gemma-3-1b-it"
    assert "not among the open models" in caplog.text
    assert gemini.is_open_model(LLAMA) and gemini.is_open_model("google/gemma-3-27b-it")
    assert not gemini.is_open_model("gemini-3.5-flash")
    assert not gemini.is_open_model("projects/p/locations/l/models/1@2")
    assert not gemini.is_open_model("publishers/google/models/gemini-3.5-flash")


def _config(tmp_path, **values):
    path = tmp_path / "config.yaml"
    lines = {"train_dataset_uri": "gs://bucket/train.jsonl", "backend": "vertex", **values}
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in lines.items()))
    return load_config(SupervisedTuningConfig, str(path))


def test_config_preflight_checks_the_open_model_statically(tmp_path):
    weights = "gs://bucket/weights/llama-3.1-8b-instruct"
    config = _config(
        tmp_path,
        base_model=LLAMA,
        tuning_mode="lora",
        output_uri=OUTPUT,
        learning_rate=1e-4,
        custom_base_model=weights,
    )
    assert config.base_model == LLAMA
    # Without the base's weights its evaluation could not score the base: refused before the job is paid for.
    with pytest.raises(UserError, match="custom_base_model") as info:
        _config(tmp_path, base_model=LLAMA, tuning_mode="lora", output_uri=OUTPUT)
    assert "scores the base model" in str(info.value) and "config.yaml" in str(info.value)
    # Checkpoint selection compares a tuned Gemini model's checkpoint endpoints: refused for an open model.
    with pytest.raises(UserError, match="select_checkpoint: false"):
        _config(tmp_path, base_model=LLAMA, output_uri=OUTPUT, custom_base_model=weights, select_checkpoint=True)
    with pytest.raises(UserError, match="@version") as info:
        _config(tmp_path, base_model="qwen/qwen3", output_uri=OUTPUT)
    assert "base_model" in str(info.value) and "config.yaml" in str(info.value)
    with pytest.raises(UserError, match="output_uri"):
        _config(tmp_path, base_model=LLAMA)
    with pytest.raises(UserError, match="tuning_mode"):
        _config(tmp_path, base_model="gemini-3.5-flash", tuning_mode="lora")
    with pytest.raises(UserError, match="full only"):
        _config(tmp_path, base_model="meta/llama3-2@llama-3.2-1b-instruct", tuning_mode="lora", output_uri=OUTPUT)


def test_the_open_model_example_config_loads():
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "supervised_tuning_open_model.yaml")
    config = load_config(SupervisedTuningConfig, example)
    assert gemini.is_open_model(config.base_model) and config.output_uri.startswith("gs://")


STUDENT_ROWS = [
    {
        "input_text": f"Mia has {i} pens, buys 2 more. How many?",
        "output_text": str(i + 2),
        "rationale": f"{i} + 2 = {i + 2}.",
        "rationale_kept": True,
        "teacher_answer": str(i + 2),
        "status": "ok",
    }
    for i in range(12)
]


def test_an_open_model_student_is_tuned_by_the_managed_service_on_the_multitask_data(tmp_path, fake, monkeypatch):
    from tunekit.components.common import uris
    from tunekit.components.tuning.distillation.steps import run_build_student_dataset, run_tune_student
    from tunekit.components.tuning.tiny import CAUSAL, make_tiny_model

    # The service writes the tuned student's Hugging Face weights under output_uri (a tiny model here).
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    fake.open_model_weights = lambda folder: make_tiny_model(folder, CAUSAL, num_key_value_heads=2, **tiny)
    source = tmp_path / "rationales.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in STUDENT_ROWS))
    data = tmp_path / "student"
    run_build_student_dataset(
        rationale_path=str(source),
        validation_path="",
        output_dir=str(data),
        eval_path=str(tmp_path / "eval.jsonl"),
        validation_split=0.2,
        student_backend="vertex",
        alpha=0.5,
    )
    record = run_tune_student(
        student_backend="vertex",
        student_model="meta/llama3-2@llama-3.2-1b-instruct",
        task="generic",
        dataset_dir=str(data),
        dataset_uri="/gcs/bucket/root/build/student_dataset",
        model_path=str(tmp_path / "model"),
        model_metadata={},
        finetuning="full",
        learning_rate=1e-5,
        output_uri=OUTPUT,
        pipeline_job_name="dss-run-1",
        **ON_FAKE_VERTEX,
    )
    (body,) = created_jobs(fake)
    assert body["baseModel"] == "meta/llama3-2@llama-3.2-1b-instruct"
    spec = body["supervisedTuningSpec"]
    assert spec["tuningMode"] == "TUNING_MODE_FULL" and spec["hyperParameters"] == {"learningRate": 1e-5}
    assert spec["trainingDatasetUri"] == "gs://bucket/root/build/student_dataset/train_gemini.jsonl.messages.jsonl"
    with open(fake.gcs_path(spec["trainingDatasetUri"])) as handle:
        prompts = [json.loads(line)["messages"][0]["content"] for line in handle]
    # The same multi-task rows as a Gemini student's, task prefixes included.
    assert sum(p.startswith("predict: ") for p in prompts) == sum(p.startswith("explain: ") for p in prompts) > 0
    assert (
        record["backend"] == "vertex" and record["open_model"] is True and record["serving_prefix"] == "predict: "
    )
    assert record["model_dir"] == f"{OUTPUT}/postprocess/node-0/checkpoints/final"
    # Its evaluation scores those weights, read through the worker's /gcs mount (it was a ValueError: "no endpoint
    # is recorded", then a UserError saying nothing serves it).
    from tunekit.components.evaluation.distillation.steps import evaluate_student

    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "gcs"))
    rows = [json.loads(line) for line in open(tmp_path / "eval.jsonl")][:2]
    scored = evaluate_student(
        "student",
        ModelRecord.read(str(tmp_path / "model")),
        str(tmp_path / "model"),
        rows,
        task="generic",
        task_type="generic",
        max_output_tokens=4,
        price_table=None,
        student_cost_per_hour=0.0,
        **{k: ON_FAKE_VERTEX[k] for k in ("project", "location")},
    )
    assert len(scored.predictions) == 2 and sum(scored.statuses.values()) == 2
    # The student's default finetuning (lora) is refused for a full-only model, statically.
    from tunekit.pipelines.distilling_step_by_step import DistillingStepByStepConfig

    path = tmp_path / "dss.yaml"
    path.write_text(
        "train_dataset_uri: gs://b/t.jsonl\nstudent_backend: vertex\n"
        "student_model: meta/llama3-2@llama-3.2-1b-instruct\noutput_uri: gs://b/o\n"
    )
    with pytest.raises(UserError, match="full only"):
        load_config(DistillingStepByStepConfig, str(path))
    # A LoRA student that takes LoRA is refused too, before the job: its evaluation has no base weights to load
    # an adapter onto, so the student is tuned full.
    path.write_text(
        "train_dataset_uri: gs://b/t.jsonl\nstudent_backend: vertex\n"
        f"student_model: {LLAMA}\noutput_uri: gs://b/o\nfinetuning: lora\n"
    )
    with pytest.raises(UserError, match="finetuning: full"):
        load_config(DistillingStepByStepConfig, str(path))
    path.write_text(path.read_text().replace("finetuning: lora", "finetuning: full"))
    assert load_config(DistillingStepByStepConfig, str(path)).finetuning == "full"

"""Continuous tuning (start_from a tuned model, a version alias or a checkpoint) against the fake Vertex API."""

import json

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
KEY = "projects/test-project/locations/us-central1/keyRings/r/cryptoKeys/k"


@pytest.fixture
def fake(monkeypatch, tmp_path):
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=str(tmp_path / "gcs"))


@pytest.fixture
def prepared(tmp_path):
    normalised = tmp_path / "normalised"
    normalised.mkdir()
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
    return tmp_path


def _tune(folder, run: str, **overrides):
    args = dict(
        backend="vertex",
        base_model="gemini-3.5-flash",
        task="classification",
        train_path=str(folder / "prepared_train.jsonl"),
        train_uri=f"gs://bucket/root/{run}/train_dataset",
        validation_path=str(folder / "prepared_val.jsonl"),
        validation_uri=f"gs://bucket/root/{run}/validation_dataset",
        model_path=str(folder / run / "tuned_model"),
        model_metadata={},
        pipeline_job_name=run,
        **ON_FAKE_VERTEX,
    )
    args.update(overrides)
    return run_tune(**args)


def _seed(fake, folder, **overrides) -> str:
    """A first tuning run; returns its tuned model (``projects/.../models/M@1``), also aliased ``champion``."""
    tuned = _tune(folder, "first", **overrides)["tuned_model"]
    fake.models[tuned.split("@")[0]]["versionAliases"].append("champion")
    return tuned


def test_continues_from_a_tuned_model_checkpoint_as_pre_tuned_model(prepared, fake):
    tuned = _seed(fake, prepared, epoch_count=3)
    # One of the start model's checkpoints (the fake keeps one per epoch, as Vertex does), not its default one.
    checkpoints = [c["checkpointId"] for c in fake.models[tuned.split("@")[0]].get("checkpoints", [])] or [
        "1",
        "2",
    ]
    checkpoint = checkpoints[0]
    record = _tune(prepared, "second", start_from=tuned, pre_tuned_model_checkpoint_id=checkpoint, epoch_count=1)
    first, second = created_jobs(fake)
    assert first["baseModel"] == "gemini-3.5-flash"
    # tunings.py Tunings.tune: a projects/... base model goes as preTunedModel (with the config's checkpoint id).
    assert "baseModel" not in second
    pre = {k.replace("_", "").lower(): v for k, v in second["preTunedModel"].items()}
    assert pre == {"tunedmodelname": tuned, "checkpointid": checkpoint}
    assert second["supervisedTuningSpec"]["hyperParameters"] == {"epochCount": 1}
    stored = ModelRecord.read(str(prepared / "second" / "tuned_model"))
    assert stored.details["start_from"] == tuned and stored.details["start_checkpoint_id"] == checkpoint
    assert stored.base_model == "gemini-3.5-flash" and stored.tuned_model == record["tuned_model"] != tuned


def test_continue_from_the_champion_alias_and_reattach_on_retry(prepared, fake):
    tuned = _seed(fake, prepared)
    champion = tuned.split("@")[0] + "@champion"
    first = _tune(prepared, "second", start_from=champion)
    again = _tune(prepared, "second", start_from=champion)
    assert len(created_jobs(fake)) == 2  # the seed and one continuation: the retry re-attached
    assert again["job_name"] == first["job_name"] and again["resumed"] is True
    assert first["start_version_id"] == "1"


def test_a_model_tuned_before_2025_07_11_is_refused_before_the_job(prepared, fake):
    tuned = _seed(fake, prepared)
    fake.models[tuned.split("@")[0]]["createTime"] = "2025-07-10T23:00:00Z"
    with pytest.raises(UserError, match="2025-07-11") as info:
        _tune(prepared, "second", start_from=tuned)
    assert info.value.field == "start_from"
    assert len(created_jobs(fake)) == 1


def test_cmek_continuation_needs_the_same_key(prepared, fake):
    tuned = _seed(fake, prepared, encryption_key=KEY)
    with pytest.raises(UserError, match="same key") as info:
        _tune(prepared, "second", start_from=tuned)
    assert info.value.field == "encryption_key"
    with pytest.raises(UserError, match="same key"):
        _tune(prepared, "second", start_from=tuned, encryption_key=KEY + "-other")
    assert len(created_jobs(fake)) == 1
    _tune(prepared, "second", start_from=tuned, encryption_key=KEY)
    assert len(created_jobs(fake)) == 2


def test_an_unknown_start_model_is_one_user_error(prepared, fake):
    with pytest.raises(UserError, match="cannot be read from the Model Registry") as info:
        _tune(prepared, "second", start_from="projects/test-project/locations/us-central1/models/404@1")
    assert info.value.field == "start_from"
    assert created_jobs(fake) == []


def test_the_fake_refuses_what_vertex_refuses_of_a_continuation(prepared, fake):
    # Bypassing the step's checks: the service's own answer to a continuation without the model's key.
    from google.genai import types

    tuned = _seed(fake, prepared, encryption_key=KEY)
    client = fake.genai_client()
    with pytest.raises(Exception, match="encryption key"):
        client.tunings.tune(base_model=tuned, training_dataset=types.TuningDataset(gcs_uri="gs://b/t.jsonl"))


def test_start_from_champion_resolves_to_the_version_serving_the_purpose_then_continues(prepared, fake):
    from tunekit.components.deployment.champion import PURPOSE_LABEL, purpose_label
    from tunekit.components.retraining.start_model import resolve_start_from

    where = {"project": ON_FAKE_VERTEX["project"], "location": ON_FAKE_VERTEX["location"]}
    # The first scheduled run: no champion yet, the base model is tuned.
    assert resolve_start_from("champion", purpose="support", backend="vertex", **where) == ""
    tuned = _seed(fake, prepared)
    fake.models[tuned.split("@")[0]]["labels"][PURPOSE_LABEL] = purpose_label("support")
    start = resolve_start_from("champion", purpose="support", backend="vertex", **where)
    assert start == tuned  # the champion's version, pinned for this run
    _tune(prepared, "second", start_from=start)
    assert {k.replace("_", "").lower(): v for k, v in created_jobs(fake)[-1]["preTunedModel"].items()} == {
        "tunedmodelname": tuned
    }
    # Any other value passes through; an open-model champion cannot be continued.
    assert resolve_start_from(tuned, purpose="support", backend="vertex", **where) == tuned
    fake.models[tuned.split("@")[0]]["labels"].pop(PURPOSE_LABEL)
    fake.add_open_model("open", labels={PURPOSE_LABEL: purpose_label("support")})
    with pytest.raises(UserError, match="open model"):
        resolve_start_from("champion", purpose="support", backend="vertex", **where)


def test_the_pipeline_resolves_start_from_before_tuning(tmp_path):
    from pipeline_helpers import compile_spec, spec_tasks

    tasks = spec_tasks(compile_spec("supervised-tuning", tmp_path / "spec.yaml"))
    assert tasks["resolve-start-model"]["cachingOptions"] == {}  # never cached: the champion changes
    tuning_inputs = tasks["tune-supervised"]["inputs"]["parameters"]
    assert tuning_inputs["start_from"]["taskOutputParameter"]["producerTask"] == "resolve-start-model"


def _config(tmp_path, **values):
    path = tmp_path / "config.yaml"
    lines = {"train_dataset_uri": "gs://bucket/train.jsonl", "backend": "vertex", **values}
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in lines.items()))
    return load_config(SupervisedTuningConfig, str(path))


def test_config_preflight_of_start_from(tmp_path):
    model = "projects/p/locations/us-central1/models/123@champion"
    assert _config(tmp_path, start_from=model, pre_tuned_model_checkpoint_id="3").start_from == model
    assert _config(tmp_path, start_from="champion").start_from == "champion"
    with pytest.raises(UserError, match="start_from"):
        _config(tmp_path, start_from="tunedModels/123")
    with pytest.raises(UserError, match="set start_from too"):
        _config(tmp_path, pre_tuned_model_checkpoint_id="3")
    with pytest.raises(UserError, match="Gemini models only"):
        _config(tmp_path, start_from=model, base_model="meta/llama3_1@llama-3.1-8b", output_uri="gs://b/o")


def test_vertex_settings_are_refused_with_the_local_backend_not_dropped(tmp_path, prepared):
    model = "projects/p/locations/us-central1/models/123@champion"
    for values in ({"start_from": model}, {"tuning_mode": "lora"}, {"custom_base_model": "gs://b/w"}):
        with pytest.raises(UserError, match="Vertex AI tuning setting"):
            _config(tmp_path, backend="local", base_model="tiny-random:t5", **values)
    with pytest.raises(UserError, match="Vertex AI tuning setting") as info:
        _tune(prepared, "local", backend="local", base_model="tiny-random:t5", start_from=model)
    assert info.value.field == "start_from"


def test_the_continuous_example_config_loads():
    import os

    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "supervised_tuning_continuous.yaml")
    config = load_config(SupervisedTuningConfig, example)
    assert config.start_from == "champion" and config.purpose == "support-ticket-routing"
    assert gemini.check_start_model("projects/p/locations/l/models/1@champion").endswith("@champion")

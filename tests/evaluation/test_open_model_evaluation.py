"""An open model tuned by Vertex AI's managed tuning is evaluated, gated and deployed like our own open models.

The tuning job runs against the fake Vertex API, which writes the tuned weights (tiny models built from a config,
nothing downloaded) under the job's ``output_uri`` in the fake's Cloud Storage; a folder stands for the worker's
``/gcs`` mount of that storage. The evaluation scores those weights beside the base weights (``custom_base_model``)
and the champion on the same rows, and the deploy step uploads and deploys them with the vLLM serving container.
"""

from __future__ import annotations

import pytest
from fake_vertex import LOCATION, PROJECT, serve_fake_vertex
from fake_vertex_pipelines import serve_fake_pipelines
from test_open_model_tuning import OUTPUT, _prepare, _tune

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.deployment import rollout
from tunekit.components.deployment.champion import is_open_model, purpose_label
from tunekit.components.deployment.steps import run_deploy
from tunekit.components.evaluation.gate import BASE, CANDIDATE, CHAMPION, locate_champion
from tunekit.components.evaluation.scoring import load_eval_rows
from tunekit.components.evaluation.supervised.steps import run_evaluate
from tunekit.components.model_clients.base import GenerationConfig
from tunekit.components.model_clients.hf import HFLocalClient
from tunekit.components.tuning.tiny import CAUSAL, make_tiny_model

PURPOSE = "ticket-routing"
BASE_WEIGHTS = "gs://bucket/my-weights"
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
TINY["num_key_value_heads"] = 2


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake Vertex API over a Cloud Storage folder that is also the worker's /gcs mount."""
    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "gcs"))
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=str(tmp_path / "gcs"))


def _tune_on_the_mount(tmp_path, **overrides):
    # The training set's artifact as the worker sees it: under the (test's) /gcs mount.
    mounted = str(tmp_path / "gcs" / "bucket" / "root" / "prepare" / "train_dataset")
    return _tune(tmp_path, train_uri=mounted, **overrides)


def _tuned_with_weights(tmp_path, fake, *, custom_base_model=BASE_WEIGHTS, **overrides) -> ModelRecord:
    """A managed open-model tuning whose job writes tiny tuned weights (seed 1) beside tiny base weights (seed 0)."""
    make_tiny_model(fake.gcs_path(BASE_WEIGHTS), CAUSAL, seed=0, **TINY)
    fake.open_model_weights = lambda folder: make_tiny_model(folder, CAUSAL, seed=1, **TINY)
    _prepare(tmp_path)
    _tune_on_the_mount(tmp_path, custom_base_model=custom_base_model, **overrides)
    return ModelRecord.read(str(tmp_path / "tuned_model"))


def _evaluate(tmp_path, **options):
    return run_evaluate(
        backend="vertex",
        task="classification",
        base_model="meta/llama3_1@llama-3.1-8b-instruct",
        model_path=str(tmp_path / "tuned_model"),
        model_metadata={},
        validation_path=str(tmp_path / "prepared_val.jsonl"),
        predictions_path=str(tmp_path / "pred.jsonl"),
        summary_path=str(tmp_path / "summary.md"),
        max_output_tokens=4,
        project=PROJECT,
        location=LOCATION,
        **options,
    )


def test_the_tuned_weights_answer_beside_base_and_champion_on_the_same_rows_and_the_gate_decides(tmp_path, fake):
    """Before: the step stopped with 'tunekit does not yet serve managed open-model tunings' after the job was paid."""
    record = _tuned_with_weights(tmp_path, fake)
    assert record.endpoint == "" and record.model_dir == f"{OUTPUT}/postprocess/node-0/checkpoints/final"
    _, endpoint = fake.add_open_model("tunekit-ticket-routing", labels={"tunekit-purpose": purpose_label(PURPOSE)})
    fake.set_responder(lambda prompt: "billing", model=endpoint)  # the champion routes every ticket right

    result = _evaluate(tmp_path, purpose=PURPOSE)

    assert set(result.metrics) == {BASE, CANDIDATE, CHAMPION}
    rows = result.predictions
    assert len(rows) == 3 and all({f"{n}_prediction" for n in (BASE, CANDIDATE, CHAMPION)} <= set(r) for r in rows)
    # The candidate's answers are the tuned weights' (the folder the job wrote), not the base's.
    prompts = [row.prompt for row in load_eval_rows(str(tmp_path / "prepared_val.jsonl"))]
    tuned = HFLocalClient(uris.gcs_to_fuse(record.model_dir))
    expected = [g.text for g in tuned.generate(prompts, GenerationConfig(max_output_tokens=4))]
    tuned.close()
    assert [r[f"{CANDIDATE}_prediction"] for r in rows] == expected
    assert expected != [r[f"{BASE}_prediction"] for r in rows]
    assert result.metrics[CHAMPION]["accuracy"] == 1.0
    # The gate judged the tuned weights against the champion on those rows: random weights do not beat it.
    assert result.decision.passed is False and "champion" in result.decision.reason


def test_without_base_weights_the_step_names_custom_base_model_and_never_passes(tmp_path, fake):
    _tuned_with_weights(tmp_path, fake, custom_base_model="")
    with pytest.raises(UserError, match="custom_base_model") as info:
        _evaluate(tmp_path)
    assert info.value.field == "custom_base_model"


def test_a_passing_managed_tuning_is_uploaded_with_vllm_deployed_and_found_as_the_champion(
    tmp_path, fake, monkeypatch
):
    """Before: the deploy step took the service's registry entry for a tuned Gemini model and called deploy_gemini."""
    record = _tuned_with_weights(tmp_path, fake)
    gen = serve_fake_pipelines(monkeypatch)  # the Model Registry and endpoints the rollout talks to
    pipelines = next(gen)
    try:
        deployed = run_deploy(
            backend="vertex",
            model_path=str(tmp_path / "tuned_model"),
            model_metadata={},
            dataset_fingerprint="ab" * 32,
            metrics={"accuracy": 0.9},
            gate_reason="beats the base",
            purpose=PURPOSE,
            pipeline_job_name="run-1",
            local_registry_path=str(tmp_path / "registry.json"),
            deployment_path=str(tmp_path / "gcs" / "bucket" / "root" / "deploy" / "deployment"),
            model_uri="gs://bucket/root/tune/tuned_model",
            deployment_uri="gs://bucket/root/deploy/deployment",
            project=PROJECT,
            location=LOCATION,
        )
        (upload,) = pipelines.requests_to(r"/models:upload\?", method="POST")
        model = upload[2]["model"]
        assert model["artifactUri"] == record.model_dir  # the tuned weights, served where the job wrote them
        assert model["containerSpec"]["imageUri"] == rollout.DEFAULT_SERVING_IMAGE
        (deploy,) = pipelines.requests_to(r":deployModel\?")
        assert deploy[2]["deployedModel"]["model"] == deployed["model"] and deployed["endpoint"]
        found = locate_champion(PURPOSE, backend="vertex", project=PROJECT, location=LOCATION)
        assert found is not None and is_open_model(found) and found.endpoint == deployed["endpoint"]
    finally:
        next(gen, None)


def test_a_lora_adapter_is_merged_into_the_base_weights_to_serve_it(tmp_path, fake, monkeypatch):
    import peft
    from transformers import AutoModelForCausalLM

    def adapter(folder):
        base = AutoModelForCausalLM.from_pretrained(fake.gcs_path(BASE_WEIGHTS))
        lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
        lora.save_pretrained(folder)

    make_tiny_model(fake.gcs_path(BASE_WEIGHTS), CAUSAL, seed=0, **TINY)
    fake.open_model_weights = adapter
    _prepare(tmp_path)
    _tune_on_the_mount(tmp_path, custom_base_model=BASE_WEIGHTS)
    gen = serve_fake_pipelines(monkeypatch)
    pipelines = next(gen)
    try:
        run_deploy(
            backend="vertex",
            model_path=str(tmp_path / "tuned_model"),
            model_metadata={},
            dataset_fingerprint="ab" * 32,
            metrics={},
            gate_reason="beats the base",
            purpose=PURPOSE,
            pipeline_job_name="run-1",
            local_registry_path=str(tmp_path / "registry.json"),
            deployment_path=str(tmp_path / "gcs" / "bucket" / "root" / "deploy" / "deployment"),
            deployment_uri="gs://bucket/root/deploy/deployment",
            project=PROJECT,
            location=LOCATION,
        )
        (upload,) = pipelines.requests_to(r"/models:upload\?", method="POST")
        assert upload[2]["model"]["artifactUri"] == "gs://bucket/root/deploy/serving_model"
        merged = tmp_path / "gcs" / "bucket" / "root" / "deploy" / "serving_model"
        assert (merged / "config.json").is_file() and not (merged / "adapter_config.json").exists()
    finally:
        next(gen, None)

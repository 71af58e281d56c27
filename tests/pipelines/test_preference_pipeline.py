"""The preference-tuning pipeline: config, compiled spec, the legacy RLHF variant, and local runs."""

import json
import os

import pytest
import yaml
from pipeline_helpers import EXAMPLES, compile_spec, spec_tasks

from tunekit.pipelines.config import load_config, parameter_values
from tunekit.pipelines.registry import get_method


def test_example_configs_load():
    _, cls = get_method("preference-tuning").load()
    local = load_config(cls, os.path.join(EXAMPLES, "preference_tuning.yaml"))
    assert local.backend == "local" and local.algorithm == "rloo" and os.path.exists(local.train_dataset_uri)
    assert os.path.exists(local.eval_dataset_uri) and os.path.exists(local.prompt_dataset_uri)
    vertex = load_config(cls, os.path.join(EXAMPLES, "preference_tuning_vertex.yaml"))
    assert vertex.backend == "vertex" and vertex.train_dataset_uri.startswith("gs://")
    assert parameter_values(vertex)["beta"] == 0.1


def test_spec_validates_first_then_warm_start_then_preference_then_gate(tmp_path):
    spec = compile_spec("preference-tuning", tmp_path / "p.yaml")
    tasks = spec_tasks(spec)
    assert {"validate-data", "prepare-preference-data", "warm-start-supervised", "tune-preference"} <= set(tasks)
    assert "validate-data" in tasks["prepare-preference-data"]["dependentTasks"]
    assert tasks["tune-preference"]["dependentTasks"] == sorted(
        ["prepare-preference-data", "warm-start-supervised"]
    )
    warm_input = tasks["tune-preference"]["inputs"]["artifacts"]["warm_model"]["taskOutputArtifact"]
    assert warm_input == {"outputArtifactKey": "warm_model", "producerTask": "warm-start-supervised"}
    # Paid steps retry, re-attaching to their jobs.
    assert tasks["warm-start-supervised"]["retryPolicy"]["maxRetryCount"] == 2
    assert tasks["tune-preference"]["retryPolicy"]["maxRetryCount"] == 2
    evaluation = tasks["evaluate-preference"]
    assert set(evaluation["dependentTasks"]) == {
        "prepare-preference-data",
        "tune-preference",
        "warm-start-supervised",
    }
    gate = tasks["gate-and-deploy"]
    assert gate["inputs"]["parameters"]["gate_passed"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "evaluate-preference",
    }
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"beta", "algorithm", "min_win_rate", "pre_tuned_model_checkpoint_id", "force"} <= set(params)
    assert params["min_win_rate"]["defaultValue"] == 0.5


def test_legacy_rlhf_variant_nests_the_gcpc_template_behind_our_validation(tmp_path):
    from kfp import compiler

    from tunekit.pipelines.preference_tuning import build_legacy_rlhf_pipeline

    path = str(tmp_path / "legacy.yaml")
    compiler.Compiler().compile(build_legacy_rlhf_pipeline(), path)
    spec = yaml.safe_load(open(path))
    tasks = spec["root"]["dag"]["tasks"]
    (rlhf_name,) = [name for name, task in tasks.items() if task["taskInfo"]["name"] == "vertex-rlhf"]
    rlhf = tasks[rlhf_name]
    assert sorted(rlhf["dependentTasks"]) == ["validate-data", "validate-data-2"]
    # The template is a nested graph (its own DAG), not a single container.
    assert "dag" in spec["components"][rlhf["componentRef"]["name"]]
    wired = rlhf["inputs"]["parameters"]
    for name in (
        "preference_dataset",
        "prompt_dataset",
        "large_model_reference",
        "kl_coeff",
        "reward_model_train_steps",
        "reinforcement_learning_train_steps",
        "eval_dataset",
        "project",
        "location",
    ):
        assert wired[name] == {"componentInputParameter": name}, name
    validations = {tasks[t]["taskInfo"]["name"]: tasks[t] for t in ("validate-data", "validate-data-2")}
    pairs = validations["validate-preference-data"]["inputs"]["parameters"]
    assert pairs["train_dataset_uri"] == {"componentInputParameter": "preference_dataset"}
    assert pairs["method"]["runtimeValue"]["constant"] == "preference"
    assert spec["root"]["inputDefinitions"]["parameters"]["kl_coeff"]["defaultValue"] == 0.1


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path):
    """The example config, shortened, in the local KFP runner: every step runs and the figures are reported."""
    from tunekit.pipelines.local_run import run_local

    method = get_method("preference-tuning")
    _, cls = method.load()
    config = load_config(
        cls,
        os.path.join(EXAMPLES, "preference_tuning.yaml"),
        ["sft_steps=4", "reward_steps=20", "rl_steps=2", "max_eval_examples=6", "max_output_tokens=12"],
    )
    result = run_local(method, config, str(tmp_path))
    assert result.succeeded, result.failure
    metrics_dir = result.artifact_dir("evaluate-preference", "metrics")
    summary = open(result.artifact_dir("evaluate-preference", "summary")).read()
    assert "win_rate" in summary and "reward_accuracy" in summary and "kl_from_reference" in summary
    predictions = [json.loads(line) for line in open(result.artifact_dir("evaluate-preference", "predictions"))]
    assert len(predictions) == 6 and {"base", "tuned", "reference", "tuned_reward"} <= set(predictions[0])
    info = json.load(
        open(os.path.join(result.artifact_dir("tune-preference", "tuned_model"), "tunekit_model.json"))
    )
    assert info["algorithm"] == "rloo" and info["train_pairs"] == 148
    assert os.path.exists(metrics_dir) or result.task_outputs

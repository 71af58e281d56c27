"""The data-fingerprint gate in local runs: unchanged data ends a run early, changed data (or force) trains."""

import json
import os

import pytest
import yaml
from test_embedding_pipeline import tiny_config

from tunekit.components.deployment import local_registry
from tunekit.components.retraining.fingerprint import fingerprint_uris
from tunekit.pipelines.compile import compile_method
from tunekit.pipelines.local_run import run_local
from tunekit.pipelines.registry import METHODS
from tunekit.pipelines.retraining import CHECK_TASK

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA_FIELDS = ("corpus_uri", "queries_uri", "train_labels_uri", "test_labels_uri", "validation_labels_uri")


def data_fingerprint(config) -> str:
    return fingerprint_uris([getattr(config, name) for name in DATA_FIELDS])


def check_outputs(result) -> dict:
    """The check's outputs: ``Output`` from the executor output, the OutputPath parameters from their files."""
    outputs = dict(result.task_outputs[CHECK_TASK]["parameterValues"])
    for name in ("fingerprint", "reason"):
        with open(os.path.join(result.run_dir, CHECK_TASK, name)) as handle:
            outputs[name] = handle.read()
    return outputs


@pytest.mark.parametrize("name", list(METHODS))
def test_every_pipeline_starts_with_the_check_and_nests_its_graph(name, tmp_path):
    spec = yaml.safe_load(open(compile_method(METHODS[name], str(tmp_path / "p.yaml"))))
    assert spec["pipelineInfo"]["name"] == name
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {CHECK_TASK, "condition-1"}
    assert tasks["condition-1"]["dependentTasks"] == [CHECK_TASK]
    assert tasks["condition-1"]["taskInfo"]["name"] == "data-changed"
    assert tasks[CHECK_TASK]["cachingOptions"] == {}  # caching off: the same URI can name new data
    assert "force" in spec["root"]["inputDefinitions"]["parameters"]
    graph = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    (inner,) = graph.values()
    assert inner["componentRef"]["name"] == f"comp-{name}-graph"
    fingerprint = inner["inputs"]["parameters"]["data_fingerprint"]
    assert fingerprint["componentInputParameter"] == "pipelinechannel--check-data-fingerprint-fingerprint"


def test_unchanged_data_ends_the_run_early(tmp_path):
    config = tiny_config(tmp_path)
    registry = tmp_path / "out" / "registry.json"
    fp = data_fingerprint(config)
    local_registry.register_model(
        str(registry), {"model_dir": "/models/previous", "data_fingerprint": fp}, purpose="embedding-tuning"
    )
    result = run_local(METHODS["embedding-tuning"], config, str(tmp_path / "out"))
    assert result.succeeded, result.failure
    assert list(result.task_outputs) == [CHECK_TASK]  # nothing else ran: no validation, no training
    outputs = check_outputs(result)
    assert outputs["Output"] is False
    assert outputs["fingerprint"] == fp
    assert outputs["reason"].startswith("skipped: data unchanged")
    assert local_registry.champion(str(registry), "embedding-tuning")["model_dir"] == "/models/previous"
    from tunekit.pipelines.cli import _skip_reason

    assert _skip_reason(result) == outputs["reason"]  # what `tunekit run` prints instead of "gate did not pass"


def test_check_step_under_the_local_runner(tmp_path):
    """The component itself: changed data and force both proceed; the fingerprint is passed on."""
    from kfp import local

    from tunekit.components.retraining.component import check_data_fingerprint

    data = tmp_path / "train.jsonl"
    data.write_text('{"input_text": "a", "output_text": "b"}\n')
    registry = tmp_path / "registry.json"
    local_registry.register_model(
        str(registry), {"model_dir": "/m", "data_fingerprint": fingerprint_uris([str(data), ""])}, purpose="p"
    )
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    args = dict(purpose="p", backend="local", local_registry=str(registry), project="", location="")
    unchanged = check_data_fingerprint(data_uris=[str(data), ""], force=False, **args)
    assert unchanged.outputs["Output"] is False
    forced = check_data_fingerprint(data_uris=[str(data), ""], force=True, **args)
    assert forced.outputs["Output"] is True and forced.outputs["reason"].startswith("forced")
    data.write_text(data.read_text() + '{"input_text": "c", "output_text": "d"}\n')
    changed = check_data_fingerprint(data_uris=[str(data), ""], force=False, **args)
    assert changed.outputs["Output"] is True
    assert changed.outputs["fingerprint"] == fingerprint_uris([str(data), ""])
    assert "data changed" in changed.outputs["reason"]


@pytest.mark.slow
def test_second_run_on_same_data_is_skipped_and_changed_data_retrains(tmp_path):
    """Three local runs of the tiny embedding pipeline: deploy, skip, retrain on changed data."""
    config = tiny_config(tmp_path)
    out = str(tmp_path / "out")
    registry = os.path.join(out, "registry.json")
    first = run_local(METHODS["embedding-tuning"], config, out)
    assert first.succeeded, first.failure
    champion = local_registry.champion(registry, "embedding-tuning")
    assert champion["data_fingerprint"] == data_fingerprint(config) == check_outputs(first)["fingerprint"]

    second = run_local(METHODS["embedding-tuning"], config, out)
    assert second.succeeded and list(second.task_outputs) == [CHECK_TASK]
    assert check_outputs(second)["reason"].startswith("skipped: data unchanged")

    with open(config.corpus_uri, "a") as handle:
        handle.write(json.dumps({"_id": "d-new", "title": "", "text": "A new troubleshooting note."}) + "\n")
    third = run_local(METHODS["embedding-tuning"], config, out)
    assert third.succeeded, third.failure
    assert check_outputs(third)["Output"] is True
    assert "tune-embedding" in third.task_outputs
    assert local_registry.champion(registry, "embedding-tuning")["data_fingerprint"] == data_fingerprint(config)

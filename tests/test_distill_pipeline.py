"""The distilling step-by-step pipeline: config and parameters, compiled graph, GPU variant, offline example."""

import dataclasses
import inspect
import json
import os

import pytest
import yaml

from tunekit.components.common.image import GPU_IMAGE
from tunekit.components.rationale_extraction.steps import run_extract_rationales
from tunekit.pipelines.compile import compile_method
from tunekit.pipelines.config import load_config
from tunekit.pipelines.distilling_step_by_step import DistillingStepByStepConfig, build_pipeline
from tunekit.pipelines.registry import get_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "distilling_step_by_step.yaml")
DATA = os.path.join(ROOT, "examples", "data", "dss")


def test_config_fields_are_the_pipeline_parameters_one_for_one():
    method = get_method("distilling-step-by-step")
    pipeline, config_cls = method.load()
    parameters = pipeline.component_spec.inputs
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    assert list(parameters) == list(fields)
    for name, spec in parameters.items():
        default = (
            fields[name].default
            if fields[name].default is not dataclasses.MISSING
            else fields[name].default_factory()
        )
        if name != "train_dataset_uri":
            assert spec.default == default, name
    assert all(f.metadata.get("help") for f in fields.values())


def test_compiled_graph_validates_first_and_gates_deployment(tmp_path):
    path = compile_method(get_method("distilling-step-by-step"), str(tmp_path / "d.yaml"))
    spec = yaml.safe_load(open(path))
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["extract-rationales"]["dependentTasks"] == ["validate-data"]
    assert any(name.startswith("condition-") for name in tasks)  # deploy runs only inside the gate
    assert set(tasks) >= {
        "build-student-dataset",
        "tune-student-model",
        "tune-student-model-2",
        "evaluate-distillation",
    }
    assert "{{$.pipeline_google_cloud_project_id}}" in open(path).read()


def test_gpu_variant_trains_in_a_custom_job_with_the_gpu_image(tmp_path):
    from kfp import compiler

    path = str(tmp_path / "gpu.yaml")
    compiler.Compiler().compile(build_pipeline(gpu={"accelerator_type": "NVIDIA_H100_80GB"}), path)
    text = open(path).read()
    assert f"image_uri: {GPU_IMAGE}" in text and "NVIDIA_H100_80GB" in text


def test_example_config_loads_and_says_its_teacher_is_scripted():
    config = load_config(DistillingStepByStepConfig, EXAMPLE)
    assert config.teacher_backend == "scripted" and config.student_backend == "local"
    assert os.path.exists(config.train_dataset_uri) and os.path.exists(config.teacher_script_uri)
    assert "SCRIPTED" in open(EXAMPLE).read()
    for name in ("distilling_step_by_step_vertex.yaml", "distilling_step_by_step_openai.yaml"):
        other = load_config(DistillingStepByStepConfig, os.path.join(ROOT, "examples", name))
        assert other.teacher_backend in ("vertex", "openai")


def test_rationale_extraction_step_with_the_scripted_teacher(tmp_path):
    metrics = {}
    out = tmp_path / "rationales.jsonl"
    counts = run_extract_rationales(
        dataset_path=os.path.join(DATA, "train.jsonl"),
        output_path=str(out),
        task="generic",
        task_type="math",
        exemplars_uri=os.path.join(DATA, "exemplars.jsonl"),
        num_exemplars=4,
        teacher_backend="scripted",
        teacher_model="gemini-2.5-pro",
        teacher_script_uri=os.path.join(DATA, "teacher_script.jsonl"),
        cache_dir=str(tmp_path / "cache"),
        log_metric=metrics.__setitem__,
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == counts["total"] == 120
    assert counts["status_ok"] > 100 and counts["labelled"] == 40
    assert 0.5 < counts["accuracy"] < 0.95  # the scripted teacher is wrong on about a quarter
    assert counts["estimated_cost_usd"] > 0 and metrics["kept"] == counts["kept"]
    assert all("rationale" in r and "teacher_answer" in r for r in rows)
    # A second run answers every prompt from the cache: the same rows.
    again = run_extract_rationales(
        dataset_path=os.path.join(DATA, "train.jsonl"),
        output_path=str(tmp_path / "again.jsonl"),
        task="generic",
        task_type="math",
        exemplars_uri=os.path.join(DATA, "exemplars.jsonl"),
        teacher_backend="scripted",
        teacher_model="gemini-2.5-pro",
        teacher_script_uri=os.path.join(DATA, "teacher_script.jsonl"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert again["kept"] == counts["kept"] and (tmp_path / "again.jsonl").read_text() == out.read_text()


def test_sample_data_is_what_the_generator_writes(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_dss_data", os.path.join(ROOT, "examples", "make_dss_data.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", str(tmp_path))
    module.main()
    for name in os.listdir(tmp_path):
        assert (tmp_path / name).read_text() == open(os.path.join(DATA, name)).read(), name


@pytest.mark.slow
def test_example_runs_end_to_end_in_the_local_runner(tmp_path):
    from tunekit.pipelines.local_run import run_local

    method = get_method("distilling-step-by-step")
    config = load_config(DistillingStepByStepConfig, EXAMPLE)
    result = run_local(method, config, str(tmp_path))
    assert result.succeeded, result.failure
    metrics = result.task_outputs["evaluate-distillation"]["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert {"teacher_accuracy", "baseline_accuracy", "student_accuracy"} <= set(metrics)
    assert "deploy-model" in result.task_outputs
    assert inspect.isfunction(build_pipeline)

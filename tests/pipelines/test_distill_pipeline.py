"""The distilling step-by-step pipeline: config and parameters, compiled graph, GPU variant, offline example."""

import dataclasses
import inspect
import json
import os

import pytest
from pipeline_helpers import EXAMPLES, compile_spec, load_script, spec_tasks

from tunekit.components.common.image import GPU_IMAGE
from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.rationale_extraction.steps import run_extract_rationales
from tunekit.pipelines.config import load_config
from tunekit.pipelines.distilling_step_by_step import DistillingStepByStepConfig, build_pipeline
from tunekit.pipelines.registry import get_method

EXAMPLE = os.path.join(EXAMPLES, "distilling_step_by_step.yaml")
DATA = os.path.join(EXAMPLES, "data", "dss")

# That the config's fields are the pipeline's parameters, one for one, is test_config's, for every method.


def test_compiled_graph_validates_first_and_gates_deployment(tmp_path):
    path = tmp_path / "d.yaml"
    tasks = spec_tasks(compile_spec("distilling-step-by-step", path))
    # validate -> teacher labelling (a pass-through unless label_mode is 'separate') -> rationale extraction
    assert tasks["label-with-teacher"]["dependentTasks"] == ["validate-data"]
    assert tasks["extract-rationales"]["dependentTasks"] == ["label-with-teacher"]
    label_inputs = tasks["label-with-teacher"]["inputs"]["parameters"]
    assert label_inputs["label_mode"]["componentInputParameter"] == "label_mode"
    assert label_inputs["evaluate_gold"]["runtimeValue"]["constant"] is False  # only rows without a label
    assert any(name.startswith("condition-") for name in tasks)  # deploy runs only inside the gate
    assert set(tasks) >= {
        "build-student-dataset",
        "tune-student-model",
        "tune-student-model-2",
        "evaluate-distillation",
    }
    assert "{{$.pipeline_google_cloud_project_id}}" in path.read_text()


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
    for name, overrides in (
        ("distilling_step_by_step_vertex.yaml", []),
        # The open student is a model folder the user downloads first; load_config checks that it exists.
        ("distilling_step_by_step_openai.yaml", ["student_model=tiny-random:t5"]),
    ):
        other = load_config(DistillingStepByStepConfig, os.path.join(EXAMPLES, name), overrides)
        assert other.teacher_backend in ("vertex", "openai")


def test_rationale_extraction_step_with_the_scripted_teacher(tmp_path):
    metrics = {}
    out = tmp_path / "rationales.jsonl"
    scripted = dict(
        dataset_path=os.path.join(DATA, "train.jsonl"),
        task="generic",
        task_type="math",
        exemplars_uri=os.path.join(DATA, "exemplars.jsonl"),
        teacher_backend="scripted",
        teacher_model="gemini-2.5-pro",
        teacher_script_uri=os.path.join(DATA, "teacher_script.jsonl"),
        cache_dir=str(tmp_path / "cache"),
    )
    counts = run_extract_rationales(
        **scripted, output_path=str(out), num_exemplars=4, log_metric=metrics.__setitem__
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == counts["total"] == 120
    assert counts["status_ok"] > 100 and counts["labelled"] == 40
    assert 0.5 < counts["accuracy"] < 0.95  # the scripted teacher is wrong on about a quarter
    assert counts["estimated_cost_usd"] > 0 and metrics["kept"] == counts["kept"]
    assert all("rationale" in r and "teacher_answer" in r for r in rows)
    # A second run answers every prompt from the cache: the same rows.
    again = run_extract_rationales(**scripted, output_path=str(tmp_path / "again.jsonl"))
    assert again["kept"] == counts["kept"] and (tmp_path / "again.jsonl").read_text() == out.read_text()


def _separate_labelling_rows(tmp_path):
    """Rows, a teacher script with CoT completions and plain-prompt labels, and CoT exemplars."""
    rows = [
        {"input_text": "Ava has 4 pens, then buys 3 more. How many pens now?", "output_text": "7"},
        {"input_text": "Ben has 9 cards, then loses 2. How many cards now?"},  # label and CoT agree
        {"input_text": "Kim has 5 coins, then doubles them. How many coins now?"},  # label 10, CoT says 11
        {"input_text": "Leo has 6 books, then sells 1. How many books now?"},  # no label answer: CoT's answer
        {"input_text": "Zoe has 3 shells, then finds 2. How many shells now?"},  # nothing usable at all
    ]
    script = [
        {"input_text": rows[0]["input_text"], "completion": "4 + 3 = 7. So the answer is 7.", "label": "7"},
        {"input_text": rows[1]["input_text"], "completion": "9 - 2 = 7. So the answer is 7.", "label": "7"},
        {"input_text": rows[2]["input_text"], "completion": "5 * 2 = 11. So the answer is 11.", "label": "10"},
        {"input_text": rows[3]["input_text"], "completion": "6 - 1 = 5. So the answer is 5."},
        {"input_text": rows[4]["input_text"], "completion": ""},
    ]
    exemplars = [
        {
            "question": "Eli has 2 pens, then buys 2 more. How many pens now?",
            "rationale": "2 + 2 = 4.",
            "answer": "4",
        }
    ]
    paths = {}
    for name, data in (("train", rows), ("script", script), ("exemplars", exemplars)):
        paths[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(str(paths[name]), data)
    return rows, paths


def test_separate_labelling_then_rationales_accounts_for_every_row(tmp_path):
    from tunekit.components.teacher_labelling.label import LabellingConfig
    from tunekit.components.teacher_labelling.steps import run_labelling
    from tunekit.components.tuning.distillation.steps import run_build_student_dataset

    rows, paths = _separate_labelling_rows(tmp_path)
    labelled = tmp_path / "labelled.jsonl"
    report = run_labelling(
        input_path=str(paths["train"]),
        output_path=str(labelled),
        cache_dir=str(tmp_path / "label-cache"),
        teacher_backend="scripted",
        teacher_model="gemini-2.5-pro",
        teacher_script_uri=str(paths["script"]),
        config=LabellingConfig(task="generic", num_exemplars=1, evaluate_gold=False),
        seed_dataset_uri=str(paths["exemplars"]),  # CoT exemplars serve the label prompt too
    )
    assert report["asked"] == 4 and report["labelled_by_teacher"] == 2 and report["exemplars"] == 1
    assert report["statuses"] == {"not_requested": 1, "ok": 2, "empty": 2}
    rationales = tmp_path / "rationales.jsonl"
    counts = run_extract_rationales(
        dataset_path=str(labelled),
        output_path=str(rationales),
        task="generic",
        task_type="math",
        exemplars_uri=str(paths["exemplars"]),
        num_exemplars=1,
        teacher_backend="scripted",
        teacher_model="gemini-2.5-pro",
        teacher_script_uri=str(paths["script"]),
        cache_dir=str(tmp_path / "cot-cache"),
    )
    out = [json.loads(line) for line in rationales.read_text().splitlines()]
    assert [r["input_text"] for r in out] == [r["input_text"] for r in rows]
    # Checked against the teacher's own labels: the CoT that says 11 where the label prompt said 10 is dropped.
    assert [r["rationale_kept"] for r in out] == [True, True, False, True, False]
    assert counts["teacher_labelled"] == 2 and counts["dropped_disagreeing"] == 1
    assert counts["accuracy"] == 1.0  # against the one gold label only, not the teacher's own labels
    student = tmp_path / "student"
    validation = tmp_path / "validation.jsonl"
    validation.write_text(json.dumps({"input_text": "Max has 2 cards, then finds 5.", "output_text": "7"}) + "\n")
    stats = run_build_student_dataset(
        rationale_path=str(rationales),
        validation_path=str(validation),
        output_dir=str(student),
        eval_path=str(tmp_path / "eval.jsonl"),
    )
    # One gold label, two from the label prompt, one from the chain of thought; the fifth row has none and is
    # counted, not silently lost.
    assert stats["inputs"] == 5 and stats["gold_labels"] == 1 and stats["teacher_labels"] == 3
    assert stats["no_label"] == 1 and stats["rationale_dropped"] == 1 and stats["eval_rows"] == 1
    examples = [json.loads(line) for line in (student / "train.jsonl").read_text().splitlines()]
    labels = {e["prompt"]: e["completion"] for e in examples if e["task"] == "label"}
    assert labels["predict: " + rows[2]["input_text"]] == "10"  # the separate label wins over the CoT's 11
    assert labels["predict: " + rows[3]["input_text"]] == "5"


def test_cot_label_mode_passes_rows_through_without_a_call(tmp_path):
    from tunekit.components.teacher_labelling.steps import run_labelling

    rows, paths = _separate_labelling_rows(tmp_path)
    folder = tmp_path / "normalised"
    folder.mkdir()
    (folder / "train.jsonl").write_text(paths["train"].read_text())
    report = run_labelling(
        input_path=str(folder),  # data validation's folder layout
        output_path=str(tmp_path / "out.jsonl"),
        cache_dir="",
        teacher_backend="vertex",  # would need a project: never built
        teacher_model="gemini-2.5-pro",
        config=None,
        enabled=False,
    )
    assert report["asked"] == 0 and report["metrics"]["rows"] == 5
    assert (tmp_path / "out.jsonl").read_text() == paths["train"].read_text()


def test_local_parameters_clear_cloud_placeholders_only_without_vertex_backends(tmp_path):
    from tunekit.components.common.errors import UserError
    from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER
    from tunekit.pipelines.local_run import local_parameters

    local = DistillingStepByStepConfig(
        train_dataset_uri="t.jsonl", teacher_backend="openai", student_backend="local"
    )
    assert local.project == PROJECT_PLACEHOLDER and local.location == LOCATION_PLACEHOLDER
    values = local_parameters(local, str(tmp_path))
    assert values["project"] == "" and values["location"] == ""
    assert values["local_registry"].endswith("registry.json")
    for teacher, student in (("vertex", "local"), ("vertex_batch", "local"), ("scripted", "vertex")):
        config = dataclasses.replace(local, teacher_backend=teacher, student_backend=student)
        with pytest.raises(UserError, match="set project and location"):
            local_parameters(config, str(tmp_path))
        named = dataclasses.replace(config, project="my-project", location="europe-west4")
        values = local_parameters(named, str(tmp_path))
        assert (values["project"], values["location"]) == ("my-project", "europe-west4")


def test_sample_data_is_what_the_generator_writes(tmp_path, monkeypatch):
    module = load_script("examples/make_dss_data.py")
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
    metrics = result.metadata("evaluate-distillation")
    assert {"teacher_accuracy", "baseline_accuracy", "student_accuracy"} <= set(metrics)
    assert "deploy-model" in result.task_outputs
    assert inspect.isfunction(build_pipeline)


@pytest.mark.slow
def test_separate_label_mode_runs_label_with_teacher_in_the_local_runner(tmp_path):
    from tunekit.pipelines.local_run import run_local

    method = get_method("distilling-step-by-step")
    config = dataclasses.replace(
        load_config(DistillingStepByStepConfig, EXAMPLE),
        label_mode="separate",
        train_steps=4,
        train_baseline=False,
        max_eval_examples=5,
    )
    result = run_local(method, config, str(tmp_path))
    assert result.succeeded, result.failure
    labelling = result.metadata("label-with-teacher")
    # 40 gold rows kept as they are; the 80 unlabelled ones asked with the label prompt, all answered.
    assert labelling["rows"] == 120 and labelling["asked"] == 80 and labelling["labelled_by_teacher"] == 80
    rationales = result.metadata("extract-rationales")
    assert rationales["total"] == 120 and rationales["teacher_labelled"] == 80
    assert rationales["kept"] + rationales["dropped"] == 120

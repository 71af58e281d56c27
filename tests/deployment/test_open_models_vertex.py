"""Open models trained on Vertex AI: deployed to a Vertex endpoint (not the worker's disk), and the GPU variants.

The decision is plain logic (:func:`deploy_backend`); the deploy step it feeds is run against the offline fake;
the compiled graphs wire the decision, the project and the region into the nested gate-and-deploy graph.
"""

from __future__ import annotations

import json

import pytest
import yaml
from fake_vertex_pipelines import LOCATION, PROJECT
from kfp import compiler

from tunekit.components.common.image import GPU_IMAGE, IMAGE
from tunekit.components.common.model_record import deploy_backend
from tunekit.components.deployment import rollout
from tunekit.components.deployment.steps import run_deploy


@pytest.mark.parametrize(
    ("training_backend", "model_uri", "expected"),
    [
        ("local", "/home/me/runs/r1/tune-student/student", "local"),  # the local runner
        ("local", "runs/r1/student", "local"),
        ("local", "gs://bucket/root/123/tune-student/student", "vertex"),  # Vertex pipeline step or custom job
        ("local", "/gcs/bucket/root/123/tune-student/student", "vertex"),  # the same URI, as mounted
        ("vertex", "gs://bucket/root/123/tune-student/student", "vertex"),  # Gemini SFT
        ("vertex", "/home/me/runs/r1/student", "vertex"),  # Gemini from the local runner: Vertex all the same
        ("vertex_distillation", "gs://bucket/x/student", "vertex"),
    ],
)
def test_open_models_deploy_where_they_were_trained(training_backend, model_uri, expected):
    assert deploy_backend(training_backend, model_uri) == expected


def test_open_student_trained_on_vertex_is_uploaded_and_deployed_to_an_endpoint(fake, tmp_path):
    """What the gate-and-deploy step does with an open student from a Vertex GPU job: no local registry file."""
    model_uri = "gs://bucket/root/run-1/tune-student/student"
    model_dir = tmp_path / "student"  # the worker's view of the artifact (/gcs/... on Vertex)
    model_dir.mkdir()
    record = {"backend": "local", "student_backend": "local", "base_model": "google/flan-t5-small"}
    (model_dir / "tunekit_model.json").write_text(json.dumps(record))
    (model_dir / "config.json").write_text("{}")  # a full (merged) model: served as it is
    registry = tmp_path / "registry.json"
    deployed = run_deploy(
        backend=deploy_backend(record["student_backend"], model_uri),
        model_path=str(model_dir),
        model_metadata=record,
        dataset_fingerprint="ab" * 32,
        metrics={"student_accuracy": 0.8},
        gate_reason="beats the champion",
        purpose="ticket-routing",
        pipeline_job_name="run-1",
        local_registry_path=str(registry),
        deployment_path=str(tmp_path / "deploy" / "deployment.json"),
        model_uri=model_uri,
        deployment_uri="gs://bucket/root/run-1/deploy-model/deployment",
        project=PROJECT,
        location=LOCATION,
        canary_traffic_percent=100,
    )
    assert not registry.exists()
    (upload,) = fake.requests_to(r"/models:upload\?", method="POST")
    model = upload[2]["model"]
    assert model["artifactUri"] == model_uri
    assert model["containerSpec"]["imageUri"] == rollout.DEFAULT_SERVING_IMAGE
    assert model["labels"]["tunekit-purpose"] == "ticket-routing"
    (deploy,) = fake.requests_to(r":deployModel\?")
    assert deploy[2]["deployedModel"]["model"] == deployed["model"]
    assert deployed["endpoint"] and deployed["gate"] == "beats the champion"
    saved = json.loads((tmp_path / "deploy" / "deployment.json").read_text())
    assert saved["model"] == deployed["model"]


def _spec(pipeline, tmp_path, name):
    path = str(tmp_path / f"{name}.yaml")
    compiler.Compiler().compile(pipeline, path)
    return yaml.safe_load(open(path))


def _tasks(spec):
    return {
        n: t
        for c in [spec["root"], *spec["components"].values()]
        for n, t in c.get("dag", {}).get("tasks", {}).items()
    }


def _assert_deploys_what_training_decided(spec, training_task):
    tasks = _tasks(spec)
    gate = tasks["gate-and-deploy"]["inputs"]["parameters"]
    assert gate["backend"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": training_task,
    }
    # deploy_open_model needs the project and region: they reach the deploy task inside the nested graph.
    assert gate["project"] == {"componentInputParameter": "project"}
    assert gate["location"] == {"componentInputParameter": "location"}
    deploy = tasks["deploy-model"]["inputs"]["parameters"]
    assert {"backend", "project", "location"} <= set(deploy)
    assert "tuned_model" in tasks["deploy-model"]["inputs"]["artifacts"]


def _custom_job(spec, task_name):
    component = spec["components"][_tasks(spec)[task_name]["componentRef"]["name"]]
    [pool] = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    return pool


def test_distilling_gpu_and_cpu_variants_deploy_what_training_decided(tmp_path):
    from tunekit.pipelines.distilling_step_by_step import build_pipeline

    _assert_deploys_what_training_decided(_spec(build_pipeline(), tmp_path, "cpu"), "tune-student-model")
    gpu = _spec(build_pipeline(gpu={"accelerator_type": "NVIDIA_L4"}), tmp_path, "gpu")
    _assert_deploys_what_training_decided(gpu, "tune-student-model")
    assert _custom_job(gpu, "tune-student-model")["container_spec"]["image_uri"] == GPU_IMAGE


def test_preference_gpu_variant_trains_in_custom_jobs_with_the_gpu_image(tmp_path):
    from tunekit.pipelines.preference_tuning import build_pipeline, preference_tuning_pipeline

    gpu = {"accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 2, "machine_type": "a3-highgpu-2g"}
    spec = _spec(build_pipeline(gpu=gpu), tmp_path, "gpu")
    tasks = _tasks(spec)
    for name in ("warm-start-supervised", "tune-preference"):
        pool = _custom_job(spec, name)
        assert pool["container_spec"]["image_uri"] == GPU_IMAGE
        assert pool["machine_spec"] == {
            "machine_type": "a3-highgpu-2g",
            "accelerator_type": "NVIDIA_H100_80GB",
            "accelerator_count": 2,
        }
        # Paid work: the custom job is retried (the step re-attaches / resumes from its state file).
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 2
    entry = _custom_job(spec, "tune-preference")["container_spec"]["args"]
    assert entry[entry.index("--function_to_execute") + 1] == "tune_preference"
    assert tasks["tune-preference"]["inputs"]["artifacts"]["warm_model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "warm_model",
        "producerTask": "warm-start-supervised",
    }
    _assert_deploys_what_training_decided(spec, "tune-preference")

    # The CPU variant (the module's pipeline, what compiled/ holds) runs every step in the CPU image, no custom job.
    cpu = _spec(preference_tuning_pipeline, tmp_path, "cpu")
    images = {e["container"]["image"] for e in cpu["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    assert "worker_pool_specs" not in json.dumps(cpu)
    _assert_deploys_what_training_decided(cpu, "tune-preference")


# --- the next run's gate meets that champion (issue 14 item 7) ---------------------------------------------------


@pytest.fixture
def vertex(monkeypatch, tmp_path):
    """The fake Vertex API (Model Registry, endpoints' predict and generateContent), and a worker's /gcs mount."""
    from fake_vertex import serve_fake_vertex

    from tunekit.components.common import uris

    # On a Vertex AI Pipelines worker Cloud Storage is mounted at /gcs; here a folder stands for the mount.
    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "gcs"))
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1)


ROWS = [
    {"input_text": f"ticket {i}", "reference": ["billing", "shipping"][i % 2], "reference_source": "gold"}
    for i in range(20)
]


def _artifact(tmp_path, run: str) -> str:
    """An open student's artifact as a Vertex worker sees it (/gcs/...), with its tuning record."""
    folder = tmp_path / "gcs" / "bucket" / "root" / run / "tune-student" / "student"
    folder.mkdir(parents=True)
    record = {
        "backend": "local",
        "serving_prefix": "predict: ",
        "mode": "multitask",
        "base_model": "HuggingFaceTB/SmolLM2-135M",
    }
    (folder / "tunekit_model.json").write_text(json.dumps(record))
    return str(folder)


def test_an_open_student_trained_on_vertex_meets_its_vertex_champion_served_by_vllm(vertex, tmp_path):
    """Run 1's open student serves on a Vertex endpoint (Model Garden vLLM); run 2, trained on Vertex too, is gated
    against it: the champion is found in the Model Registry (not the empty local registry) and answers through
    ``:predict`` with the prompt the student was trained on. Before: "no champion deployed", the gate skipped it."""
    from fake_vertex import LOCATION, PROJECT

    from tunekit.components.deployment.champion import purpose_label
    from tunekit.components.evaluation.distillation.steps import run_evaluate_distillation
    from tunekit.components.model_clients.base import FakeClient

    _artifact(tmp_path, "run-1")
    model, endpoint = vertex.add_open_model(
        "tunekit-ticket-routing",
        labels={"tunekit-purpose": purpose_label("ticket-routing")},
        artifact_uri="gs://bucket/root/run-1/tune-student/student",
    )
    truth = {r["input_text"]: r["reference"] for r in ROWS}
    # The champion knows the first 16 tickets, but only when asked the way it was trained ("predict: ...").
    vertex.set_responder(
        lambda p: (
            truth.get(p.removeprefix("predict: "), "?")
            if p.startswith("predict: ") and int(p.split()[-1]) < 16
            else "?"
        ),
        model=endpoint,
    )
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    student_path = _artifact(tmp_path, "run-2")

    def evaluate(right_below):
        student = FakeClient(
            lambda p: truth[p.text.removeprefix("predict: ")] if int(p.text.split()[-1]) < right_below else "?"
        )
        return run_evaluate_distillation(
            task="classification",
            task_type="classification",
            eval_path=str(eval_path),
            student_path=student_path,
            student_metadata={},
            baseline_path="",
            baseline_metadata={},
            predictions_path=str(tmp_path / "p.jsonl"),
            summary_path=str(tmp_path / "s.md"),
            student_clients={"student": student},
            purpose="ticket-routing",
            local_registry="",  # a Vertex run has no local registry
            project=PROJECT,
            location=LOCATION,
        )

    result = evaluate(10)
    assert "no champion deployed" not in result.reason and "could not be scored" not in result.reason
    assert result.metrics["champion"]["accuracy"] == 0.8 and not result.passed
    assert f"champion {model.split('@')[0]}" in result.reason
    calls = vertex.requests_to(rf"{endpoint}:predict", "POST")
    assert len(calls) == len(ROWS) and not vertex.requests_to(rf"{endpoint}:generateContent")
    assert calls[0][2]["instances"][0]["prompt"].startswith("predict: ticket ")
    assert calls[0][2]["instances"][0]["raw_response"] is True
    assert evaluate(20).passed


def test_a_vllm_endpoint_refuses_generate_content_as_a_custom_container_does(vertex):
    """Why the champion cannot be scored through generateContent: the endpoint serves an open model's container."""
    from fake_vertex import LOCATION, PROJECT

    from tunekit.components.model_clients.base import FAILED, Prompt
    from tunekit.components.model_clients.vertex import VertexGeminiClient

    _, endpoint = vertex.add_open_model("tunekit-x")
    vertex.set_responder(lambda p: "billing", model=endpoint)
    (answer,) = VertexGeminiClient(endpoint, PROJECT, LOCATION, max_attempts=1).generate([Prompt(text="hi")])
    assert answer.status == FAILED and "custom container" in answer.error

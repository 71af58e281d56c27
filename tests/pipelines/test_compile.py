import os

from pipeline_helpers import ROOT, compile_spec, spec_tasks

from tunekit.components.common.image import GPU_IMAGE, IMAGE, VERSION
from tunekit.pipelines.compile import compile_all
from tunekit.pipelines.registry import METHODS


def images(spec: dict) -> set[str]:
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def test_compiled_specs_are_up_to_date(tmp_path):
    """Fails when compiled/ is stale: run `make compile` and commit the result."""
    for path in compile_all(str(tmp_path)):
        name = os.path.basename(path)
        committed = os.path.join(ROOT, "compiled", name)
        assert os.path.exists(committed), f"compiled/{name} is missing: run `make compile`"
        assert open(path).read() == open(committed).read(), f"compiled/{name} is stale: run `make compile`"
    assert sorted(os.listdir(tmp_path)) == sorted(m.compiled_name for m in METHODS.values())


def test_compile_is_deterministic(tmp_path):
    first = compile_all(str(tmp_path / "a"))
    second = compile_all(str(tmp_path / "b"))
    for a, b in zip(first, second, strict=True):
        assert open(a).read() == open(b).read()


def test_images_pinned_to_the_version_and_overridable(tmp_path):
    spec = compile_spec("supervised-tuning", tmp_path / "a.yaml")
    assert images(spec) <= {IMAGE, GPU_IMAGE}
    assert all(image.endswith(":" + VERSION) for image in images(spec))
    assert spec["sdkVersion"] == "kfp-2.17.0"
    custom = "europe-docker.pkg.dev/p/r/components:abc123"
    spec = compile_spec("supervised-tuning", tmp_path / "b.yaml", image=custom)
    assert images(spec) == {custom}


def test_spec_starts_with_validation_and_gates_deployment(tmp_path):
    spec = compile_spec("supervised-tuning", tmp_path / "s.yaml")
    components = spec["components"]
    tasks = spec_tasks(spec)
    assert "validate-data" in tasks
    assert tasks["prepare-supervised-data"]["dependentTasks"] == ["validate-data"]
    assert "evaluate-supervised" in tasks["gate-and-deploy"]["dependentTasks"]
    gate = components["comp-gate-and-deploy"]["dag"]["tasks"]
    [condition] = [t for name, t in gate.items() if name.startswith("condition")]
    assert "gate_passed" in condition["triggerPolicy"]["condition"]
    assert list(components[condition["componentRef"]["name"]]["dag"]["tasks"]) == ["deploy-model"]
    no_env = open(tmp_path / "s.yaml").read()
    assert os.environ.get("HOME", "/nonexistent-home") not in no_env
    assert "{{$.pipeline_google_cloud_project_id}}" in no_env


def test_configuration_reference_is_up_to_date():
    from tunekit.pipelines.docs import render

    committed = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    assert committed == render(), "docs/configuration.md is stale: run `make compile`"

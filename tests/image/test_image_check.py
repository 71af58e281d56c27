"""cloudbuild/image_check.py without podman: what it checks a step wrote, and what it hands the Dockerfile.

`make image-check` itself builds the image and runs every step in it (root, podman and debootstrap needed).
"""

import importlib.util
import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script():
    spec = importlib.util.spec_from_file_location(
        "image_check", os.path.join(ROOT, "cloudbuild", "image_check.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


image_check = load_script()


def dockerfile() -> str:
    with open(os.path.join(ROOT, "components", "Dockerfile"), encoding="utf-8") as handle:
        return handle.read()


def test_the_build_arguments_it_passes_are_declared_with_cloud_builds_defaults():
    declared = image_check.declared_build_args(image_check.DOCKERFILE)
    assert {"BASE_IMAGE", "TORCH_INDEX_URL", "TORCH_FIND_LINKS"} <= declared
    text = dockerfile()
    # Cloud Build passes none of them (cloudbuild/build_image.sh): the defaults are the production image's.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, flags=re.M)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, flags=re.M)
    assert re.search(r"^ARG TORCH_FIND_LINKS=$", text, flags=re.M)
    assert "--build-arg" not in open(os.path.join(ROOT, "cloudbuild", "build_image.sh")).read().replace(
        "--build-arg BUILDKIT_INLINE_CACHE=1", ""
    )


def test_the_image_installs_no_development_extra_and_has_a_non_root_user():
    text = dockerfile()
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and not any("dev" in line for line in installs)
    assert "optional-dependencies']['local']" in text and "['dev']" not in text
    assert re.search(rf"useradd .*--uid 1000 .*{image_check.RUN_USER}$", text, flags=re.M)


def test_every_compiled_pipeline_is_run_on_an_example_config():
    compiled = {name[: -len(".yaml")].replace("_", "-") for name in os.listdir(os.path.join(ROOT, "compiled"))}
    runs = image_check.all_runs()
    assert {run.method for run in runs} == compiled and len(runs) == len(compiled)
    assert {run.method for run in image_check.RUNS} <= compiled
    for run in runs:
        assert os.path.exists(os.path.join(ROOT, "examples", run.config)), run


def executor_input(task_root, artifacts, parameters):
    return {
        "outputs": {
            "artifacts": {
                name: {"artifacts": [{"name": name, "uri": os.path.join(task_root, name)}]} for name in artifacts
            },
            "parameters": {name: {"outputFile": os.path.join(task_root, name)} for name in parameters},
            "outputFile": os.path.join(task_root, "executor_output.json"),
        }
    }


def test_an_output_counts_as_written_by_its_file_or_its_metadata(tmp_path):
    task_root = str(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "report").write_text("{}")
    (tmp_path / "executor_output.json").write_text(
        json.dumps(
            {
                "artifacts": {"metrics": {"artifacts": [{"name": "metrics", "metadata": {"accuracy": 0.5}}]}},
                "parameterValues": {"Output": True},
            }
        )
    )
    given = executor_input(task_root, ["model", "report", "metrics"], ["Output"])
    assert image_check.missing_outputs(given) == []


def test_unwritten_outputs_are_named(tmp_path):
    task_root = str(tmp_path)
    (tmp_path / "executor_output.json").write_text(
        json.dumps({"artifacts": {"metrics": {"artifacts": [{"name": "metrics", "metadata": {}}]}}})
    )
    given = executor_input(task_root, ["model", "metrics"], ["Output"])
    assert image_check.missing_outputs(given) == ["model", "metrics", "Output"]


def test_no_executor_output_means_every_output_is_missing(tmp_path):
    given = executor_input(str(tmp_path), ["model"], ["fingerprint"])
    assert image_check.missing_outputs(given) == ["model", "fingerprint"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", "http://mirror.example/debian"),
        ("deb [arch=amd64] http://mirror.example/debian bookworm main\n", "http://mirror.example/debian"),
    ],
)
def test_the_mirror_is_the_one_apt_uses(tmp_path, monkeypatch, text, expected):
    sources = tmp_path / "sources"
    sources.write_text(text)
    monkeypatch.setattr(image_check, "APT_SOURCES", (str(sources),))
    assert image_check.apt_mirror() == expected


def test_without_root_it_says_so_and_skips_only_when_asked(monkeypatch, capsys):
    monkeypatch.setattr(image_check.os, "geteuid", lambda: 1000)
    assert image_check.main(["--skip-unavailable"]) == 0
    assert "image-check SKIPPED: needs root" in capsys.readouterr().err
    assert image_check.main([]) == 2
    assert "image-check cannot run: needs root" in capsys.readouterr().err

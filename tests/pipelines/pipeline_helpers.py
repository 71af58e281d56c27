"""What several tests of the pipelines share: the repository's paths, compiled specs, configs, fake Vertex options.

The fixtures they share (the compiled supervised template, the fake Vertex server) are in ``conftest.py``.
"""

import dataclasses
import importlib.util
import json
import os
from typing import Any

import yaml

from tunekit.pipelines.compile import compile_method
from tunekit.pipelines.config import load_config
from tunekit.pipelines.registry import get_method
from tunekit.pipelines.submit import SubmitOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def load_script(relative_path: str):
    """A script of the repository (``cloudbuild/ci_local.py``), loaded by its path as a module."""
    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_spec(method_name: str, path, **options) -> dict:
    """Compiles a method's pipeline to ``path`` (``compile_method``'s ``options``) and returns the loaded spec."""
    with open(compile_method(get_method(method_name), str(path), **options), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def spec_tasks(spec: dict) -> dict:
    """Every task of a compiled spec by name: the root graph's and the nested graphs' (the fingerprint check around
    the run, the gate-and-deploy sub-graph)."""
    graphs = [spec["root"], *spec["components"].values()]
    return {name: task for graph in graphs if "dag" in graph for name, task in graph["dag"]["tasks"].items()}


def field_default(f: dataclasses.Field) -> Any:
    """A config field's default value (a fresh one for ``dict`` and ``list`` fields)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def supervised_config(**overrides):
    """A supervised-tuning config with data in Cloud Storage, loaded like the CLI loads ``--set`` values."""
    _, cls = get_method("supervised-tuning").load()
    items = {"train_dataset_uri": "gs://bucket/train.jsonl", "task": "classification", **overrides}
    return load_config(cls, None, [f"{k}={json.dumps(v)}" for k, v in items.items()])


def fake_options(fake, **overrides) -> SubmitOptions:
    """Submit options aimed at the fake Vertex server ``fake`` (the ``vertex`` fixture), with its template."""
    values = dict(
        project="test-project",
        region="us-central1",
        pipeline_root="gs://bucket/root",
        template_path=fake.template,
        api_endpoint=fake.url,
    )
    values.update(overrides)
    return SubmitOptions(**values)

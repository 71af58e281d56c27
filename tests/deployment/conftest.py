"""The deployment tests' fixtures (their plain helpers are in ``deployment_helpers.py``)."""

import pytest
from fake_vertex_pipelines import serve_fake_pipelines


@pytest.fixture
def fake(monkeypatch):
    """A fake Vertex AI (endpoints, Model Registry, operations) that tunekit's clients are aimed at; loopback only."""
    yield from serve_fake_pipelines(monkeypatch)

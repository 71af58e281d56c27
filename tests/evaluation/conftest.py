"""The evaluation tests' fixtures (their plain helpers are in ``evaluation_helpers.py``)."""

import pytest
from fake_vertex import serve_fake_vertex


@pytest.fixture
def vertex(monkeypatch):
    """A fake Vertex AI that tunekit's clients are aimed at (jobs finish at the first poll); loopback only."""
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1)

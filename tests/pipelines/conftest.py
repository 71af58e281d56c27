"""Fixtures of the submission and schedule tests: the compiled supervised template and the fake Vertex server."""

import pytest
from fake_vertex_pipelines import FakeVertexPipelines

from tunekit.pipelines.registry import get_method


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The supervised pipeline compiled from the code now (compiled/ may lag behind while it is edited)."""
    from tunekit.pipelines.compile import compile_method

    # With an image in the test project's registry: a spec naming the unpublished default image is refused.
    return compile_method(
        get_method("supervised-tuning"),
        str(tmp_path_factory.mktemp("c") / "s.yaml"),
        image="us-central1-docker.pkg.dev/test-project/tunekit/components:test",
    )


@pytest.fixture
def vertex(monkeypatch, template):
    """The fake Vertex server (its ``template``: the compiled supervised pipeline); aiplatform's settings restored."""
    from google.cloud.aiplatform import initializer

    # aiplatform.init is bound to the global config object: save and restore its settings, not the object.
    saved = dict(initializer.global_config.__dict__)
    with FakeVertexPipelines(polls_to_finish=3) as fake:
        # PipelineJob.submit checks the pipeline root's bucket through the storage client: aim it at the fake.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
        fake.template = template
        yield fake
    initializer.global_config.__dict__.clear()
    initializer.global_config.__dict__.update(saved)

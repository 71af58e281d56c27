"""One cloud test suite, two targets: the fakes (every `make test`) or a real project (``-m cloud``).

Each test takes a target fixture parametrised ``fake`` and ``real``; the ``real`` variant carries the ``cloud``
marker, which pyproject's ``addopts`` deselects by default, and ``-m cloud`` selects it alone. A real run reads
``TUNEKIT_CLOUD_PROJECT``, ``TUNEKIT_CLOUD_REGION`` and ``TUNEKIT_CLOUD_BUCKET`` (``make test-cloud PROJECT=...
REGION=... BUCKET=...`` sets them) and Application Default Credentials; the component image of a run that needs one
is ``TUNEKIT_IMAGE`` (``make publish-image`` prints it). Whatever a test creates is registered with
:meth:`Target.later` as soon as it exists and deleted at teardown, in reverse order, on both targets, so the fake
run exercises the clean-up code as well.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

FAKE_PROJECT, FAKE_REGION, FAKE_BUCKET = "test-project", "us-central1", "bucket"
TARGETS = [pytest.param("fake", id="fake"), pytest.param("real", id="real", marks=pytest.mark.cloud)]


@dataclass
class Target:
    """Where a cloud test runs.

    Attributes:
        mode: ``fake`` or ``real``.
        project: The Google Cloud project.
        region: The Vertex AI region.
        bucket: A bucket of the project (staging data, pipeline roots).
        run_id: A short id that names everything this test creates.
        fake: The fake server (``fake`` mode), to inspect what it received.
        io: Cloud Storage access (batch.GcsIO on a real project; the fake's own files otherwise).
    """

    mode: str
    project: str
    region: str
    bucket: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    fake: Any = None
    io: Any = None
    cleanups: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)

    @property
    def real(self) -> bool:
        return self.mode == "real"

    def uri(self, name: str) -> str:
        """A gs:// URI under this test's own prefix."""
        return f"gs://{self.bucket}/tunekit-cloud-tests/{self.run_id}/{name}"

    def later(self, what: str, delete: Callable[[], Any]) -> None:
        """Registers the deletion of something just created."""
        self.cleanups.append((what, delete))

    def clean_up(self) -> list[str]:
        """Runs the deletions, newest first; returns those that failed (what, error)."""
        failed = []
        for what, delete in reversed(self.cleanups):
            try:
                delete()
            except Exception as exc:  # noqa: BLE001 - every deletion is tried; the failures are reported
                failed.append(f"{what}: {type(exc).__name__}: {exc}")
        self.cleanups.clear()
        return failed


def real_target() -> Target:
    """The real project of ``make test-cloud``; fails with the command to run when it is not configured."""
    values = {key: os.environ.get(f"TUNEKIT_CLOUD_{key.upper()}", "") for key in ("project", "region", "bucket")}
    if not all(values.values()):
        pytest.fail(
            "the real cloud target needs TUNEKIT_CLOUD_PROJECT, TUNEKIT_CLOUD_REGION and TUNEKIT_CLOUD_BUCKET: "
            "run 'make test-cloud PROJECT=... REGION=... BUCKET=...'",
            pytrace=False,
        )
    from tunekit.components.model_clients.batch import GcsIO

    return Target("real", io=GcsIO(), **values)


def _serve(request, target_fake: Callable[[], Iterator[Any]]) -> Iterator[Target]:
    def finish(target: Target) -> None:
        failed = target.clean_up()
        assert not failed, f"clean-up failed (delete these by hand): {failed}"

    if request.param == "real":
        target = real_target()
        yield target
        finish(target)
        return
    for server in target_fake():  # the fake serves until its generator ends: clean up while it does
        target = Target("fake", FAKE_PROJECT, FAKE_REGION, FAKE_BUCKET, fake=server)
        target.io = getattr(server, "io", None)
        yield target
        finish(target)
        # Everything the test created on the pipelines fake (which serves the deletions) is gone again.
        kinds = ("endpoints", "models", "schedules") if hasattr(server, "schedules") else ()
        left = {k: getattr(server, k) for k in kinds if getattr(server, k)}
        assert not left, f"left behind: {left}"


@pytest.fixture(params=TARGETS)
def genai_cloud(request, monkeypatch, tmp_path) -> Iterator[Target]:
    """Gemini tuning and batch prediction: the google-genai fake, or a real project."""

    def fake():
        from fake_vertex import serve_fake_vertex

        from tunekit.components.model_clients.batch import LocalGcsIO

        root = str(tmp_path / "gcs")
        for server in serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=root):
            server.io = LocalGcsIO(root)
            yield server

    yield from _serve(request, fake)


@pytest.fixture(params=TARGETS)
def pipelines_cloud(request, monkeypatch, tmp_path) -> Iterator[Target]:
    """Pipeline jobs, templates, endpoints, the Model Registry and schedules: the pipelines fake, or a project."""
    from google.cloud.aiplatform import initializer

    saved = dict(initializer.global_config.__dict__)

    def fake():
        from fake_vertex_pipelines import serve_fake_pipelines

        from tunekit.components.model_clients.batch import LocalGcsIO

        for server in serve_fake_pipelines(monkeypatch, polls_to_finish=1):
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
            server.io = LocalGcsIO(str(tmp_path / "gcs"))
            yield server

    yield from _serve(request, fake)
    initializer.global_config.__dict__.clear()
    initializer.global_config.__dict__.update(saved)

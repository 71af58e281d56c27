"""`tunekit submit` compiles the spec into a temporary folder that is gone once the PipelineJob is built."""

import os
import tempfile

from google.auth.credentials import AnonymousCredentials
from pipeline_helpers import supervised_config

from tunekit.pipelines.registry import get_method
from tunekit.pipelines.submit import SubmitOptions, build_pipeline_job


def test_the_compiled_spec_folder_is_removed_and_the_job_keeps_the_spec(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    options = SubmitOptions(
        project="my-project",
        region="europe-west4",
        pipeline_root="gs://bucket/root",
        image="europe-docker.pkg.dev/p/r/components:abc",
    )
    job = build_pipeline_job(
        get_method("supervised-tuning"), supervised_config(), options, credentials=AnonymousCredentials()
    )
    assert os.listdir(scratch) == []
    # The spec was read while the folder existed: the job carries it, not a path to it.
    assert job._gca_resource.pipeline_spec["pipelineInfo"]["name"] == "supervised-tuning"

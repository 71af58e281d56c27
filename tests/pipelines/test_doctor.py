"""``tunekit doctor``, check by check against the fake (each shown able to fail), and the one-line errors of every
Vertex command run without credentials."""

import os
import subprocess
import sys

import pytest
from pipeline_helpers import ROOT

IMAGE = "us-central1-docker.pkg.dev/p/tunekit/components:0.1.0"
VERTEX = ["--project", "p", "--region", "us-central1"]
SUPERVISED = [
    "--config",
    "examples/supervised_tuning_vertex.yaml",
    "--pipeline-root",
    "gs://b/root",
    "--image",
    IMAGE,
]
COMMANDS = {
    "submit": ["submit", "supervised-tuning", *SUPERVISED, *VERTEX],
    "schedule create": ["schedule", "create", "supervised-tuning", "--cron", "0 3 * * 1", *SUPERVISED, *VERTEX],
    "schedule list": ["schedule", "list", *VERTEX],
    "rollback": ["rollback", "support", *VERTEX],
    "promote": ["promote", "support", *VERTEX],
}


def no_credentials_env(tmp_path):
    """An environment with no Google credentials: the key file points nowhere, no gcloud config, no fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEKIT_", "GOOGLE_", "CLOUDSDK_"))}
    env.update(
        GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "nowhere.json"),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        HOME=str(tmp_path),
        # Were the metadata server asked, loopback answers at once (tests send traffic only to 127.0.0.1).
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
    )
    return env


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_vertex_commands_without_credentials_print_one_line_and_exit_2(tmp_path, command):
    result = subprocess.run(
        [sys.executable, "-m", "tunekit.pipelines.cli", *COMMANDS[command]],
        cwd=ROOT,
        env=no_credentials_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert "gcloud auth application-default login" in output

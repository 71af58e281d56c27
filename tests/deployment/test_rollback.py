"""The local registry's champion lookup and rollback, through find_champion and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from deployment_helpers import deploy_step

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import local_registry
from tunekit.components.deployment.champion import Champion, find_champion, purpose_label


def deploy(tmp_path, registry, name, accuracy, fingerprint):
    model_dir = tmp_path / name
    model_dir.mkdir()
    (model_dir / "training_log.json").write_text(json.dumps({"is_encoder_decoder": True}))
    return deploy_step(
        tmp_path,
        name,
        accuracy,
        backend="local",
        model_metadata={"base_model": "base-dir"},
        local_registry_path=registry,
        data_fingerprint=fingerprint,
    )


def test_find_champion_reads_the_local_registry(tmp_path):
    registry = str(tmp_path / "registry.json")
    assert find_champion("Support Routing", backend="local", local_registry=registry) is None
    deploy(tmp_path, registry, "m1", 0.7, "aa" * 32)
    deploy(tmp_path, registry, "m2", 0.8, "bb" * 32)
    champ = find_champion("Support Routing", backend="local", local_registry=registry)
    assert isinstance(champ, Champion)
    assert champ.model == str(tmp_path / "m2")
    assert champ.registry_id == "Support Routing-2"
    assert champ.metrics == {"tuned_accuracy": 0.8}
    assert champ.data_fingerprint == "bb" * 32
    assert champ.base_model == "base-dir"
    assert (champ.backend, champ.endpoint) == ("local", "")
    assert champ.extra["kind"] == "seq2seq"
    assert champ.extra["entry"]["labels"]["tunekit-data-fp"] == "b" * 32
    assert (
        champ.extra["entry"]["labels"]["tunekit-purpose"] == purpose_label("Support Routing") == "support-routing"
    )
    assert find_champion("other", backend="local", local_registry=registry) is None


def test_rollback_walks_back_the_champion_history(tmp_path):
    registry = str(tmp_path / "registry.json")
    for i in (1, 2, 3):
        deploy(tmp_path, registry, f"m{i}", 0.5 + i / 10, f"{i}" * 64)
    restored, rolled = local_registry.rollback(registry, "Support Routing")
    assert (restored["id"], rolled["id"]) == ("Support Routing-2", "Support Routing-3")
    assert find_champion("Support Routing", backend="local", local_registry=registry).model == str(tmp_path / "m2")
    restored, _ = local_registry.rollback(registry, "Support Routing")
    assert restored["id"] == "Support Routing-1"
    stored = json.load(open(registry))["models"]
    assert [m["aliases"] for m in stored] == [["champion"], ["rolled-back"], ["rolled-back"]]
    with pytest.raises(UserError, match="no previous champion"):
        local_registry.rollback(registry, "Support Routing")
    # A new deployment after a rollback replaces the restored champion, and can itself be rolled back.
    deploy(tmp_path, registry, "m4", 0.9, "4" * 64)
    restored, _ = local_registry.rollback(registry, "Support Routing")
    assert restored["id"] == "Support Routing-1"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["Support Routing"], "no registry file"),
        ("ok", ["nope"], "purpose 'nope' has no champion"),
        ("first", ["Support Routing"], "no previous champion"),
        ("bad", ["Support Routing"], "not valid JSON"),
    ],
)
def test_cli_rollback_errors_are_one_line(tmp_path, setup, args, message):
    registry = str(tmp_path / "registry.json")
    if setup in ("ok", "first"):
        deploy(tmp_path, registry, "m1", 0.7, "")
        if setup == "ok":
            deploy(tmp_path, registry, "m2", 0.8, "")
    elif setup == "bad":
        (tmp_path / "registry.json").write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "tunekit.pipelines.cli", "rollback", *args, "--registry", registry],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_rollback_moves_the_champion(tmp_path):
    registry = str(tmp_path / "registry.json")
    deploy(tmp_path, registry, "m1", 0.7, "")
    deploy(tmp_path, registry, "m2", 0.8, "")
    result = subprocess.run(
        [sys.executable, "-m", "tunekit.pipelines.cli", "rollback", "Support Routing", "--registry", registry],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "Support Routing-1" in result.stdout
    assert local_registry.champion(registry, "Support Routing")["id"] == "Support Routing-1"

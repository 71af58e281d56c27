"""Vertex deployment against the offline fake: champion alias, labels, open-model upload, canary split, rollback."""

from __future__ import annotations

import os
from urllib.parse import unquote

import pytest
from deployment_helpers import deploy_step
from fake_vertex_pipelines import LOCATION, PROJECT

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import registry as vertex
from tunekit.components.deployment import rollout
from tunekit.components.deployment.champion import find_champion

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
FP = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def champion(purpose="Support Routing"):
    return find_champion(purpose, backend="vertex", project=PROJECT, location=LOCATION)


def merges(fake):
    return [
        (unquote(r[1]).split("/models/")[1].split(":")[0], r[2]["versionAliases"])
        for r in fake.requests_to(":mergeVersionAliases")
    ]


def deploy_gemini(fake, tmp_path, name, accuracy):
    model = fake.add_model(f"tuned-{name}", labels={"team": "support"}, with_endpoint=True)
    endpoint = fake.model_version(model)["deployedModels"][0]["endpoint"]
    tuned = {
        "tuned_model": model,
        "endpoint": endpoint,
        "base_model": "gemini-2.5-flash",
        "job_name": f"job-{name}",
    }
    os.makedirs(tmp_path / name, exist_ok=True)
    return model, endpoint, _run_deploy(tmp_path, name, tuned, accuracy, dataset_fingerprint="ab" * 32)


def _run_deploy(tmp_path, name, tuned, accuracy, dataset_fingerprint=""):
    return deploy_step(
        tmp_path,
        name,
        accuracy,
        model_metadata=tuned,
        dataset_fingerprint=dataset_fingerprint,
        pipeline_job_name=f"Run-{name}",
        data_fingerprint=FP,
    )


def test_tuned_gemini_becomes_champion_and_rolls_back(fake, tmp_path):
    assert champion() is None
    first, first_endpoint, record = deploy_gemini(fake, tmp_path, "a", 0.7)
    assert record["model"] == first and record["endpoint"] == first_endpoint
    assert record["previous_champion"] == ""
    labels = fake.model_version(first)["labels"]
    assert labels["team"] == "support"  # kept
    assert labels["tunekit-purpose"] == "support-routing"
    assert labels["tunekit-data-fp"] == FP[:32]
    assert labels["tunekit-pipeline-run"] == "run-a"
    assert labels["tunekit-base-model"] == "gemini-2-5-flash"
    (patch,) = fake.requests_to(r"/models/\d+(@|%40)1\?", method="PATCH")
    assert (
        "updateMask=labels%2CversionDescription" in patch[1] or "updateMask=labels,versionDescription" in patch[1]
    )
    assert merges(fake) == [(first.rsplit("/", 1)[1], ["champion"])]

    found = champion()
    assert (found.model, found.endpoint, found.backend) == (first, first_endpoint, "vertex")
    assert found.data_fingerprint == FP[:32] and found.metrics == {"tuned_accuracy": 0.7}
    assert found.registry_id == first.split("@")[0] and found.base_model == "gemini-2.5-flash"
    assert found.extra["labels"]["tunekit-base-model"] == "gemini-2-5-flash"

    second, second_endpoint, record = deploy_gemini(fake, tmp_path, "b", 0.8)
    assert record["previous_champion"] == first
    assert merges(fake)[1:] == [(first.rsplit("/", 1)[1], ["-champion"]), (second.rsplit("/", 1)[1], ["champion"])]
    assert fake.model_version(first)["versionAliases"] == []
    assert champion().model == second and champion().endpoint == second_endpoint

    # A retried step (same state file) changes nothing and still knows the previous champion.
    _, _, again = deploy_gemini_retry(fake, tmp_path, "b", second, second_endpoint)
    assert again["previous_champion"] == first

    result = vertex.rollback_vertex("Support Routing", project=PROJECT, location=LOCATION)
    assert (result["restored"], result["rolled_back"], result["endpoint"]) == (first, second, "")
    assert champion().model == first
    assert fake.model_version(second)["labels"]["tunekit-rolled-back"] == "true"
    # Each Gemini model keeps its own endpoint: nothing was undeployed.
    assert not fake.requests_to(":undeployModel")
    with pytest.raises(UserError, match="first champion"):
        vertex.rollback_vertex("Support Routing", project=PROJECT, location=LOCATION)


def deploy_gemini_retry(fake, tmp_path, name, model, endpoint):
    tuned = {"tuned_model": model, "endpoint": endpoint, "base_model": "gemini-2.5-flash"}
    return model, endpoint, _run_deploy(tmp_path, name, tuned, 0.8)


def deploy_open(tmp_path, name, canary, **kw):
    return rollout.deploy_open_model(
        artifact_uri=f"gs://bucket/runs/{name}/tuned_model",
        purpose="support-routing",
        project=PROJECT,
        location=LOCATION,
        state_path=str(tmp_path / name / "state.json"),
        labels=vertex.lineage_labels(
            purpose="support-routing", pipeline_job_name=f"run-{name}", data_fingerprint=FP
        ),
        metrics={"tuned_accuracy": 0.9},
        pipeline_job_name=f"run-{name}",
        canary_traffic_percent=canary,
        **kw,
    )


def test_open_model_upload_canary_and_rollback(fake, tmp_path):
    first = deploy_open(tmp_path, "a", 100)
    (upload,) = fake.requests_to(r"/models:upload\?", method="POST")
    body = upload[2]
    assert "parentModel" not in body or body["parentModel"] == ""
    model = body["model"]
    assert model["artifactUri"] == "gs://bucket/runs/a/tuned_model"
    assert model["containerSpec"]["imageUri"] == rollout.DEFAULT_SERVING_IMAGE
    assert "--model=gs://bucket/runs/a/tuned_model" in model["containerSpec"]["args"]
    assert model["containerSpec"]["predictRoute"] == "/generate"
    assert model["containerSpec"]["ports"] == [{"containerPort": 8080}]
    assert model["labels"]["tunekit-purpose"] == "support-routing"
    assert model["labels"]["tunekit-data-fp"] == FP[:32]
    (create,) = fake.requests_to(r"/endpoints\?", method="POST")
    (deploy,) = fake.requests_to(r":deployModel\?")
    assert deploy[2]["trafficSplit"] == {"0": 100}
    assert deploy[2]["deployedModel"]["model"] == first["model"]
    resources = deploy[2]["deployedModel"]["dedicatedResources"]
    assert resources["machineSpec"]["machineType"] == "g2-standard-12"
    assert first["traffic_split"] == {first["deployed_model_id"]: 100}
    assert champion("support-routing").model == first["model"]

    # The second model is a new version of the same model, deployed on the champion's endpoint with 10%.
    second = deploy_open(tmp_path, "b", 10)
    upload = fake.requests_to(r"/models:upload\?", method="POST")[-1]
    assert upload[2]["parentModel"] == first["model"].split("@")[0]
    assert second["model"] == first["model"].split("@")[0] + "@2"
    assert second["endpoint"] == first["endpoint"]
    deploy = fake.requests_to(r":deployModel\?")[-1]
    assert deploy[2]["trafficSplit"] == {"0": 10, first["deployed_model_id"]: 90}
    assert second["traffic_split"] == {second["deployed_model_id"]: 10, first["deployed_model_id"]: 90}
    model_id = first["model"].rsplit("/", 1)[1].split("@")[0]
    assert merges(fake)[-2:] == [(f"{model_id}@1", ["-champion"]), (f"{model_id}@2", ["champion"])]
    found = champion("support-routing")
    assert (found.model, found.endpoint) == (second["model"], first["endpoint"])
    assert found.extra["labels"]["tunekit-previous"] == f"{model_id}_1"

    # A retry with the same state file uploads and deploys nothing more.
    before = (len(fake.requests_to(":upload")), len(fake.requests_to(":deployModel")))
    assert deploy_open(tmp_path, "b", 10)["model"] == second["model"]
    # With the state file lost, the upload is found again by its label and nothing is paid for twice.
    os.remove(tmp_path / "b" / "state.json")
    assert deploy_open(tmp_path, "b", 10)["model"] == second["model"]
    assert (len(fake.requests_to(":upload")), len(fake.requests_to(":deployModel"))) == before
    assert champion("support-routing").extra["labels"]["tunekit-previous"] == f"{model_id}_1"

    result = vertex.rollback_vertex("support-routing", project=PROJECT, location=LOCATION)
    assert (result["restored"], result["rolled_back"]) == (first["model"], second["model"])
    (patch,) = fake.requests_to(r"/endpoints/\d+\?", method="PATCH")
    assert patch[2]["trafficSplit"] == {first["deployed_model_id"]: 100}
    assert "trafficSplit" in patch[1]
    (undeploy,) = fake.requests_to(r":undeployModel\?")
    assert undeploy[2]["deployedModelId"] == second["deployed_model_id"]
    assert result["traffic_split"] == {first["deployed_model_id"]: 100}
    assert [d["id"] for d in fake.endpoints[first["endpoint"]]["deployedModels"]] == [first["deployed_model_id"]]
    assert champion("support-routing").model == first["model"]
    with pytest.raises(UserError, match="first champion"):
        vertex.rollback_vertex("support-routing", project=PROJECT, location=LOCATION)


def test_full_switch_undeploys_the_previous_and_rollback_redeploys_it(fake, tmp_path):
    first = deploy_open(
        tmp_path, "a", 100, serving_image="example.com/tgi:1", serving_args=["--model-id={model_uri}"]
    )
    upload = fake.requests_to(r"/models:upload\?")[0][2]["model"]["containerSpec"]
    assert upload["imageUri"] == "example.com/tgi:1" and upload["args"] == [
        "--model-id=gs://bucket/runs/a/tuned_model"
    ]
    second = deploy_open(tmp_path, "b", 100)
    (undeploy,) = fake.requests_to(r":undeployModel\?")
    assert undeploy[2] == {
        "deployedModelId": first["deployed_model_id"],
        "trafficSplit": {second["deployed_model_id"]: 100},
    }
    assert second["traffic_split"] == {second["deployed_model_id"]: 100}

    result = vertex.rollback_vertex("support-routing", project=PROJECT, location=LOCATION)
    redeploy = fake.requests_to(r":deployModel\?")[-1][2]
    assert redeploy["deployedModel"]["model"] == first["model"]
    endpoint = fake.endpoints[first["endpoint"]]
    (serving,) = endpoint["deployedModels"]
    assert serving["model"] == first["model"]
    assert endpoint["trafficSplit"] == {serving["id"]: 100} == result["traffic_split"]
    assert champion("support-routing").model == first["model"]


def test_vertex_errors(fake, tmp_path):
    with pytest.raises(UserError, match="no champion"):
        vertex.rollback_vertex("nothing-here", project=PROJECT, location=LOCATION)
    with pytest.raises(UserError, match="canary_traffic_percent"):
        deploy_open(tmp_path, "x", 0)
    with pytest.raises(UserError, match="Cloud Storage"):
        rollout.deploy_open_model(
            artifact_uri="/tmp/model",
            purpose="p",
            project=PROJECT,
            location=LOCATION,
            state_path=str(tmp_path / "s"),
        )


def test_tuned_embedding_model_gets_an_endpoint_and_the_champion_alias(fake, tmp_path):
    from tunekit.components.deployment.embedding import run_deploy_embedding

    def deploy(name):
        model = fake.add_model(f"tuned-{name}").split("@")[0]  # the template names the model without a version
        return model, run_deploy_embedding(
            backend="vertex",
            model_path=str(tmp_path / name),
            model_info={"tuned_model": model, "base_model": "text-embedding-005"},
            metrics={"tuned_ndcg@10": 0.8},
            gate_reason="better",
            purpose="kb-search",
            pipeline_job_name=f"run-{name}",
            local_registry_path="",
            deployment_path=str(tmp_path / name / "deployment.json"),
            project=PROJECT,
            location=LOCATION,
            data_fingerprint=FP,
        )

    first, record = deploy("a")
    found = find_champion("kb-search", backend="vertex", project=PROJECT, location=LOCATION)
    assert found.model == first + "@1" and found.endpoint == record["endpoint"]
    assert found.data_fingerprint == FP[:32] and found.metrics == {"tuned_ndcg@10": 0.8}
    assert found.base_model == "text-embedding-005"
    second, record = deploy("b")
    assert record["previous_champion"] == first + "@1"
    assert find_champion("kb-search", backend="vertex", project=PROJECT, location=LOCATION).model == second + "@1"
    result = vertex.rollback_vertex("kb-search", project=PROJECT, location=LOCATION)
    # Each tuned embedding model has its own endpoint: only the alias moves back.
    assert (result["restored"], result["endpoint"]) == (first + "@1", "")
    assert not fake.requests_to(":undeployModel")
    assert find_champion("kb-search", backend="vertex", project=PROJECT, location=LOCATION).model == first + "@1"


def test_promote_gives_the_canary_all_traffic_once(fake, tmp_path):
    first = deploy_open(tmp_path, "a", 100)
    second = deploy_open(tmp_path, "b", 10)
    merges_before = len(merges(fake))
    result = vertex.promote_vertex("support-routing", project=PROJECT, location=LOCATION)
    (patch,) = fake.requests_to(r"/endpoints/\d+\?", method="PATCH")
    assert "trafficSplit" in patch[1]
    assert patch[2]["trafficSplit"] == {second["deployed_model_id"]: 100}
    (undeploy,) = fake.requests_to(r":undeployModel\?")
    assert undeploy[2] == {
        "deployedModelId": first["deployed_model_id"],
        "trafficSplit": {second["deployed_model_id"]: 100},
    }
    assert result["changed"] and result["undeployed"] == first["deployed_model_id"]
    assert result["traffic_split"] == {second["deployed_model_id"]: 100}
    endpoint = fake.endpoints[first["endpoint"]]
    assert [d["id"] for d in endpoint["deployedModels"]] == [second["deployed_model_id"]]
    # The aliases already name the canary: promote leaves them alone.
    assert len(merges(fake)) == merges_before
    assert champion("support-routing").model == second["model"]

    # A second promote sends nothing.
    again = vertex.promote_vertex("support-routing", project=PROJECT, location=LOCATION)
    assert not again["changed"] and again["undeployed"] == ""
    assert len(fake.requests_to(r"/endpoints/\d+\?", method="PATCH")) == 1
    assert len(fake.requests_to(r":undeployModel\?")) == 1

    # Rollback after a promote deploys the previous champion again.
    vertex.rollback_vertex("support-routing", project=PROJECT, location=LOCATION)
    assert fake.requests_to(r":deployModel\?")[-1][2]["deployedModel"]["model"] == first["model"]
    assert champion("support-routing").model == first["model"]


def test_promote_cli(fake, tmp_path, capsys):
    from tunekit.pipelines.cli import main

    region = ["--project", PROJECT, "--region", LOCATION]
    assert main(["promote", "support-routing", *region]) == 2
    err = capsys.readouterr().err
    assert "has no champion" in err and "nothing to promote" in err and len(err.strip().splitlines()) == 1
    assert main(["promote", "support-routing", "--project", PROJECT]) == 2
    assert "both --project and --region" in capsys.readouterr().err
    assert main(["promote", "support-routing", "--registry", str(tmp_path / "r.json")]) == 0
    assert "local deployments take all traffic" in capsys.readouterr().out

    deploy_open(tmp_path, "a", 100)
    deploy_open(tmp_path, "b", 25)
    assert main(["promote", "support-routing", *region]) == 0
    out = capsys.readouterr().out
    assert "now takes all traffic" in out and "undeployed" in out
    assert main(["promote", "support-routing", *region]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(fake.requests_to(r":undeployModel\?")) == 1


@pytest.fixture
def numbered_fake(monkeypatch):
    """The fake answering as Vertex does: resource names carry the project number, not the ID (issue 14, C)."""
    from fake_vertex_pipelines import serve_fake_pipelines

    yield from serve_fake_pipelines(monkeypatch, project_number="123456789012")


def test_promote_undeploys_the_previous_champion_named_by_project_number(numbered_fake, tmp_path):
    first = deploy_open(tmp_path, "a", 100)
    second = deploy_open(tmp_path, "b", 10)
    # What Vertex returns: the number, although every request named the project by its ID.
    assert second["model"].startswith("projects/123456789012/")
    result = vertex.promote_vertex("support-routing", project=PROJECT, location=LOCATION)
    # The previous champion (named by its tunekit-previous label, rebuilt with the project ID) is found on the
    # endpoint by its model id and version, and its GPU is given back.
    assert result["undeployed"] == first["deployed_model_id"]
    endpoint = numbered_fake.endpoints[first["endpoint"]]
    assert [d["id"] for d in endpoint["deployedModels"]] == [second["deployed_model_id"]]

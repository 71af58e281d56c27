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
    "doctor": ["doctor", "supervised-tuning", *SUPERVISED, *VERTEX],
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
        timeout=600,  # a loaded CI machine; alone each takes seconds
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert "gcloud auth application-default login" in output


# --- doctor against the fake, check by check ------------------------------------------------------------------

PROJECT, REGION = "test-project", "us-central1"
READY_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/tunekit/components:test"
SERVICE_ACCOUNT = f"runner@{PROJECT}.iam.gserviceaccount.com"


CALLER = f"doctor@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def private_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def fake(monkeypatch, tmp_path, private_key):
    """The fake Vertex server as a ready project, with Application Default Credentials whose token it issues."""
    import json

    from fake_vertex_pipelines import serve_fake_pipelines

    for server in serve_fake_pipelines(monkeypatch):
        key_file = tmp_path / "key.json"
        # A service account key file (GOOGLE_APPLICATION_CREDENTIALS); its token_uri aims google-auth's token
        # request at the fake (google/oauth2/service_account.py from_service_account_info reads token_uri).
        key_file.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "1",
                    "private_key": private_key,
                    "client_email": CALLER,
                    "client_id": "1",
                    "token_uri": f"{server.url}/oauth2.googleapis.com/token",
                }
            )
        )
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
        monkeypatch.delenv("TUNEKIT_IMAGE", raising=False)
        server.service_accounts[SERVICE_ACCOUNT] = {"disabled": False}
        yield server


def supervised(**overrides):
    from pipeline_helpers import supervised_config

    return supervised_config(**{"base_model": "gemini-3.1-flash-lite", **overrides})


def embedding(**overrides):
    from tunekit.pipelines.config import load_config
    from tunekit.pipelines.registry import get_method

    _, cls = get_method("embedding-tuning").load()
    values = {
        "backend": "vertex",
        "base_model": "text-embedding-005",
        "corpus_uri": "gs://bucket/corpus.jsonl",
        "queries_uri": "gs://bucket/queries.jsonl",
        "train_labels_uri": "gs://bucket/train.tsv",
        "test_labels_uri": "gs://bucket/test.tsv",
        **overrides,
    }
    return load_config(cls, None, [f"{k}={v}" for k, v in values.items()])


def make_doctor(method="supervised-tuning", config=None, **options):
    from tunekit.pipelines.doctor import Doctor, DoctorOptions
    from tunekit.pipelines.registry import get_method

    values = dict(
        project=PROJECT,
        region=REGION,
        method=get_method(method),
        config=config if config is not None else supervised(),
        image=READY_IMAGE,
        pipeline_root="gs://bucket/root",
        service_account=SERVICE_ACCOUNT,
    )
    doctor = Doctor(DoctorOptions(**{**values, **options}))
    assert doctor.check_credentials().ok
    return doctor


def test_a_ready_project_passes_every_check_from_the_cli(fake, capsys):
    from tunekit.pipelines.cli import main

    code = main(
        [
            "doctor",
            "supervised-tuning",
            "--config",
            os.path.join(ROOT, "examples", "supervised_tuning_vertex.yaml"),
        ]
        + ["--project", PROJECT, "--region", REGION, "--image", READY_IMAGE, "--pipeline-root", "gs://bucket/r"]
        + ["--service-account", SERVICE_ACCOUNT]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    lines = out.splitlines()
    names = [line.split(":", 1)[0].split(None, 1)[1] for line in lines]
    assert names == [
        "credentials", "images", "apis", "pipeline root", "service account", "models", "open models",
        "embedding template", "rewards", "cost",
    ]  # fmt: skip
    assert all(line.startswith(("ok  ", "skip")) for line in lines), out
    assert CALLER in lines[0] and "served in us-central1: gemini-" in out
    # Each call went to the fake, named as the documented REST paths.
    paths = [r[1] for r in fake.requests]
    assert any(p.startswith("/serviceusage.googleapis.com/v1/projects/test-project/services/") for p in paths)
    assert any("/artifactregistry.googleapis.com/v1/" in p and "/tags/test" in p for p in paths)
    assert any(p.startswith("/storage/v1/b/bucket/iam/testPermissions") for p in paths)
    assert any(p.endswith(":countTokens") and "/publishers/google/models/gemini-" in p for p in paths)


def test_credentials_missing_or_revoked_is_one_line_with_the_login_command(fake, monkeypatch, tmp_path):
    from tunekit.components.common.errors import UserError
    from tunekit.pipelines.doctor import Doctor, DoctorOptions

    fake.revoked = True
    with pytest.raises(UserError, match="could not be refreshed.*gcloud auth application-default login"):
        Doctor(DoctorOptions(project=PROJECT, region=REGION)).run()
    with pytest.raises(UserError, match="not a Vertex AI region"):
        Doctor(DoctorOptions(project=PROJECT, region="us-centrall1")).run()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere.json"))
    check = Doctor(DoctorOptions(project=PROJECT, region=REGION)).check_credentials()
    assert not check.ok and "gcloud auth application-default login" in check.detail


def test_a_disabled_api_names_the_enable_command(fake):
    assert make_doctor().check_apis().ok
    fake.disabled_services = {"aiplatform.googleapis.com"}
    check = make_doctor().check_apis()
    assert not check.ok
    assert "gcloud services enable aiplatform.googleapis.com --project test-project" in check.detail


def test_images_missing_unpublished_or_unreadable(fake, tmp_path):
    from tunekit.pipelines.compile import compile_method
    from tunekit.pipelines.registry import get_method

    missing = make_doctor(image=f"{REGION}-docker.pkg.dev/{PROJECT}/tunekit/components:nope").check_images()
    assert not missing.ok and "does not exist" in missing.detail
    assert f"make publish-image PROJECT={PROJECT} REGION={REGION}" in missing.detail
    unpublished = make_doctor(image="").check_images()
    assert not unpublished.ok and "is not published" in unpublished.detail
    # Cloud Build is what builds the missing image: its API is checked too then.
    doctor = make_doctor(image="")
    doctor.check_images()
    fake.disabled_services = {"cloudbuild.googleapis.com"}
    assert "cloudbuild.googleapis.com" in doctor.check_apis().detail
    fake.forbidden_repositories = {f"{PROJECT}/tunekit"}
    forbidden = make_doctor().check_images()
    assert not forbidden.ok and "not readable" in forbidden.detail
    assert f"--member=serviceAccount:{SERVICE_ACCOUNT} --role=roles/artifactregistry.reader" in forbidden.detail
    # A compiled spec's own images are the ones checked.
    fake.forbidden_repositories = set()
    spec = compile_method(get_method("supervised-tuning"), str(tmp_path / "s.yaml"), image=READY_IMAGE)
    assert make_doctor(image="", template=spec).check_images().ok
    spec = compile_method(get_method("supervised-tuning"), str(tmp_path / "t.yaml"))
    assert "is not published" in make_doctor(image="", template=spec).check_images().detail
    # A published template is read from Artifact Registry, as Vertex reads it.
    url = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/tunekit-pipelines/supervised-tuning/v1"
    missing_template = make_doctor(image="", template=url).check_images()
    assert not missing_template.ok and "HTTP 404" in missing_template.detail
    with open(compile_method(get_method("supervised-tuning"), str(tmp_path / "u.yaml"), image=READY_IMAGE)) as f:
        fake.templates[url.removeprefix("https://")] = f.read()
    assert make_doctor(image="", template=url).check_images().ok


def test_pipeline_root_missing_bucket_or_permissions(fake):
    assert make_doctor().check_pipeline_root().ok
    missing = make_doctor(pipeline_root="gs://other/root").check_pipeline_root()
    assert not missing.ok
    assert (
        "gcloud storage buckets create gs://other --location us-central1 --project test-project" in missing.detail
    )
    fake.buckets["bucket"] = {"storage.objects.get"}
    denied = make_doctor().check_pipeline_root()
    assert not denied.ok and "storage.objects.create" in denied.detail
    assert "gcloud storage buckets add-iam-policy-binding gs://bucket" in denied.detail


def test_service_account_missing_or_disabled(fake):
    assert make_doctor().check_service_account().ok
    missing = make_doctor(service_account=f"ghost@{PROJECT}.iam.gserviceaccount.com").check_service_account()
    assert not missing.ok and "gcloud iam service-accounts create ghost --project test-project" in missing.detail
    fake.service_accounts[SERVICE_ACCOUNT]["caller_permissions"] = []
    no_act_as = make_doctor().check_service_account()
    assert not no_act_as.ok and "iam.serviceAccounts.actAs" in no_act_as.detail
    assert (
        f"gcloud iam service-accounts add-iam-policy-binding {SERVICE_ACCOUNT} --member=serviceAccount:{CALLER}"
        in (no_act_as.detail)
    )
    fake.service_accounts[SERVICE_ACCOUNT]["disabled"] = True
    disabled = make_doctor().check_service_account()
    assert not disabled.ok and f"gcloud iam service-accounts enable {SERVICE_ACCOUNT}" in disabled.detail


def test_a_model_not_served_in_the_region(fake):
    assert make_doctor().check_models().ok
    check = make_doctor(region="europe-west9").check_models()
    assert not check.ok and "gemini-3.1-flash-lite is not served in europe-west9" in check.detail


def test_embedding_template_parameters_are_checked_against_the_template_read(fake):
    from fake_vertex_pipelines import EMBEDDING_TEMPLATE, EMBEDDING_TEMPLATE_PARAMETERS, template_yaml

    doctor = make_doctor("embedding-tuning", embedding())
    check = doctor.check_embedding_template()
    assert check.ok, check.detail
    url = next(u for u in fake.templates if u.startswith(EMBEDDING_TEMPLATE.removeprefix("https://")))
    # A template that no longer declares train_steps: tunekit would send an undeclared parameter.
    for key in list(fake.templates):
        fake.templates[key] = template_yaml(EMBEDDING_TEMPLATE_PARAMETERS - {"train_steps"})
    check = make_doctor("embedding-tuning", embedding()).check_embedding_template()
    assert not check.ok and "does not declare train_steps" in check.detail
    fake.templates.clear()
    check = make_doctor("embedding-tuning", embedding()).check_embedding_template()
    assert not check.ok and "HTTP 404" in check.detail, (url, check.detail)
    skipped = make_doctor().check_embedding_template()
    assert skipped.skipped


def test_an_open_model_is_checked_as_offered_in_the_region(fake):
    open_model = supervised(
        base_model="meta/llama3_1@llama-3.1-8b", output_uri="gs://bucket/out", custom_base_model="gs://bucket/w"
    )
    check = make_doctor(config=open_model).check_open_models()
    assert check.ok and "offered in us-central1: meta/llama3_1@llama-3.1-8b" in check.detail, check.detail
    # Asked of Model Garden's publisher model GET on the region's endpoint (v1beta1).
    assert any(
        p == "/us-central1-aiplatform.googleapis.com/v1beta1/publishers/meta/models/llama3_1@llama-3.1-8b"
        for _, p, _ in fake.requests
    )
    # Model Garden does not offer it there.
    fake.publisher_models["us-central1"].discard("meta/llama3_1@llama-3.1-8b")
    check = make_doctor(config=open_model).check_open_models()
    assert not check.ok and "is not offered by Model Garden in us-central1" in check.detail
    # A region the tuning page does not list: named, with the region to pass, before any call.
    asked = len(fake.requests)
    check = make_doctor(config=open_model, region="asia-northeast1").check_open_models()
    assert not check.ok and "us-central1 and europe-west4 only, not asia-northeast1" in check.detail
    assert "--region us-central1" in check.detail
    assert not any("publishers/meta" in p for _, p, _ in fake.requests[asked:])
    # An id without its @version (a config the loader did not check) is refused with the family's documented ids.
    from types import SimpleNamespace

    check = make_doctor(config=SimpleNamespace(backend="vertex", base_model="meta/llama3_1")).check_open_models()
    assert not check.ok and "meta/llama3_1@llama-3.1-8b" in check.detail and "base_model" in check.detail
    assert make_doctor().check_open_models().skipped  # Gemini


def reinforcement(tmp_path, rewards: str, rows=None, **overrides):
    import json

    from tunekit.pipelines.config import load_config
    from tunekit.pipelines.registry import get_method

    reward_file = tmp_path / "rewards.yaml"
    reward_file.write_text(rewards)
    data = tmp_path / "prompts.jsonl"
    rows = (
        rows
        if rows is not None
        else [{"prompt": "What is 2 + 2? Reply as Answer: N", "references": {"answer": "4"}}]
    )
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, cls = get_method("reinforcement-tuning").load()
    values = {
        "backend": "vertex",
        "base_model": "gemini-3.1-flash-lite",
        "train_dataset_uri": str(data),
        "reward_config_uri": str(reward_file),
        **overrides,
    }
    return load_config(cls, None, [f"{k}={v}" for k, v in values.items()])


EXACT = "rewards:\n  - name: exact_answer\n    exact_match: {reference: answer}\n"


def test_reward_file_is_validated_by_vertex_on_a_row_of_the_prompts(fake, tmp_path):
    config = reinforcement(tmp_path, EXACT)
    check = make_doctor("reinforcement-tuning", config).check_rewards()
    assert check.ok, check.detail
    assert "validate_reward on the first row of" in check.detail and "overall 0, 1" in check.detail
    # The row sent is the dataset's, in Vertex's layout, with an empty answer and its reference as the answer.
    sent = fake.reward_service.validated
    assert [b["sampleResponse"]["parts"][0]["text"] for b in sent] == ["", "4"]
    assert sent[1]["example"]["references"] == {"answer": "4"}
    assert sent[1]["example"]["contents"][0]["parts"][0]["text"].startswith("What is 2 + 2?")
    assert sent[1]["singleRewardConfig"]["rewardName"] == "exact_answer"
    assert any(p.endswith("/tuningJobs:validateReinforcementTuningReward") for _, p, _ in fake.requests)
    # Data that cannot be read: a sample row with the references blank still checks the rewards.
    import dataclasses

    unreadable = dataclasses.replace(config, train_dataset_uri=str(tmp_path / "gone.jsonl"))
    check = make_doctor("reinforcement-tuning", unreadable).check_rewards()
    assert check.ok and "a sample row (" in check.detail and "could not be read" in check.detail, check.detail
    assert make_doctor().check_rewards().skipped


def test_a_reward_vertex_refuses_fails_the_check_naming_the_reward(fake, tmp_path):
    (tmp_path / "doctor_reward.py").write_text("def evaluate(example, response):\n    return example['x']\n")
    rewards = (
        EXACT + "  - name: custom\n    python: {function: 'doctor_reward:evaluate', file: doctor_reward.py}\n"
    )
    check = make_doctor("reinforcement-tuning", reinforcement(tmp_path, rewards)).check_rewards()
    assert not check.ok and "reward 'custom' failed on sample 1" in check.detail, check.detail
    assert "rewards.yaml:4" in check.detail and "fix the reward file" in check.detail
    # A pattern Vertex's RE2 cannot run fails before any call, naming the file and line.
    asked = len(fake.reward_service.validated)
    # (the config loader checks a local reward file already; a gs:// one is first read here)
    import dataclasses

    bad = tmp_path / "re2.yaml"
    bad.write_text("rewards:\n  - name: r\n    regex: {pattern: 'Answer: (?=[0-9])'}\n")
    config = dataclasses.replace(reinforcement(tmp_path, EXACT), reward_config_uri=str(bad))
    check = make_doctor("reinforcement-tuning", config).check_rewards()
    assert not check.ok and "RE2" in check.detail and "re2.yaml:2" in check.detail, check.detail
    assert len(fake.reward_service.validated) == asked
    # A row missing a reference a reward reads: the data's file and line.
    bad_rows = [{"prompt": "What is 2 + 2?", "references": {"answr": "4"}}]
    check = make_doctor("reinforcement-tuning", reinforcement(tmp_path, EXACT, rows=bad_rows)).check_rewards()
    assert not check.ok and "prompts.jsonl:1" in check.detail, check.detail


def test_cost_uses_the_project_price_table(fake):
    from types import SimpleNamespace

    from tunekit.components.model_clients.pricing import DEFAULT_PRICES

    model, price = next(iter(DEFAULT_PRICES.items()))
    check = make_doctor(config=SimpleNamespace(judge_model=model, base_model="gemini-unpriced")).check_cost()
    expected = (
        f"{model} ${price.input_per_million:g}/${price.output_per_million:g} per million input/output tokens"
    )
    assert check.ok and expected in check.detail and "gemini-unpriced has no list price" in check.detail
    assert "tuning is billed per training token" in check.detail

    bad = SimpleNamespace(teacher_model="gemini-2.5-pro", price_table={"gemini-2.5-pro": "cheap"})
    check = make_doctor(config=bad).check_cost()
    assert not check.ok and "price_table" in check.detail


def test_submit_runs_doctor_first_and_a_failed_check_stops_it(fake, capsys, monkeypatch):
    from tunekit.pipelines import compile as compile_module
    from tunekit.pipelines import submit as submit_module
    from tunekit.pipelines.cli import main

    compiled = []

    def counted(*args, **kwargs):
        compiled.append(args[0].name)
        return original(*args, **kwargs)

    original = compile_module.compile_method
    monkeypatch.setattr(compile_module, "compile_method", counted)
    monkeypatch.setattr(submit_module, "compile_method", counted)

    fake.disabled_services = {"aiplatform.googleapis.com"}
    base = [
        "submit",
        "supervised-tuning",
        "--config",
        os.path.join(ROOT, "examples", "supervised_tuning_vertex.yaml"),
    ]
    base += ["--project", PROJECT, "--region", REGION, "--image", READY_IMAGE, "--pipeline-root", "gs://bucket/r"]
    base += ["--api-endpoint", fake.url]
    assert main(base) == 2
    captured = capsys.readouterr()
    assert "FAIL  apis: not enabled: aiplatform.googleapis.com" in captured.out
    assert "doctor: apis failed" in captured.err and "--skip-doctor" in captured.err, captured.out
    assert fake.creates() == []
    # The doctor checked the images of the spec the submission built: the pipeline was compiled once.
    assert compiled == ["supervised-tuning"]
    assert main([*base, "--skip-doctor"]) == 0
    assert len(fake.creates()) == 1

"""The Cloud Build configs: they parse, every command they run exists here, substitutions are declared and
documented, the step graph is sound, and the scripts do what the configs rely on (run here with fake tools)."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from pipeline_helpers import ROOT, load_script

from tunekit.pipelines.cli import build_parser
from tunekit.pipelines.registry import METHODS

CONFIGS = [
    "cloudbuild.yaml",
    "cloudbuild/pr-checks.yaml",
    "cloudbuild/retrain-on-new-data.yaml",
    "cloudbuild/images.yaml",
]
BUILT_IN = {"PROJECT_ID", "PROJECT_NUMBER", "LOCATION", "BUILD_ID", "COMMIT_SHA", "SHORT_SHA", "REVISION_ID"}
BUILT_IN |= {"REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME", "TRIGGER_NAME"}
SUBSTITUTION = re.compile(r"(?<!\$)\$(?:\{([A-Z_][A-Z0-9_]*)\}|([A-Z_][A-Z0-9_]*))")


ci_local = load_script("cloudbuild/ci_local.py")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def make_targets():
    return set(re.findall(r"^([a-zA-Z][\w-]*):", read("Makefile"), flags=re.M))


def used_substitutions(text):
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return {a or b for a, b in SUBSTITUTION.findall(code)}


def step_commands(step):
    """The shell commands a step runs: its bash -c script split on && / ; / if-branches, or its argv."""
    args = [str(a) for a in step.get("args") or []]
    if step.get("entrypoint") == "bash" and args[:1] == ["-c"]:
        return [c.strip() for c in re.split(r"&&|;|\bthen\b|\belse\b|\bfi\b|\bif\b", args[1]) if c.strip()]
    return [shlex.join(([step["entrypoint"]] if step.get("entrypoint") else []) + args)]


@pytest.mark.parametrize("path", CONFIGS)
def test_config_parses_and_its_steps_are_sound(path):
    config = yaml.safe_load(read(path))
    steps = config["steps"]
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids)), "step ids must be unique"
    order = [s["id"] for s in ci_local.ordered_steps(config)]  # raises on unknown waitFor targets and cycles
    assert sorted(order) == sorted(ids)
    assert set(config) <= {
        "steps",
        "substitutions",
        "options",
        "timeout",
        "images",
        "artifacts",
        "availableSecrets",
    }


@pytest.mark.parametrize("path", CONFIGS)
def test_every_command_exists_in_the_repository(path):
    targets = make_targets()
    parser = build_parser()
    for step in yaml.safe_load(read(path))["steps"]:
        for command in step_commands(step):
            words = shlex.split(command)
            if words[0] == "echo" or words[0].startswith("["):
                continue
            if words[0] == "make":
                assert set(words[1:]) <= targets, f"{step['id']}: unknown make target in {command!r}"
            elif words[0] == ".venv/bin/tunekit":
                # Substitutions stand in for values: the argument parser must accept the command as written.
                parser.parse_args(words[1:])
            elif words[0] in ("bash", ".venv/bin/python", "python"):
                if words[1] == "-m":
                    assert importlib.util.find_spec(words[2]) is not None, f"{step['id']}: no module {words[2]}"
                else:
                    assert os.path.isfile(os.path.join(ROOT, words[1])), f"{step['id']}: no script {words[1]}"
            else:
                pytest.fail(f"{step['id']}: a command this test does not know how to check: {command!r}")


@pytest.mark.parametrize("path", CONFIGS)
def test_substitutions_are_declared_documented_and_used(path):
    text = read(path)
    config = yaml.safe_load(text)
    declared = set(config.get("substitutions") or {})
    used = used_substitutions(text)
    user = {name for name in used if name.startswith("_")}
    assert user <= declared, f"used but not declared: {sorted(user - declared)}"
    assert used - user <= BUILT_IN, f"unknown built-ins: {sorted(used - user - BUILT_IN)}"
    assert all(name.startswith("_") for name in declared), "user substitutions start with _"
    header = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
    for name in declared:
        assert name in header, f"{name} is not documented in {path}'s header"
        assert (
            name in used or name in {"_BUCKET", "_OBJECT", "_GENERATION", "_EVENT"} or name in str(config["steps"])
        ), f"{name} is declared but never used"
    # Every default resolves: nested defaults name only declared or built-in substitutions.
    values = ci_local.substitutions(config)
    assert not any("$" in values[name] for name in declared)


def test_full_tier_shape():
    config = yaml.safe_load(read("cloudbuild.yaml"))
    steps = {s["id"]: s for s in config["steps"]}
    dockerfile = read("components/Dockerfile")
    for image_step, target in (("image-cpu", "cpu"), ("image-gpu", "gpu")):
        step = steps[image_step]
        assert step["waitFor"] == ["-"], "images build in parallel with the checks"
        assert step["args"][1] == target and re.search(rf"^FROM .* AS {target}$", dockerfile, flags=re.M)
        assert "SHORT_SHA=${SHORT_SHA}" in step["env"] and "TAG_NAME=${TAG_NAME}" in step["env"]
        assert "BUILD_ID=${BUILD_ID}" in step["env"], "a manual build tags with BUILD_ID (no SHORT_SHA)"
    for check in ("lint", "test", "check-compiled"):
        assert steps[check]["waitFor"] == ["install"], "checks run in parallel after one install"
    assert set(steps["publish"]["waitFor"]) == {
        "lint",
        "test",
        "check-compiled",
        "compile",
        "image-cpu",
        "image-gpu",
    }
    assert steps["compile"]["args"] == ["cloudbuild/compile_specs.sh"]
    assert {"IMAGE_REPO=${_IMAGE_REPO}", "SHORT_SHA=${SHORT_SHA}", "BUILD_ID=${BUILD_ID}"} <= set(
        steps["compile"]["env"]
    )
    assert "latest" not in read("cloudbuild/compile_specs.sh").split("set -euo pipefail")[1]
    assert steps["refresh-schedules"]["waitFor"] == ["publish"]
    pr = yaml.safe_load(read("cloudbuild/pr-checks.yaml"))
    assert [s["id"] for s in pr["steps"]] == ["install-torch", "install", "lint", "test", "check-compiled"]


@pytest.mark.parametrize("path", ["cloudbuild.yaml", "cloudbuild/pr-checks.yaml"])
def test_torch_comes_from_the_cpu_index_in_a_step_of_its_own_before_the_install(path):
    steps = {s["id"]: s for s in yaml.safe_load(read(path))["steps"]}
    assert steps["install-torch"]["args"] == ["cloudbuild/install_torch_cpu.sh"]
    assert steps["install-torch"]["waitFor"] == ["-"] and steps["install"]["waitFor"] == ["install-torch"]
    script = read("cloudbuild/install_torch_cpu.sh")
    assert '--index-url "${index}"' in script and 'index="https://download.pytorch.org/whl/cpu"' in script
    # The same pin as the Dockerfile's CPU image.
    dockerfile = read("components/Dockerfile")
    pin = re.search(r"pip install torch==([\w.]+)", dockerfile)
    assert "https://download.pytorch.org/whl/cpu" in dockerfile
    assert f'version="${{TORCH_VERSION:-{pin.group(1)}}}"' in script


def fake_venv(tmp_path, *, has_torch):
    """A venv whose python logs its arguments and says whether torch 2.13.0 is installed."""
    log = tmp_path / "python.log"
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        f'#!/bin/sh\necho "python $*" >> {log}\nif [ "$1" = "-c" ]; then exit {0 if has_torch else 1}; fi\n'
    )
    python.chmod(0o755)
    return str(tmp_path / "venv"), log


@pytest.mark.parametrize("has_torch", [False, True])
def test_install_torch_script_uses_the_cpu_index_unless_torch_is_there(tmp_path, has_torch):
    venv, log = fake_venv(tmp_path, has_torch=has_torch)
    result = run_script(["cloudbuild/install_torch_cpu.sh"], {"VENV": venv}, tmp_path)
    assert result.returncode == 0, result.stderr
    installs = [line for line in log.read_text().splitlines() if " install " in line and "torch" in line]
    if has_torch:
        assert not installs and "already installed" in result.stdout
    else:
        assert installs == [
            "python -m pip install --quiet torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
        ]


def test_a_manual_build_without_short_sha_tags_images_and_specs_alike(tmp_path):
    log = tmp_path / "docker.log"
    bin_dir = fake_tool(tmp_path, "docker", log)
    fake_tool(tmp_path, "tunekit", tmp_path / "tunekit.log")
    manual = {"IMAGE_REPO": "r.example/p/tunekit", "SHORT_SHA": "", "BUILD_ID": "b-123", "TAG_NAME": ""}
    env = {"PATH": bin_dir + os.pathsep + os.environ["PATH"], **manual}
    built = run_script(["cloudbuild/build_image.sh", "cpu", "components"], env, tmp_path)
    assert built.returncode == 0, built.stderr
    build = next(line for line in log.read_text().splitlines() if line.startswith("docker build"))
    assert re.findall(r"-t r\.example/p/tunekit/components:(\S+)", build) == ["manual-b-123", "buildcache"]
    assert "--label org.opencontainers.image.revision=manual-b-123" in build
    compiled = run_script(["cloudbuild/compile_specs.sh"], {**env, "TUNEKIT": str(tmp_path / "tunekit")}, tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    assert (tmp_path / "tunekit.log").read_text().split() == [
        "tunekit", "compile", "--output-dir", "build/compiled",
        "--image", "r.example/p/tunekit/components:manual-b-123",
        "--gpu-image", "r.example/p/tunekit/components-gpu:manual-b-123",
    ]  # fmt: skip
    # Before: build_image.sh and publish.sh stopped at "SHORT_SHA: set SHORT_SHA".
    python_log = tmp_path / "python.log"
    fake_tool(tmp_path, "python", python_log)
    published = run_script(
        ["cloudbuild/publish.sh"],
        {**manual, "KFP_REPO": "https://h", "PUBLISH": "true", "PYTHON": str(tmp_path / "python")},
        tmp_path,
    )
    assert published.returncode == 0, published.stderr
    assert "--tag manual-b-123 --tag latest" in python_log.read_text()
    skipped_gpu = run_script(
        ["cloudbuild/build_image.sh", "gpu", "components-gpu"], {**env, "BUILD": "false"}, tmp_path
    )
    assert skipped_gpu.returncode == 0 and "not built" in skipped_gpu.stdout


def test_publish_image_builds_into_the_users_registry(tmp_path):
    log = tmp_path / "gcloud.log"
    gcloud = tmp_path / "gcloud"
    # `artifacts repositories describe` fails: the repository does not exist yet, so it is created.
    gcloud.write_text(f'#!/bin/sh\necho "gcloud $*" >> {log}\n[ "$2 $3" != "repositories describe" ]\n')
    gcloud.chmod(0o755)
    out = subprocess.run(
        ["make", "-s", "publish-image", "PROJECT=my-project", "REGION=europe-west4"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "GCLOUD": str(gcloud)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert (
        calls[0]
        == "gcloud services enable artifactregistry.googleapis.com cloudbuild.googleapis.com --project my-project"
    )
    assert (
        "gcloud artifacts repositories create tunekit --repository-format=docker --location europe-west4"
        in calls[2]
    )
    submit = calls[3].split()
    assert submit[:3] == ["gcloud", "builds", "submit"] and "cloudbuild/images.yaml" in calls[3]
    substitutions = dict(item.split("=", 1) for item in submit[submit.index("--substitutions") + 1].split(","))
    from tunekit.components.common.image import VERSION

    assert substitutions == {
        "_REGION": "europe-west4",
        "_IMAGE_REPO": "europe-west4-docker.pkg.dev/my-project/tunekit",
        "_VERSION": VERSION,
        "_GPU": "true",
    }
    assert (
        f"export TUNEKIT_IMAGE=europe-west4-docker.pkg.dev/my-project/tunekit/components:{VERSION}" in out.stdout
    )


def test_ci_local_plan_runs_the_non_container_steps_in_order():
    steps = ci_local.plan(yaml.safe_load(read("cloudbuild.yaml")))
    local = [s["id"] for s in steps if s["local"]]
    assert local == [
        "install-torch",
        "install",
        "lint",
        "test",
        "check-compiled",
        "compile",
        "publish",
        "refresh-schedules",
    ]
    assert [s["id"] for s in steps if not s["local"]] == ["image-cpu", "image-gpu"]
    by_id = {s["id"]: s for s in steps}
    assert by_id["test"]["argv"] == ["bash", "-c", "make test"]
    sha = ci_local.short_sha()
    assert by_id["compile"]["env"]["IMAGE_REPO"] == "us-central1-docker.pkg.dev/local-project/tunekit"
    assert by_id["compile"]["env"]["SHORT_SHA"] == sha
    # Nothing leaves the machine: publish and schedule refresh take their skip branches with the defaults.
    assert by_id["publish"]["env"]["PUBLISH"] == "auto" and by_id["publish"]["env"]["TAG_NAME"] == ""
    assert by_id["refresh-schedules"]["env"]["REFRESH_SCHEDULES"] == "false"
    for step in steps:
        assert "${" not in ci_local.render(step), step["id"]
    overridden = {
        s["id"]: s for s in ci_local.plan(yaml.safe_load(read("cloudbuild.yaml")), {"_REGION": "europe-west4"})
    }
    assert overridden["compile"]["env"]["IMAGE_REPO"] == "europe-west4-docker.pkg.dev/local-project/tunekit"


def test_make_ci_local_calls_the_runner():
    out = subprocess.run(["make", "-n", "ci-local"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "cloudbuild/ci_local.py --config cloudbuild.yaml" in out
    assert {"ci-local", "check-compiled", "lint", "test", "install"} <= make_targets()


def test_ci_local_print_runs_nothing():
    out = subprocess.run(
        [sys.executable, "cloudbuild/ci_local.py", "--print"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "== test: bash -c 'make test'" in out
    assert "== image-gpu: skipped here" in out and "(printed only)" in out


def fake_tool(tmp_path, name, log):
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
    path.chmod(0o755)
    return str(tmp_path)


def run_script(args, env, tmp_path):
    return subprocess.run(
        ["bash", *args], cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env}
    )


@pytest.mark.parametrize(
    ("tag", "expected"), [("", ["abc1234", "buildcache"]), ("v1.2.0", ["abc1234", "buildcache", "v1.2.0"])]
)
def test_build_image_tags_commit_and_release(tmp_path, tag, expected):
    log = tmp_path / "docker.log"
    bin_dir = fake_tool(tmp_path, "docker", log)
    env = {
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "IMAGE_REPO": "r.example/p/tunekit",
        "SHORT_SHA": "abc1234",
    }
    env["TAG_NAME"] = tag
    result = subprocess.run(
        ["bash", "cloudbuild/build_image.sh", "gpu", "components-gpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    build = next(line for line in log.read_text().splitlines() if line.startswith("docker build"))
    assert "--target gpu" in build and "-f components/Dockerfile" in build
    assert re.findall(r"-t r\.example/p/tunekit/components-gpu:(\S+)", build) == expected
    assert "docker push --all-tags r.example/p/tunekit/components-gpu" in log.read_text()


def test_publish_script_uploads_only_when_asked(tmp_path):
    log = tmp_path / "python.log"
    fake_tool(tmp_path, "python", log)
    base = {
        "KFP_REPO": "https://us-central1-kfp.pkg.dev/p/r",
        "SHORT_SHA": "abc1234",
        "PYTHON": str(tmp_path / "python"),
    }
    skipped = run_script(["cloudbuild/publish.sh"], {**base, "PUBLISH": "auto", "TAG_NAME": ""}, tmp_path)
    assert skipped.returncode == 0 and "publishing skipped" in skipped.stdout and not log.exists()
    release = run_script(["cloudbuild/publish.sh"], {**base, "PUBLISH": "auto", "TAG_NAME": "v1.2.0"}, tmp_path)
    assert release.returncode == 0, release.stderr
    assert log.read_text().split() == [
        "python", "-m", "tunekit.pipelines.publish", "--host", "https://us-central1-kfp.pkg.dev/p/r",
        "--dir", "build/compiled", "--tag", "v1.2.0", "--tag", "latest",
    ]  # fmt: skip


def test_publish_uploads_every_spec_with_its_tags(tmp_path):
    from tunekit.pipelines.publish import publish

    for name in ("a.yaml", "b.yaml", "notes.txt"):
        (tmp_path / name).write_text("x")

    class Client:
        calls = []

        def upload_pipeline(self, file_name, tags):
            self.calls.append((os.path.basename(file_name), tags))
            return os.path.basename(file_name)[0], "sha256:0"

    uploaded = publish("https://h", str(tmp_path), ["v1", "latest"], client=Client())
    assert uploaded == [("a", "sha256:0"), ("b", "sha256:0")]
    assert Client.calls == [("a.yaml", ["v1", "latest"]), ("b.yaml", ["v1", "latest"])]
    from tunekit.pipelines.publish import main

    assert main(["--host", "https://h", "--dir", str(tmp_path / "empty"), "--tag", "v1"]) == 2


def test_schedule_refresh_commands_are_valid_cli_calls():
    refresh = load_script("cloudbuild/refresh_schedules.py")
    entries = refresh.load(os.path.join(ROOT, "cloudbuild", "schedules.yaml"))
    assert entries
    args = refresh.argparse.Namespace(
        project="p", region="us-central1", kfp_repo="https://us-central1-kfp.pkg.dev/p/r", version="v1.2.0",
        pipeline_root="gs://b/root", service_account="sa@p.iam.gserviceaccount.com",
    )  # fmt: skip
    parser = build_parser()
    for entry, argv in zip(entries, refresh.commands(entries, args), strict=True):
        assert entry["method"] in METHODS
        assert os.path.isfile(os.path.join(ROOT, entry["config"]))
        parsed = parser.parse_args(argv)
        assert parsed.action == "create" and parsed.replace and parsed.skip_doctor
        assert parsed.template == f"https://us-central1-kfp.pkg.dev/p/r/{entry['method']}/v1.2.0"
        assert parsed.service_account == "sa@p.iam.gserviceaccount.com" and parsed.cron == entry["cron"]


def test_new_data_submission(tmp_path):
    env = {
        "DRY_RUN": "true", "METHOD": "supervised-tuning", "CONFIG": "examples/supervised_tuning_vertex.yaml",
        "PROJECT_ID": "p", "REGION": "us-central1", "TEMPLATE": "https://us-central1-kfp.pkg.dev/p/r/supervised-tuning/latest",
        "PIPELINE_ROOT": "gs://b/root", "BUCKET": "data", "OBJECT": "data/train.jsonl", "GENERATION": "1712",
        "EVENT": "OBJECT_FINALIZE", "DATA_FIELD": "train_dataset_uri",
    }  # fmt: skip
    result = run_script(["cloudbuild/submit_on_new_data.sh"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout)
    assert words[0] == "tunekit"
    parsed = build_parser().parse_args(words[1:])
    assert parsed.command == "submit" and parsed.method == "supervised-tuning" and parsed.skip_doctor
    assert parsed.overrides == ["train_dataset_uri=gs://data/data/train.jsonl"]
    assert parsed.job_id == "tunekit-supervised-tuning-1712"  # a redelivered message re-attaches
    assert os.path.isfile(os.path.join(ROOT, parsed.config))
    ignored = run_script(["cloudbuild/submit_on_new_data.sh"], {**env, "EVENT": "OBJECT_DELETE"}, tmp_path)
    assert ignored.returncode == 0 and "ignored" in ignored.stdout


def test_triggers_render_and_point_at_existing_configs(tmp_path):
    env = {
        "PROJECT_ID": "p",
        "GITHUB_OWNER": "o",
        "GITHUB_REPO": "r",
        "BUILD_SERVICE_ACCOUNT": "b@p.iam.gserviceaccount.com",
    }
    result = run_script(["cloudbuild/setup_triggers.sh", "--dry-run"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    documents = re.split(r"^--- (cloudbuild/triggers/\S+)$", result.stdout, flags=re.M)
    rendered = {}
    for name, body in zip(documents[1::2], documents[2::2], strict=True):
        rendered[name] = yaml.safe_load(body.split("\n+ gcloud builds triggers import")[0])
    assert set(rendered) == {
        f"cloudbuild/triggers/{f}" for f in os.listdir(os.path.join(ROOT, "cloudbuild", "triggers"))
    }
    for name, trigger in rendered.items():
        assert "@" not in str({k: v for k, v in trigger.items() if k != "serviceAccount"}), name
        build_file = trigger.get("filename") or trigger["gitFileSource"]["path"]
        build = yaml.safe_load(read(build_file))
        assert set(trigger.get("substitutions") or {}) <= set(build.get("substitutions") or {}), name
    new_data = rendered["cloudbuild/triggers/retrain-on-new-data.yaml"]
    assert new_data["pubsubConfig"]["topic"] == "projects/p/topics/tunekit-new-data"
    assert new_data["substitutions"]["_OBJECT"] == "$(body.message.attributes.objectId)"
    assert (
        "gcloud storage buckets notifications create gs://p-tunekit-data --topic=tunekit-new-data" in result.stdout
    )
    assert "--event-types=OBJECT_FINALIZE" in result.stdout


def test_ci_local_runs_steps_in_order_and_stops_at_a_failure(tmp_path, capsys):
    log = tmp_path / "log"
    config = {
        "substitutions": {"_WHERE": "${PROJECT_ID}-x"},
        "steps": [
            {"id": "second", "name": "python:3.11", "entrypoint": "bash", "args": ["-c", f"echo second $$WHERE >> {log}"],
             "env": ["WHERE=${_WHERE}"], "waitFor": ["first"]},
            {"id": "first", "name": "python:3.11", "entrypoint": "bash", "args": ["-c", f"echo first >> {log}"],
             "waitFor": ["-"]},
            {"id": "image", "name": "gcr.io/cloud-builders/docker", "args": ["build", "."], "waitFor": ["-"]},
            {"id": "broken", "name": "python:3.11", "entrypoint": "bash", "args": ["-c", "exit 3"], "waitFor": ["second"]},
            {"id": "never", "name": "python:3.11", "entrypoint": "bash", "args": ["-c", f"echo never >> {log}"]},
        ],
    }  # fmt: skip
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    assert ci_local.main(["--config", str(path)]) == 3
    assert log.read_text().splitlines() == ["first", "second local-project-x"]
    out = capsys.readouterr().out
    assert "== image: skipped here" in out and "== broken failed with exit code 3" in out
    # A step without waitFor waits for every step above it, as on Cloud Build: here that is a cycle.
    del config["steps"][1]["waitFor"]
    with pytest.raises(ValueError, match="waitFor cycle"):
        ci_local.ordered_steps(config)

"""``make image-check``: build ``components/Dockerfile``'s ``cpu`` image and run every compiled pipeline inside it.

No Docker engine runs on the development and CI machines, so the image is built with podman (vfs storage, chroot
isolation) and its steps are run in a ``chroot`` of the built image's root (``podman run`` cannot start containers
in this sandbox). The stages:

1. A stand-in for ``python:3.11-slim`` (no container registry is reachable): Debian 12 (Python 3.11) from
   ``debootstrap --variant=minbase``, with this machine's CA bundle named by ``PIP_CERT`` so that pip reaches the
   package index from inside the build.
2. The real Dockerfile's ``cpu`` target, with only the build arguments it declares for this (``BASE_IMAGE``,
   ``TORCH_INDEX_URL``, ``TORCH_FIND_LINKS``): torch's CPU wheel comes from the local wheel folder that pip's
   ``find-links`` setting names (mounted for the build only), everything else from the package index.
3. Each ``compiled/*.yaml`` is loaded as it is (``kfp.components.load_component_from_file``) and run by kfp's own
   local orchestrator, which builds every step's executor input and resolves its placeholders
   (``kfp/local/task_dispatcher.py``); only the step itself is handed to :class:`ImageTaskHandler`, which runs the
   executor's container command and arguments unchanged (no ``python3`` substitution, unlike the
   ``SubprocessRunner``) inside the image's root, as the image's non-root user, from its ``WORKDIR``, with its
   ``ENV`` and without network. Outputs of one step feed the next exactly as in a local run.

Prints the image size and a table (step, seconds, result); exits 0 when every step succeeded and wrote its outputs,
1 when one did not, 2 when the check cannot start (``--skip-unavailable``: prints why and exits 0 instead).

Usage: ``python cloudbuild/image_check.py [--methods supervised-tuning,...] [--work-dir DIR] [--skip-unavailable]``.
Needs root (debootstrap, chroot, mounts), podman and debootstrap.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "components", "Dockerfile")
BASE_TAG = "localhost/tunekit-standin-python:3.11"
IMAGE_TAG = "localhost/tunekit-components:image-check"
#: The non-root account the Dockerfile creates; every step runs as it.
RUN_USER = "tunekit"
#: Where the build sees the local wheel folder (a podman build volume: it is not copied into the image).
WHEELS_IN_BUILD = "/tunekit-build-wheels"
#: The host's CA bundle, inside the stand-in base (``PIP_CERT`` names it).
CA_IN_BASE = "/etc/ssl/certs/build-host-ca-bundle.crt"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
DEFAULT_INDEX = "https://pypi.org/simple"
TORCH_WHEEL = re.compile(r"^torch-2\.13\.0\+cpu-cp311-cp311-.*\.whl$")
#: Outputs a step may leave unwritten, and why (shown in the table instead of failing the step).
OPTIONAL_OUTPUTS = {
    # A cache of paid model answers, kept only when a Vertex model answers (evaluation/*/component.py cache_dir).
    "response_cache": "empty cache (no paid calls)",
}
#: Development-only distributions (pyproject's ``dev`` extra) that must not be in the image.
DEV_DISTRIBUTIONS = ("pytest", "ruff", "hypothesis", "selenium")


class Unavailable(Exception):
    """Something this machine lacks for the check (root, podman, a reachable mirror or index)."""


# --- the runs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRun:
    """One pipeline run: the compiled spec, the example config and the overrides that keep it small."""

    method: str
    config: str
    overrides: tuple[str, ...] = ()


#: Small settings (seconds of CPU per step) on the examples' data; every step of every pipeline runs.
#: The tiny models are smaller than the demo's (tests/pipelines/test_champion_challenger_pipeline.py's size).
TINY_SIZES = {
    "seq2seq": {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1},
    "causal": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
}
RUNS = (
    MethodRun(
        "supervised-tuning",
        "supervised_tuning.yaml",
        # A high learning rate with a trainable head: in 60 steps the tiny model learns to answer a label (0.25 of
        # the balanced validation rows), so it beats its base (0) and the gate lets the deploy step run.
        (
            "train_steps=60",
            "min_improvement=0.0",
            "learning_rate=0.03",
            "batch_size=8",
            "lora_rank=4",
            "local_options={modules_to_save: [lm_head], max_input_length: 64, max_target_length: 16}",
            "max_eval_examples=16",
            "max_output_tokens=16",
        ),
    ),
    MethodRun(
        "preference-tuning",
        "preference_tuning.yaml",
        (
            "sft_steps=4",
            "reward_steps=4",
            "rl_steps=1",
            "batch_size=4",
            "max_eval_examples=4",
            "max_output_tokens=8",
            "local_options={sft_learning_rate: 0.002, rl_learning_rate: 0.00002, num_generations: 2, max_new_tokens: 8}",
            "min_win_rate=0.0",
        ),
    ),
    MethodRun(
        "distilling-step-by-step",
        "distilling_step_by_step.yaml",
        ("train_steps=4", "batch_size=8", "max_eval_examples=4", "max_prediction_tokens=4"),
    ),
    MethodRun("embedding-tuning", "embedding_tuning.yaml", ("train_steps=4", "min_improvement=-1.0")),
)


def all_runs() -> list[MethodRun]:
    """A run for every ``compiled/*.yaml``: :data:`RUNS`'s, else its example config as it is."""
    chosen = {run.method: run for run in RUNS}
    runs = []
    for name in sorted(os.listdir(os.path.join(ROOT, "compiled"))):
        if name.endswith(".yaml"):
            method = name[: -len(".yaml")].replace("_", "-")
            runs.append(chosen.get(method) or MethodRun(method, name))
    return runs


@dataclass
class StepResult:
    """One row of the table."""

    pipeline: str
    step: str
    seconds: float
    ok: bool
    detail: str


@dataclass
class ImageRoot:
    """The mounted root of a container made from the image, and how the image says to run in it."""

    path: str
    user: str
    uid: int
    gid: int
    home: str
    workdir: str
    env: dict[str, str]
    results: list[StepResult] = field(default_factory=list)
    pipeline: str = ""


# --- small helpers -------------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Prints one progress line."""
    print(f"[image-check] {message}", flush=True)


def run(cmd: list[str], *, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """Runs a command; on failure prints its last output lines and raises ``CalledProcessError``."""
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        print(tail, file=sys.stderr)
        raise subprocess.CalledProcessError(result.returncode, cmd)
    if not quiet and result.stdout.strip():
        print(result.stdout.rstrip())
    return result


def pip_setting(name: str) -> str:
    """One of this machine's pip settings (``pip config get``), '' when unset."""
    for scope in (f"global.{name}", f":env:.{name}"):
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", scope], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().strip("'\"")
    return ""


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a ``deb`` line), else deb.debian.org."""
    for name in APT_SOURCES:
        with contextlib.suppress(OSError):
            with open(name, encoding="utf-8") as handle:
                for line in handle:
                    words = line.split()
                    if words[:1] == ["URIs:"] and "security" not in words[1]:
                        return words[1]
                    if words[:1] == ["deb"] and "security" not in line:
                        return next(w for w in words[1:] if "://" in w)
    return DEFAULT_MIRROR


def reachable(url: str, timeout: float = 15.0) -> str:
    """'' when ``url`` answers, else why not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return ""
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot reach"
        return f"{type(exc).__name__}: {exc}"


def declared_build_args(dockerfile: str) -> set[str]:
    """The ``ARG`` names a Dockerfile declares."""
    with open(dockerfile, encoding="utf-8") as handle:
        return {m.group(1) for m in re.finditer(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", handle.read(), re.M)}


class Podman:
    """podman with its own storage under the work folder (vfs: no overlay mounts needed)."""

    def __init__(self, work_dir: str):
        self.base = [
            "podman",
            "--root",
            os.path.join(work_dir, "storage"),
            "--runroot",
            os.path.join(work_dir, "runroot"),
            "--storage-driver",
            "vfs",
        ]

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Runs ``podman ARGS`` (see :func:`run`)."""
        return run([*self.base, *args], **kwargs)

    def exists(self, image: str) -> bool:
        """Whether the storage has ``image``."""
        return subprocess.run([*self.base, "image", "exists", image], capture_output=True).returncode == 0

    def inspect(self, image: str) -> dict:
        """``podman image inspect`` of ``image``."""
        return json.loads(self("image", "inspect", image, quiet=True).stdout)[0]


# --- stages --------------------------------------------------------------------------------------------------


def preflight(mirror: str, index: str) -> None:
    """Raises :class:`Unavailable` when this machine cannot build and run the image."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (debootstrap, chroot and mounts)")
    for tool in ("podman", "debootstrap", "chroot", "unshare", "mount"):
        if not shutil.which(tool):
            raise Unavailable(f"'{tool}' is not installed (apt-get install podman debootstrap)")
    why = reachable(f"{mirror.rstrip('/')}/dists/bookworm/Release")
    if why:
        raise Unavailable(f"the Debian mirror {mirror} is not reachable ({why}); debootstrap needs it")
    why = reachable(f"{index.rstrip('/')}/pip/")
    if why:
        raise Unavailable(f"the package index {index} is not reachable ({why}); the build's pip needs it")


def build_base(podman: Podman, work_dir: str, mirror: str, rebuild: bool) -> float:
    """The stand-in for python:3.11-slim; returns the seconds it took (0 when reused)."""
    if podman.exists(BASE_TAG) and not rebuild:
        log(f"stand-in base {BASE_TAG}: reused (--rebuild-base builds it again)")
        return 0.0
    start = time.monotonic()
    root = os.path.join(work_dir, "base-root")
    shutil.rmtree(root, ignore_errors=True)
    log(f"debootstrap bookworm from {mirror} (Debian 12: Python 3.11)")
    run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip",
            "bookworm",
            root,
            mirror,
        ],
        quiet=True,
    )
    # python:3.11-slim has no EXTERNALLY-MANAGED marker (pip installs system-wide) and has `python`.
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(root, "usr/lib/python3.11/EXTERNALLY-MANAGED"))
    link = os.path.join(root, "usr/local/bin/python")
    if not os.path.lexists(link):
        os.symlink("/usr/bin/python3", link)
    cert = pip_setting("cert") or "/etc/ssl/certs/ca-certificates.crt"
    shutil.copyfile(cert, os.path.join(root, CA_IN_BASE.lstrip("/")))
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for name in os.listdir(os.path.join(root, leftover)):
            path = os.path.join(root, leftover, name)
            if os.path.isfile(path):
                os.remove(path)
    tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
    changes = [f"ENV PIP_CERT={CA_IN_BASE}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']
    run([*podman.base, "import", *[a for c in changes for a in ("--change", c)], "-", BASE_TAG], stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(root, ignore_errors=True)
    return time.monotonic() - start


def build_image(podman: Podman, index: str) -> float:
    """Builds the Dockerfile's cpu target on the stand-in base; returns the seconds it took."""
    args = {"BASE_IMAGE": BASE_TAG}
    volumes: list[str] = []
    wheels = pip_setting("find-links")
    if wheels and os.path.isdir(wheels) and any(TORCH_WHEEL.match(n) for n in os.listdir(wheels)):
        # The CPU wheel from the local folder, its dependencies from the index (not the CUDA build of PyPI).
        args.update(TORCH_INDEX_URL=index, TORCH_FIND_LINKS=WHEELS_IN_BUILD)
        volumes = ["--volume", f"{wheels}:{WHEELS_IN_BUILD}:ro"]
    else:
        log("no torch 2.13.0+cpu wheel in pip's find-links folder: the Dockerfile's default torch index is used")
    undeclared = set(args) - declared_build_args(DOCKERFILE)
    if undeclared:
        raise SystemExit(f"components/Dockerfile does not declare the build argument(s) {sorted(undeclared)}")
    log("building components/Dockerfile --target cpu with " + ", ".join(f"{k}={v}" for k, v in args.items()))
    start = time.monotonic()
    podman(
        "build",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--file",
        DOCKERFILE,
        "--target",
        "cpu",
        *[a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")],
        *volumes,
        "--tag",
        IMAGE_TAG,
        ROOT,
        quiet=True,
    )
    return time.monotonic() - start


#: The device nodes a container runtime gives every container (the OCI runtime spec's "Default Devices").
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        points = [line.split()[4] for line in handle]
    return sorted((p for p in points if p == path or p.startswith(path.rstrip("/") + "/")), reverse=True)


@contextlib.contextmanager
def image_root(podman: Podman, shared: str):
    """A writable root made from the image (``podman create`` + ``mount``) with /proc, a /dev and ``shared``.

    /dev is a fresh tmpfs with the runtime's default device nodes, never the host's /dev: removing the container
    deletes its root folder, so nothing of the host may be mounted under it then (checked before removing).
    """
    config = podman.inspect(IMAGE_TAG)["Config"]
    name = f"tunekit-image-check-{os.getpid()}"
    podman("create", "--name", name, IMAGE_TAG, quiet=True)
    path = ""
    try:
        path = podman("mount", name, quiet=True).stdout.strip()
        with open(os.path.join(path, "etc/passwd"), encoding="utf-8") as handle:
            users = {line.split(":")[0]: line.split(":") for line in handle}
        if RUN_USER not in users:
            raise SystemExit(f"the image has no user '{RUN_USER}' (components/Dockerfile creates it)")
        entry = users[RUN_USER]
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        env["HOME"] = entry[5]
        for where, args in (
            ("proc", ["-t", "proc", "proc"]),
            ("dev", ["-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs"]),
            (shared.lstrip("/"), ["--bind", shared]),
        ):
            os.makedirs(os.path.join(path, where), exist_ok=True)
            run(["mount", *args, os.path.join(path, where)], quiet=True)
        for node, (major, minor) in DEVICES.items():
            os.mknod(os.path.join(path, "dev", node), 0o20666, os.makedev(major, minor))
            os.chmod(os.path.join(path, "dev", node), 0o666)
        os.makedirs(os.path.join(path, "dev/shm"), mode=0o1777)
        os.chmod(os.path.join(path, "dev/shm"), 0o1777)
        yield ImageRoot(
            path=path,
            user=RUN_USER,
            uid=int(entry[2]),
            gid=int(entry[3]),
            home=entry[5],
            workdir=config.get("WorkingDir") or "/",
            env=env,
        )
    finally:
        for where in mounts_under(path) if path else []:
            subprocess.run(["umount", "--lazy", where], check=False)
        left = mounts_under(path) if path else []
        if left:
            log(f"not removing container {name}: still mounted under its root: {', '.join(left)}")
        else:
            subprocess.run([*podman.base, "rm", "--force", name], capture_output=True, check=False)


def in_image(image: ImageRoot, command: list[str], extra_env: dict[str, str] | None = None, **kwargs):
    """Runs ``command`` the way the container runtime would: image root, user, WORKDIR, ENV, no network."""
    # podman and Docker start a process with this PATH when the image sets none.
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        **image.env,
        **(extra_env or {}),
    }
    wrapper = [
        "unshare",
        "--net",
        "chroot",
        f"--userspec={image.uid}:{image.gid}",
        image.path,
        "/usr/bin/env",
        "-i",
        *[f"{k}={v}" for k, v in env.items()],
        "/bin/sh",
        "-c",
        'cd "$0" && exec "$@"',
        image.workdir,
        *command,
    ]
    return subprocess.run(wrapper, **kwargs)


def chown_tree(path: str, uid: int, gid: int) -> None:
    """Gives the step's user what the orchestrator (root, outside the image) created under ``path``."""
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(name).st_uid != uid:
                    os.lchown(name, uid, gid)


def make_task_handler(image: ImageRoot):
    """A kfp local task handler that runs the resolved container command inside ``image``."""
    from kfp.local import status, task_handler_interface

    class ImageTaskHandler(task_handler_interface.ITaskHandler):
        def __init__(self, image, full_command, pipeline_root, runner, env_vars=None):  # noqa: ARG002
            self.full_command = list(full_command)
            self.pipeline_root = pipeline_root
            self.env_vars = env_vars or {}

        def run(self) -> status.Status:
            executor_input = json.loads(self.full_command[self.full_command.index("--executor_input") + 1])
            task_root = os.path.dirname(executor_input["outputs"]["outputFile"])
            step = os.path.basename(task_root)
            chown_tree(self.pipeline_root, image.uid, image.gid)
            log(f"{image.pipeline} / {step}: running in the image as {image.user}")
            start = time.monotonic()
            done = in_image(image, self.full_command, self.env_vars)
            seconds = time.monotonic() - start
            ok, detail = done.returncode == 0, f"exit {done.returncode}"
            if ok:
                missing = missing_outputs(executor_input)
                notes = [f"{n}: {OPTIONAL_OUTPUTS[n]}" for n in missing if n in OPTIONAL_OUTPUTS]
                missing = [n for n in missing if n not in OPTIONAL_OUTPUTS]
                ok = not missing
                detail = "outputs written" if ok else "missing outputs: " + ", ".join(missing)
                detail += "".join(f"; {note}" for note in notes)
            image.results.append(StepResult(image.pipeline, step, seconds, ok, detail))
            return status.Status.SUCCESS if ok else status.Status.FAILURE

    return ImageTaskHandler


def missing_outputs(executor_input: dict) -> list[str]:
    """The declared outputs a step left unwritten.

    An artifact is written when its path exists, or when the step's executor output gives it metadata (what
    ``Metrics.log_metric`` writes: no file); a parameter when the executor output or its output file has it.
    """
    outputs = executor_input.get("outputs", {})
    written: dict = {}
    with contextlib.suppress(OSError, ValueError):
        with open(outputs["outputFile"], encoding="utf-8") as handle:
            written = json.load(handle)
    described = {
        name
        for name, listed in (written.get("artifacts") or {}).items()
        if any(a.get("metadata") for a in listed.get("artifacts", []))
    }
    missing = []
    for name, artifacts in (outputs.get("artifacts") or {}).items():
        for artifact in artifacts.get("artifacts", []):
            if not os.path.exists(artifact["uri"]) and name not in described:
                missing.append(name)
    values = written.get("parameterValues") or {}
    for name, parameter in (outputs.get("parameters") or {}).items():
        if name not in values and not os.path.exists(parameter["outputFile"]):
            missing.append(name)
    return missing


def run_pipelines(image: ImageRoot, shared: str, runs: list[MethodRun]) -> None:
    """Runs each compiled pipeline with kfp's local orchestrator, each step inside the image."""
    from kfp import components, local
    from kfp.local import subprocess_task_handler

    # kfp's dispatcher looks the SubprocessRunner's handler up by module attribute at each task
    # (kfp/local/task_dispatcher.py, run_single_task_implementation): this swaps in the image runner for this
    # process only. Everything else (executor input, placeholders, DAG, conditions, outputs) is kfp's.
    subprocess_task_handler.SubprocessTaskHandler = make_task_handler(image)
    examples = os.path.join(shared, "examples")
    shutil.copytree(os.path.join(ROOT, "examples"), examples, dirs_exist_ok=True)
    pipeline_root = os.path.join(shared, "pipeline_root")
    os.makedirs(pipeline_root, exist_ok=True)
    for item in runs:
        output_root = os.path.join(shared, "out", item.method)
        os.makedirs(output_root, exist_ok=True)
        chown_tree(shared, image.uid, image.gid)
        compiled, values = parameters_in_image(
            image, shared, item, os.path.join(examples, item.config), output_root
        )
        pipeline = components.load_component_from_file(os.path.join(ROOT, "compiled", compiled))
        image.pipeline = item.method
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
        log(f"{item.method}: compiled/{compiled} with {examples}/{item.config} {' '.join(item.overrides)}")
        try:
            pipeline(**values)
        except RuntimeError as exc:  # the orchestrator's "Task ... finished with status FAILURE"
            log(f"{item.method}: {exc}")


#: Run by the image's Python: the pipeline parameters of an example config, as ``tunekit run --local`` makes them
#: (``load_config`` + ``local_parameters``), with the tiny models built at a smaller size than the demo's.
PARAMETERS = """
import json, os, sys
from tunekit.components.tuning.tiny import make_tiny_model
from tunekit.pipelines import local_run
from tunekit.pipelines.config import load_config
from tunekit.pipelines.registry import get_method

name, path, output_root, overrides, sizes = json.loads(sys.argv[1])
def tiny(base_model, output_root):
    if not base_model.startswith(local_run.TINY_PREFIX):
        return base_model
    kind = {"": "seq2seq", "t5": "seq2seq", "causal": "causal", "llama": "causal"}[base_model.split(":", 1)[1]]
    target = os.path.join(output_root, "models", "tiny-" + kind)
    if not os.path.exists(os.path.join(target, "config.json")):
        make_tiny_model(target, kind=kind, **sizes[kind])
    return target
local_run.resolve_base_model = tiny
method = get_method(name)
config = load_config(method.load()[1], path, overrides)
print(json.dumps([method.compiled_name, local_run.local_parameters(config, output_root)]))
"""


def parameters_in_image(image: ImageRoot, shared: str, item: MethodRun, config: str, output_root: str):
    """``(compiled file name, parameter values)`` for one run, computed by the image's own tunekit."""
    start = time.monotonic()
    payload = json.dumps([item.method, config, output_root, list(item.overrides), TINY_SIZES])
    done = in_image(image, ["python3", "-c", PARAMETERS, payload], capture_output=True, text=True)
    ok = done.returncode == 0
    detail = "config loaded" if ok else (done.stderr.strip().splitlines() or ["failed"])[-1]
    image.results.append(StepResult(item.method, "(parameters, tiny model)", time.monotonic() - start, ok, detail))
    if not ok:
        raise SystemExit(f"{item.method}: the image could not load {config}: {detail}")
    compiled, values = json.loads(done.stdout.strip().splitlines()[-1])
    return compiled, values


def static_checks(image: ImageRoot) -> None:
    """No development distributions in the image; the package imports as the non-root user."""
    code = (
        "import importlib.metadata as m, json\n"
        f"names = {list(DEV_DISTRIBUTIONS)!r}\n"
        "found = []\n"
        "for n in names:\n"
        "    try: m.version(n); found.append(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))\n"
    )
    start = time.monotonic()
    done = in_image(image, ["python3", "-c", code], capture_output=True, text=True)
    found = json.loads(done.stdout or "null") if done.returncode == 0 else None
    ok = found == []
    detail = "none of " + ", ".join(DEV_DISTRIBUTIONS) if ok else f"found {found or done.stderr.strip()[-200:]}"
    image.results.append(StepResult("(image)", "no dev dependencies", time.monotonic() - start, ok, detail))
    start = time.monotonic()
    done = in_image(image, ["tunekit", "--help"], capture_output=True, text=True)
    detail = "ok" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
    image.results.append(
        StepResult(
            "(image)", f"tunekit --help as {image.user}", time.monotonic() - start, done.returncode == 0, detail
        )
    )


def print_table(results: list[StepResult]) -> None:
    """Prints the step table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Steps run inside the image")
    for column in ("pipeline", "step", "seconds", "result"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for r in results:
        table.add_row(r.pipeline, r.step, f"{r.seconds:.1f}", ("ok: " if r.ok else "FAILED: ") + r.detail)
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    """Runs the check; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default="/var/tmp/tunekit-image-check", help="podman storage and run folder")
    parser.add_argument(
        "--methods", default="", help="comma-separated pipelines to run (default: every compiled one)"
    )
    parser.add_argument("--rebuild-base", action="store_true", help="debootstrap the stand-in base again")
    parser.add_argument(
        "--skip-unavailable", action="store_true", help="exit 0 with a message when it cannot start"
    )
    args = parser.parse_args(argv)
    # A killed check (CI's timeout) still unmounts and removes its container: SIGTERM unwinds like an error.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wanted = [m for m in args.methods.split(",") if m]
    runs = [r for r in all_runs() if not wanted or r.method in wanted]
    if wanted and len(runs) != len(wanted):
        print(f"--methods: unknown name; use {', '.join(r.method for r in all_runs())}", file=sys.stderr)
        return 2
    mirror, index = apt_mirror(), pip_setting("index-url") or DEFAULT_INDEX
    try:
        preflight(mirror, index)
    except Unavailable as exc:
        verdict = "SKIPPED" if args.skip_unavailable else "cannot run"
        print(f"image-check {verdict}: {exc}", file=sys.stderr)
        return 0 if args.skip_unavailable else 2
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    podman = Podman(work_dir)
    started = time.monotonic()
    try:
        base_seconds = build_base(podman, work_dir, mirror, args.rebuild_base)
        build_seconds = build_image(podman, index)
    except subprocess.CalledProcessError as exc:
        print(f"image-check: '{' '.join(exc.cmd[:8])} ...' failed (exit {exc.returncode}); its output is above")
        return 1
    size = int(podman.inspect(IMAGE_TAG)["Size"])
    log(
        f"image {IMAGE_TAG}: {size / 1e9:.2f} GB ({size} bytes); base {base_seconds:.0f} s, build {build_seconds:.0f} s"
    )
    shared = os.path.join(work_dir, "run")
    shutil.rmtree(shared, ignore_errors=True)
    os.makedirs(shared)
    with image_root(podman, shared) as image:
        static_checks(image)
        run_pipelines(image, shared, runs)
        results = image.results
    print_table(results)
    ran = {r.pipeline for r in results}
    not_run = [r.method for r in runs if r.method not in ran]
    failed = [r for r in results if not r.ok]
    print(f"image size: {size / 1e9:.2f} GB; total {time.monotonic() - started:.0f} s")
    if failed or not_run:
        print(f"image-check FAILED: {len(failed)} step(s) failed" + (f"; never ran: {not_run}" if not_run else ""))
        return 1
    print(f"image-check passed: {len(results)} rows, every step succeeded and wrote its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

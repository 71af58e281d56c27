"""The GPU custom jobs: their worker pools, and the launcher that runs one process per GPU on every replica."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from kfp import compiler

from tunekit.components.common.errors import UserError
from tunekit.components.common.image import GPU_IMAGE
from tunekit.components.tuning import launch

# Vertex AI's CLUSTER_SPEC as its distributed-training page describes it (#cluster-spec-format): the training
# pools' replicas by pool, and this replica's pool and index.
CLUSTER = {
    "workerpool0": ["cmle-training-workerpool0-ab12-0:2222"],
    "workerpool1": ["cmle-training-workerpool1-ab12-0:2222", "cmle-training-workerpool1-ab12-1:2222"],
}


def free_port() -> int:
    """A port free on this machine now (the rendezvous of a test's torchrun; others may run theirs)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env(pool: str, index: int, **extra: str) -> dict[str, str]:
    spec = {"cluster": CLUSTER, "environment": "cloud", "task": {"type": pool, "index": index}}
    return {"CLUSTER_SPEC": json.dumps(spec), **extra}


def test_each_replica_finds_its_node_rank_and_the_primary_replica():
    primary = launch.plan(cluster_env("workerpool0", 0), nnodes=3, nproc_per_node=8)
    assert primary == launch.Launch(3, 8, 0, "cmle-training-workerpool0-ab12-0", 2222)
    second_worker = launch.plan(cluster_env("workerpool1", 1), nnodes=3, nproc_per_node=8)
    assert (second_worker.node_rank, second_worker.master_addr) == (2, "cmle-training-workerpool0-ab12-0")
    assert second_worker.processes == 24
    # Vertex's PyTorch variables name the rendezvous when they are set.
    env = cluster_env("workerpool1", 0, MASTER_ADDR="10.0.0.2", MASTER_PORT="3333")
    assert launch.plan(env, nnodes=3, nproc_per_node=8) == launch.Launch(3, 8, 1, "10.0.0.2", 3333)
    # Without CLUSTER_SPEC: node-level RANK/WORLD_SIZE, else node 0 of one machine with a local rendezvous.
    assert launch.plan({"RANK": "1", "WORLD_SIZE": "2"}, nnodes=2, nproc_per_node=4).node_rank == 1
    assert launch.plan({}, nnodes=1, nproc_per_node=2) == launch.Launch(1, 2, 0, "127.0.0.1", launch.DEFAULT_PORT)


def test_a_cluster_that_disagrees_with_the_job_fails_in_one_line():
    with pytest.raises(UserError, match="lists 3 training replicas but the job was declared with replica_count 2"):
        launch.plan(cluster_env("workerpool0", 0), nnodes=2, nproc_per_node=1)
    with pytest.raises(UserError, match="worker pool 'workerpool3', which does not train"):
        launch.plan(cluster_env("workerpool3", 0), nnodes=3, nproc_per_node=1)
    with pytest.raises(UserError, match="CLUSTER_SPEC is not Vertex AI's"):
        launch.plan({"CLUSTER_SPEC": "{not json"}, nnodes=1, nproc_per_node=1)


def test_one_process_runs_the_step_itself_and_more_run_under_torchrun():
    step = ["sh", "-ec", 'python3 -m kfp.dsl.executor_main "$@"', "--executor_input", "{}"]
    assert launch.command(launch.Launch(1, 1, 0, "127.0.0.1", 29500), step) == step
    line = launch.command(launch.Launch(2, 4, 1, "primary", 3333), step, python="/usr/bin/python3")
    assert line == [
        "/usr/bin/python3",
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=4",
        "--node-rank=1",
        "--master-addr=primary",
        "--master-port=3333",
        "--no-python",
        *step,
    ]


def test_the_launcher_runs_a_step_once_per_process_with_torch_distributed_variables(tmp_path):
    """Two CPU processes under torchrun (gloo): each runs the step's command with its rank, and they all-reduce."""
    script = tmp_path / "step.py"
    script.write_text(
        "import os, sys, torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([dist.get_rank() + 1.0])\n"
        "dist.all_reduce(t)\n"
        "open(os.path.join(sys.argv[1], f\"rank{os.environ['RANK']}\"), 'w').write(\n"
        "    f\"{os.environ['WORLD_SIZE']} {os.environ['LOCAL_RANK']} {t.item()}\")\n"
        "dist.destroy_process_group()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CLUSTER_SPEC", "MASTER_ADDR", "RANK", "WORLD_SIZE")}
    env["MASTER_PORT"] = str(free_port())
    done = subprocess.run(
        [sys.executable, "-m", "tunekit.components.tuning.launch", "--nproc-per-node=2", "--"]
        + ["sh", "-ec", f'"{sys.executable}" "$0" "$1"', str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "launching 2 process(es) on node 0 of 1" in done.stdout
    assert (tmp_path / "rank0").read_text() == "2 0 3.0"
    assert (tmp_path / "rank1").read_text() == "2 1 3.0"


def test_the_launcher_says_what_is_wrong_in_one_line():
    env = {**os.environ, **cluster_env("workerpool0", 0)}
    done = subprocess.run(
        [sys.executable, "-m", "tunekit.components.tuning.launch", "--nnodes=2", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: CLUSTER_SPEC lists 3 training replicas but the job was declared with replica_count 2"
    ]


# --- the custom jobs' worker pools, as compiled (the body GCPC's launcher sends to customJobs.create) ----------


def _pools(pipeline, tmp_path, task_name):
    path = str(tmp_path / "spec.yaml")
    compiler.Compiler().compile(pipeline, path)
    spec = yaml.safe_load(open(path))
    tasks = {
        n: t
        for c in [spec["root"], *spec["components"].values()]
        for n, t in c.get("dag", {}).get("tasks", {}).items()
    }
    component = spec["components"][tasks[task_name]["componentRef"]["name"]]
    return component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"], tasks


GPU = {
    "accelerator_type": "NVIDIA_H100_80GB",
    "accelerator_count": 8,
    "machine_type": "a3-highgpu-8g",
    "replica_count": 3,
}


def _assert_distributed(pools, function):
    """Pool 0: the primary replica; pool 1: the other two; each replica's container launches 8 processes."""
    assert [p["replica_count"] for p in pools] == [1, 2]
    for pool in pools:
        assert pool["machine_spec"] == {
            "machine_type": "a3-highgpu-8g",
            "accelerator_type": "NVIDIA_H100_80GB",
            "accelerator_count": 8,
        }
        container = pool["container_spec"]
        assert container["image_uri"] == GPU_IMAGE
        command = container["command"]
        assert command[:6] == ["python3", "-m", "tunekit.components.tuning.launch", "--nnodes=3"] + [
            "--nproc-per-node=8",
            "--",
        ]
        assert command[6:8] == ["sh", "-ec"] and "kfp.dsl.executor_main" in command[8]
        assert container["args"][container["args"].index("--function_to_execute") + 1] == function
        # What the second worker replica runs: torchrun around the unchanged KFP command.
        plan = launch.plan(cluster_env("workerpool1", 1), nnodes=3, nproc_per_node=8)
        line = launch.command(plan, command[6:])
        assert line[3:9] == [
            "--nnodes=3",
            "--nproc-per-node=8",
            "--node-rank=2",
            "--master-addr=cmle-training-workerpool0-ab12-0",
            "--master-port=2222",
            "--no-python",
        ]
        assert line[9:] == command[6:]


def test_supervised_tuning_has_a_distributed_gpu_variant(tmp_path):
    from tunekit.pipelines.supervised_tuning import build_pipeline

    pools, tasks = _pools(build_pipeline(gpu=GPU), tmp_path, "tune-supervised")
    _assert_distributed(pools, "tune_supervised")
    assert tasks["tune-supervised"]["retryPolicy"]["maxRetryCount"] == 2
    # The step decides where its model deploys (an open model trained on Vertex: an endpoint there).
    assert tasks["gate-and-deploy"]["inputs"]["parameters"]["backend"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "tune-supervised",
    }


def test_distillation_and_preference_gpu_variants_are_distributed(tmp_path):
    from tunekit.pipelines import distilling_step_by_step, preference_tuning

    pools, _ = _pools(distilling_step_by_step.build_pipeline(gpu=GPU), tmp_path, "tune-student-model")
    _assert_distributed(pools, "tune_student_model")
    for task, function in (
        ("warm-start-supervised", "warm_start_supervised"),
        ("tune-preference", "tune_preference"),
    ):
        pools, _ = _pools(preference_tuning.build_pipeline(gpu=GPU), tmp_path, task)
        _assert_distributed(pools, function)


def test_a_single_gpu_job_has_one_pool_and_runs_the_step_directly(tmp_path):
    from tunekit.pipelines.supervised_tuning import build_pipeline

    (pool,), _ = _pools(build_pipeline(gpu={"accelerator_type": "NVIDIA_L4"}), tmp_path, "tune-supervised")
    assert pool["replica_count"] == 1 and pool["machine_spec"]["accelerator_count"] == 1
    command = pool["container_spec"]["command"]
    assert command[3:5] == ["--nnodes=1", "--nproc-per-node=1"]
    assert launch.command(launch.plan({}, nnodes=1, nproc_per_node=1), command[6:]) == command[6:]

"""Launching a training step with one process per GPU on every replica of a Vertex AI custom job.

The GPU custom-job variants of the trainers (:mod:`tunekit.components.tuning.component`) run their KFP command
through this module::

    python3 -m tunekit.components.tuning.launch --nnodes R --nproc-per-node G -- <the step's command...>

With ``R * G > 1`` it replaces itself (``exec``) with ``torchrun`` (``python3 -m torch.distributed.run``) around the
command, so each of the ``G`` processes on this replica runs the step with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, which Hugging Face's ``Trainer`` (and the trainers built on
it) read to train data-parallel; with one process in all it runs the command itself, unchanged.

Where this replica stands in the cluster comes from the environment Vertex AI sets on every replica
(https://cloud.google.com/vertex-ai/docs/training/distributed-training#cluster-spec-format): ``CLUSTER_SPEC``,
a JSON object whose ``cluster`` maps each worker pool (``workerpool0``: the primary replica, ``workerpool1``: the
other workers) to its replicas' ``host:port`` addresses, and whose ``task`` names this replica's pool (``type``)
and index in it (``index``); ``google.cloud.aiplatform.training_utils`` reads the same variable. For PyTorch
jobs Google also documents node-level ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE`` (replicas) and ``RANK``
(this replica) (https://cloud.google.com/ai-platform/training/docs/distributed-pytorch, "Environment
variables"): ``MASTER_ADDR``/``MASTER_PORT`` are preferred when present, otherwise the primary replica's address
in ``CLUSTER_SPEC`` is the rendezvous point. The node rank is ``0`` on the primary replica and ``1 + index`` on
``workerpool1``'s replicas (the order of the pools in ``workerPoolSpecs``); without ``CLUSTER_SPEC`` it is
``RANK`` when ``WORLD_SIZE`` equals the declared replicas, else 0 (a single machine, or a test: the rendezvous is
then on this machine).

Logic only: no kfp here (the component module builds the command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tunekit.components.common.errors import UserError

#: The worker pools that train (``workerPoolSpecs[0]`` and ``[1]``); pools 2 and 3 are parameter or reduction
#: servers and evaluators, which take no part in a torch process group.
TRAINING_POOLS = ("workerpool0", "workerpool1")
#: torchrun's default rendezvous port, used when neither ``MASTER_PORT`` nor ``CLUSTER_SPEC`` names one.
DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Launch:
    """How this replica runs the step.

    Attributes:
        nnodes: Replicas training together.
        nproc_per_node: Processes on each replica (one per GPU).
        node_rank: This replica's place among them (0: the primary replica).
        master_addr: The primary replica's host (the rendezvous point).
        master_port: Its port.
    """

    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int

    @property
    def processes(self) -> int:
        """Processes in all (torch's world size)."""
        return self.nnodes * self.nproc_per_node


def _host_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    if not host:
        return address, None
    return host, int(port) if port.isdigit() else None


def plan(env: Mapping[str, str], *, nnodes: int = 1, nproc_per_node: int = 1) -> Launch:
    """Where this replica stands, from Vertex AI's environment, else from the declared shape.

    Args:
        env: The environment (``os.environ``).
        nnodes: The replicas the job was declared with (its ``replica_count``).
        nproc_per_node: Processes per replica (its ``accelerator_count``).

    Raises:
        UserError: ``CLUSTER_SPEC`` is not Vertex AI's JSON, or disagrees with the declared replicas.
    """
    if nnodes < 1 or nproc_per_node < 1:
        raise UserError(f"nnodes and nproc_per_node must be at least 1, not {nnodes} and {nproc_per_node}")
    node_rank, master_addr, master_port = 0, "127.0.0.1", None
    spec_text = env.get("CLUSTER_SPEC", "")
    if spec_text:
        try:
            spec = json.loads(spec_text)
            cluster = spec["cluster"]
            task = spec["task"]
            replicas = [address for pool in TRAINING_POOLS for address in cluster.get(pool) or []]
            pool, index = task["type"], int(task.get("index", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"CLUSTER_SPEC is not Vertex AI's cluster description ({exc!r})") from None
        if pool not in TRAINING_POOLS:
            raise UserError(f"this replica is in worker pool '{pool}', which does not train (pools 0 and 1 do)")
        if len(replicas) != nnodes:
            raise UserError(
                f"CLUSTER_SPEC lists {len(replicas)} training replicas but the job was declared with "
                f"replica_count {nnodes}"
            )
        node_rank = 0 if pool == "workerpool0" else 1 + index
        master_addr, master_port = _host_port(cluster["workerpool0"][0])
    elif env.get("RANK", "").isdigit() and env.get("WORLD_SIZE") == str(nnodes):
        node_rank = int(env["RANK"])
    master_addr = env.get("MASTER_ADDR") or master_addr
    if env.get("MASTER_PORT", "").isdigit():
        master_port = int(env["MASTER_PORT"])
    return Launch(
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port or DEFAULT_PORT,
    )


def command(launch: Launch, step: Sequence[str], *, python: str = "python3") -> list[str]:
    """The command line that runs ``step``: itself for one process, else ``torchrun`` around it.

    ``--no-python``: the step's command is a program of its own (KFP's ``sh -ec ...`` running its executor), not a
    Python script for torchrun to run with ``python``.
    """
    if not step:
        raise UserError("no command to launch: give it after '--'")
    if launch.processes == 1:
        return list(step)
    return [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={launch.nnodes}",
        f"--nproc-per-node={launch.nproc_per_node}",
        f"--node-rank={launch.node_rank}",
        f"--master-addr={launch.master_addr}",
        f"--master-port={launch.master_port}",
        "--no-python",
        *step,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Parses ``--nnodes R --nproc-per-node G -- <command>`` and replaces this process with the launch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nnodes", type=int, default=1, help="replicas (the custom job's replica_count)")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="processes per replica (one per GPU)")
    parser.add_argument("step", nargs=argparse.REMAINDER, help="-- then the step's command")
    args = parser.parse_args(argv)
    step = args.step[1:] if args.step[:1] == ["--"] else args.step
    try:
        launch = plan(os.environ, nnodes=args.nnodes, nproc_per_node=args.nproc_per_node)
        line = command(launch, step, python=sys.executable)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if launch.processes > 1:
        print(
            f"launching {launch.nproc_per_node} process(es) on node {launch.node_rank} of {launch.nnodes} "
            f"(rendezvous {launch.master_addr}:{launch.master_port})",
            flush=True,
        )
    os.execvp(line[0], line)


if __name__ == "__main__":
    main()

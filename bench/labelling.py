"""Labelling throughput against the fake servers: quota use, faults, and a SIGKILL halfway.

Prints one table, side by side:

- clean: N prompts at 100 ms latency under a 6,000 QPM quota (a 429 RESOURCE_EXHAUSTED bucket on the server),
  achieved throughput as a share of the quota (target >= 0.95) and the speed-up over a sequential loop (timed on
  a sample and scaled to N, since a sequential loop over 2,000 prompts at 100 ms takes over three minutes);
- faults: the same with 10% of calls failing (7% 500/503, 3% dropped connections): every row completed, and no
  prompt billed twice;
- kill: a run killed with SIGKILL when half the prompts are billed, then restarted on the same cache: billed
  calls at most N + concurrency.

Each fake server runs in its own process (as a real endpoint would), so its threads do not share the GIL with the
engine. Run: ``python bench/labelling.py`` (``--prompts 500`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "fakes"))

PROJECT, LOCATION, MODEL = "test-project", "us-central1", "gemini-2.5-flash"


# --- the servers, each in its own process ----------------------------------------------------------------------


def serve(kind: str, latency: float, qpm: float, fault_rate: float, drop_rate: float) -> None:
    if kind == "vertex":
        from fake_vertex import FakeVertex as Fake
    else:
        from fake_openai import FakeOpenAI as Fake
    server = Fake(latency_s=latency, quota_qpm=qpm or None, fault_rate=fault_rate, drop_rate=drop_rate, seed=7)
    with server:
        print(server.url, flush=True)
        sys.stdin.read()  # serve until the parent closes the pipe


class Server:
    def __init__(self, kind: str, latency: float, qpm: float, fault_rate: float = 0.0, drop_rate: float = 0.0):
        args = [sys.executable, __file__, "--serve", kind, "--latency", str(latency), "--qpm", str(qpm)]
        args += ["--fault-rate", str(fault_rate), "--drop-rate", str(drop_rate)]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        self.kind = kind

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/_fake/stats", timeout=10) as response:
            return json.load(response)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the client side -------------------------------------------------------------------------------------------


def make(kind: str, url: str, cache_dir: str | None, concurrency: int, rpm: float):
    from tunekit.components.model_clients.backends import make_engine

    os.environ["TUNEKIT_VERTEX_BASE_URL"] = url
    options = {"project": PROJECT, "location": LOCATION} if kind == "vertex" else {"base_url": url + "/v1"}
    if kind == "openai":
        options["api_key_env"] = ""
    engine_options = {
        "concurrency": concurrency,
        "requests_per_minute": rpm,
        "burst_s": 0.0,
        "initial_backoff_s": 0.2,
        "max_backoff_s": 5.0,
        "max_attempts": 10,
        "timeout_s": 30.0,
    }
    return make_engine(kind, MODEL, options=options, engine_options=engine_options, cache_dir=cache_dir)


def prompts(n: int, tag: str = "ticket"):
    from tunekit.components.model_clients.base import Prompt

    return [Prompt(f"Classify {tag} number {i}: my order {i} has not arrived") for i in range(n)]


def timed_run(kind: str, url: str, n: int, concurrency: int, rpm: float, cache_dir: str | None = None) -> dict:
    engine = make(kind, url, cache_dir, concurrency, rpm)
    try:
        started = time.monotonic()
        results = engine.run(prompts(n))
        elapsed = time.monotonic() - started
        report = engine.report
    finally:
        engine.close()
    return {
        "elapsed_s": elapsed,
        "ok": sum(r.generation.status == "ok" for r in results),
        "calls": report.calls,
        "retries": report.retries,
        "rate_limited": report.rate_limited,
    }


def sequential_seconds_per_prompt(kind: str, url: str, sample: int) -> float:
    engine = make(kind, url, None, 1, 0)
    try:
        started = time.monotonic()
        # Other prompts than the timed run's, so the server's duplicate count stays about the engine.
        for prompt in prompts(sample, tag="sample"):
            engine.generate([prompt])
        return (time.monotonic() - started) / sample
    finally:
        engine.close()


def quota_share(run: dict, qpm: float) -> float:
    """A timed run's calls per minute as a share of the quota."""
    return (run["calls"] / run["elapsed_s"] * 60) / qpm


def run_column(run: dict, stats: dict, n: int, throughput: str, *, extra: dict, billed: str) -> dict[str, str]:
    """The table's column for a timed run against one server: rows and time, ``extra``, retries and billing."""
    return {
        "rows ok": f"{run['ok']}/{n}",
        "elapsed s": f"{run['elapsed_s']:.1f}",
        "throughput / quota": throughput,
        **extra,
        "429 answers": str(stats.get("quota_429", 0)),
        "retries": str(run["retries"]),
        "billed calls": billed,
        "duplicate billed": str(stats["duplicate_billed"]),
    }


_CHILD = """
import sys
sys.path.insert(0, {bench!r})
import labelling
labelling.timed_run({kind!r}, {url!r}, {n}, {concurrency}, {rpm}, {cache!r})
"""


def killed_run(kind: str, n: int, concurrency: int, qpm: float, latency: float) -> dict:
    cache = tempfile.mkdtemp(prefix="bench-cache-")
    with Server(kind, latency, qpm) as server:
        code = _CHILD.format(
            bench=HERE, kind=kind, url=server.url, n=n, concurrency=concurrency, rpm=qpm, cache=cache
        )
        child = subprocess.Popen([sys.executable, "-c", code])
        while server.stats().get("billed_calls", 0) < n // 2 and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        time.sleep(latency * 2)  # requests in flight at the kill still reach the server and are billed
        at_kill = server.stats()["billed_calls"]
        started = time.monotonic()
        rerun = timed_run(kind, server.url, n, concurrency, qpm, cache)
        elapsed = time.monotonic() - started
        stats = server.stats()
    return {
        "billed_at_kill": at_kill,
        "billed_total": stats["billed_calls"],
        "restart_calls": rerun["calls"],
        "ok": rerun["ok"],
        "bound": n + concurrency,
        "duplicate_billed": stats["duplicate_billed"],
        "restart_elapsed_s": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--qpm", type=float, default=6000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--fault-rate", type=float, default=0.07, help="5xx share in the faults run")
    parser.add_argument("--drop-rate", type=float, default=0.03, help="dropped-connection share in the faults run")
    parser.add_argument("--sequential-sample", type=int, default=40)
    parser.add_argument("--backends", default="vertex,openai", help="backends of the clean run, comma-separated")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.latency, args.qpm, args.fault_rate, args.drop_rate)
        return 0

    n, qpm, c = args.prompts, args.qpm, args.concurrency
    print(f"{n} prompts, {args.latency * 1000:g} ms latency, quota {qpm:g} QPM, concurrency {c}", flush=True)
    columns: dict[str, dict[str, str]] = {}
    verdicts = []
    for kind in args.backends.split(","):
        with Server(kind, args.latency, qpm) as server:
            seq = sequential_seconds_per_prompt(kind, server.url, args.sequential_sample)
            run = timed_run(kind, server.url, n, c, qpm)
            stats = server.stats()
        share = quota_share(run, qpm)
        columns[f"clean ({kind})"] = run_column(
            run,
            stats,
            n,
            f"{share:.3f}",
            extra={"speed-up vs sequential": f"{seq * n / run['elapsed_s']:.1f}x"},
            billed=f"{stats['billed_calls'] - args.sequential_sample} (+{args.sequential_sample} sequential)",
        )
        verdicts.append((f"clean ({kind}) throughput >= 0.95 of quota", share >= 0.95))

    with Server("vertex", args.latency, qpm, args.fault_rate, args.drop_rate) as server:
        run = timed_run("vertex", server.url, n, c, qpm)
        stats = server.stats()
    injected = stats.get("faults", 0) + stats.get("drops", 0)
    columns["10% faults (vertex)"] = run_column(
        run,
        stats,
        n,
        f"{quota_share(run, qpm):.3f} (rows)",
        extra={
            "calls sent / quota": f"{(run['calls'] + run['retries']) / run['elapsed_s'] * 60 / qpm:.3f} (retries included)",
            "injected faults": f"{injected} ({stats.get('faults', 0)} 5xx, {stats.get('drops', 0)} drops)",
        },
        billed=str(stats["billed_calls"]),
    )
    verdicts.append(("faults: every row completed", run["ok"] == n))
    verdicts.append(("faults: zero duplicate billed calls", stats["duplicate_billed"] == 0))

    kill = killed_run("vertex", n, c, qpm, args.latency)
    columns["SIGKILL + restart (vertex)"] = {
        "rows ok": f"{kill['ok']}/{n}",
        "elapsed s": f"{kill['restart_elapsed_s']:.1f} (restart)",
        "billed at kill": str(kill["billed_at_kill"]),
        "restart calls": str(kill["restart_calls"]),
        "billed calls": f"{kill['billed_total']} (bound {kill['bound']})",
        "duplicate billed": f"{kill['duplicate_billed']} (in flight at the kill)",
    }
    verdicts.append(("kill: billed calls <= prompts + concurrency", kill["billed_total"] <= kill["bound"]))
    verdicts.append(("kill: every row completed after restart", kill["ok"] == n))

    rows = list(dict.fromkeys(k for column in columns.values() for k in column))
    width = max(len(r) for r in rows) + 2
    col_width = max(24, *(len(v) + 2 for column in columns.values() for v in column.values()))
    print()
    print("".ljust(width) + "".join(name.ljust(col_width) for name in columns))
    for row in rows:
        print(row.ljust(width) + "".join(column.get(row, "-").ljust(col_width) for column in columns.values()))
    print()
    for text, passed in verdicts:
        print(f"{'PASS' if passed else 'FAIL'}  {text}")
    return 0 if all(passed for _, passed in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

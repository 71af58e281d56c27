"""Benchmark of `tunekit validate`: rows per second and peak memory on generated Gemini-format files.

Generates files of N rows (about 1 KB each, Gemini ``contents`` with a ``systemInstruction``) in a temporary
folder, then runs, each in its own process so that peak RSS is that run's alone (read with ``os.wait4``):

- ``tunekit validate`` (the CLI, every check of a supervised Gemini dataset on), and
- a naive baseline: pandas ``read_json(lines=True)`` and the same row checks applied row by row.

Targets on a 2-core machine: >= 100,000 rows/s, peak RSS < 500 MB at 1M rows, RSS(1M) <= 1.3 x RSS(100k).

Usage: ``.venv/bin/python bench/validate.py [--rows 100000 1000000] [--no-baseline] [--baseline-max-rows N]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

WORDS = (
    "the customer asked about billing shipping account refund order delivery invoice password login error "
    "network update device screen battery warranty return policy address payment card subscription plan "
    "upgrade cancel support ticket agent reply thanks please today tomorrow week month team product"
).split()

BASELINE = r"""
import sys, time
import pandas as pd
from tunekit.components.data_validation.checks import RowChecker
from tunekit.components.data_validation.findings import Findings
from tunekit.components.data_validation.quality import template_signature
path = sys.argv[1]
start = time.perf_counter()
frame = pd.read_json(path, lines=True)
findings = Findings()
checker = RowChecker(findings, path, "supervised", "gemini")
seen = set()
for line, record in enumerate(frame.to_dict("records"), start=1):
    record = {k: v for k, v in record.items() if not (isinstance(v, float) and v != v)}
    row = checker.check(record, line)
    if row is not None:
        template_signature(row[0])
        key = (row[5], row[6])
        if key in seen:
            findings.add("duplicate", path, line, None, "duplicate")
        seen.add(key)
print(time.perf_counter() - start)
"""


def make_file(path: str, rows: int, seed: int = 0) -> int:
    """Writes ``rows`` Gemini-format rows of about 1 KB; returns the file size."""
    rng = random.Random(seed)
    system = {
        "role": "system",
        "parts": [{"text": "You are a support assistant. Answer in two sentences, politely."}],
    }
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            question = " ".join(rng.choices(WORDS, k=74))
            answer = " ".join(rng.choices(WORDS, k=38))
            row = {
                "systemInstruction": system,
                "contents": [
                    {"role": "user", "parts": [{"text": f"Ticket {i}: {question}"}]},
                    {"role": "model", "parts": [{"text": answer}]},
                ],
            }
            handle.write(json.dumps(row) + "\n")
    return os.path.getsize(path)


def run_measured(command: list[str]) -> tuple[float, float, int, str]:
    """Runs ``command``; returns (wall seconds, peak RSS in MB, exit status, stdout)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, process.returncode, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--baseline-max-rows",
        type=int,
        default=200_000,
        help="skip the pandas baseline above this many rows (it needs ~8 GB at 1M rows)",
    )
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = os.path.join(tmp, f"gemini_{rows}.jsonl")
            size = make_file(path, rows)
            command = [
                sys.executable,
                "-m",
                "tunekit.components.data_validation.cli",
                path,
                "--method",
                "supervised",
                "--model",
                "gemini-2.5-flash",
                "--report",
                os.path.join(tmp, "report.json"),
            ]
            wall, rss, status, output = run_measured(command)
            results[rows] = rss
            print(
                f"tunekit validate  {rows:>9,} rows {size / 1e6:7.1f} MB: {wall:6.2f} s, "
                f"{rows / wall:>9,.0f} rows/s, peak RSS {rss:6.1f} MB (exit {status})",
                flush=True,
            )
            if status not in (0, 1):
                print(output)
            if not args.no_baseline and rows <= args.baseline_max_rows:
                wall, rss, status, output = run_measured([sys.executable, "-c", BASELINE, path])
                note = "" if status == 0 else f" (failed, exit {status}: {output.strip().splitlines()[-1:]})"
                print(
                    f"pandas baseline   {rows:>9,} rows {size / 1e6:7.1f} MB: {wall:6.2f} s, "
                    f"{rows / wall:>9,.0f} rows/s, peak RSS {rss:6.1f} MB{note}",
                    flush=True,
                )
            elif not args.no_baseline:
                print(
                    f"pandas baseline   {rows:>9,} rows: skipped (above --baseline-max-rows; ~8 MB of RSS per 1k rows)"
                )
            os.remove(path)
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        print(f"RSS ratio {large:,} / {small:,} rows: {results[large] / results[small]:.2f}x (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs a Cloud Build config's non-container steps on this machine, in dependency order (``make ci-local``).

A step runs here when its builder is a ``python:`` image: this machine's venv stands in for it. Steps of other
builders (the docker builds) are listed as skipped. Substitutions take their declared defaults, with
``PROJECT_ID=local-project``, ``SHORT_SHA`` the checkout's commit and ``TAG_NAME`` empty, so the publish and
schedule-refresh steps take their "skipped" branches and nothing leaves the machine.

Usage: ``python cloudbuild/ci_local.py [--config cloudbuild.yaml] [--print] [--set NAME=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_BUILDER = re.compile(r"^python:")
_SUBSTITUTION = re.compile(r"\$(?:\{(?P<braced>[A-Z_][A-Z0-9_]*)\}|(?P<bare>[A-Z_][A-Z0-9_]*))")


def short_sha() -> str:
    """The checkout's short commit, or ``local`` outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "local"
    except (OSError, subprocess.CalledProcessError):
        return "local"


def substitute(text: str, values: dict[str, str]) -> str:
    """Replaces ``$NAME`` and ``${NAME}`` as Cloud Build does (``$$`` is a literal ``$``); unknown names fail.

    Raises:
        KeyError: A substitution that is neither declared nor built in.
    """
    parts = text.split("$$")
    done = []
    for part in parts:
        done.append(_SUBSTITUTION.sub(lambda m: values[m.group("braced") or m.group("bare")], part))
    return "$".join(done)


def substitutions(config: dict, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The built-in values for a local run plus the config's declared defaults, resolved against each other."""
    values = {"PROJECT_ID": "local-project", "SHORT_SHA": short_sha(), "TAG_NAME": "", "BUILD_ID": "local"}
    values.update({"COMMIT_SHA": values["SHORT_SHA"], "BRANCH_NAME": "", "LOCATION": "global"})
    declared = {k: str(v) for k, v in (config.get("substitutions") or {}).items()}
    declared.update(overrides or {})
    # Defaults may name each other (dynamic substitutions): resolve until nothing changes.
    for _ in range(len(declared) + 1):
        resolved = {k: substitute(v, {**values, **declared}) for k, v in declared.items()}
        if resolved == declared:
            break
        declared = resolved
    return {**values, **declared}


def ordered_steps(config: dict) -> list[dict]:
    """The steps in an order that honours ``waitFor`` (a step without it waits for every step before it)."""
    steps = config.get("steps") or []
    ids = [s.get("id", f"step-{i}") for i, s in enumerate(steps)]
    waits = {}
    for index, (step_id, step) in enumerate(zip(ids, steps, strict=True)):
        wait = step.get("waitFor")
        waits[step_id] = [] if wait == ["-"] else (list(wait) if wait is not None else ids[:index])
    order, seen = [], set()

    def visit(step_id: str, trail: tuple[str, ...] = ()) -> None:
        if step_id in seen:
            return
        if step_id in trail:
            raise ValueError(f"waitFor cycle: {' -> '.join((*trail, step_id))}")
        if step_id not in waits:
            raise ValueError(f"waitFor names an unknown step '{step_id}'")
        for dependency in waits[step_id]:
            visit(dependency, (*trail, step_id))
        seen.add(step_id)
        order.append(step_id)

    for step_id in ids:
        visit(step_id)
    by_id = dict(zip(ids, steps, strict=True))
    return [{"id": step_id, **by_id[step_id]} for step_id in order]


def plan(config: dict, overrides: dict[str, str] | None = None) -> list[dict]:
    """What a local run does: per step, its id, whether it runs here, its command line and environment."""
    values = substitutions(config, overrides)
    result = []
    for step in ordered_steps(config):
        argv = [substitute(str(a), values) for a in step.get("args") or []]
        if step.get("entrypoint"):
            argv = [substitute(step["entrypoint"], values), *argv]
        env = dict(substitute(str(item), values).split("=", 1) for item in step.get("env") or [])
        result.append(
            {
                "id": step["id"],
                "builder": step.get("name", ""),
                "local": bool(LOCAL_BUILDER.match(step.get("name", ""))) and bool(argv),
                "argv": argv,
                "env": env,
            }
        )
    return result


def render(step: dict) -> str:
    """One step as a shell line (what ``--print`` shows)."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in step["env"].items())
    return (env + " " if env else "") + shlex.join(step["argv"])


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "cloudbuild.yaml"))
    parser.add_argument("--print", action="store_true", help="print the steps' commands, run nothing")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a substitution")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    overrides = dict(item.split("=", 1) for item in args.set)
    steps = plan(config, overrides)
    # The python: builder's venv is this checkout's: put it first on PATH, as the image's python would be.
    path = os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", "")
    for step in steps:
        if not step["local"]:
            print(f"== {step['id']}: skipped here (runs in {step['builder']} on Cloud Build)", flush=True)
            continue
        print(f"== {step['id']}: {render(step)}", flush=True)
        if args.print:
            continue
        code = subprocess.run(step["argv"], cwd=ROOT, env={**os.environ, "PATH": path, **step["env"]}).returncode
        if code:
            print(f"== {step['id']} failed with exit code {code}", flush=True)
            return code
    print("== every local step passed" if not args.print else "== (printed only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recreates the retraining schedules of ``cloudbuild/schedules.yaml`` from the templates a release published.

Run by cloudbuild.yaml's refresh-schedules step; every option defaults to the step's environment (PROJECT_ID,
REGION, KFP_REPO, TAG_NAME or SHORT_SHA, PIPELINE_ROOT, SERVICE_ACCOUNT); ``REFRESH_SCHEDULES`` other than
"true" makes it a no-op. ``--dry-run`` prints the ``tunekit`` commands instead of running them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import yaml

REQUIRED = ("method", "config", "cron")
#: Entry fields passed on as the ``tunekit schedule create`` option of the same name (see :func:`flag`).
OPTIONAL = ("name", "max_concurrent_runs", "max_runs", "start_time", "end_time")


def flag(key: str) -> str:
    """The command-line option of a field: ``max_runs`` -> ``--max-runs``."""
    return "--" + key.replace("_", "-")


def load(path: str) -> list[dict]:
    """The schedule entries of ``path``.

    Raises:
        ValueError: The file is not a mapping with a ``schedules`` list of entries with the required fields.
    """
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    entries = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a mapping with a 'schedules' list")
    for index, entry in enumerate(entries):
        missing = [f for f in REQUIRED if not (isinstance(entry, dict) and entry.get(f))]
        if missing:
            raise ValueError(f"{path}: schedule {index + 1} lacks {', '.join(missing)}")
    return entries


def commands(entries: list[dict], args: argparse.Namespace) -> list[list[str]]:
    """The ``tunekit`` argument lists that (re)create each schedule from the published template."""
    result = []
    for entry in entries:
        template = f"{args.kfp_repo.rstrip('/')}/{entry['method']}/{args.version}"
        argv = ["schedule", "create", entry["method"], "--config", entry["config"], "--cron", str(entry["cron"])]
        for value in entry.get("set") or []:
            argv += ["--set", os.path.expandvars(str(value))]
        argv += ["--project", args.project, "--region", args.region, "--pipeline-root", args.pipeline_root]
        # No preflight: this build pushed the images and published the templates the schedules name.
        argv += ["--template", template, "--replace", "--skip-doctor"]
        if args.service_account:
            argv += ["--service-account", args.service_account]
        for key in OPTIONAL:
            if entry.get(key) not in (None, ""):
                argv += [flag(key), str(entry[key])]
        if entry.get("allow_queueing"):
            argv.append("--allow-queueing")
        for key, value in (entry.get("labels") or {}).items():
            argv += ["--label", f"{key}={value}"]
        argv += ["--label", f"tunekit-release={args.version}"]
        result.append(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", default="cloudbuild/schedules.yaml")
    parser.add_argument("--project", default=env("PROJECT_ID", ""))
    parser.add_argument("--region", default=env("REGION", "us-central1"))
    parser.add_argument("--kfp-repo", default=env("KFP_REPO", ""))
    # publish.sh's version: the git tag, else cloudbuild/image_tag.sh's tag (manual-BUILD_ID without SHORT_SHA).
    manual = f"manual-{env('BUILD_ID', '')}" if env("BUILD_ID", "") else ""
    parser.add_argument("--version", default=env("TAG_NAME") or env("SHORT_SHA", "") or manual)
    parser.add_argument("--pipeline-root", default=env("PIPELINE_ROOT", ""))
    parser.add_argument("--service-account", default=env("SERVICE_ACCOUNT", ""))
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    if not args.dry_run and env("REFRESH_SCHEDULES", "true") != "true":
        print(f"schedule refresh skipped (REFRESH_SCHEDULES={env('REFRESH_SCHEDULES')})")
        return 0
    missing = [flag(k) for k in ("project", "kfp_repo", "version", "pipeline_root") if not getattr(args, k)]
    if missing:
        print(f"error: {', '.join(missing)} not set", file=sys.stderr)
        return 2
    planned = commands(load(args.schedules), args)
    if args.dry_run:
        for item in planned:
            print("tunekit " + shlex.join(item))
        return 0
    from tunekit.pipelines.cli import main as tunekit

    for item in planned:
        print("tunekit " + shlex.join(item), flush=True)
        code = tunekit(item)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

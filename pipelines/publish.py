"""Uploading compiled specs to an Artifact Registry Kubeflow Pipelines repository (run by Cloud Build).

Usage: ``python -m tunekit.pipelines.publish --host https://REGION-kfp.pkg.dev/PROJECT/REPO --dir compiled
--tag v0.1.0 --tag latest``.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from tunekit.components.common.errors import UserError


def publish(host: str, directory: str, tags: list[str], client=None) -> list[tuple[str, str]]:
    """Uploads every ``*.yaml`` in ``directory`` with ``tags``; returns ``(template name, version)`` pairs.

    Raises:
        UserError: ``directory`` holds no compiled spec (a release that uploads nothing must not pass).
    """
    paths = sorted(glob.glob(os.path.join(directory, "*.yaml")))
    if not paths:
        raise UserError(
            "no compiled specs (*.yaml) to upload; run `tunekit compile --output-dir DIR` first", path=directory
        )
    if client is None:
        from kfp.registry import RegistryClient

        client = RegistryClient(host=host)
    uploaded = []
    for path in paths:
        uploaded.append(client.upload_pipeline(file_name=path, tags=tags))
    return uploaded


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="https://REGION-kfp.pkg.dev/PROJECT/REPOSITORY")
    parser.add_argument("--dir", default="compiled", help="folder of compiled specs")
    parser.add_argument("--tag", action="append", default=[], help="tag for the uploaded versions (repeatable)")
    args = parser.parse_args(argv)
    try:
        uploaded = publish(args.host, args.dir, args.tag)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, version in uploaded:
        print(
            f"uploaded {name} version {version} tagged {', '.join(args.tag) or '-'}: {args.host.rstrip('/')}/{name}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

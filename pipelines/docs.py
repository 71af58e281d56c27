"""Writes ``docs/configuration.md``: every method's config fields, defaults and meanings (``make docs``)."""

from __future__ import annotations

import sys

from tunekit.pipelines.config import describe
from tunekit.pipelines.registry import METHODS

HEADER = """# Configuration reference

Generated from the config dataclasses by `make docs`; do not edit by hand. Each field is a pipeline parameter of
the same name. Set fields in a YAML file (`--config`) and override them with `--set FIELD=VALUE`.

The `allowed` column is checked when the config is loaded, before any step runs (`tunekit run`, `submit` and
`schedule` alike): a value outside it fails at once with one line naming the file, the line, the field and what is
allowed. Local paths are checked to exist; `gs://` URIs are not checked offline.
"""


def render() -> str:
    """The whole reference page."""
    parts = [HEADER]
    for method in METHODS.values():
        _, config_cls = method.load()
        doc = (config_cls.__doc__ or "").strip().splitlines()[0]
        parts.append(f"\n## `{method.name}` ({config_cls.__name__})\n\n{doc}\n\n{describe(config_cls)}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Writes the page to the path given (default ``docs/configuration.md``)."""
    path = (argv or sys.argv[1:] or ["docs/configuration.md"])[0]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

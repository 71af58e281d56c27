"""Loading a method's config dataclass from YAML with command-line overrides.

Each method has one documented dataclass (every field with its default and its meaning in ``metadata["help"]``).
The same object feeds a local run and the ``parameter_values`` of a Vertex ``PipelineJob``: its fields are the
pipeline's parameters, one for one.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from tunekit.components.common.errors import UserError

#: KFP runtime placeholders that Vertex AI Pipelines resolves to the job's own project and region.
PROJECT_PLACEHOLDER = "{{$.pipeline_google_cloud_project_id}}"
LOCATION_PLACEHOLDER = "{{$.pipeline_google_cloud_location}}"

C = TypeVar("C")


def field(default: Any, help: str, *, required: bool = False) -> Any:  # noqa: A002 - mirrors argparse's name
    """A dataclass field with a documented meaning; mutable defaults are copied per instance.

    ``required``: the pipeline parameter has no default (a run must set it; the CLI says so). The dataclass still
    has ``default``, so a config can be loaded before it is complete.
    """
    metadata = {"help": help, "required": True} if required else {"help": help}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(cls: type, name: str, value: Any, source: str) -> Any:
    expected = _field_types(cls)[name]
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        expected = next(a for a in typing.get_args(expected) if a is not type(None))
        origin = typing.get_origin(expected)
    base = origin or expected
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise UserError(
            f"expected {base.__name__}, found {type(value).__name__} ({value!r}); fix the value",
            path=source,
            field=name,
        )
    return value


def load_config(cls: type[C], path: str | None = None, overrides: list[str] | None = None) -> C:
    """Builds a config from a YAML file and ``key=value`` overrides (values parsed as YAML).

    Relative paths in fields whose name ends with ``_uri`` are resolved against the config file's folder, so an
    example config runs from any working directory.

    Raises:
        UserError: The file is missing or not a mapping, a key is unknown, or a value has the wrong type.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    base_dir = os.getcwd()
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise UserError("config file not found; check the path", path=path) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise UserError(
                f"not valid YAML ({getattr(exc, 'problem', exc)})",
                path=path,
                line=mark.line + 1 if mark else None,
            ) from None
        if not isinstance(loaded, dict):
            raise UserError("expected a mapping of field: value", path=path)
        base_dir = os.path.dirname(os.path.abspath(path))
        for key, value in loaded.items():
            if key not in names:
                raise UserError(f"unknown field; known fields: {', '.join(sorted(names))}", path=path, field=key)
            values[key] = _coerce(cls, key, value, path)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise UserError(
                f"override '{item}' must be FIELD=VALUE with a known field ({', '.join(sorted(names))})",
                path="--set",
            )
        value = yaml.safe_load(raw) if raw.strip() else ""
        values[key] = _coerce(cls, key, value, "--set")
    for key, value in list(values.items()):
        if key.endswith("_uri") and isinstance(value, str) and value and "://" not in value:
            values[key] = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
    ]
    if missing:
        raise UserError(f"required field(s) missing: {', '.join(missing)}", path=path or "config")
    return cls(**values)


def parameter_values(config: Any) -> dict[str, Any]:
    """The pipeline parameter values of a config: every field, as a plain JSON-able dict."""
    return dataclasses.asdict(config)


def describe(cls: type) -> str:
    """A Markdown table of a config's fields, defaults and meanings (for docs and ``--help``)."""
    rows = ["| field | default | meaning |", "| --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append(f"| `{f.name}` | `{default}` | {f.metadata.get('help', '')} |")
    return "\n".join(rows)

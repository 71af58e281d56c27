"""Loading a method's config dataclass from YAML with command-line overrides, and checking it before any step.

Each method has one documented dataclass (every field with its default and its meaning in ``metadata["help"]``).
The same object feeds a local run and the ``parameter_values`` of a Vertex ``PipelineJob``: its fields are the
pipeline's parameters, one for one.

A field also declares what its value may be (``field(..., choices=..., ge=..., exists=True, ...)``: see
:func:`field`); :func:`load_config` checks every value that can be checked without running anything (allowed
values, ranges, local files and model folders that must exist, the keys of ``local_options``) and fails on the
first bad one with one line naming the file, the line, the field and what is allowed. The allowed values are
never listed twice: a check names the constant of the code that consumes the value (``"module:ATTRIBUTE"``,
resolved when the check runs, so loading a config imports only what its checks need).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import yaml

from tunekit.components.common.errors import UserError

#: KFP runtime placeholders that Vertex AI Pipelines resolves to the job's own project and region.
PROJECT_PLACEHOLDER = "{{$.pipeline_google_cloud_project_id}}"
LOCATION_PLACEHOLDER = "{{$.pipeline_google_cloud_location}}"

C = TypeVar("C")

#: A ``"package.module:ATTRIBUTE"`` reference to what a check needs from the code that consumes the value.
Ref = str


_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def resolve(ref: Ref | Callable[[], Any] | Any) -> Any:
    """The object a check refers to: ``"module:ATTRIBUTE"`` imported, a callable called, anything else as is."""
    if isinstance(ref, str) and _REF.fullmatch(ref):
        module, _, name = ref.partition(":")
        value: Any = importlib.import_module(module)
        for part in name.split("."):
            value = getattr(value, part)
        return value
    if callable(ref) and not isinstance(ref, type):
        return ref()
    return ref


def resolve_values(refs: Ref | Sequence[Any]) -> list[Any]:
    """Allowed values: those of one :data:`Ref` to a collection, or of a list of values and :data:`Ref` s.

    In a list, a Ref to one value adds that value and a Ref to a collection adds its items.
    """
    if isinstance(refs, str):
        return list(resolve(refs))
    found: list[Any] = []
    for item in refs:
        value = resolve(item)
        if isinstance(value, (str, int, float)) or value is None:
            found.append(value)
        else:
            found.extend(value)
    return found


def _suggest(value: Any, allowed: Sequence[Any]) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _is_local_path(value: str) -> bool:
    # gs:// (and any other scheme) cannot be checked offline; /gcs/... is Cloud Storage mounted inside Vertex AI
    # Pipelines (components/common/uris.py GCS_FUSE_ROOT), absent here.
    return bool(value) and "://" not in value and not value.startswith("/gcs/")


@dataclasses.dataclass(frozen=True)
class Check:
    """One static check of a field's value, optionally only when other fields have given values.

    Attributes:
        kind: ``one_of``, ``range``, ``set`` (not empty), ``exists``, ``cloud`` (a ``gs://`` URI), ``model``,
            ``keys`` or ``call``.
        values: ``one_of``: the allowed values (a :data:`Ref`, or a sequence of values and Refs); ``keys``: the dataclass
            whose fields are the mapping's allowed keys; ``model``: names that need no folder (prefixes ending in
            ``:`` or whole names); ``call``: a function that raises ``UserError`` on a bad value.
        extra: ``one_of``: values allowed besides ``values`` (``0`` for "let Vertex choose"); ``call``: the
            values to list in the docs (a :data:`Ref`).
        bounds: ``range``: ``(operator, limit)`` pairs, operators ``>=``, ``>``, ``<=``, ``<``; a limit may be a
            :data:`Ref` to the consumer's constant.
        when: Applies only when each named field has the value given (or one of a tuple of values).
        label: ``call``: what the function checks, for the docs; ``cloud``: who reads the data from Cloud Storage.
        with_config: ``call``: the function is called with the whole config too (``function(value, config)``).
    """

    kind: str
    values: Any = None
    extra: tuple = ()
    bounds: tuple[tuple[str, float | Ref], ...] = ()
    when: tuple[tuple[str, Any], ...] = ()
    label: str = ""
    with_config: bool = False

    def _conditions(self) -> list[tuple[str, list[Any]]]:
        """``when`` with its values resolved (a condition may name the consumer's constant by :data:`Ref`)."""
        return [
            (name, resolve_values(wanted if isinstance(wanted, tuple) else (wanted,)))
            for name, wanted in self.when
        ]

    def applies(self, config: Any) -> bool:
        """Whether the ``when`` conditions hold for ``config``."""
        return all(getattr(config, name) in wanted for name, wanted in self._conditions())

    def allowed(self) -> list[Any]:
        """``one_of``: every allowed value; ``keys``: every allowed key; ``model``: the names needing no folder."""
        if self.kind == "keys":
            return [f.name for f in dataclasses.fields(resolve(self.values))]
        return [*self.extra, *resolve_values(self.values)]

    def problems(self, value: Any, config: Any = None) -> Iterator[tuple[str, str]]:
        """``(key, message)`` for each problem of ``value`` (``key``: the bad key inside a mapping, else '').

        ``config``: the whole config, for a ``call`` check ``with_config``.
        """
        if self.kind == "one_of":
            allowed = self.allowed()
            if value not in allowed:
                listed = ", ".join(repr(a) if a == "" else str(a) for a in allowed)
                yield "", f"{value!r} is not one of: {listed}{_suggest(value, allowed)}"
        elif self.kind == "range":
            for op, limit in self._bounds():
                ok = {">=": value >= limit, ">": value > limit, "<=": value <= limit, "<": value < limit}[op]
                if not ok:
                    yield "", f"must be {self._bounds_text()}, not {value!r}"
                    return
        elif self.kind == "set":
            if value in ("", None, [], {}):
                yield "", f"must be set {self._when_text()}"
        elif self.kind == "cloud":
            if isinstance(value, str) and value and not value.startswith("gs://"):
                yield "", f"{self.label}: '{value}' must be a gs:// URI; upload it first"
        elif self.kind == "exists":
            if isinstance(value, str) and _is_local_path(value) and not os.path.exists(value):
                yield (
                    "",
                    f"'{value}' does not exist; check the path (relative paths are read from the config's folder)",
                )
        elif self.kind == "model":
            names = self.allowed()
            named = any(value == n or (n.endswith(":") and value.startswith(n)) for n in names)
            if _is_local_path(value) and not named and not os.path.isdir(value):
                yield (
                    "",
                    (
                        f"'{value}' is not a model folder on this machine; give a local model directory "
                        f"(or {' or '.join(n + '...' if n.endswith(':') else n for n in names)})"
                    ),
                )
        elif self.kind == "keys":
            yield from self._key_problems(value)
        elif self.kind == "call":
            function = resolve(self.values) if isinstance(self.values, str) else self.values
            try:
                function(value, config) if self.with_config else function(value)
            except UserError as exc:
                yield "", exc.message
            except (TypeError, ValueError, AttributeError) as exc:  # a shape the consumer cannot read at all
                yield "", f"cannot be read as {self.label} ({exc})"

    def _key_problems(self, value: Any) -> Iterator[tuple[str, str]]:
        target = resolve(self.values)
        known = {f.name: f for f in dataclasses.fields(target)}
        hints = typing.get_type_hints(target)
        for key, item in (value or {}).items():
            if key not in known:
                yield (
                    str(key),
                    (f"unknown key of {target.__name__}{_suggest(key, list(known))} (known: {', '.join(known)})"),
                )
            elif not _matches(hints[key], item):
                yield str(key), f"expected {_type_name(hints[key])}, found {type(item).__name__} ({item!r})"

    def _when_text(self) -> str:
        return "when " + " and ".join(f"{k} is {' or '.join(map(repr, v))}" for k, v in self._conditions())

    def _bounds(self) -> list[tuple[str, float]]:
        return [(op, resolve(limit)) for op, limit in self.bounds]

    def _bounds_text(self) -> str:
        return " and ".join(f"{op} {limit:g}" for op, limit in self._bounds())

    def describe(self) -> str:
        """The check in a few words, for docs/configuration.md."""
        if self.kind == "set":
            return f"set {self._when_text()}"
        if self.kind == "cloud":
            return f"a gs:// URI {self._when_text()} ({self.label})"
        if self.kind == "one_of":
            text = "one of " + ", ".join(f"`{a!r}`" if a == "" else f"`{a}`" for a in self.allowed())
        elif self.kind == "range":
            text = self._bounds_text()
        elif self.kind == "exists":
            text = "a local path must exist (gs:// is not checked)"
        elif self.kind == "model":
            text = "a local model folder, or " + ", ".join(
                f"`{n}...`" if n.endswith(":") else f"`{n}`" for n in self.allowed()
            )
        elif self.kind == "keys":
            target = resolve(self.values)
            text = f"keys: the fields of {target.__name__} (" + ", ".join(f"`{k}`" for k in self.allowed()) + ")"
        else:
            text = self.label
            if self.extra:
                text += ": " + ", ".join(f"`{v}`" for v in resolve_values(self.extra))
        if self.when:
            conditions = ", ".join(f"{k} {'/'.join(map(repr, v))}" for k, v in self._conditions())
            text = f"with {conditions}: {text}"
        return text


def _matches(expected: Any, value: Any) -> bool:
    """Whether ``value`` (from YAML) fits the type ``expected`` of a trainer's config field."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is Any:
        return True
    base = origin or expected
    if base is bool:
        return isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if base in (list, tuple):
        args = typing.get_args(expected)
        return isinstance(value, (list, tuple)) and (not args or all(_matches(args[0], v) for v in value))
    return isinstance(value, base) if isinstance(base, type) else True


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", str(expected))


def _when(when: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple((when or {}).items())


def one_of(
    values: Ref | Sequence[Any], *, extra: Sequence[Any] = (), when: Mapping[str, Any] | None = None
) -> Check:
    """The value must be one of ``values`` (the consumer's constant, by :data:`Ref`) or of ``extra``."""
    return Check("one_of", values=values, extra=tuple(extra), when=_when(when))


def in_range(
    *,
    ge: float | Ref | None = None,
    gt: float | Ref | None = None,
    le: float | Ref | None = None,
    lt: float | Ref | None = None,
    when: Mapping[str, Any] | None = None,
) -> Check:
    """The number must lie within the bounds given (``ge`` >=, ``gt`` >, ``le`` <=, ``lt`` <)."""
    ops = ((">=", ge), (">", gt), ("<=", le), ("<", lt))
    return Check("range", bounds=tuple((op, limit) for op, limit in ops if limit is not None), when=_when(when))


def required_when(**when: Any) -> Check:
    """The value must not be empty when the other fields have the values given (``teacher_backend="scripted"``)."""
    return Check("set", when=_when(when))


def in_cloud_storage(reader: str, **when: Any) -> Check:
    """The value, when set, must be a ``gs://`` URI while the other fields have the values given.

    ``reader`` says who reads it from Cloud Storage itself (a Vertex AI service), for the message and the docs.
    """
    return Check("cloud", label=reader, when=_when(when))


def existing_path(*, when: Mapping[str, Any] | None = None) -> Check:
    """A local path (not '' or ``gs://``) must exist."""
    return Check("exists", when=_when(when))


def model_folder(names: Ref | Sequence[str], *, when: Mapping[str, Any] | None = None) -> Check:
    """A local model folder must exist, unless the value is one of ``names`` (``tiny-random:`` prefixes...)."""
    return Check("model", values=names, when=_when(when))


def known_keys(config_class: Ref | type) -> Check:
    """A mapping's keys must be fields of ``config_class`` (a trainer's config) and its values of their types."""
    return Check("keys", values=config_class)


def checked_by(
    function: Ref | Callable[[Any], Any],
    label: str,
    *,
    listing: Ref | None = None,
    with_config: bool = False,
    when: Mapping[str, Any] | None = None,
) -> Check:
    """The consumer's own check: ``function(value)`` raises ``UserError`` on a bad value.

    ``label`` says what it checks in the docs, followed by the values of ``listing`` when given; ``with_config``
    calls ``function(value, config)``, for a value the consumer reads together with other fields.
    """
    return Check(
        "call",
        values=function,
        label=label,
        extra=(listing,) if listing else (),
        with_config=with_config,
        when=_when(when),
    )


def field(
    default: Any,
    help: str,  # noqa: A002 - mirrors argparse's name
    *,
    required: bool = False,
    choices: Ref | Sequence[Any] | None = None,
    ge: float | Ref | None = None,
    gt: float | Ref | None = None,
    le: float | Ref | None = None,
    lt: float | Ref | None = None,
    exists: bool = False,
    checks: Sequence[Check] = (),
) -> Any:
    """A dataclass field with a documented meaning and its static checks; mutable defaults are copied per instance.

    ``required``: the pipeline parameter has no default (a run must set it; the CLI says so). The dataclass still
    has ``default``, so a config can be loaded before it is complete.

    ``choices`` (:func:`one_of`), ``ge``/``gt``/``le``/``lt`` (:func:`in_range`), ``exists``
    (:func:`existing_path`) and ``checks`` (any :class:`Check`, e.g. with a ``when`` condition) are checked by
    :func:`load_config` and listed in docs/configuration.md.
    """
    found = list(checks)
    if choices is not None:
        found.insert(0, one_of(choices))
    if any(limit is not None for limit in (ge, gt, le, lt)):
        found.insert(0, in_range(ge=ge, gt=gt, le=le, lt=lt))
    if exists:
        found.insert(0, existing_path())
    metadata: dict[str, Any] = {"help": help}
    if required:
        metadata["required"] = True
    if found:
        metadata["checks"] = tuple(found)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_checks(cls: type, name: str) -> tuple[Check, ...]:
    """The static checks declared on one field of a config dataclass."""
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("checks", ())


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(cls: type, name: str, value: Any, source: str, line: int | None = None) -> Any:
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
            line=line,
            field=name,
        )
    return value


def _parse(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The YAML document (as ``yaml.safe_load`` reads it) and the lines of its keys, from one parse.

    Raises:
        yaml.YAMLError: Not valid YAML.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), _key_lines(root)
    finally:
        loader.dispose()


def _key_lines(root: Any) -> dict[tuple[str, ...], int]:
    """The 1-based line of each top-level key and of the keys of mappings nested one level under them."""
    lines: dict[tuple[str, ...], int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode):
            lines[(key.value,)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    if isinstance(sub, yaml.ScalarNode):
                        lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


def check_config(
    config: Any,
    sources: Mapping[str, tuple[str, Mapping[tuple[str, ...], int]]] | None = None,
    *,
    default_source: str = "config",
) -> None:
    """Runs every field's static checks on ``config``; raises on the first problem.

    Args:
        config: A config dataclass instance.
        sources: Where each field's value came from: ``field -> (file or '--set', key lines)``.
        default_source: What a field left at its default is reported against (the config file, if any).

    Raises:
        UserError: One line: the file and line, the field (``local_options.lora_alpah`` for a key inside a
            mapping), what is wrong and what is allowed.
    """
    sources = sources or {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        for check in f.metadata.get("checks", ()):
            if not check.applies(config):
                continue
            for key, message in check.problems(value, config):
                path, lines = sources.get(f.name, (f"{default_source} (default value)", {}))
                line = lines.get((f.name, key) if key else (f.name,))
                raise UserError(message, path=path, line=line, field=f"{f.name}.{key}" if key else f.name)


def load_config(cls: type[C], path: str | None = None, overrides: list[str] | None = None) -> C:
    """Builds a config from a YAML file and ``key=value`` overrides (values parsed as YAML), then checks it.

    Relative paths in fields whose name ends with ``_uri`` are resolved against the config file's folder, so an
    example config runs from any working directory. Every field's static checks (:func:`check_config`) run before
    the config is returned, for local runs and submissions alike.

    Raises:
        UserError: The file is missing or not a mapping, a key is unknown, a value has the wrong type, or a value
            fails its field's checks.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    sources: dict[str, tuple[str, Mapping[tuple[str, ...], int]]] = {}
    base_dir = os.getcwd()
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            loaded, lines = _parse(text)
            loaded = loaded or {}
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
            line = lines.get((str(key),))
            if key not in names:
                raise UserError(
                    f"unknown field{_suggest(key, names)}; known fields: {', '.join(sorted(names))}",
                    path=path,
                    line=line,
                    field=key,
                )
            values[key] = _coerce(cls, key, value, path, line)
            sources[key] = (path, lines)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise UserError(
                f"override '{item}' must be FIELD=VALUE with a known field{_suggest(key, names)} "
                f"({', '.join(sorted(names))})",
                path="--set",
            )
        value = yaml.safe_load(raw) if raw.strip() else ""
        values[key] = _coerce(cls, key, value, "--set")
        sources[key] = ("--set", {})
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
    config = cls(**values)
    check_config(config, sources, default_source=path or "config")
    return config


def parameter_values(config: Any) -> dict[str, Any]:
    """The pipeline parameter values of a config: every field, as a plain JSON-able dict."""
    return dataclasses.asdict(config)


def describe(cls: type) -> str:
    """A Markdown table of a config's fields, defaults, meanings and allowed values (for docs and ``--help``)."""
    rows = ["| field | default | meaning | allowed |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        allowed = "; ".join(check.describe() for check in f.metadata.get("checks", ()))
        rows.append(f"| `{f.name}` | `{default}` | {f.metadata.get('help', '')} | {allowed} |")
    return "\n".join(rows)


def check_region(region: str) -> str:
    """Returns ``region`` when aiplatform knows it as a Vertex AI region (its ``utils.validate_region``).

    Raises:
        UserError: It does not (aiplatform raises a ValueError listing every region, deep in its client set-up).
    """
    from google.cloud.aiplatform import utils

    try:
        utils.validate_region(region)
    except ValueError:
        raise UserError(
            f"'{region}' is not a Vertex AI region: give one such as us-central1 or europe-west4 (see "
            "https://cloud.google.com/vertex-ai/docs/general/locations)",
            field="--region",
        ) from None
    return region

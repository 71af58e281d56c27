"""Each pipeline parameter is written once: signatures come from the config, component inputs are wired by name."""

import dataclasses
import inspect
import typing

import pytest
import yaml
from kfp import compiler, dsl
from pipeline_helpers import field_default

from tunekit.pipelines.config import field
from tunekit.pipelines.registry import METHODS
from tunekit.pipelines.retraining import FINGERPRINT_PARAMETER, FORCE_FIELD, retrain_on_new_data
from tunekit.pipelines.wiring import DEFAULT, Parameters, WiringError, config_pipeline, wire


def _expected(config_cls, *, exclude=()):
    hints = typing.get_type_hints(config_cls)
    expected = []
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        default = inspect.Parameter.empty if f.metadata.get("required") else field_default(f)
        expected.append((f.name, hints[f.name], default))
    return expected


def _actual(func):
    return [(p.name, p.annotation, p.default) for p in inspect.signature(func).parameters.values()]


@pytest.mark.parametrize("name", list(METHODS))
def test_signatures_are_the_config_fields(name):
    pipeline, config_cls = METHODS[name].load()
    assert _actual(pipeline.pipeline_func) == _expected(config_cls)
    graph = pipeline.pipeline_func.graph.pipeline_func
    assert _actual(graph) == [*_expected(config_cls, exclude=(FORCE_FIELD,)), (FINGERPRINT_PARAMETER, str, "")]


@pytest.mark.parametrize("name", list(METHODS))
def test_compiled_root_inputs_are_the_config_fields(name, tmp_path):
    pipeline, config_cls = METHODS[name].load()
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    spec = yaml.safe_load(path.read_text())
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert set(root) == {f.name for f in dataclasses.fields(config_cls)}
    for f in dataclasses.fields(config_cls):
        assert root[f.name].get("isOptional", False) is not bool(f.metadata.get("required")), f.name


@dsl.component(base_image="python:3.11")
def _consume(rank: int, new_option: str, unwired: str = "kept") -> str:
    return f"{rank}{new_option}{unwired}"


@dsl.component(base_image="python:3.11")
def _needs_input(rank: int, no_such_parameter: str) -> str:
    return f"{rank}{no_such_parameter}"


@dataclasses.dataclass
class _Config:
    data_uri: str = field("", "The data.", required=True)
    rank: int = field(4, "A rank.")
    new_option: str = field("x", "A field that the component also takes: it needs no line in the pipeline.")
    unwired: str = field("", "A parameter the component keeps at its own default (DEFAULT).")
    force: bool = field(False, "Train on unchanged data.")
    purpose: str = field("test", "The purpose.")
    backend: str = field("local", "The backend.")
    project: str = field("", "The project.")
    location: str = field("", "The location.")


def test_inputs_are_wired_by_name_and_default_keeps_the_components(tmp_path):
    @config_pipeline(_Config, name="wired")
    def wired(p: Parameters):
        wire(_consume, p, unwired=DEFAULT)

    path = tmp_path / "wired.yaml"
    compiler.Compiler().compile(wired, str(path))
    spec = yaml.safe_load(path.read_text())
    inputs = spec["root"]["dag"]["tasks"]["consume"]["inputs"]["parameters"]
    assert inputs == {
        "rank": {"componentInputParameter": "rank"},
        "new_option": {"componentInputParameter": "new_option"},
    }
    assert list(inspect.signature(wired.pipeline_func).parameters) == [f.name for f in dataclasses.fields(_Config)]


def test_missing_component_input_fails_at_compile_time_naming_it():
    with pytest.raises(WiringError, match=r"component '_needs_input'.*no_such_parameter"):

        @retrain_on_new_data(_Config, name="broken", data=("data_uri",))
        def broken(p: Parameters):
            wire(_needs_input, p)


def test_required_fields_come_first():
    @dataclasses.dataclass
    class Late:
        rank: int = field(4, "A rank.")
        data_uri: str = field("", "The data.", required=True)

    with pytest.raises(TypeError, match="data_uri must come before"):
        config_pipeline(Late, name="late")


def test_unknown_or_undefaultable_inputs_fail():
    with pytest.raises(WiringError, match=r"component '_consume' has no input\(s\) typo"):

        @config_pipeline(_Config, name="typo")
        def typo(p: Parameters):
            wire(_consume, p, typo=1)

    with pytest.raises(WiringError, match=r"'rank' has no default"):

        @config_pipeline(_Config, name="nodefault")
        def nodefault(p: Parameters):
            wire(_consume, p, rank=DEFAULT)

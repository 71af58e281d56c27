import dataclasses
import inspect

import pytest
from pipeline_helpers import field_default

from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import describe, load_config, parameter_values
from tunekit.pipelines.registry import METHODS, get_method


@pytest.mark.parametrize("name", list(METHODS))
def test_config_fields_are_the_pipeline_parameters(name):
    pipeline_func, config_cls = METHODS[name].load()
    signature = inspect.signature(pipeline_func.pipeline_func)
    params = {n: p.default for n, p in signature.parameters.items()}
    inputs = pipeline_func.component_spec.inputs  # what KFP read from the signature
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    assert list(params) == list(fields) == list(inputs)
    for field_name, f in fields.items():
        if params[field_name] is not inspect.Parameter.empty:
            assert params[field_name] == field_default(f) == inputs[field_name].default, field_name
        assert f.metadata.get("help"), f"{field_name} has no documented meaning"


def test_load_yaml_with_overrides_resolves_relative_uris(tmp_path):
    _, cls = get_method("supervised-tuning").load()
    (tmp_path / "c.yaml").write_text("train_dataset_uri: data/train.jsonl\ntask: classification\nepoch_count: 3\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("")  # a local data path must exist (see test_preflight.py)
    config = load_config(cls, str(tmp_path / "c.yaml"), ["learning_rate_multiplier=2", "labels={team: nlp}"])
    assert config.train_dataset_uri == str(tmp_path / "data" / "train.jsonl")
    assert config.epoch_count == 3
    assert config.learning_rate_multiplier == 2.0
    assert config.labels == {"team": "nlp"}
    assert parameter_values(config)["task"] == "classification"


def test_gs_uris_are_kept():
    _, cls = get_method("supervised_tuning").load()
    config = load_config(cls, None, ["train_dataset_uri=gs://b/train.jsonl"])
    assert config.train_dataset_uri == "gs://b/train.jsonl"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense_field: 1\n", "unknown field"),
        ("epoch_count: three\n", "expected int"),
        ("- a\n- b\n", "expected a mapping"),
        ("task: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_a_user_error(tmp_path, text, message):
    _, cls = get_method("supervised-tuning").load()
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        load_config(cls, str(path))
    assert str(path) in str(info.value)


def test_missing_config_file_and_bad_override():
    _, cls = get_method("supervised-tuning").load()
    with pytest.raises(UserError, match="not found"):
        load_config(cls, "/nonexistent/config.yaml")
    with pytest.raises(UserError, match="FIELD=VALUE"):
        load_config(cls, None, ["no_such_field=1"])


def test_unknown_method():
    with pytest.raises(UserError, match="unknown method"):
        get_method("magic-tuning")


def test_describe_lists_every_field():
    _, cls = get_method("supervised-tuning").load()
    table = describe(cls)
    for f in dataclasses.fields(cls):
        assert f"`{f.name}`" in table

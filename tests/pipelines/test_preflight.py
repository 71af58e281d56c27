"""Preflight: every value that can be checked statically fails when the config is loaded, with one line.

Issue 15: a bad value in a valid field, a missing data file or model folder, a typo inside ``local_options`` and
out-of-range numbers used to fail only inside a step (after KFP's retries) or to be replaced silently by a default.
"""

import dataclasses
import glob
import os

import pytest
from pipeline_helpers import EXAMPLES

from tunekit.components.common.errors import UserError
from tunekit.pipelines import cli
from tunekit.pipelines.config import describe, field_checks, load_config, resolve
from tunekit.pipelines.registry import METHODS, get_method


def _cls(method: str):
    return get_method(method).load()[1]


def _write(tmp_path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def data(tmp_path):
    """A training file that exists, for configs that are otherwise valid."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"input_text": "a", "output_text": "b"}\n')
    return str(path)


def test_a_bad_enum_value_names_file_line_field_allowed_values_and_a_close_match(tmp_path, data):
    path = _write(
        tmp_path, f"train_dataset_uri: {data}\nbackend: local\nbase_model: tiny-random:t5\ntask: clasification\n"
    )
    with pytest.raises(UserError) as info:
        load_config(_cls("supervised-tuning"), path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: field 'task': ")
    assert "did you mean 'classification'?" in message
    for task in ("classification", "summarization", "extractive_qa", "chat", "generic"):
        assert task in message
    assert "\n" not in message


def test_cli_run_with_a_bad_value_exits_2_with_one_line_before_any_step(tmp_path, data, capsys):
    path = _write(
        tmp_path, f"train_dataset_uri: {data}\nbackend: local\nbase_model: tiny-random:t5\ntask: clasification\n"
    )
    out = tmp_path / "out"
    code = cli.main(["run", "supervised-tuning", "--local", "--config", path, "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().count("\n") == 0
    assert "field 'task'" in captured.err and "Traceback" not in captured.err
    assert not out.exists(), "no step may run (nor any folder be made) for a config that cannot run"


@pytest.mark.parametrize(
    ("method", "field", "value", "expected"),
    [
        ("supervised-tuning", "backend", "locl", "did you mean 'local'?"),
        ("preference-tuning", "algorithm", "dpp", "did you mean 'dpo'?"),
        ("distilling-step-by-step", "mode", "multi_task", "did you mean 'multitask'?"),
        (
            "distilling-step-by-step",
            "student_backend",
            "vertex-distillation",
            "did you mean 'vertex_distillation'?",
        ),
        ("distilling-step-by-step", "teacher_backend", "scriptd", "did you mean 'scripted'?"),
        ("distilling-step-by-step", "label_mode", "seperate", "did you mean 'separate'?"),
        ("distilling-step-by-step", "rationale_task_type", "maths", "did you mean 'math'?"),
        ("distilling-step-by-step", "finetuning", "ful", "did you mean 'full'?"),
        ("embedding-tuning", "task_type", "RETRIEVAL_QUERRY", "did you mean 'RETRIEVAL_QUERY'?"),
        ("embedding-tuning", "backend", "vertx", "did you mean 'vertex'?"),
    ],
)
def test_enum_fields_of_every_method_are_checked(method, field, value, expected):
    with pytest.raises(UserError, match=f"field '{field}'") as info:
        load_config(_cls(method), None, [f"{field}={value}"])
    assert expected in str(info.value)
    assert str(info.value).startswith("--set: ")


def test_enum_values_come_from_the_code_that_consumes_them():
    from tunekit.components.evaluation.metrics import TASKS
    from tunekit.components.model_clients.backends import BACKENDS as ENGINE_BACKENDS
    from tunekit.components.model_clients.teachers import SCRIPTED
    from tunekit.components.rationale_extraction.parsing import TASK_TYPES
    from tunekit.components.tuning.distillation.local import MODES
    from tunekit.components.tuning.distillation.steps import STUDENT_BACKENDS
    from tunekit.components.tuning.embedding.vertex import TASK_TYPES as EMBEDDING_TASK_TYPES
    from tunekit.components.tuning.preference.local import ALGORITHMS
    from tunekit.components.tuning.prepare import BACKENDS

    def choices(method, name):
        (check,) = [c for c in field_checks(_cls(method), name) if c.kind == "one_of"]
        return tuple(check.allowed())

    assert choices("supervised-tuning", "task") == TASKS
    assert choices("supervised-tuning", "backend") == BACKENDS
    assert choices("preference-tuning", "algorithm") == ALGORITHMS
    assert choices("distilling-step-by-step", "mode") == MODES
    assert choices("distilling-step-by-step", "student_backend") == STUDENT_BACKENDS
    assert set(choices("distilling-step-by-step", "teacher_backend")) == {SCRIPTED, *ENGINE_BACKENDS}
    assert choices("distilling-step-by-step", "rationale_task_type") == ("", *TASK_TYPES)
    assert choices("embedding-tuning", "task_type") == EMBEDDING_TASK_TYPES


def test_a_missing_data_file_fails_at_load(tmp_path):
    path = _write(tmp_path, "train_dataset_uri: data/missing.jsonl\n")
    with pytest.raises(UserError, match="does not exist") as info:
        load_config(_cls("supervised-tuning"), path)
    assert str(info.value).startswith(f"{path}:1: field 'train_dataset_uri': ")
    assert os.path.join(str(tmp_path), "data", "missing.jsonl") in str(info.value)


def test_gs_uris_and_empty_optional_paths_are_not_checked_offline():
    config = load_config(
        _cls("preference-tuning"),
        None,
        ["train_dataset_uri=gs://b/train.jsonl", "eval_dataset_uri=gs://b/e.jsonl"],
    )
    assert config.prompt_dataset_uri == "" and config.eval_dataset_uri == "gs://b/e.jsonl"


def test_a_local_base_model_folder_must_exist(tmp_path, data):
    path = _write(tmp_path, f"train_dataset_uri: {data}\nbackend: local\nbase_model: /no/such/model\n")
    with pytest.raises(UserError, match="field 'base_model'") as info:
        load_config(_cls("supervised-tuning"), path)
    assert "/no/such/model" in str(info.value) and f"{path}:3" in str(info.value)
    model = tmp_path / "model"
    model.mkdir()
    assert load_config(_cls("supervised-tuning"), path, [f"base_model={model}"]).base_model == str(model)


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("supervised-tuning", ["backend=local", "base_model=tiny-random:t5"]),
        ("preference-tuning", ["backend=local", "base_model=tiny-random:causal"]),
        ("distilling-step-by-step", ["student_backend=local", "student_model=tiny-random:t5"]),
        ("embedding-tuning", ["backend=local", "base_model=bundled:all-minilm-l6-v2"]),
    ],
)
def test_named_demo_models_need_no_folder(method, overrides):
    config = load_config(_cls(method), None, overrides)
    assert config is not None


def test_a_vertex_base_model_must_be_tunable():
    with pytest.raises(UserError, match="field 'base_model'.*cannot be tuned on Vertex AI"):
        load_config(_cls("supervised-tuning"), None, ["backend=vertex", "base_model=gemini-1.0-pro"])
    with pytest.raises(UserError, match="field 'base_model'.*text-embedding-005"):
        load_config(_cls("embedding-tuning"), None, ["backend=vertex", "base_model=text-embedding-999"])
    # The template's own reading of a model name: a full resource name with a version is the same model.
    full = "publishers/google/models/text-embedding-005@001"
    assert load_config(_cls("embedding-tuning"), None, ["backend=vertex", f"base_model={full}"]).base_model == full


def test_vertex_embedding_data_must_be_in_cloud_storage(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("")
    path = _write(tmp_path, "backend: vertex\ncorpus_uri: corpus.jsonl\n")
    with pytest.raises(UserError, match=rf"^{path}:2: field 'corpus_uri': .*reads the data from Cloud Storage: "):
        load_config(_cls("embedding-tuning"), path)
    # The local trainer reads local files.
    load_config(_cls("embedding-tuning"), path, ["backend=local", "base_model=bundled:all-minilm-l6-v2"])


@pytest.mark.parametrize(
    ("method", "key", "suggestion"),
    [
        ("supervised-tuning", "lora_alpah", "lora_alpha"),
        ("preference-tuning", "num_generation", "num_generations"),
        ("distilling-step-by-step", "finetunning", "finetuning"),
    ],
)
def test_a_typo_inside_local_options_fails_at_load(tmp_path, method, key, suggestion):
    path = _write(tmp_path, f"local_options:\n  seed: 1\n  {key}: 32\n")
    with pytest.raises(UserError) as info:
        load_config(_cls(method), path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: field 'local_options.{key}': ")
    assert f"did you mean '{suggestion}'?" in message


def test_the_preference_trainers_own_checks_run_at_load(tmp_path):
    path = _write(
        tmp_path, "backend: local\nbase_model: tiny-random:causal\nlocal_options:\n  num_generations: 1\n"
    )
    with pytest.raises(UserError, match=rf"^{path}:3: field 'local_options': RLOO needs num_generations >= 2"):
        load_config(_cls("preference-tuning"), path)
    # DPO samples nothing: one generation is fine, as the trainer says.
    assert load_config(_cls("preference-tuning"), path, ["algorithm=dpo"]).algorithm == "dpo"


def test_a_scripted_teacher_needs_its_script_and_prices_are_parsed_at_load():
    cls = _cls("distilling-step-by-step")
    with pytest.raises(
        UserError, match="field 'teacher_script_uri': must be set when teacher_backend is 'scripted'"
    ):
        load_config(cls, None, ["teacher_backend=scripted"])
    with pytest.raises(UserError, match="field 'price_table'.*negative"):
        load_config(cls, None, ["price_table={gemini-2.5-pro: {input: -1, output: 2}}"])
    assert load_config(cls, None, ["price_table={gemini-2.5-pro: {input: 1, output: 2}}"]).price_table


def test_local_options_values_have_their_trainers_types(tmp_path):
    path = _write(tmp_path, "local_options:\n  lora_alpha: big\n")
    with pytest.raises(UserError, match="field 'local_options.lora_alpha': expected int"):
        load_config(_cls("supervised-tuning"), path)


def test_local_options_keys_are_the_trainers_fields():
    from tunekit.components.tuning.distillation.local import DistillTuningConfig
    from tunekit.components.tuning.lora import LocalTuningConfig
    from tunekit.components.tuning.preference.local import PreferenceLocalConfig

    def keys(method):
        (check,) = [c for c in field_checks(_cls(method), "local_options") if c.kind == "keys"]
        return set(check.allowed())

    assert keys("supervised-tuning") == {f.name for f in dataclasses.fields(LocalTuningConfig)}
    assert keys("preference-tuning") == {f.name for f in dataclasses.fields(PreferenceLocalConfig)}
    assert keys("distilling-step-by-step") == {f.name for f in dataclasses.fields(DistillTuningConfig)}


@pytest.mark.parametrize(
    ("method", "setting", "message"),
    [
        ("supervised-tuning", "train_steps=-3", ">= 0"),
        ("supervised-tuning", "batch_size=-1", ">= 0"),
        ("supervised-tuning", "learning_rate=-0.1", ">= 0"),
        ("supervised-tuning", "epoch_count=-1", ">= 0"),
        ("supervised-tuning", "learning_rate_multiplier=-2", ">= 0"),
        ("supervised-tuning", "adapter_size=3", "one of"),
        ("supervised-tuning", "validation_split=1.5", "< 1"),
        ("supervised-tuning", "max_output_tokens=0", ">= 1"),
        ("preference-tuning", "min_win_rate=2", "< 1"),
        ("preference-tuning", "beta=-1", ">= 0"),
        ("preference-tuning", "eval_split=0", "> 0"),
        ("distilling-step-by-step", "alpha=1.5", "<= 1"),
        ("distilling-step-by-step", "n_samples=0", ">= 1"),
        ("distilling-step-by-step", "num_exemplars=-1", ">= 0"),
        ("distilling-step-by-step", "teacher_temperature=-0.5", ">= 0"),
        ("embedding-tuning", "output_dimensionality=1000", "<= 768"),
        ("embedding-tuning", "batch_size=0", ">= 1"),
        ("embedding-tuning", "train_steps=0", ">= 1"),
    ],
)
def test_out_of_range_numbers_fail_instead_of_becoming_defaults(method, setting, message):
    name, _, value = setting.partition("=")
    with pytest.raises(UserError, match=f"field '{name}'") as info:
        load_config(_cls(method), None, [setting])
    assert message in str(info.value) and value in str(info.value)


def test_a_check_that_depends_on_another_field_applies_only_then():
    cls = _cls("supervised-tuning")
    # No validation data: the split holds rows out, so 0 holds out none and fails.
    with pytest.raises(UserError, match="validation_split"):
        load_config(cls, None, ["validation_split=0"])
    # With validation data the split is not used.
    load_config(cls, None, ["validation_split=0", "validation_dataset_uri=gs://b/v.jsonl"])
    # The embedding template needs at least 30 steps on Vertex; the local trainer does not.
    with pytest.raises(UserError, match="field 'train_steps'.*>= 30"):
        load_config(_cls("embedding-tuning"), None, ["backend=vertex", "train_steps=10"])
    load_config(
        _cls("embedding-tuning"), None, ["backend=local", "base_model=bundled:all-minilm-l6-v2", "train_steps=10"]
    )
    # In-batch negatives need a second pair in the batch (the local trainer); Vertex's template takes 1.
    with pytest.raises(UserError, match="field 'batch_size'.*>= 2"):
        load_config(
            _cls("embedding-tuning"),
            None,
            ["backend=local", "base_model=bundled:all-minilm-l6-v2", "batch_size=1"],
        )
    load_config(_cls("embedding-tuning"), None, ["backend=vertex", "batch_size=1"])


def test_unknown_field_suggests_the_close_one(tmp_path):
    path = _write(tmp_path, "trian_steps: 3\n")
    with pytest.raises(UserError, match="did you mean 'train_steps'?") as info:
        load_config(_cls("supervised-tuning"), path)
    assert str(info.value).startswith(f"{path}:1: field 'trian_steps'")


def _named_by_a_config(example: str) -> bool:
    """Whether another example names this file in a ``*_uri`` field (a reward file is data, not a config)."""
    import yaml

    for other in glob.glob(os.path.join(EXAMPLES, "*.yaml")):
        with open(other, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
        if any(k.endswith("_uri") and v == os.path.basename(example) for k, v in values.items()):
            return True
    return False


@pytest.mark.parametrize("example", sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml"))), ids=os.path.basename)
def test_every_example_still_loads(example):
    if _named_by_a_config(example):
        pytest.skip("a data file that an example config names (its config loads it)")
    name = os.path.basename(example).removesuffix(".yaml")
    for suffix in ("_vertex", "_openai", "_open_model", "_continuous"):
        name = name.removesuffix(suffix)
    cls = _cls(name)
    if example.endswith("_openai.yaml"):
        # This example trains a model folder the user downloads first: it is the one value that cannot pass here.
        with pytest.raises(UserError, match=r"_openai.yaml:\d+: field 'student_model': '/models/flan-t5-base'"):
            load_config(cls, example)
        load_config(cls, example, ["student_model=tiny-random:t5"])
    else:
        load_config(cls, example)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_check_resolves_and_the_docs_show_it(name):
    cls = METHODS[name].load()[1]
    table = describe(cls)
    assert "| allowed |" in table.splitlines()[0]
    for f in dataclasses.fields(cls):
        for check in field_checks(cls, f.name):
            assert check.describe() in table, (f.name, check.describe())


def test_docs_show_allowed_values_and_ranges():
    table = describe(_cls("supervised-tuning"))
    row = next(line for line in table.splitlines() if line.startswith("| `task` |"))
    assert "`classification`" in row and "`chat`" in row
    row = next(line for line in table.splitlines() if line.startswith("| `train_steps` |"))
    assert ">= 0" in row


def test_resolve_reads_a_module_attribute():
    from tunekit.components.evaluation.metrics import TASKS

    assert resolve("tunekit.components.evaluation.metrics:TASKS") is TASKS


def test_output_dir_naming_a_file_is_one_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    example = os.path.join(EXAMPLES, "supervised_tuning.yaml")
    code = cli.main(["run", "supervised-tuning", "--local", "--config", example, "--output-dir", str(taken)])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err and captured.err.strip().count("\n") == 0
    assert str(taken) in captured.err and "--output-dir" in captured.err


@pytest.mark.parametrize(
    "command",
    [
        ["submit", "supervised-tuning", "--pipeline-root", "gs://b/root"],
        ["schedule", "create", "supervised-tuning", "--cron", "0 3 * * 1", "--pipeline-root", "gs://b/root"],
    ],
    ids=["submit", "schedule"],
)
def test_submissions_are_preflighted_like_local_runs(command, capsys, monkeypatch):
    # Nothing may reach Google Cloud: the bad value fails before any client is built.
    monkeypatch.setenv("TUNEKIT_VERTEX_BASE_URL", "http://127.0.0.1:9")
    code = cli.main(
        [*command, "--project", "p", "--region", "us-central1", "--set", "train_dataset_uri=gs://b/t.jsonl"]
        + ["--set", "task=clasification"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert err.startswith("error: --set: field 'task': 'clasification' is not one of") and "Traceback" not in err


def test_a_consumer_check_that_cannot_read_the_value_is_one_line_too():
    from tunekit.pipelines.config import check_config, checked_by, field

    def parse(value):
        return {key: float(price) for key, price in value.items()}  # float("x") raises ValueError

    @dataclasses.dataclass
    class Prices:
        table: dict = field({}, "Prices.", checks=[checked_by(parse, "prices by model")])

    with pytest.raises(
        UserError, match=r"^c.yaml \(default value\): field 'table': cannot be read as prices by model"
    ):
        check_config(Prices(table={"m": "x"}), default_source="c.yaml")
    check_config(Prices(table={"m": "1.5"}))


def test_a_retired_base_model_fails_at_load_with_its_date_and_replacement(tmp_path, capsys):
    """Issue 14 item 12: gemini-2.5-flash retired on October 16, 2026; a config naming it used to load and fail on
    Vertex (a retired id typically answers 404) after the data steps had run."""
    path = _write(tmp_path, "train_dataset_uri: gs://bucket/train.jsonl\nbase_model: gemini-2.5-flash\n")
    with pytest.raises(UserError) as info:
        load_config(_cls("supervised-tuning"), path)
    assert str(info.value).startswith(
        f"{path}:2: field 'base_model': 'gemini-2.5-flash' was retired on October 16"
    )
    assert "use gemini-3.5-flash-lite or gemini-3.1-flash-lite instead" in info.value.message
    out = tmp_path / "out"
    code = cli.main(["run", "supervised-tuning", "--local", "--config", path, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0 and "October 16, 2026" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("method", "overrides", "field", "replacement"),
    [
        ("preference-tuning", ["base_model=gemini-2.5-pro"], "base_model", "gemini-3.5-flash"),
        ("preference-tuning", ["judge_model=gemini-2.5-flash"], "judge_model", "gemini-3.5-flash-lite"),
        ("distilling-step-by-step", ["teacher_model=gemini-2.5-pro"], "teacher_model", "gemini-3.5-flash"),
        (
            "distilling-step-by-step",
            ["teacher_backend=vertex_batch", "teacher_model=publishers/google/models/gemini-2.5-pro-001"],
            "teacher_model",
            "gemini-3.5-flash",
        ),
        (
            "distilling-step-by-step",
            ["student_model=gemini-2.5-flash-lite"],
            "student_model",
            "gemini-3.1-flash-lite or Gemma 4",
        ),
    ],
)
def test_a_retired_teacher_student_or_judge_fails_at_load(method, overrides, field, replacement):
    with pytest.raises(UserError, match=f"field '{field}': .*retired on October 16, 2026.*use {replacement}"):
        load_config(_cls(method), None, overrides)


def test_a_retired_name_is_checked_only_where_gemini_is_called():
    cls = _cls("distilling-step-by-step")
    # A scripted teacher calls no model: its name is only the key its token counts are priced under.
    scripted = [
        "teacher_backend=scripted",
        "teacher_script_uri=gs://b/script.jsonl",
        "teacher_model=gemini-2.5-pro",
    ]
    assert load_config(cls, None, scripted).teacher_model == "gemini-2.5-pro"
    # ... but the distillation service sends it as the base teacher.
    with pytest.raises(UserError, match="field 'teacher_model': .*retired"):
        load_config(cls, None, [*scripted, "student_backend=vertex_distillation"])
    # A local judge-free run and a local base model are not Gemini at all.
    assert load_config(_cls("preference-tuning"), None, ["backend=local", "base_model=tiny-random:causal"])


def test_every_gemini_default_is_current_in_the_lifecycle_table():
    """The next retirement is caught here once someone updates tuning.gemini.MODEL_LIFECYCLE from Google's page."""
    from tunekit.components.tuning import gemini

    seen = []
    for name in METHODS:
        cls = _cls(name)
        for f in dataclasses.fields(cls):
            refs = [c.values for c in field_checks(cls, f.name) if c.kind == "call" and isinstance(c.values, str)]
            if any(ref.startswith("tunekit.components.tuning.gemini:") for ref in refs):
                family = gemini.normalize_base_model(f.default)
                assert family in gemini.MODEL_LIFECYCLE, f"{name}.{f.name} default {f.default} is not in the table"
                assert gemini.retirement(f.default) is None, f"{name}.{f.name} default {f.default} is retired"
                seen.append(f"{name}.{f.name}")
    assert {
        "supervised-tuning.base_model",
        "preference-tuning.base_model",
        "preference-tuning.judge_model",
        "distilling-step-by-step.teacher_model",
        "distilling-step-by-step.student_model",
    } <= set(seen)

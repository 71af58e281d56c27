"""Gemini reinforcement tuning against the fake Vertex API: validate_reward, the job's request, re-attaching."""

import json

import pytest
from fake_vertex import serve_fake_vertex
from tuning_helpers import ON_FAKE_VERTEX, created_jobs

from tunekit.components.common.errors import UserError
from tunekit.components.tuning.gemini import STATE_FILE
from tunekit.components.tuning.reinforcement import steps

ROWS = [
    {"prompt": f"What is {i} + 1? Reply as Answer: N", "references": {"answer": str(i + 1)}} for i in range(10)
]

#: One reward of each kind, and the scorer Vertex gets for it.
KINDS = {
    "exact_match": ("exact_match: {reference: answer}", "stringMatchRewardScorer"),
    "contains": ("contains: {value: 'Answer: {{references.answer}}'}", "stringMatchRewardScorer"),
    "regex": ("regex: {pattern: '^Answer: [0-9]+$'}", "stringMatchRewardScorer"),
    "format": ("format: {pattern: 'Answer: [0-9]+'}", "stringMatchRewardScorer"),
    "json_key": ("json_key: {key: answer, reference: answer}", "stringMatchRewardScorer"),
    "numeric": ("numeric: {reference: answer, tolerance: 1}", "codeExecutionRewardScorer"),
    "length": ("length: {max_words: 4}", "codeExecutionRewardScorer"),
    "python": ("python: {function: 'rl_reward_module:evaluate'}", "codeExecutionRewardScorer"),
    "judge": ("judge: {model: gemini-2.5-flash, rubric: 'Is it {{references.answer}}?'}", "autoraterScorer"),
}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    gcs = tmp_path / "gcs"
    (gcs / "bucket" / "root" / "validate").mkdir(parents=True)
    for name in ("train_prompts", "eval_prompts", "sft_dataset"):
        (gcs / "bucket" / "root" / "validate" / name).write_text(json.dumps({"contents": []}) + "\n")
    (tmp_path / "rl_reward_module.py").write_text(
        "def evaluate(example, response):\n    return 1.0 if response['parts'][0]['text'] else -1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=2, gcs_root=str(gcs))


def reward_file(tmp_path, *kinds, name="rewards.yaml"):
    lines = ["rewards:"]
    for kind in kinds:
        lines += [f"  - name: r_{kind}", f"    {KINDS[kind][0]}"]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def validate(tmp_path, rewards, rows=ROWS, **kwargs):
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {name: str(tmp_path / "out" / name) for name in ("train", "eval", "sft", "report")}
    counts = steps.run_validate_reinforcement(
        train_dataset_uri=str(data),
        eval_dataset_uri="",
        sft_dataset_uri="",
        reward_config_uri=rewards,
        backend="vertex",
        warm_start=False,
        eval_split=0.2,
        seed=0,
        train_path=out["train"],
        eval_path=out["eval"],
        sft_path=out["sft"],
        report_path=out["report"],
        project="test-project",
        location="us-central1",
        **kwargs,
    )
    return out, counts


def warm(tmp_path, enabled=True, **kwargs):
    return steps.run_warm_start(
        backend="vertex",
        base_model="gemini-2.5-flash",
        enabled=enabled,
        sft_path="",
        sft_uri="/gcs/bucket/root/validate/sft_dataset",
        model_path=str(tmp_path / "warm"),
        model_metadata={},
        pipeline_job_name="rl-run-1",
        **ON_FAKE_VERTEX,
        **kwargs,
    )


def tune(tmp_path, rewards, **kwargs):
    return steps.run_tune_reinforcement(
        **{
            "backend": "vertex",
            "base_model": "gemini-2.5-flash",
            "reward_config_uri": rewards,
            "warm_model_path": str(tmp_path / "warm"),
            "train_path": "",
            "train_uri": "/gcs/bucket/root/validate/train_prompts",
            "eval_uri": "/gcs/bucket/root/validate/eval_prompts",
            "model_path": str(tmp_path / "tuned"),
            "model_metadata": {},
            "pipeline_job_name": "rl-run-1",
            **ON_FAKE_VERTEX,
            **kwargs,
        }
    )


def test_validate_reward_scores_sample_responses_before_any_job(fake, tmp_path):
    fake.set_responder(lambda text: "<score>0.5</score>", model="gemini-2.5-flash")
    out, counts = validate(tmp_path, reward_file(tmp_path, "exact_match", "judge"))
    assert counts["train_prompts"] == 8 and counts["eval_prompts"] == 2
    # Three rows, each with an empty answer and its reference as the answer.
    assert len(fake.validated) == 6 and not created_jobs(fake)
    first = fake.validated[1]
    assert first["sampleResponse"] == {
        "role": "model",
        "parts": [{"text": first["example"]["references"]["answer"]}],
    }
    assert first["example"]["contents"][0]["role"] == "user"
    weighted = first["compositeRewardConfig"]["weightedRewardConfigs"]
    assert [w["rewardConfig"]["rewardName"] for w in weighted] == ["r_exact_match", "r_judge"]
    report = json.loads(open(out["report"]).read())
    assert report["rewards"]["dry_run_by"] == "vertex validate_reward"
    assert report["rewards"]["dry_run"][1]["rewards"] == {"overall": 0.75, "r_exact_match": 1.0, "r_judge": 0.5}
    train = [json.loads(line) for line in open(out["train"])]
    assert set(train[0]) == {"contents", "references"}


def test_a_reward_vertex_refuses_on_a_sample_fails_validation_naming_it(fake, tmp_path):
    (tmp_path / "rl_reward_module.py").write_text("def evaluate(example, response):\n    return example['x']\n")
    import sys

    sys.modules.pop("rl_reward_module", None)
    with pytest.raises(UserError) as err:
        validate(tmp_path, reward_file(tmp_path, "exact_match", "python"))
    assert "reward 'r_python' failed on sample 1" in err.value.message and err.value.field == "rewards[1]"


def test_rows_missing_a_reference_fail_validation_with_file_line_and_field(fake, tmp_path):
    rows = [*ROWS[:3], {"prompt": "What is 3 + 1?", "references": {"answr": "4"}}]
    with pytest.raises(UserError) as err:
        validate(tmp_path, reward_file(tmp_path, "exact_match"), rows=rows)
    assert err.value.line == 4 and err.value.field == "references.answer" and not fake.validated


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_reward_kind_goes_into_the_jobs_request(fake, tmp_path, kind):
    warm(tmp_path, enabled=False)
    tune(tmp_path, reward_file(tmp_path, kind))
    (body,) = created_jobs(fake)
    spec = body["reinforcementTuningSpec"]
    single = spec["singleRewardConfig"]
    assert single["rewardName"] == f"r_{kind}" and KINDS[kind][1] in single
    assert "compositeRewardConfig" not in spec and body["baseModel"] == "gemini-2.5-flash"


def test_warm_start_then_reinforcement_tuning_with_a_composite_reward(fake, tmp_path):
    # Three epochs: the warm start's tuned model has checkpoints 1, 2 and 3 to continue from.
    start = warm(tmp_path, epoch_count=3)
    info = tune(
        tmp_path,
        reward_file(tmp_path, "exact_match", "numeric", "length"),
        samples_per_prompt=8,
        evaluate_interval=5,
        checkpoint_interval=10,
        rl_max_output_tokens=256,
        thinking_level="MINIMAL",
        epoch_count=2,
        adapter_size=4,
        pre_tuned_model_checkpoint_id="2",
        labels={"Team": "Math"},
    )
    sft_body, rl_body = created_jobs(fake)
    assert sft_body["supervisedTuningSpec"]["trainingDatasetUri"] == "gs://bucket/root/validate/sft_dataset.jsonl"
    # Continuous tuning: the RL job starts from the warm start's tuned model and checkpoint.
    assert "baseModel" not in rl_body
    pre_tuned = {k.replace("_", "").lower(): v for k, v in rl_body["preTunedModel"].items()}
    assert pre_tuned == {"tunedmodelname": start["tuned_model"], "checkpointid": "2"}
    spec = rl_body["reinforcementTuningSpec"]
    assert spec["trainingDatasetUri"] == "gs://bucket/root/validate/train_prompts.jsonl"
    assert spec["validationDatasetUri"] == "gs://bucket/root/validate/eval_prompts.jsonl"
    assert spec["hyperParameters"] == {
        "samplesPerPrompt": 8,
        "evaluateInterval": 5,
        "checkpointInterval": 10,
        "maxOutputTokens": 256,
        "thinkingLevel": "MINIMAL",
        "epochCount": 2,
        "adapterSize": "ADAPTER_SIZE_FOUR",
    }
    weights = [w["weight"] for w in spec["compositeRewardConfig"]["weightedRewardConfigs"]]
    assert weights == [1.0, 1.0, 1.0]
    assert rl_body["labels"]["tunekit-method"] == "reinforcement-tuning"
    assert rl_body["labels"]["tunekit-stage"] == "reinforcement" and rl_body["labels"]["team"] == "math"
    assert info["algorithm"] == "REINFORCEMENT_TUNING" and info["reference_model"] == start["tuned_model"]
    assert info["tuned_model"].startswith("projects/test-project/locations/us-central1/models/")


def test_a_retried_step_reattaches_instead_of_creating_a_second_job(fake, tmp_path):
    rewards = reward_file(tmp_path, "exact_match")
    warm(tmp_path, enabled=False)
    first = tune(tmp_path, rewards)
    again = tune(tmp_path, rewards)
    assert len(created_jobs(fake)) == 1 and again["resumed"] and again["job_name"] == first["job_name"]
    # A crash after the create call, before the job's name reached the state file: found by its label.
    state_path = tmp_path / "tuned" / STATE_FILE
    state = json.loads(state_path.read_text())
    state.pop("job_name")
    state_path.write_text(json.dumps(state))
    third = tune(tmp_path, rewards)
    assert len(created_jobs(fake)) == 1 and third["job_name"] == first["job_name"]


def test_bad_hyperparameters_fail_before_any_call(fake, tmp_path):
    warm(tmp_path, enabled=False)
    with pytest.raises(UserError, match="thinking_level"):
        tune(tmp_path, reward_file(tmp_path, "exact_match"), thinking_level="LOW")
    assert not created_jobs(fake)

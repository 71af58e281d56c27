"""The reinforcement-tuning pipeline: its config's static checks, the compiled spec, a local run end to end."""

import json
import os

import pytest
from pipeline_helpers import EXAMPLES, compile_spec, spec_tasks

from tunekit.components.common.errors import UserError
from tunekit.pipelines.config import load_config
from tunekit.pipelines.registry import get_method


def config_class():
    return get_method("reinforcement-tuning").load()[1]


def test_the_example_config_loads():
    config = load_config(config_class(), os.path.join(EXAMPLES, "reinforcement_tuning.yaml"))
    assert config.backend == "local" and config.warm_start and os.path.exists(config.reward_config_uri)
    assert os.path.exists(config.train_dataset_uri) and os.path.exists(config.sft_dataset_uri)


def test_a_reward_the_backend_cannot_express_fails_when_the_config_loads(tmp_path):
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi", "references": {"answer": "x"}}\n')
    (tmp_path / "rewards.yaml").write_text(
        "rewards:\n  - name: answer\n    exact_match: {reference: answer}\n"
        "  - name: tone\n    judge: {model: gemini-2.5-flash, rubric: Be kind.}\n"
    )
    config = tmp_path / "rl.yaml"
    config.write_text(
        "backend: local\nbase_model: tiny-random:causal\ntrain_dataset_uri: prompts.jsonl\n"
        "reward_config_uri: rewards.yaml\n"
    )
    with pytest.raises(UserError) as err:
        load_config(config_class(), str(config))
    line = err.value.format()
    assert err.value.field == "reward_config_uri" and "rewards.yaml:4" in line and "judge.local_model" in line
    assert "\n" not in line
    # The same reward file runs on Vertex, where the judge is Vertex's autorater.
    assert load_config(config_class(), str(config), ["backend=vertex", "base_model=gemini-3.5-flash"])
    with pytest.raises(UserError, match="set when warm_start is True"):
        load_config(config_class(), str(config), ["backend=vertex", "warm_start=true"])


def test_spec_validates_then_warm_start_then_tuning_then_evaluation_and_gate(tmp_path):
    spec = compile_spec("reinforcement-tuning", tmp_path / "rl.yaml")
    tasks = spec_tasks(spec)
    validate, warm = "validate-reinforcement-data", "warm-start-reinforcement"
    assert {validate, warm, "tune-reinforcement", "evaluate-reinforcement"} <= set(tasks)
    assert tasks[validate]["taskInfo"]["name"] == "validate-data"
    assert tasks[warm]["taskInfo"]["name"] == "warm-start-supervised"
    assert tasks[warm]["dependentTasks"] == [validate]
    assert sorted(tasks["tune-reinforcement"]["dependentTasks"]) == [validate, warm]
    for paid in (validate, warm, "tune-reinforcement"):
        assert tasks[paid]["retryPolicy"]["maxRetryCount"] == 2
    gate = tasks["gate-and-deploy"]
    assert gate["inputs"]["parameters"]["gate_passed"]["taskOutputParameter"] == {
        "outputParameterKey": "Output",
        "producerTask": "evaluate-reinforcement",
    }
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"reward_config_uri", "samples_per_prompt", "thinking_level", "gate_metric", "force"} <= set(params)


@pytest.mark.slow
def test_local_run_end_to_end(tmp_path):
    """The example config, shortened, in the local KFP runner: every step runs and the figures are reported."""
    from tunekit.pipelines.local_run import run_local

    method = get_method("reinforcement-tuning")
    config = load_config(
        config_class(),
        os.path.join(EXAMPLES, "reinforcement_tuning.yaml"),
        ["sft_steps=2", "rl_steps=1", "max_eval_examples=4", "max_output_tokens=8"],
    )
    result = run_local(method, config, str(tmp_path))
    assert result.succeeded, result.failure
    summary = open(result.artifact_dir("evaluate-reinforcement", "summary")).read()
    assert "mean_reward" in summary and "reward_exact_answer" in summary and "warm_start" in summary
    predictions = [json.loads(line) for line in open(result.artifact_dir("evaluate-reinforcement", "predictions"))]
    assert len(predictions) == 4 and {"base", "tuned", "warm_start", "tuned_rewards"} <= set(predictions[0])
    tuned = json.load(
        open(os.path.join(result.artifact_dir("tune-reinforcement", "tuned_model"), "tunekit_model.json"))
    )
    assert tuned["algorithm"] == "grpo" and tuned["train_prompts"] == 64

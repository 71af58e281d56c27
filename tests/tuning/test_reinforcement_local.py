"""Local reinforcement tuning: the prompt dataset check, the reward dry run, TRL GRPO on a tiny model."""

import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.data_validation.reinforcement import read_prompt_rows
from tunekit.components.tuning.reinforcement import steps
from tunekit.components.tuning.reinforcement.local import ReinforcementLocalConfig, row_prompt
from tunekit.components.tuning.tiny import CAUSAL, make_tiny_model

REWARDS = 'parse: {regex: "Answer: *([0-9]+)"}\nrewards:\n  - name: exact\n    exact_match: {reference: answer}\n'


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_both_layouts_become_vertexs_reinforcement_rows(tmp_path):
    path = write(
        tmp_path / "p.jsonl",
        [
            {"prompt": "2+2?", "system": "Be brief.", "references": {"answer": 4}},
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}]},
                    {"role": "model", "parts": [{"text": "Hello"}]},
                    {"role": "user", "parts": [{"text": "3+3?"}]},
                ],
                "references": {"answer": "6"},
            },
        ],
    )
    first, second = read_prompt_rows(path, ["answer"])
    assert first == {
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "2+2?"}]}],
        # Vertex's references are a map of strings: a number is written as its JSON text.
        "references": {"answer": "4"},
        "line": 1,
    }
    assert second["references"] == {"answer": "6"} and len(second["contents"]) == 3
    assert row_prompt(first) == row_prompt(
        {"contents": first["contents"], "systemInstruction": first["systemInstruction"]}
    )
    assert "Be brief." in row_prompt(first) and row_prompt({"contents": first["contents"]}) == "2+2?"


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"prompt": "x", "answer": "4"}, "answer", "put values the rewards compare with under references"),
        ({"prompt": "x", "references": {"answer": ["4"]}}, "references.answer", "a string or a number"),
        ({"prompt": "x", "references": {"other": "4"}}, "references.answer", "lacks"),
        ({"prompt": ""}, "prompt", "non-empty"),
        (
            {"contents": [{"role": "model", "parts": [{"text": "x"}]}], "references": {"answer": "1"}},
            "contents[0].role",
            "end with the user's turn",
        ),
    ],
)
def test_a_bad_row_fails_with_file_line_and_field(tmp_path, row, field, message):
    path = write(tmp_path / "p.jsonl", [{"prompt": "ok", "references": {"answer": "1"}}, row])
    with pytest.raises(UserError) as err:
        read_prompt_rows(path, ["answer"])
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)
    assert message in err.value.message


def test_grpo_needs_two_generations_per_prompt():
    with pytest.raises(UserError, match="num_generations >= 2"):
        ReinforcementLocalConfig.from_dict({"num_generations": 1})
    with pytest.raises(UserError, match="unknown local option"):
        steps.local_config({"num_generation": 4})


def test_validation_dry_runs_the_rewards_and_writes_the_steps_data(tmp_path):
    rewards = tmp_path / "rewards.yaml"
    rewards.write_text(REWARDS)
    data = write(
        tmp_path / "p.jsonl", [{"prompt": f"{i}+1?", "references": {"answer": str(i + 1)}} for i in range(5)]
    )
    out = {k: str(tmp_path / k) for k in ("train", "eval", "sft", "report")}
    counts = steps.run_validate_reinforcement(
        train_dataset_uri=data,
        eval_dataset_uri="",
        sft_dataset_uri="",
        reward_config_uri=str(rewards),
        backend="local",
        warm_start=False,
        eval_split=0.2,
        seed=0,
        train_path=out["train"],
        eval_path=out["eval"],
        sft_path=out["sft"],
        report_path=out["report"],
    )
    assert counts == {"train_prompts": 4, "eval_prompts": 1, "sft_rows": 0, "dry_run_samples": 6}
    report = json.loads(open(out["report"]).read())
    assert report["rewards"]["references"] == ["answer"]
    # '' scores wrong; the bare reference does not match the parse rule "Answer: N" either.
    assert [d["rewards"]["exact"] for d in report["rewards"]["dry_run"]] == [0.0] * 6
    with pytest.raises(UserError, match="needs supervised data"):
        steps.run_validate_reinforcement(
            train_dataset_uri=data,
            eval_dataset_uri="",
            sft_dataset_uri="",
            reward_config_uri=str(rewards),
            backend="local",
            warm_start=True,
            eval_split=0.2,
            seed=0,
            train_path=out["train"],
            eval_path=out["eval"],
            sft_path=out["sft"],
            report_path=out["report"],
        )


def test_grpo_on_a_tiny_model_trains_with_the_reward_files_rewards(tmp_path):
    base = make_tiny_model(
        str(tmp_path / "base"),
        kind=CAUSAL,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    rewards = tmp_path / "rewards.yaml"
    rewards.write_text(REWARDS + "  - name: short\n    length: {max_chars: 200}\n    parse: none\n")
    train = write(
        tmp_path / "train.jsonl",
        [
            {"contents": [{"role": "user", "parts": [{"text": f"{i}+1="}]}], "references": {"answer": str(i + 1)}}
            for i in range(4)
        ],
    )
    meta = {}
    steps.run_warm_start(
        backend="local",
        base_model=base,
        enabled=False,
        sft_path="",
        sft_uri="",
        model_path=str(tmp_path / "warm"),
        model_metadata={},
    )
    info = steps.run_tune_reinforcement(
        backend="local",
        base_model=base,
        reward_config_uri=str(rewards),
        warm_model_path=str(tmp_path / "warm"),
        train_path=train,
        train_uri="",
        eval_uri="",
        model_path=str(tmp_path / "tuned"),
        model_metadata=meta,
        rl_steps=2,
        batch_size=4,
        samples_per_prompt=2,
        rl_max_output_tokens=4,
    )
    assert info["algorithm"] == "grpo" and info["rewards"] == "exact,short" and info["num_generations"] == 2
    log = json.loads((tmp_path / "tuned" / "training_log.json").read_text())
    # The run report's curves: the mean reward and each reward's mean per step, from TRL's log.
    assert [e["step"] for e in log["log"]] == [1, 2]
    assert set(log["log"][0]["task_losses"]) == {"reward", "reward exact", "reward short"}
    assert log["log"][0]["task_losses"]["reward short"] == 1.0
    assert log["reward_weights"] == [0.5, 0.5]
    assert (tmp_path / "tuned" / "config.json").exists()

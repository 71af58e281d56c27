"""Local preference tuning with TRL on tiny models built from a config: the reward model learns, RLOO and DPO run."""

import json
import os

import pytest

from tunekit.components.data_validation.preference_convert import read_pairs, read_prompts
from tunekit.components.evaluation.preference.steps import (
    CausalPolicy,
    decide_preference,
    evaluate_local,
    kl_estimate,
    pair_accuracy,
    win_rate,
)
from tunekit.components.tuning.preference.local import (
    PreferenceLocalConfig,
    RewardModelScorer,
    train_reward_model,
    tune_preference_local,
)
from tunekit.components.tuning.tiny import make_tiny_model

DATA = os.path.join(os.path.dirname(__file__), "..", "examples", "data", "preference")
TINY = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_tiny_model(str(tmp_path_factory.mktemp("tiny") / "base"), kind="causal", **TINY)


def test_reward_model_learns_the_preference_on_held_out_pairs(base, tmp_path):
    """Trained on the sample pairs, the reward model ranks held-out pairs (unseen products) well above chance."""
    pairs = read_pairs(os.path.join(DATA, "train.jsonl"))
    held_out = read_pairs(os.path.join(DATA, "eval.jsonl"))
    config = PreferenceLocalConfig(reward_steps=20, batch_size=8, reward_learning_rate=5e-3)
    log = train_reward_model(base, pairs, str(tmp_path / "rm"), config)
    scorer = RewardModelScorer(str(tmp_path / "rm"))
    accuracy = pair_accuracy(scorer, held_out)
    assert len(held_out) == 40
    assert accuracy >= 0.75, accuracy
    assert log["steps"] == 20 and os.path.exists(tmp_path / "rm" / "training_log.json")


def test_win_rate_gate_and_config():
    assert win_rate([1.0, 0.0, 2.0, 1.0], [0.5, 1.0, 2.0, 0.0]) == pytest.approx(0.625)
    assert decide_preference({"win_rate": 0.6}, min_win_rate=0.5).passed
    assert not decide_preference({"win_rate": 0.5}, min_win_rate=0.5).passed
    config = PreferenceLocalConfig.from_dict({"rl_steps": 3.0, "algorithm": "dpo"})
    assert config.rl_steps == 3 and isinstance(config.rl_steps, int)
    from tunekit.components.common.errors import UserError

    with pytest.raises(UserError, match="unknown local option"):
        PreferenceLocalConfig.from_dict({"steps": 3})
    with pytest.raises(UserError, match="num_generations"):
        PreferenceLocalConfig.from_dict({"num_generations": 1})
    with pytest.raises(UserError, match="unknown algorithm"):
        PreferenceLocalConfig.from_dict({"algorithm": "ppo"})


def test_long_texts_are_truncated_and_counted_never_dropped():
    from tunekit.components.data_validation.preference_convert import parse_pair
    from tunekit.components.tuning.preference.local import truncate_pairs

    pairs = [
        parse_pair({"input_text": "x" * 50, "candidate_0": "a" * 30, "candidate_1": "b", "choice": 0}),
        parse_pair({"input_text": "short", "candidate_0": "a", "candidate_1": "b", "choice": 1}),
    ]
    out, cut = truncate_pairs(pairs, max_prompt_chars=20, max_completion_chars=10)
    assert cut == 1 and len(out) == 2
    assert out[0].chosen == "a" * 10 and out[0].extra["prompt_text"] == "x" * 20 and out[1].chosen == "b"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["rloo", "dpo"])
def test_preference_stage_runs_and_is_evaluated(base, tmp_path, algorithm):
    """SFT warm start, reward model, then RLOO (KL against the warm start) or DPO; the evaluation's figures."""
    from tunekit.components.tuning.preference.local import train_sft

    pairs = read_pairs(os.path.join(DATA, "train.jsonl"))[:24]
    prompts = read_prompts(os.path.join(DATA, "prompts.jsonl"))[:8]
    held_out = read_pairs(os.path.join(DATA, "eval.jsonl"))[:4]
    config = PreferenceLocalConfig(
        algorithm=algorithm,
        sft_steps=2,
        reward_steps=2,
        rl_steps=2,
        batch_size=4,
        num_generations=2,
        max_new_tokens=8,
    )
    train_sft(base, pairs, str(tmp_path / "sft"), config)
    record = tune_preference_local(
        policy_dir=str(tmp_path / "sft"),
        pairs=pairs,
        prompts=prompts,
        policy_out=str(tmp_path / "policy"),
        reward_out=str(tmp_path / "rm"),
        config=config,
    )
    assert record["algorithm"] == algorithm and record["pairs"] == 24 and record["truncated_pairs"] == 0
    log = json.load(open(tmp_path / "policy" / "training_log.json"))
    assert log["stage"] == algorithm and any("loss" in entry for entry in log["log_history"])
    if algorithm == "rloo":
        assert any("kl" in entry for entry in log["log_history"])  # the KL penalty is computed
    report = evaluate_local(
        base_dir=base,
        tuned_dir=str(tmp_path / "policy"),
        reward_dir=str(tmp_path / "rm"),
        eval_pairs=held_out,
        eval_prompts=held_out,
        reference_dir=str(tmp_path / "sft"),
        max_new_tokens=8,
    )
    metrics = report.metrics
    assert 0.0 <= metrics["reward_accuracy"] <= 1.0 and 0.0 <= metrics["win_rate"] <= 1.0
    assert "win_rate_vs_reference" in metrics and metrics["kl_from_reference"] == metrics["kl_from_reference"]
    assert len(report.predictions) == 4 and {"base", "tuned", "reference"} <= set(report.predictions[0])


def test_kl_of_a_model_from_itself_is_zero(base):
    policy = CausalPolicy(base)
    assert kl_estimate(policy, policy, ["Hello"], max_new_tokens=4) == pytest.approx(0.0, abs=1e-5)

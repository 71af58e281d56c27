"""Local preference tuning with TRL on tiny models built from a config: the reward model learns, RLOO and DPO run."""

import json
import os

import pytest
from tuning_helpers import EXAMPLES_DATA

from tunekit.components.data_validation.preference_convert import read_pairs, read_prompts
from tunekit.components.evaluation.gate import GatePolicy, decide
from tunekit.components.evaluation.preference.steps import (
    CausalPolicy,
    evaluate_local,
    kl_estimate,
    pair_accuracy,
    win_rate,
)
from tunekit.components.model_clients.reward import RewardModelScorer
from tunekit.components.tuning.preference.local import (
    PreferenceLocalConfig,
    train_reward_model,
    tune_preference_local,
)
from tunekit.components.tuning.tiny import make_tiny_model

DATA = os.path.join(EXAMPLES_DATA, "preference")
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
    head_to_head = GatePolicy(min_win_rate=0.5)
    assert decide(
        metric="win_rate", candidate_scores=None, base_scores=None, base_value=0.6, policy=head_to_head
    ).passed
    decision = decide(
        metric="win_rate", candidate_scores=None, base_scores=None, base_value=0.5, policy=head_to_head
    )
    assert not decision.passed and "win rate 0.5000 vs base 0.5000" in decision.reason
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
    figures = report.figures
    assert 0.0 <= figures["reward_accuracy"] <= 1.0 and 0.0 <= figures["win_rate"] <= 1.0
    assert "win_rate_vs_reference" in figures and figures["kl_from_reference"] == figures["kl_from_reference"]
    assert set(report.metrics) == {"tuned", "base", "reference"} and set(report.wins) == {"base", "reference"}
    assert len(report.predictions) == 4 and {"base", "tuned", "reference"} <= set(report.predictions[0])


def test_kl_of_a_model_from_itself_is_zero(base):
    policy = CausalPolicy(base)
    assert kl_estimate(policy, policy, ["Hello"], max_new_tokens=4) == pytest.approx(0.0, abs=1e-5)


def test_a_better_champion_keeps_its_place(base, tmp_path):
    """The preference gate compares with the champion: a policy that beats its base is not deployed over a
    better model serving the same purpose.

    Three tiny policies built from a config (the base and two others) answer the held-out prompts; the judge is a
    reward model trained to rank the first policy's answers above the second's, and the second's above the
    base's. The first run deploys the first policy; the second run's policy wins every prompt against its base
    but loses every prompt to that champion, so the gate fails and the registry keeps the champion.
    """
    from tunekit.components.data_validation.preference_convert import PreferencePair
    from tunekit.components.deployment import local_registry
    from tunekit.components.deployment.steps import run_deploy
    from tunekit.components.evaluation.preference.steps import run_evaluate_preference

    better = make_tiny_model(str(tmp_path / "better"), kind="causal", seed=1, **TINY)
    worse = make_tiny_model(str(tmp_path / "worse"), kind="causal", seed=2, **TINY)
    eval_path = os.path.join(DATA, "eval.jsonl")
    held_out = read_pairs(eval_path)[:6]
    prompts = [p.text for p in held_out]
    answers = {path: CausalPolicy(path).generate(prompts, 8) for path in (base, better, worse)}
    ranking = [
        PreferencePair(turns=p.turns, system=p.system, line=p.line, chosen=answers[a][i], rejected=answers[b][i])
        for a, b in ((better, worse), (worse, base), (better, base))
        for i, p in enumerate(held_out)
    ]
    judge = str(tmp_path / "judge")
    train_reward_model(
        base, ranking, judge, PreferenceLocalConfig(reward_steps=40, batch_size=6, reward_learning_rate=5e-3)
    )
    registry = str(tmp_path / "registry.json")

    def evaluate(model, name, **kwargs):
        return run_evaluate_preference(
            backend="local",
            base_model=base,
            warm_model_path=str(tmp_path / "no-warm-start"),
            tuned_model_path=model,
            reward_model_path=judge,
            eval_path=eval_path,
            max_eval_examples=6,
            max_output_tokens=8,
            min_win_rate=0.5,
            judge_model="",
            project="",
            location="",
            summary_path=str(tmp_path / f"{name}.md"),
            predictions_path=str(tmp_path / f"{name}.jsonl"),
            purpose="support-replies",
            local_registry=registry,
            **kwargs,
        )

    def deploy_if_passed(result, model, name):
        # What the pipeline's gate-and-deploy condition does with the evaluation's output.
        if result.passed:
            run_deploy(
                backend="local",
                model_path=model,
                model_metadata={"base_model": base},
                dataset_fingerprint="",
                metrics=result.logged_metrics(),
                gate_reason=result.reason,
                purpose="support-replies",
                pipeline_job_name=name,
                local_registry_path=registry,
                deployment_path=str(tmp_path / f"{name}-deployment.json"),
            )

    first = evaluate(better, "first")
    assert first.passed and "no champion deployed" in first.reason
    deploy_if_passed(first, better, "first")
    assert local_registry.champion(registry, "support-replies")["model_dir"] == better
    before = open(registry).read()

    second = evaluate(worse, "second")
    assert second.figures["win_rate"] == 1.0  # it beats its base on every prompt...
    assert second.figures["win_rate_vs_champion"] == 0.0  # ...and loses every prompt to the champion
    base_clause, champion_clause = second.comparisons
    assert base_clause.passed and champion_clause.against == "champion" and not champion_clause.passed
    assert not second.passed and "champion support-replies-1" in second.reason and "[FAILED]" in second.reason
    rows = [json.loads(line) for line in open(tmp_path / "second.jsonl")]
    assert rows[0]["champion"] == answers[better][0] and rows[0]["champion_reward"] > rows[0]["tuned_reward"]
    deploy_if_passed(second, worse, "second")
    assert open(registry).read() == before
    assert local_registry.champion(registry, "support-replies")["model_dir"] == better
    # Told not to require beating the champion, the gate deploys the policy that beats its base.
    relaxed = evaluate(worse, "relaxed", policy=GatePolicy(beat_champion=False))
    assert relaxed.passed and "[not required]" in relaxed.reason

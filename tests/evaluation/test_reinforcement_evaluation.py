"""Evaluating reinforcement tuning: rewards and the task metric per model, intervals, the shared gate."""

import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.evaluation.reinforcement import steps
from tunekit.components.model_clients.base import FAILED, FakeClient, Generation

REWARDS = """parse: {regex: "Answer: *([0-9]+)"}
rewards:
  - name: exact
    exact_match: {reference: answer}
    weight: 3
  - name: brief
    length: {max_words: 2}
    parse: none
"""


def rows(n=20):
    return [
        {"contents": [{"role": "user", "parts": [{"text": f"{i} + 1?"}]}], "references": {"answer": str(i + 1)}}
        for i in range(n)
    ]


def answering(right_every: int, verbose: bool = False):
    """A fake model right on every ``right_every``-th prompt (by its number), wrong otherwise."""

    def answer(prompt):
        i = int(prompt.text.split()[0])
        value = i + 1 if i % right_every == 0 else i + 2
        return f"Answer: {value}" + (" because I added one to it" if verbose else "")

    return FakeClient(answer)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "rewards.yaml").write_text(REWARDS)
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    for name, record in (
        ("warm", {"backend": "local", "warm_start": False, "model": "base"}),
        ("tuned", {"backend": "local", "model_dir": "x"}),
    ):
        (tmp_path / name).mkdir()
        ModelRecord.from_dict(record).write(str(tmp_path / name), {})
    return tmp_path


def evaluate(files, clients, **kwargs):
    return steps.run_evaluate_reinforcement(
        **{
            "backend": "local",
            "base_model": "base",
            "reward_config_uri": str(files / "rewards.yaml"),
            "warm_model_path": str(files / "warm"),
            "tuned_model_path": str(files / "tuned"),
            "eval_path": str(files / "eval.jsonl"),
            "summary_path": str(files / "summary.md"),
            "predictions_path": str(files / "predictions.jsonl"),
            "clients": clients,
            **kwargs,
        }
    )


def test_each_model_gets_its_mean_reward_task_accuracy_and_per_reward_means(files):
    result = evaluate(
        files, {"base": answering(10, verbose=True), "tuned": answering(2), "warm_start": answering(4)}
    )
    tuned, base = result.metrics["tuned"], result.metrics["base"]
    assert tuned["task_accuracy"] == 0.5 and base["task_accuracy"] == 0.1
    assert tuned["reward_exact"] == 0.5 and tuned["reward_brief"] == 1.0 and base["reward_brief"] == 0.0
    # Vertex's weighted mean: (3 * exact + brief) / 4, averaged over the prompts.
    assert tuned["mean_reward"] == pytest.approx((3 * 0.5 + 1.0) / 4)
    assert result.metrics["warm_start"]["task_accuracy"] == 0.25
    assert result.passed and result.primary_metric == "mean_reward"
    (base_comparison,) = result.comparisons
    assert base_comparison.interval is not None and base_comparison.interval.low > 0
    # The other metric's differences come with intervals too, against the base and the warm start.
    assert result.figures["task_accuracy_delta_vs_base"] == pytest.approx(0.4)
    assert result.figures["task_accuracy_ci_low_vs_base"] <= 0.4 <= result.figures["task_accuracy_ci_high_vs_base"]
    assert result.figures["mean_reward_delta_vs_warm_start"] > 0
    predictions = [json.loads(line) for line in open(files / "predictions.jsonl")]
    assert predictions[0]["tuned_rewards"] == {"exact": 1.0, "brief": 1.0} and predictions[0]["references"]
    summary = (files / "summary.md").read_text()
    assert "| reward_exact |" in summary and "## Samples" in summary


def test_the_gate_compares_the_chosen_metric_with_the_champion(files):
    worse = evaluate(
        files,
        {"base": answering(10), "tuned": answering(4), "champion": answering(2)},
        gate_metric="task_accuracy",
    )
    assert not worse.passed and "champion" in worse.reason
    assert [c.against for c in worse.comparisons] == ["base", "champion"]
    assert worse.comparisons[1].candidate == 0.25 and worse.comparisons[1].other == 0.5

    class Down(FakeClient):
        def generate(self, prompts, config=None):
            return [Generation(text="", status=FAILED, error="503") for _ in prompts]

    failed = evaluate(files, {"base": answering(10), "tuned": answering(2), "champion": Down()})
    assert not failed.passed and "could not be scored" in failed.reason


def test_a_task_reward_that_is_not_in_the_file_is_a_user_error(files):
    with pytest.raises(UserError, match="no reward named 'exactt'"):
        evaluate(files, {"base": answering(10), "tuned": answering(2)}, task_reward="exactt")
    tuned_on_brief = evaluate(
        files, {"base": answering(10, verbose=True), "tuned": answering(2)}, task_reward="brief"
    )
    assert tuned_on_brief.metrics["tuned"]["task_accuracy"] == 1.0


def test_on_vertex_the_endpoints_answer_and_a_judge_reward_asks_its_gemini_model(files, monkeypatch):
    from fake_vertex import FakeVertex

    (files / "rewards.yaml").write_text(
        REWARDS + "  - name: tone\n    judge: {model: gemini-3.5-flash, rubric: 'Is it polite?'}\n"
    )
    endpoint = "projects/test-project/locations/us-central1/endpoints/9001"
    (files / "tuned_vertex").mkdir()
    ModelRecord.from_dict({"backend": "vertex", "endpoint": endpoint, "tuned_model": "m"}).write(
        str(files / "tuned_vertex"), {}
    )
    with FakeVertex() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        fake.set_responder(lambda text: "no idea", model="gemini-3.1-flash-lite")
        fake.set_responder(lambda text: f"Answer: {int(text.split()[0]) + 1}", model=endpoint)
        fake.set_responder(lambda text: "<score>0.5</score>", model="gemini-3.5-flash")
        result = evaluate(
            files,
            None,
            backend="vertex",
            base_model="gemini-3.1-flash-lite",
            tuned_model_path=str(files / "tuned_vertex"),
            project="test-project",
            location="us-central1",
            max_eval_examples=4,
        )
        asked = {path.rsplit("/", 1)[-1] for _, path, _ in fake.requests}
    assert result.metrics["tuned"]["task_accuracy"] == 1.0 and result.metrics["base"]["task_accuracy"] == 0.0
    assert result.metrics["tuned"]["reward_tone"] == 0.5 and result.passed
    assert {"9001:generateContent", "gemini-3.5-flash:generateContent"} <= asked

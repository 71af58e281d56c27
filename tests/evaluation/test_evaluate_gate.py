import json

import pytest
from evaluation_helpers import deploy_locally, evaluate_locally, tickets, truth, write_rows

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import local_registry
from tunekit.components.evaluation.gate import GatePolicy, decide
from tunekit.components.evaluation.scoring import evaluate_models, load_eval_rows, render_markdown
from tunekit.components.model_clients.base import FakeClient

ROWS = tickets(10)
TRUTH = truth(ROWS)


def test_tuned_beats_base_and_gate_passes(tmp_path):
    rows = load_eval_rows(write_rows(tmp_path / "v.jsonl", ROWS))
    tuned = FakeClient(lambda p: TRUTH[p.text])
    base = FakeClient(lambda p: "I am not sure")
    report = evaluate_models(rows, {"base": base, "tuned": tuned}, task="classification")
    assert report.metrics["tuned"]["accuracy"] == 1.0
    assert report.metrics["base"]["accuracy"] == 0.0
    assert len(report.predictions) == 10 and report.predictions[3]["tuned_prediction"] == "shipping"
    decision = decide(**report.gate_inputs(), policy=GatePolicy())
    assert decision.passed and "accuracy" in decision.reason
    text = render_markdown(report, decision)
    assert "| accuracy (gate) |" in text and "deploy" in text


def test_gate_blocks_a_regression_and_a_too_small_gain(tmp_path):
    rows = load_eval_rows(write_rows(tmp_path / "v.jsonl", ROWS))
    half = FakeClient(lambda p: TRUTH[p.text] if p.text.endswith(("0", "1", "2", "3", "4")) else "?")
    full = FakeClient(lambda p: TRUTH[p.text])
    report = evaluate_models(rows, {"base": full, "tuned": half}, task="classification")
    assert not decide(**report.gate_inputs(), policy=GatePolicy()).passed
    report = evaluate_models(rows, {"base": half, "tuned": full}, task="classification")
    assert decide(**report.gate_inputs(), policy=GatePolicy(min_improvement=0.4)).passed
    assert not decide(**report.gate_inputs(), policy=GatePolicy(min_improvement=0.6)).passed


def test_gemini_rows_keep_system_and_history(tmp_path):
    row = {
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "u1"}]},
            {"role": "model", "parts": [{"text": "m1"}]},
            {"role": "user", "parts": [{"text": "u2"}]},
            {"role": "model", "parts": [{"text": "m2"}]},
        ],
    }
    [parsed] = load_eval_rows(write_rows(tmp_path / "v.jsonl", [row]))
    assert parsed.prompt.system == "sys"
    assert parsed.prompt.history == (("user", "u1"), ("model", "m1"))
    assert parsed.prompt.text == "u2" and parsed.reference == "m2"


def test_eval_rows_without_a_reference_are_an_error(tmp_path):
    with pytest.raises(UserError, match="model turn"):
        load_eval_rows(
            write_rows(tmp_path / "v.jsonl", [{"contents": [{"role": "user", "parts": [{"text": "x"}]}]}])
        )


def _evaluate(tmp_path):
    """The evaluation step on ROWS: a tuned model that is always right beside a base that answers nothing."""
    write_rows(tmp_path / "v.jsonl", ROWS)
    (tmp_path / "model").mkdir()
    return evaluate_locally(
        tmp_path, "model", {"base": FakeClient(), "tuned": FakeClient(lambda p: TRUTH[p.text])}
    )


def test_run_evaluate_then_deploy_to_local_registry(tmp_path):
    result = _evaluate(tmp_path)
    assert result.passed and result.method == "supervised" and result.candidate == "tuned"
    assert len(open(tmp_path / "model-pred.jsonl").readlines()) == 10
    registry = str(tmp_path / "registry.json")
    for _ in range(2):
        record = deploy_locally(
            tmp_path,
            tmp_path / "model",
            registry,
            result.reason,
            model_metadata={"base_model": "base-dir"},
            metrics={"tuned_accuracy": 1.0},
            dataset_fingerprint="ab" * 32,
        )
    assert record["id"] == "support-routing-2"
    stored = json.load(open(registry))["models"]
    assert [m["aliases"] for m in stored] == [[], ["champion"]]
    assert local_registry.champion(registry, "support-routing")["id"] == "support-routing-2"
    assert stored[1]["labels"]["tunekit-dataset-fingerprint"] == "ab" * 8


def test_an_evaluation_result_is_logged_in_the_shape_every_evaluation_uses(tmp_path):
    from tunekit.components.evaluation.result import log_evaluation

    class Metrics:  # a KFP Metrics artifact's surface
        def __init__(self):
            self.metadata = {}

        def log_metric(self, name, value):
            self.metadata[name] = value

    result = _evaluate(tmp_path)
    metrics = Metrics()
    assert log_evaluation(result, metrics) is True
    logged = metrics.metadata
    assert logged["tuned_accuracy"] == 1.0 and logged["base_accuracy"] == 0.0 and logged["gate_delta_base"] == 1.0
    assert logged["tuned_precision[billing]"] == 1.0
    assert logged["gate_passed"] is True and logged["gate_reason"] == result.reason
    assert [c["against"] for c in logged["gate"]] == ["base"]
    assert logged["evaluation"] == {
        "method": "supervised",
        "candidate": "tuned",
        "primary_metric": "accuracy",
        "models": ["base", "tuned"],
        "figures": [],
    }


def test_a_negative_min_improvement_tolerates_that_much_loss():
    # It was read as 0 ("strictly better"): min_improvement=-1 still refused any tuned model worse than its base.
    from tunekit.components.evaluation.gate import GatePolicy, compare

    policy = GatePolicy(min_improvement=-0.2)
    small_loss = compare("base", [0.7, 0.7], [0.8, 0.8], metric="m", policy=policy, margin=-0.2)
    assert small_loss.passed and small_loss.rule == "required > -0.2000"
    big_loss = compare("base", [0.5, 0.5], [0.8, 0.8], metric="m", policy=policy, margin=-0.2)
    assert not big_loss.passed
    assert compare("base", [0.8], [0.8], metric="m", policy=GatePolicy(), margin=0.0).passed is False

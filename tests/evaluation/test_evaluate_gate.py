import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import local_registry
from tunekit.components.deployment.steps import run_deploy
from tunekit.components.evaluation.gate import GatePolicy, decide
from tunekit.components.evaluation.scoring import evaluate_models, load_eval_rows, render_markdown
from tunekit.components.evaluation.supervised.steps import run_evaluate
from tunekit.components.model_clients.base import FakeClient


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


ROWS = [{"prompt": f"ticket {i}", "completion": ["billing", "shipping"][i % 2]} for i in range(10)]


def test_tuned_beats_base_and_gate_passes(tmp_path):
    rows = load_eval_rows(write(tmp_path / "v.jsonl", ROWS))
    truth = {r["prompt"]: r["completion"] for r in ROWS}
    tuned = FakeClient(lambda p: truth[p.text])
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
    rows = load_eval_rows(write(tmp_path / "v.jsonl", ROWS))
    truth = {r["prompt"]: r["completion"] for r in ROWS}
    half = FakeClient(lambda p: truth[p.text] if p.text.endswith(("0", "1", "2", "3", "4")) else "?")
    full = FakeClient(lambda p: truth[p.text])
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
    [parsed] = load_eval_rows(write(tmp_path / "v.jsonl", [row]))
    assert parsed.prompt.system == "sys"
    assert parsed.prompt.history == (("user", "u1"), ("model", "m1"))
    assert parsed.prompt.text == "u2" and parsed.reference == "m2"


def test_eval_rows_without_a_reference_are_an_error(tmp_path):
    with pytest.raises(UserError, match="model turn"):
        load_eval_rows(write(tmp_path / "v.jsonl", [{"contents": [{"role": "user", "parts": [{"text": "x"}]}]}]))


def test_run_evaluate_then_deploy_to_local_registry(tmp_path):
    validation = write(tmp_path / "v.jsonl", ROWS)
    truth = {r["prompt"]: r["completion"] for r in ROWS}
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    result = run_evaluate(
        backend="local",
        task="classification",
        base_model="base-dir",
        model_path=str(model_dir),
        model_metadata={},
        validation_path=validation,
        predictions_path=str(tmp_path / "pred.jsonl"),
        summary_path=str(tmp_path / "summary.md"),
        clients={"base": FakeClient(), "tuned": FakeClient(lambda p: truth[p.text])},
    )
    assert result.passed and result.method == "supervised" and result.candidate == "tuned"
    assert len(open(tmp_path / "pred.jsonl").readlines()) == 10
    registry = str(tmp_path / "registry.json")
    for _ in range(2):
        record = run_deploy(
            backend="local",
            model_path=str(model_dir),
            model_metadata={"base_model": "base-dir"},
            dataset_fingerprint="ab" * 32,
            metrics={"tuned_accuracy": 1.0},
            gate_reason=result.reason,
            purpose="support-routing",
            pipeline_job_name="run-1",
            local_registry_path=registry,
            deployment_path=str(tmp_path / "deploy" / "record.json"),
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

    truth = {r["prompt"]: r["completion"] for r in ROWS}
    (tmp_path / "model").mkdir()
    result = run_evaluate(
        backend="local",
        task="classification",
        base_model="base-dir",
        model_path=str(tmp_path / "model"),
        model_metadata={},
        validation_path=write(tmp_path / "v.jsonl", ROWS),
        predictions_path=str(tmp_path / "pred.jsonl"),
        summary_path=str(tmp_path / "summary.md"),
        clients={"base": FakeClient(), "tuned": FakeClient(lambda p: truth[p.text])},
    )
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

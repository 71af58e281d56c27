"""The run report's logic: reading each step's outputs generically, the charts, and the page it renders."""

import json
import re

import pytest

from tunekit.components.reporting import charts
from tunekit.components.reporting.report import (
    build_report,
    evaluation_section,
    gate_section,
    publish_local_report,
    render_html,
    split_model_key,
    training_section,
    write_report,
)

CONFUSION = {
    "confusionMatrix": {
        "annotationSpecs": [{"displayName": "billing"}, {"displayName": "shipping"}, {"displayName": "(other)"}],
        "rows": [{"row": [3, 1, 0]}, {"row": [0, 4, 1]}, {"row": [0, 0, 0]}],
    }
}
#: A distillation run's evaluation metadata; its gate's reason holds markup the page must escape.
EVALUATION = {
    "teacher_accuracy": 0.9,
    "student_accuracy": 0.8,
    "gate_passed": True,
    "gate_reason": "deploy: student <script>alert(1)</script> beats 0.5",
}


def write_log(folder, *, tasks=False):
    folder.mkdir(parents=True, exist_ok=True)
    log = [
        {"step": s, "loss": 3.0 / s, "learning_rate": 0.001 * (1 - s / 10)}
        | ({"task_losses": {"label": 2.0 / s, "rationale": 4.0 / s}} if tasks else {})
        for s in range(1, 11)
    ]
    (folder / "training_log.json").write_text(
        json.dumps(
            {
                "log": log,
                "eval": [{"step": 5, "eval_loss": 0.9}, {"step": 10, "eval_loss": 0.5}],
                "summary": {"train_loss": 0.3, "steps": 10, "device": "cpu", "output_dir": "/x"},
            }
        )
    )
    return str(folder)


def test_model_prefixes_take_the_longest_match():
    assert split_model_key("baseline_accuracy") == ("baseline", "accuracy")
    assert split_model_key("base_accuracy") == ("base", "accuracy")
    assert split_model_key("tuned_rouge_l") == ("tuned", "rouge_l")
    assert split_model_key("gate_passed") is None and split_model_key("tuned_") is None


def test_evaluation_keeps_unknown_keys_and_reads_intervals():
    section = evaluation_section(
        {
            "base_accuracy": 0.25,
            "tuned_accuracy": 0.75,
            "tuned_accuracy_ci_low": 0.6,
            "tuned_accuracy_ci_high": 0.9,
            "tuned_macro_f1": 0.7,
            "student_cost_per_1000": 0.04,
            "student_size": "60M",
            "brand_new_figure": 12.5,
            "gate_passed": True,
            "gate_reason": "deploy: better",
            "table": "| metric |",
        }
    )
    assert section.models == ["base", "student", "tuned"]
    rows = {r.name: r for r in section.rows}
    assert rows["accuracy"].values == {"base": 0.25, "tuned": 0.75}
    assert rows["accuracy"].intervals == {"tuned": (0.6, 0.9)}
    assert rows["size"].values == {"student": "60M"}
    assert ("brand_new_figure", 12.5) in section.other
    assert section.markdown_table == "| metric |"
    # Scores go in the bar chart (with the interval as an error bar); costs and sizes stay in the table only.
    assert [name for _, name in section.chart.groups] == ["accuracy", "macro_f1"]
    tuned_accuracy = next(b for b in section.chart.bars if b.model == "tuned" and "accuracy" in b.tooltip)
    assert tuned_accuracy.err_low > tuned_accuracy.y > tuned_accuracy.err_high  # pixels grow downwards


def test_evaluation_reads_the_declared_schema():
    # The preference evaluation's shape: run-level figures, and a model ("reference") no fixed list names.
    metadata = {
        "reward_accuracy": 0.8,
        "win_rate": 0.7,
        "tuned_win_rate": 0.7,
        "base_win_rate": 0.3,
        "tuned_mean_reward": 1.5,
        "reference_mean_reward": 0.5,
        "base_mean_reward": -1.0,
        "gate_passed": True,
        "gate_reason": "deploy: tuned win rate 0.7000 vs base 0.3000",
        "evaluation": {
            "method": "preference",
            "candidate": "tuned",
            "primary_metric": "win_rate",
            "models": ["tuned", "base", "reference"],
            "figures": ["reward_accuracy", "win_rate"],
        },
    }
    section = evaluation_section(metadata)
    assert section.models == ["base", "tuned", "reference"]
    rows = {r.name: r for r in section.rows}
    assert [r.name for r in section.rows][0] == "win_rate"  # the declared primary metric first
    assert rows["mean_reward"].values == {"tuned": 1.5, "reference": 0.5, "base": -1.0}
    assert section.other == [("reward_accuracy", 0.8), ("win_rate", 0.7)]
    # Without the schema the same keys are split by the known model names: "reference" is not one.
    legacy = evaluation_section({k: v for k, v in metadata.items() if k != "evaluation"})
    assert "reference" not in legacy.models and ("reference_mean_reward", 0.5) in legacy.other


def test_an_interval_of_no_shown_value_is_kept_as_an_other_figure():
    section = evaluation_section({"tuned_accuracy_ci_low": 0.1})
    assert section.rows == [] and section.other == [("tuned_accuracy_ci_low", 0.1)]


def test_gate_comparisons_as_list_json_or_dict():
    listed = gate_section({"gate_passed": False, "gate_comparisons": [{"against": "base", "delta": 0.1}]})
    as_json = gate_section({"gate_passed": False, "gate_comparisons": json.dumps([{"against": "base"}])})
    as_dict = gate_section({"gate_reason": "x", "gate_comparisons": {"champion": {"delta": -0.2}}})
    assert listed.passed is False and listed.comparisons == [{"against": "base", "delta": 0.1}]
    assert as_json.comparisons == [{"against": "base"}]
    assert as_dict.passed is None and as_dict.comparisons == [{"delta": -0.2, "against": "champion"}]
    assert gate_section({"tuned_accuracy": 1.0}) is None


def test_training_curves_with_task_losses_and_eval_points(tmp_path):
    notes = []
    section = training_section(write_log(tmp_path / "student", tasks=True), "student", notes)
    names = [line.name for line in section.loss_chart.lines]
    assert names == ["training loss", "label loss", "rationale loss", "evaluation loss"]
    assert [line.dashed for line in section.loss_chart.lines] == [False, True, True, False]
    assert len(section.loss_chart.lines[-1].markers) == 2
    assert section.lr_chart.lines[0].name == "learning rate"
    assert ("steps", 10) in section.summary and all(k != "output_dir" for k, _ in section.summary)
    assert notes == []


def test_reinforcement_rewards_get_their_own_chart_not_the_loss_chart(tmp_path):
    from tunekit.components.tuning.reinforcement.local import write_training_log

    # TRL GRPOTrainer's log_history keys: reward (the weighted mean) and rewards/NAME/mean per reward function.
    history = [
        {"step": s, "loss": 0.01 * s, "reward": 0.1 * s, "rewards/exact/mean": 0.2 * s, "rewards/format/mean": 0.5}
        for s in range(1, 6)
    ]
    write_training_log(str(tmp_path), {"stage": "grpo"}, history)
    section = training_section(str(tmp_path), "tuned", [])
    assert [line.name for line in section.loss_chart.lines] == ["training loss"]
    assert "reward" not in section.loss_chart.title.lower()
    chart = section.reward_chart
    assert chart.title == "Rewards (tuned)" and chart.y_label == "reward"
    assert [line.name for line in chart.lines] == ["mean reward", "exact", "format"]
    assert [line.dashed for line in chart.lines] == [False, True, True]
    assert all(len(line.points.split()) == 5 for line in chart.lines)
    page = render_html(build_report(pipeline_name="reinforcement-tuning", models=[("tuned", str(tmp_path))]))
    assert "Rewards (tuned)" in page and "reward exact loss" not in page
    # A log of losses only has no reward chart.
    assert training_section(write_log(tmp_path / "sft"), "sft", []).reward_chart is None


def test_training_summary_only_skipped_and_unreadable(tmp_path):
    vertex = tmp_path / "vertex"
    vertex.mkdir()
    (vertex / "tunekit_model.json").write_text(json.dumps({"backend": "vertex", "training": {"steps": 40}}))
    section = training_section(str(vertex), "tuned", [])
    assert section.loss_chart is None and ("training.steps", 40) in section.summary and section.note
    skipped = tmp_path / "baseline"
    skipped.mkdir()
    (skipped / "tunekit_model.json").write_text(json.dumps({"skipped": True}))
    assert training_section(str(skipped), "baseline", []) is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "training_log.json").write_text("{not json")
    notes = []
    assert training_section(str(broken), "tuned", notes) is None
    assert "could not read" in notes[0]


def test_nice_ticks_and_empty_charts():
    assert charts.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts.nice_ticks(3.2, 6.5) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert charts.nice_ticks(2.0, 2.0)[0] < 2.0 < charts.nice_ticks(2.0, 2.0)[-1]
    assert charts.line_chart("t", [("a", [(1, float("nan"))])]) is None
    assert charts.bar_chart("t", ["m"], ["tuned"], {"m": {}}) is None
    assert charts.heat_map("t", ["a", "b"], [[1, 2]]) is None
    chart = charts.heat_map("t", ["a", "b"], [[3, 1], [0, 0]])
    assert [c.text for c in chart.cells] == ["3", "1", "", ""]


def test_full_report_renders_every_section_and_escapes(tmp_path):
    validation = tmp_path / "validation.json"
    validation.write_text(
        json.dumps(
            {
                "ok": True,
                "method": "supervised",
                "task": "classification",
                "errors": 0,
                "warnings": 1,
                "summary": {
                    "files": {"train": {"path": "t.jsonl", "rows": 40, "valid_rows": 40, "labels": {"a": 3}}}
                },
                "counts_by_kind": {"rare_class": 1},
                "severity_by_kind": {"rare_class": "warning"},
                "findings": [
                    {"severity": "warning", "kind": "rare_class", "path": "t.jsonl", "message": "<b>rare</b>"}
                ],
            }
        )
    )
    report = build_report(
        pipeline_name="distilling-step-by-step",
        run_name="run-1",
        parameters={"task": "classification", "empty": ""},
        validation_report_path=str(validation),
        teacher_metrics=[("rationale extraction", {"input_tokens": 1200.0, "estimated_cost_usd": 0.0123})],
        models=[("student", write_log(tmp_path / "student")), ("baseline", str(tmp_path / "missing"))],
        evaluation_metrics=EVALUATION,
        classification_metrics=[("student", CONFUSION)],
    )
    html = (
        write_report(str(tmp_path / "out" / "report.html"), report)
        and (tmp_path / "out" / "report.html").read_text()
    )
    for section in ("validation", "teacher", "training", "evaluation", "gate"):
        assert f'<section id="{section}">' in html, section
    assert 'id="metric-table"' in html and "$0.0123" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "&lt;b&gt;rare&lt;/b&gt;" in html
    assert "Confusion matrix (student)" in html and html.count("<svg") == 4  # loss, lr, bars, confusion
    assert ("empty", "") not in report.parameters


def test_report_with_no_inputs_says_what_is_missing():
    html = render_html(build_report(pipeline_name="embedding-tuning", validation_report_path="/nope/report.json"))
    assert "This run has no evaluation metrics" in html and "No training log" in html
    assert "/nope/report.json does not exist" in html


@pytest.mark.parametrize("with_everything", [False, True])
def test_page_is_self_contained(tmp_path, with_everything):
    kwargs = (
        dict(
            models=[("student", write_log(tmp_path / "student"))],
            evaluation_metrics=EVALUATION,
            classification_metrics=[("student", CONFUSION)],
        )
        if with_everything
        else {}
    )
    html = render_html(build_report(pipeline_name="distilling-step-by-step", **kwargs))
    # No script, no stylesheet or image link, nothing fetched from anywhere: the page must open offline.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|\bsrc=|https?://", html, re.IGNORECASE)


def test_publish_local_report_copies_the_newest_artifact_as_html(tmp_path):
    assert publish_local_report(str(tmp_path)) == ""
    task = tmp_path / "make-run-report"
    task.mkdir()
    (task / "html_report").write_text("<!DOCTYPE html><p>report</p>")
    path = publish_local_report(str(tmp_path))
    assert path == str(tmp_path / "report.html") and open(path).read().endswith("<p>report</p>")


def test_the_evaluation_steps_gate_and_per_class_figures():
    # The shape evaluate_supervised logs: flat gate figures, per-class figures and the comparisons in full.
    comparison = {
        "against": "base", "label": "base", "metric": "accuracy", "candidate": 0.8, "other": 0.5, "delta": 0.3,
        "interval": {"delta": 0.3, "low": 0.1, "high": 0.5, "confidence": 0.95, "rows": 20, "resamples": 1000},
        "required": True, "passed": True, "rule": "required > +0.0000",
    }  # fmt: skip
    metadata = {
        "base_accuracy": 0.5,
        "tuned_accuracy": 0.8,
        "gate_delta_base": 0.3,
        "gate_ci_low_base": 0.1,
        "gate_ci_high_base": 0.5,
        "tuned_precision[billing]": 1.0,
        "tuned_recall[billing]": 0.5,
        "tuned_precision[shipping]": 0.6,
        "gate_passed": True,
        "gate_reason": "deploy: tuned accuracy 0.8 vs base 0.5",
        "gate": [comparison],
    }
    section = evaluation_section(metadata)
    assert [r.name for r in section.rows] == ["accuracy"] and section.other == []
    assert section.per_class_columns == [("tuned", "precision"), ("tuned", "recall")]
    assert section.per_class == [
        ("billing", {("tuned", "precision"): 1.0, ("tuned", "recall"): 0.5}),
        ("shipping", {("tuned", "precision"): 0.6}),
    ]
    gate = gate_section(metadata)
    assert gate.headline == "Deploy: tuned accuracy 0.8 vs base 0.5"
    # "label" only repeats "against" here, so it is left out; the interval's ends get short headings.
    assert gate.columns[:7] == [
        "against",
        "metric",
        "candidate",
        "other",
        "delta",
        "interval.low",
        "interval.high",
    ]
    assert [gate.header(k) for k in gate.columns[5:7]] == ["CI low", "CI high"]
    champion = dict(comparison, against="champion", label="registry:run-1")
    assert "label" in gate_section({"gate_passed": False, "gate": [comparison, champion]}).columns
    assert "interval.delta" not in gate.columns and "interval.resamples" not in gate.columns
    [bar] = gate.chart.bars
    assert bar.err_low > bar.y > bar.err_high  # the interval [0.1, 0.5] straddles the bar's top at 0.3
    # Only the flat figures: the same comparison, rebuilt from them.
    flat = gate_section({k: v for k, v in metadata.items() if k != "gate"})
    assert flat.comparisons == [{"against": "base", "delta": 0.3, "ci_low": 0.1, "ci_high": 0.5}]
    assert flat.chart.bars[0].tooltip.startswith("vs base")


def test_a_negative_change_is_drawn_below_a_zero_line():
    gate = gate_section(
        {"gate_passed": False, "gate_reason": "worse", "gate_delta_champion": -0.2, "gate_ci_low_champion": -0.3,
         "gate_ci_high_champion": -0.1}
    )  # fmt: skip
    assert gate.headline == "Do not deploy: worse"
    [bar] = gate.chart.bars
    assert gate.chart.zero is not None and bar.y == gate.chart.zero and bar.height > 0


@pytest.mark.parametrize(
    ("method", "evaluation"),
    [
        ("supervised-tuning", "evaluate-supervised"),
        ("distilling-step-by-step", "evaluate-distillation"),
        ("embedding-tuning", "evaluate-embedding"),
    ],
)
def test_every_pipeline_writes_the_report_after_evaluation_outside_the_gate(tmp_path, method, evaluation):
    import yaml

    from tunekit.pipelines.compile import compile_method
    from tunekit.pipelines.registry import METHODS

    spec = yaml.safe_load(open(compile_method(METHODS[method], str(tmp_path / "p.yaml"))))
    dags = [
        c["dag"]["tasks"]
        for c in spec["components"].values()
        if "make-run-report" in c.get("dag", {}).get("tasks", {})
    ]
    dags += [spec["root"]["dag"]["tasks"]] if "make-run-report" in spec["root"]["dag"]["tasks"] else []
    [tasks] = dags
    report = tasks["make-run-report"]
    assert report["taskInfo"]["name"] == "run-report" and "triggerPolicy" not in report
    # Beside the gate (a sibling of the gated deploy), fed by the evaluation and the validation.
    assert evaluation in report["dependentTasks"] and any(
        t.startswith("validate-") for t in report["dependentTasks"]
    )
    assert any(name.startswith("gate-and-deploy") or name.startswith("condition") for name in tasks)
    artifacts = report["inputs"]["artifacts"]
    assert artifacts["evaluation_metrics"]["taskOutputArtifact"]["producerTask"] == evaluation
    assert {"validation_report", "tuned_model"} <= set(artifacts)


def test_teacher_usage_adds_up_and_skips_steps_that_called_nobody():
    report = build_report(
        pipeline_name="distilling-step-by-step",
        teacher_metrics=[
            ("teacher labelling", {"to_send": 0.0, "enabled": 0.0}),
            ("rationale extraction", {"requests": 30.0, "estimated_cost_usd": 0.02}),
            ("second look", {"requests": 5.0, "estimated_cost_usd": 0.01}),
        ],
    )
    assert [u.step for u in report.usage] == ["rationale extraction", "second look"]
    assert report.teacher_cost_usd == pytest.approx(0.03)
    assert "$0.0300" in render_html(report)


def test_bar_labels_stay_short():
    chart = charts.bar_chart(
        "t", ["chrf"], ["baseline", "student"], {"chrf": {"baseline": 0.07291, "student": -0.0004}}
    )
    assert [bar.value_label for bar in chart.bars] == ["0.073", "0"]


def test_rows_put_the_gates_metric_first_then_sort_by_name():
    metadata = {
        "tuned_macro_f1": 0.5,
        "tuned_rouge_l": 0.3,
        "tuned_accuracy": 0.6,
        "gate": [{"metric": "rouge_l"}],
    }
    assert [r.name for r in evaluation_section(metadata).rows] == ["rouge_l", "accuracy", "macro_f1"]
    del metadata["gate"]
    assert [r.name for r in evaluation_section(metadata).rows] == ["accuracy", "macro_f1", "rouge_l"]

"""The run report's checkpoint and cost sections: the metric of every checkpoint with its interval, and the tuning
bill before and after the job beside the teacher's cost and the cost per 1,000 predictions."""

import re

from tunekit.components.common.model_record import ModelRecord
from tunekit.components.evaluation import checkpoints as ckpt
from tunekit.components.reporting.report import build_report, render_html
from tunekit.components.tuning import cost


def _selection() -> dict:
    scores = [
        ckpt.CheckpointScore(ckpt.Checkpoint("1", step=10, epoch=1), 0.25, 0.10, 0.40),
        ckpt.CheckpointScore(ckpt.Checkpoint("2", step=20, epoch=2), 0.75, 0.60, 0.90),
        ckpt.CheckpointScore(ckpt.Checkpoint("3", step=30, epoch=3, is_default=True), 0.50, 0.35, 0.65),
    ]
    selection = ckpt.Selection("accuracy", scores, scores[1].checkpoint, default_changed=True)
    selection.undeployed = ["projects/p/locations/l/endpoints/100"]
    return selection.to_dict()


def test_the_report_shows_the_metric_of_every_checkpoint_and_the_one_chosen():
    metrics = {"tuned_accuracy": 0.75, "base_accuracy": 0.25, "checkpoints": _selection()}
    report = build_report(pipeline_name="supervised-tuning", evaluation_metrics=metrics)
    assert report.checkpoints.best == "2" and report.checkpoints.default_changed
    assert [r["value"] for r in report.checkpoints.rows] == [0.25, 0.75, 0.5]
    html = render_html(report)
    table = html[html.index('id="checkpoint-table"') : html.index("</table>", html.index('id="checkpoint-table"'))]
    assert re.search(
        r"<th>2</th><td[^>]*>20</td><td[^>]*>2</td><td[^>]*>0\.7500</td>.*\[0\.6000, 0\.9000\]", table
    )
    assert table.count("<tr>") == 4 and 'href="#checkpoints"' in html
    assert "accuracy per checkpoint" in html and "projects/p/locations/l/endpoints/100" in html


def test_the_report_sets_the_tuning_bill_beside_the_teacher_and_prediction_costs(tmp_path):
    before = cost.estimate("meta/llama3_1@llama-3.1-8b-instruct", 1_000_000, 2, counted_by="characters/4")
    after = cost.estimate("meta/llama3_1@llama-3.1-8b-instruct", 900_000, 2, counted_by="tuning_data_stats")
    record = {"backend": "vertex", "tuning_cost": {"estimate": before.to_dict(), "billed": after.to_dict()}}
    ModelRecord.from_dict(record).write(str(tmp_path))
    gemini = cost.estimate("gemini-3.5-flash", 5000, None, counted_by="countTokens")
    (tmp_path / "g").mkdir()
    ModelRecord.from_dict({"tuning_cost": {"estimate": gemini.to_dict(), "billed": None}}).write(
        str(tmp_path / "g")
    )
    report = build_report(
        pipeline_name="distilling-step-by-step",
        teacher_metrics=[("label-with-teacher", {"calls": 10, "estimated_cost_usd": 0.5})],
        models=[("student", str(tmp_path)), ("baseline", str(tmp_path / "g"))],
        evaluation_metrics={"teacher_cost_per_1000": 1.25, "student_cost_per_1000": 0.02, "student_accuracy": 0.9},
    )
    rows = [(c.item, c.model, c.dollars) for c in report.costs]
    assert rows == [
        ("tuning (estimated before the job)", "student", before.dollars),
        ("tuning (billed tokens)", "student", after.dollars),
        ("tuning (estimated before the job)", "baseline", None),
        ("teacher calls", "teacher", 0.5),
        ("1,000 predictions", "teacher", 1.25),
        ("1,000 predictions", "student", 0.02),
    ]
    assert before.dollars == 1.34 and after.dollars == 1.206
    html = render_html(report)
    table = html[html.index('id="cost-table"') :]
    assert "$1.3400" in table and "$1.2060" in table and "$1.2500" in table
    assert "unpriced" in table and "gemini-3.5-flash has no tuning price" in table
    assert "5,000 tokens x epochs not known" in table

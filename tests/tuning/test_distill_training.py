"""The open-model student trainer: the weighted multi-task loss, LoRA and full fine-tuning, and evaluation."""

import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.evaluation.distillation.steps import run_evaluate_distillation
from tunekit.components.model_clients.base import FakeClient
from tunekit.components.tuning.distillation import local as distill
from tunekit.components.tuning.distillation.steps import run_tune_student
from tunekit.components.tuning.tiny import make_tiny_model

SIZE = {"d_model": 32, "d_kv": 8, "num_heads": 2, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}
ROWS = [
    {
        "input_text": f"Mia has {i} pens, buys 2 more. How many?",
        "output_text": str(i + 2),
        "rationale": f"{i} + 2 = {i + 2}.",
    }
    for i in range(8)
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(str(tmp_path_factory.mktemp("tiny")), kind="seq2seq", **SIZE)


def write(path, rows):
    write_jsonl(str(path), rows)
    return str(path)


def config(**overrides):
    values = dict(
        max_steps=3,
        batch_size=4,
        learning_rate=1e-2,
        logging_steps=1,
        device="cpu",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        max_input_length=64,
        max_target_length=32,
    )
    values.update(overrides)
    return distill.DistillTuningConfig(**values)


def test_alpha_one_trains_exactly_like_the_label_only_student(tiny, tmp_path):
    """With alpha = 1 the rationale task has weight 0: the same steps, the same loss as label-only training."""
    multitask, _ = distill.build_student_examples(ROWS, alpha=1.0)
    standard, _ = distill.build_student_examples(ROWS, mode="standard", label_prefix="predict: ")
    for row in standard:
        row["prompt"] = "predict: " + row["prompt"]  # the same inputs the label task sees
    with_rationales = [*multitask, *distill.build_student_examples(ROWS, alpha=0.5)[0][1::2]]
    with_rationales = [r if r["task"] == "label" else {**r, "weight": 0.0} for r in with_rationales]
    a = distill.tune_student(tiny, write(tmp_path / "a.jsonl", standard), None, str(tmp_path / "a"), config())
    b = distill.tune_student(
        tiny, write(tmp_path / "b.jsonl", with_rationales), None, str(tmp_path / "b"), config()
    )
    assert a["task_weights"] == {"label": 1.0} and b["task_weights"] == {"label": 1.0, "rationale": 0.0}
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert "rationale" not in b["task_losses"]


def test_multitask_step_loss_is_the_weighted_sum_of_task_losses(tiny, tmp_path):
    examples, _ = distill.build_student_examples(ROWS, alpha=0.25)
    train = write(tmp_path / "t.jsonl", examples)
    # One step over every input: the logged step loss must be 0.25 * label + 0.75 * rationale of that step.
    summary = distill.tune_student(tiny, train, train, str(tmp_path / "m"), config(max_steps=1, batch_size=8))
    losses = summary["task_losses"]
    assert set(losses) == {"label", "rationale"}
    assert summary["train_loss"] == pytest.approx(0.25 * losses["label"] + 0.75 * losses["rationale"], rel=1e-5)
    assert set(summary["eval_task_losses"]) == {"label", "rationale"}
    assert summary["tokens_per_second"] > 0 and summary["adapter"] is True
    assert summary["train_inputs"] == 8 and summary["train_examples"] == 16


def test_full_finetuning_and_the_pipeline_steps_end_to_end(tiny, tmp_path):
    """Build → tune (student and baseline) → evaluate with a scripted teacher, on a full fine-tuned tiny student."""
    from tunekit.components.tuning.distillation.steps import run_build_student_dataset

    rationale_rows = [
        {**r, "rationale_kept": True, "teacher_answer": r["output_text"], "status": "ok"} for r in ROWS
    ]
    source = write(tmp_path / "r.jsonl", rationale_rows)
    data_dir, eval_path = tmp_path / "data", tmp_path / "eval.jsonl"
    run_build_student_dataset(
        rationale_path=source,
        validation_path="",
        output_dir=str(data_dir),
        eval_path=str(eval_path),
        validation_split=0.25,
        student_backend="local",
        student_model=tiny,
    )
    options = {"max_steps": 2.0, "batch_size": 4, "device": "cpu", "max_input_length": 64, "max_target_length": 32}
    records = {}
    for name, baseline in (("student", False), ("baseline", True)):
        meta = {}
        records[name] = run_tune_student(
            student_backend="local",
            student_model=tiny,
            task="generic",
            dataset_dir=str(data_dir),
            dataset_uri=str(data_dir),
            model_path=str(tmp_path / name),
            model_metadata=meta,
            baseline=baseline,
            finetuning="full",
            local_options=dict(options),
        )
        assert meta["serving_prefix"] == ("" if baseline else "predict: ")
    assert records["student"]["training"]["finetuning"] == "full"
    assert records["student"]["training"]["trainable_parameters"] == records["student"]["training"]["parameters"]
    skipped = run_tune_student(
        student_backend="local",
        student_model=tiny,
        task="generic",
        dataset_dir=str(data_dir),
        dataset_uri=str(data_dir),
        model_path=str(tmp_path / "none"),
        model_metadata={},
        enabled=False,
    )
    assert skipped["skipped"] is True

    teacher = FakeClient(lambda prompt: "They add. So the answer is 4.")
    result = run_evaluate_distillation(
        task="generic",
        task_type="math",
        eval_path=str(eval_path),
        student_path=str(tmp_path / "student"),
        student_metadata={},
        baseline_path=str(tmp_path / "baseline"),
        baseline_metadata={},
        predictions_path=str(tmp_path / "p.jsonl"),
        summary_path=str(tmp_path / "s.md"),
        teacher_factory=lambda: teacher,
        teacher_model="gemini-2.5-pro",
        exemplars=[{"question": "Ann has 1 pen, buys 1 more.", "rationale": "1 + 1 = 2.", "answer": "2"}],
        max_output_tokens=4,
        student_cost_per_hour=1.0,
    )
    assert set(result.metrics) == {"teacher", "baseline", "student"} and result.candidate == "student"
    held = [json.loads(line) for line in eval_path.read_text().splitlines()]
    assert result.metrics["teacher"]["accuracy"] == sum(r["reference"] == "4" for r in held) / len(held)
    assert len(teacher.calls) == len(held)  # one chain-of-thought prompt per held-out row
    # FakeClient reports no tokens: the teacher costs $0 here; the student is priced by its measured time.
    assert result.metrics["teacher"]["cost_per_1000"] == 0 and result.metrics["student"]["cost_per_1000"] > 0
    assert result.metadata["student_size"].endswith("M parameters")
    table = result.metadata["table"]
    assert "| teacher |" in table and "| baseline |" in table and "| student |" in table
    assert result.passed is True and result.reason.startswith("deploy")
    assert [c.against for c in result.comparisons] == ["base"] and result.comparisons[
        0
    ].label == "label-only baseline"
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == len(held)


def test_gate_fails_below_the_threshold_or_the_baseline():
    from tunekit.components.evaluation.distillation.steps import ModelScore, gate_inputs, gate_policy
    from tunekit.components.evaluation.gate import decide

    scores = {
        "student": ModelScore("student", {"accuracy": 0.6}),
        "baseline": ModelScore("baseline", {"accuracy": 0.5}),
    }

    def gate(task, **policy):
        return decide(**gate_inputs(scores, task=task), policy=gate_policy(**policy))

    assert gate("classification", min_student_metric=0.5, min_improvement_over_baseline=0.05).passed
    assert not gate("classification", min_student_metric=0.7, min_improvement_over_baseline=0).passed
    # The floor and the margin over the baseline are both "at least": a gain of exactly the margin passes.
    assert gate("classification", min_student_metric=0.6, min_improvement_over_baseline=0.1).passed
    decision = gate("generic", min_student_metric=0, min_improvement_over_baseline=0.2)
    assert not decision.passed and "baseline 0.5000" in decision.reason


def test_keep_checkpoints_is_refused_for_the_student_not_ignored(tiny, tmp_path):
    # The shared trainer config accepts it; only supervised tuning selects among checkpoints, so the student says so.
    train = write(tmp_path / "train.jsonl", [{"input": "q", "label": "a", "rationale": "r"}])
    with pytest.raises(UserError, match="keep_checkpoints"):
        distill.tune_student(tiny, train, None, str(tmp_path / "out"), config(keep_checkpoints=True))

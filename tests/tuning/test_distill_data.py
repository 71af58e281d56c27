"""Distilling step-by-step data: the student dataset builder, alpha balancing, hold-out, the scripted teacher."""

import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import EMPTY, OK, Prompt
from tunekit.components.model_clients.teachers import ScriptedTeacher
from tunekit.components.rationale_extraction.parsing import answer_from_cot
from tunekit.components.tuning.distillation import local as distill
from tunekit.components.tuning.distillation.steps import run_build_student_dataset, split_evaluation
from tunekit.components.tuning.distillation.vertex import balance_for_alpha, prompt_only_row, to_gemini_row

ROWS = [
    # gold label, kept rationale
    {
        "input_text": "Mia has 2 pens, buys 3 more. How many?",
        "output_text": "5",
        "rationale": "2 + 3 = 5.",
        "rationale_kept": True,
        "teacher_answer": "5",
        "status": "ok",
    },
    # unlabelled: the teacher's CoT answer is the label
    {
        "input_text": "Leo has 4 cards, loses 1. How many?",
        "rationale": "4 - 1 = 3.",
        "rationale_kept": True,
        "teacher_answer": "3",
        "status": "ok",
    },
    # gold label, rationale dropped (disagreed): still trains the label task
    {
        "input_text": "Ava has 3 coins, doubles them. How many?",
        "output_text": "6",
        "rationale": "3 * 2 = 5.",
        "rationale_kept": False,
        "teacher_answer": "5",
        "status": "ok",
    },
    # unlabelled and the teacher gave no answer: no label, skipped
    {
        "input_text": "Sam has 9 books, sells 2. How many?",
        "rationale": "9 - 2 = 7.",
        "rationale_kept": False,
        "teacher_answer": None,
        "status": "no_answer",
    },
]


def test_multitask_examples_per_input_with_prefixes_and_weights():
    examples, stats = distill.build_student_examples(ROWS, alpha=0.3)
    assert [(e["example_id"], e["task"]) for e in examples] == [
        (0, "label"),
        (0, "rationale"),
        (1, "label"),
        (1, "rationale"),
        (2, "label"),
    ]
    assert examples[0]["prompt"] == "predict: " + ROWS[0]["input_text"] and examples[0]["completion"] == "5"
    assert (
        examples[1]["prompt"] == "explain: " + ROWS[0]["input_text"] and examples[1]["completion"] == "2 + 3 = 5."
    )
    assert examples[2]["completion"] == "3"  # the teacher's answer labels the unlabelled row
    assert {e["weight"] for e in examples if e["task"] == "label"} == {0.3}
    assert [e["weight"] for e in examples if e["task"] == "rationale"] == [pytest.approx(0.7)] * 2
    assert (stats.inputs, stats.used_inputs, stats.gold_labels, stats.teacher_labels, stats.no_label) == (
        4,
        3,
        2,
        1,
        1,
    )
    assert (stats.label_examples, stats.rationale_examples, stats.rationale_dropped) == (3, 2, 1)


def test_gold_label_wins_and_teacher_label_column_is_used():
    assert distill.row_label({"output_text": "7", "teacher_label": "8", "teacher_answer": "9"}) == ("7", "gold")
    assert distill.row_label({"teacher_label": "8", "teacher_answer": "9"}) == ("8", "teacher")
    assert distill.row_label({"teacher_answer": "9", "status": "truncated"}) == (None, "none")


def test_standard_and_cot_modes():
    standard, _ = distill.build_student_examples(ROWS, mode="standard")
    assert [e["prompt"] for e in standard] == [r["input_text"] for r in ROWS[:3]]
    assert {e["task"] for e in standard} == {"label"} and {e["weight"] for e in standard} == {1.0}
    cot, stats = distill.build_student_examples(ROWS, mode="cot")
    # CoT needs the reasoning: the row whose rationale was dropped gives no example.
    assert [e["completion"] for e in cot] == ["2 + 3 = 5. So the answer is 5.", "4 - 1 = 3. So the answer is 3."]
    assert answer_from_cot(cot[0]["completion"]) == "5"
    assert answer_from_cot("no phrase") == "no phrase"
    assert stats.label_examples == 2
    assert distill.serving_prefix("multitask") == "predict: " and distill.serving_prefix("cot") == ""


def test_token_limits_truncate_and_count_or_reject():
    long_row = {"input_text": "x" * 100, "output_text": "y" * 50, "rationale": "z" * 50}
    examples, stats = distill.build_student_examples([long_row], max_input_tokens=10, max_output_tokens=5)
    assert all(len(e["prompt"]) <= 40 and len(e["completion"]) <= 20 for e in examples)
    assert (stats.truncated_inputs, stats.truncated_outputs) == (2, 2)
    with pytest.raises(UserError, match="over the limit"):
        distill.build_student_examples([long_row], max_input_tokens=10, truncate=False)
    cot, _ = distill.build_student_examples([long_row], mode="cot", max_output_tokens=30)
    assert cot[0]["completion"].endswith("So the answer is " + "y" * 50 + ".")  # the answer is never cut


def test_exact_token_counts_with_the_student_tokenizer():
    from transformers import ByT5Tokenizer

    tokens = distill.HFTokens(ByT5Tokenizer())
    assert tokens.count("abc") == 3 and tokens.truncate("abcdef", 4) == "abcd"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mode": "bogus"}, "unknown mode"), ({"alpha": 1.5}, "alpha"), ({"label_prefix": "explain: "}, "differ")],
)
def test_bad_settings_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        distill.build_student_examples(ROWS, **kwargs)


def test_weighted_loss_is_alpha_label_plus_one_minus_alpha_rationale():
    weights = distill.task_weights([{"task": "label", "weight": 0.2}, {"task": "rationale", "weight": 0.8}])
    assert distill.weighted_loss({"label": 2.0, "rationale": 5.0}, weights) == pytest.approx(0.2 * 2 + 0.8 * 5)
    # A batch whose rationales were all dropped trains the label task at full strength.
    assert distill.weighted_loss({"label": 2.0}, weights) == pytest.approx(2.0)
    assert distill.task_weights([{"task": "label", "weight": 0.2}, {"task": "rationale"}], alpha=0.6) == {
        "label": 0.6,
        "rationale": pytest.approx(0.4),
    }
    with pytest.raises(UserError, match="several loss weights"):
        distill.task_weights([{"task": "label", "weight": 0.2}, {"task": "label", "weight": 0.3}])


def test_gemini_alpha_is_approximated_by_example_counts():
    examples, _ = distill.build_student_examples(
        [{"input_text": f"q{i}", "output_text": "a", "rationale": "r"} for i in range(12)]
    )

    def count(rows, task):
        return sum(r["task"] == task for r in rows)

    for alpha, rationales in ((0.5, 12), (0.75, 4), (0.25, 36)):
        balanced = balance_for_alpha(examples, alpha)
        assert (count(balanced, "label"), count(balanced, "rationale")) == (12, rationales)
    assert balance_for_alpha(examples, 0.75, seed=1) == balance_for_alpha(examples, 0.75, seed=1)
    with pytest.raises(UserError):
        balance_for_alpha(examples, 0.0)
    row = to_gemini_row(examples[0])
    assert [c["role"] for c in row["contents"]] == ["user", "model"]
    assert prompt_only_row(examples[0])["contents"][0]["parts"][0]["text"] == "predict: q0"


def test_hold_out_prefers_gold_labels_and_validation_rows():
    rows = [
        {
            "input_text": f"q{i}",
            **({"output_text": str(i)} if i % 2 else {}),
            "teacher_answer": "t",
            "status": "ok",
        }
        for i in range(20)
    ]
    train, held = split_evaluation(rows, [], 0.2)
    assert len(held) == 2 and all(r["reference_source"] == "gold" for r in held)
    assert len(train) == 18 and not {r["input_text"] for r in held} & {r["input_text"] for r in train}
    unlabelled = [{"input_text": f"q{i}", "teacher_answer": "t", "status": "ok"} for i in range(10)]
    _, held = split_evaluation(unlabelled, [], 0.2)
    assert {r["reference_source"] for r in held} == {"teacher"}
    train, held = split_evaluation(rows, [{"input_text": "v", "output_text": "1"}, {"input_text": "w"}], 0.2)
    assert len(train) == 20 and [r["reference"] for r in held] == ["1"]


def test_build_step_writes_student_baseline_gemini_and_eval_files(tmp_path):
    source = tmp_path / "rationales.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    validation = tmp_path / "normalised"
    validation.mkdir()
    (validation / "validation.jsonl").write_text(json.dumps({"input_text": "v?", "output_text": "1"}) + "\n")
    out = tmp_path / "student"
    counts = run_build_student_dataset(
        rationale_path=str(source),
        validation_path=str(validation),
        output_dir=str(out),
        eval_path=str(tmp_path / "eval.jsonl"),
        student_backend="vertex",
        alpha=0.5,
    )
    assert counts["label_examples"] == 3 and counts["rationale_examples"] == 2 and counts["baseline_examples"] == 3
    assert counts["eval_rows"] == 1 and counts["eval_reference_gold"] == 1
    for name in (
        "train.jsonl",
        "baseline_train.jsonl",
        "train_gemini.jsonl",
        "prompts_gemini.jsonl",
        "validation_gemini.jsonl",
        distill.STUDENT_DATA_INFO,
    ):
        assert (out / name).exists(), name
    # Alpha 0.5 on Gemini: one rationale example per label example, so the label examples' rationales are repeated
    # where some were dropped.
    gemini = [json.loads(line) for line in (out / "train_gemini.jsonl").read_text().splitlines()]
    assert sum(r["contents"][0]["parts"][0]["text"].startswith("explain: ") for r in gemini) == 3


def test_scripted_teacher_answers_the_query_not_the_exemplars():
    teacher = ScriptedTeacher(
        [
            {"input_text": "Mia has 2 pens.", "completion": "2. So the answer is 2."},
            {"input_text": "Leo has 4 cards.", "completion": "4. So the answer is 4."},
        ]
    )
    prompt = "Q: Mia has 2 pens.\nA: 2. So the answer is 2.\n\nQ: Leo has 4 cards.\nA:"
    first, missing = teacher.generate([Prompt(prompt), Prompt("Q: unknown\nA:")])
    assert (first.text, first.status) == ("4. So the answer is 4.", OK) and first.input_tokens > 0
    assert (missing.text, missing.status) == ("", EMPTY)
    with pytest.raises(UserError):
        ScriptedTeacher([{"input_text": "x"}])

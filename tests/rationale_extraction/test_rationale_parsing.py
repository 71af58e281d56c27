"""The chain-of-thought completion parser: phrasings written for these tests, then the real teacher output."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tunekit.components.rationale_extraction.parsing import (
    AMBIGUOUS,
    EMPTY,
    NO_ANSWER,
    OK,
    OUT_OF_SET,
    PARSE_STATUSES,
    TASK_TYPES,
    TRUNCATED,
    UNPARSEABLE,
    answer_key,
    answers_agree,
    evaluate_arithmetic,
    parse_completion,
    strip_runaway,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DSS_DIR = REPO_ROOT.parent / "shared" / "data" / "dss"

PETS = ["kennel", "fish tank", "bird cage", "stable", "hutch"]


# --- multiple choice ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        "Fish need water around them. So the answer is (b) fish tank.",
        "Fish need water around them. So the answer is (B).",
        "Fish need water around them. So the answer is b) fish tank.",
        "Fish need water around them. So the answer is fish tank.",
        "Fish need water around them. The answer is: the fish tank, since it holds water.",
        "Fish need water around them. So the answer is (b) fishtank.",  # the teacher's own spelling
        "Fish need water around them. So the answer is (b) fish tank. It is the only one with water.",
    ],
)
def test_multiple_choice_letters_and_texts_map_to_the_option_text(completion):
    parsed = parse_completion(completion, "multiple_choice", PETS)
    assert parsed == parsed.__class__("Fish need water around them.", "fish tank", OK, parsed.raw_answer)


def test_multiple_choice_misspelled_option_without_letter_is_matched():
    assert (
        parse_completion("Horses live there. So the answer is stables.", "multiple_choice", PETS).answer
        == "stable"
    )


def test_multiple_choice_runaway_exemplar_is_cut_from_rationale_and_answer():
    completion = (
        "A rabbit is kept in a small wooden house. So the answer is (e) hutch.\n\n"
        "Q: Where would you keep a pony?\nAnswer Choices:\n(a) kennel\n(b) stable\n"
        "A: Ponies are horses. So the answer is (b) stable."
    )
    parsed = parse_completion(completion, "multiple_choice", PETS)
    assert parsed.answer == "hutch"
    assert parsed.status == OK
    assert parsed.rationale == "A rabbit is kept in a small wooden house."
    assert strip_runaway(completion).endswith("(e) hutch.")


def test_multiple_choice_takes_the_last_answer_phrase_not_the_opening_one():
    completion = (
        "The answer must be a home for a dog. Of these, the closest answer is (c) bird cage, but birds are not dogs. "
        "So the answer is (a) kennel."
    )
    parsed = parse_completion(completion, "multiple_choice", PETS)
    assert parsed.answer == "kennel"
    assert parsed.rationale.startswith("The answer must be a home for a dog.")


@pytest.mark.parametrize(
    "completion",
    [
        "Both could work. So the answer is either (a) kennel or (e) hutch.",
        "Both could work. So the answer is (a) kennel and (e) hutch.",
        "Both could work. So the answer is kennel or hutch.",
        "Confused. So the answer is (a) hutch.",  # the letter says kennel, the text is another option
    ],
)
def test_multiple_choice_several_options_are_ambiguous(completion):
    parsed = parse_completion(completion, "multiple_choice", PETS)
    assert parsed.status == AMBIGUOUS
    assert parsed.answer is None
    assert parsed.raw_answer


def test_multiple_choice_unknown_text_is_out_of_set_and_letter_outside_range_is_not_an_option():
    assert parse_completion("Hmm. So the answer is a spaceship.", "multiple_choice", PETS).status == OUT_OF_SET
    assert parse_completion("Hmm. So the answer is (g).", "multiple_choice", PETS).status != OK


def test_multiple_choice_without_choices_keeps_the_written_option_or_letter():
    assert parse_completion("So the answer is (c) bird cage.", "multiple_choice").answer == "bird cage"
    assert parse_completion("So the answer is (C).", "multiple_choice").answer == "c"


# --- NLI ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "label"),
    [
        ("A cat on a mat is a cat on something.\nAnswer: entailment", "entailment"),
        ("Nothing says where they are going. So the answer is neutral.", "neutral"),
        ("One cannot sleep and run at once. The answer is: contradiction", "contradiction"),
        ("The premise says so. Therefore, the answer is yes.", "entailment"),
        ("The premise does not say. So the answer is it is not possible to tell.", "neutral"),
        ("The man is standing, not sitting. So the answer is no.", "contradiction"),
        ("Playing implies being outside. **Answer:** Entailment", "entailment"),
        ("They could be sisters or friends. The answer is (b) neutral.", "neutral"),
    ],
)
def test_nli_phrasings_and_synonyms(completion, label):
    parsed = parse_completion(completion, "nli")
    assert (parsed.status, parsed.answer) == (OK, label)
    assert "answer" not in parsed.rationale.lower()


def test_nli_runaway_premise_is_cut():
    completion = (
        "A girl on a swing is outdoors.\nAnswer: entailment\n\nPremise: Two dogs play.\nHypothesis: Cats sleep.\n"
        "Reasonings: Dogs are not cats.\nAnswer: contradiction"
    )
    parsed = parse_completion(completion, "nli")
    assert (parsed.answer, parsed.rationale) == ("entailment", "A girl on a swing is outdoors.")


def test_nli_unknown_and_mixed_labels():
    assert parse_completion("So the answer is banana.", "nli").status == UNPARSEABLE
    assert parse_completion("So the answer is entailment or neutral.", "nli").status == AMBIGUOUS
    assert parse_completion("So the answer is not entailment.", "nli").status == AMBIGUOUS


# --- math -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "answer", "gold"),
    [
        (
            "She has 12 and gives 4 and 5 away. The answer is (12 - (4 + 5)).",
            "(12 - (4 + 5))",
            "( 12.0 - ( 4.0 + 5.0 ) )",
        ),
        ("12 - 9 is 3. The answer is 3.", "3", "( 12.0 - 9.0 )"),
        ("Each box costs $400. So the answer is $1,200.", "1200", "( 400.0 * 3.0 )"),
        ("There are 20 apples. The answer is 20 apples.", "20", "( 4.0 * 5.0 )"),
        ("So the answer is 10 - 4 = 6.", "10 - 4", "( 10.0 - 4.0 )"),
        ("Half of 9 is 4.5. The answer is 4.5.", "4.5", "( 9.0 / 2.0 )"),
        ("The answer is (18 × 2) ÷ 3.", "(18 * 2) / 3", "( 36.0 / 3.0 )"),
        ("The answer is (7 - (-2)).", "(7 - (-2))", "9"),
    ],
)
def test_math_answers_are_expressions_compared_by_value(completion, answer, gold):
    parsed = parse_completion(completion, "math")
    assert (parsed.status, parsed.answer) == (OK, answer)
    assert answers_agree("math", parsed.answer, gold)


def test_math_wrong_value_disagrees():
    assert not answers_agree("math", "(12 - 4)", "( 12.0 - ( 4.0 + 5.0 ) )")


@pytest.mark.parametrize(
    ("completion", "status"),
    [
        ("The answer is (7 * x).", UNPARSEABLE),
        ("The answer is (some - 3).", UNPARSEABLE),
        ("The answer is (3 / 4) and (5 / 4).", AMBIGUOUS),
        ("The answer is (3, 4).", AMBIGUOUS),
        ("The answer is ((8 - 2", TRUNCATED),
        ("Then 8 - 2 is 6 so the total is", TRUNCATED),
        ("So x = 14 / 3. x is about 4.67.", NO_ANSWER),
    ],
)
def test_math_failures(completion, status):
    parsed = parse_completion(completion, "math")
    assert parsed.status == status
    assert parsed.answer is None


def test_math_runaway_question_is_cut():
    completion = (
        "They put 3 in each of 7 bags. The answer is (3 * 7).\n\nQ: A farm has 4 cows. How many legs?\nA: 4 * 4"
    )
    assert parse_completion(completion, "math").answer == "(3 * 7)"


def test_safe_evaluator():
    assert evaluate_arithmetic("( 10.0 * 45.0 )") == 450.0
    assert evaluate_arithmetic("-(2 ** 3) // 3") == -3.0
    for bad in (
        "__import__('os')",
        "x + 1",
        "2 ** 10000",
        "1 / 0",
        "[1, 2]",
        "(1).real",
        "1 if 1 else 2",
        "9" * 300,
    ):
        with pytest.raises(ValueError):
            evaluate_arithmetic(bad)


@given(
    st.integers(-1000, 1000),
    st.integers(-1000, 1000),
    st.sampled_from(["+", "-", "*", "/"]),
)
def test_safe_evaluator_agrees_with_python_arithmetic(a, b, op):
    if op == "/" and b == 0:
        with pytest.raises(ValueError):
            evaluate_arithmetic(f"{a} / {b}")
        return
    expected = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else 0}[op]
    assert evaluate_arithmetic(f"({a}) {op} ({b})") == pytest.approx(expected)


# --- classification, extractive QA, generic -------------------------------------------------------------------


def test_classification_maps_to_allowed_classes_and_flags_others():
    classes = ["positive", "negative", "neutral"]
    assert parse_completion("Loved it. So the answer is Positive.", "classification", classes).answer == "positive"
    assert (
        parse_completion("Hated it. The answer is clearly negative sentiment.", "classification", classes).answer
        == "negative"
    )
    mixed = parse_completion("Both. So the answer is mixed.", "classification", classes)
    assert (mixed.status, mixed.answer, mixed.raw_answer) == (OUT_OF_SET, None, "mixed")
    # No spell-fixing of class names: a near miss is still out of set.
    assert parse_completion("So the answer is negatve.", "classification", classes).status == OUT_OF_SET
    assert parse_completion("So the answer is mixed.", "classification").answer == "mixed"


def test_extractive_qa_answers_are_spans_of_the_context():
    context = "The Loire is the longest river in France, flowing 1,006 km to the Atlantic."
    parsed = parse_completion('It is named first. So the answer is "the loire".', "extractive_qa", context=context)
    assert (parsed.status, parsed.answer) == (OK, "The Loire")
    assert parsed.answer in context
    assert parse_completion("So the answer is the Seine.", "extractive_qa", context=context).status == OUT_OF_SET
    assert parse_completion("So the answer is the Seine.", "extractive_qa").answer == "the Seine"


def test_generic_answer_keeps_its_whole_text():
    completion = "Think about it.\nFinal answer: Use a list.\nThen sort it."
    parsed = parse_completion(completion, "generic")
    assert (parsed.rationale, parsed.answer) == ("Think about it.", "Use a list.\nThen sort it.")
    # "Text:" on a later line starts an invented example, whose answer is not this one's.
    assert parse_completion("Some thought.\nText: more\nAnswer: x", "generic").status == NO_ANSWER


# --- empty, truncated, no answer ------------------------------------------------------------------------------


@pytest.mark.parametrize("completion", [None, "", "   \n ", "\n\nQ: Where do owls sleep?\nA: In trees."])
def test_empty_completions(completion):
    assert parse_completion(completion, "multiple_choice", PETS) == parse_completion("", "generic")
    assert parse_completion(completion, "nli").status == EMPTY


@pytest.mark.parametrize(
    ("completion", "status"),
    [
        ("Dogs sleep in kennels, and the", TRUNCATED),
        ("Dogs sleep in kennels. So the answer is", TRUNCATED),
        ("A dog is a pet. " * 6, TRUNCATED),  # a loop runs until the token limit
        ("Dogs sleep in kennels. I am not sure which to pick.", NO_ANSWER),
    ],
)
def test_truncated_and_unanswered(completion, status):
    parsed = parse_completion(completion, "multiple_choice", PETS)
    assert (parsed.status, parsed.answer) == (status, None)
    if status == NO_ANSWER:
        assert parsed.rationale == completion


def test_unknown_task_type():
    with pytest.raises(ValueError, match="unknown task type"):
        parse_completion("x", "poetry")


def test_parser_cannot_see_a_gold_label():
    assert list(inspect.signature(parse_completion).parameters) == ["text", "task_type", "choices", "context"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(TASK_TYPES))
def test_parser_never_crashes_and_answers_only_when_ok(text, task_type):
    parsed = parse_completion(text, task_type, PETS, context="a fish tank")
    assert parsed.status in PARSE_STATUSES
    assert (parsed.answer is not None) == (parsed.status == OK)


def test_answers_agree_across_label_shapes():
    assert answers_agree("multiple_choice", "fish tank", "B", PETS)
    assert answers_agree("multiple_choice", "fish tank", 1, PETS)
    assert answers_agree("multiple_choice", "fish tank", "Fish Tank.", PETS)
    assert not answers_agree("multiple_choice", "kennel", "fish tank", PETS)
    assert answers_agree("nli", "neutral", 1)
    assert answers_agree("nli", "contradiction", "2")
    assert not answers_agree("nli", "neutral", 0)
    assert answers_agree("classification", "positive", "Positive")
    assert not answers_agree("generic", None, "x")
    assert answer_key("math", "(10 * 45)") == answer_key("math", "450")


# --- real teacher output --------------------------------------------------------------------------------------


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_rationale_parsing", REPO_ROOT / "bench" / "rationale_parsing.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not DSS_DIR.is_dir(), reason=f"real teacher output not found at {DSS_DIR} (see SPEC.md)")
def test_real_teacher_output_parses_without_crash_and_meets_reference_accuracy():
    bench = _bench()
    pairs = bench.discover(DSS_DIR)
    assert pairs, f"no completions under {DSS_DIR}"
    references_met = 0
    for dataset, split in pairs:
        result = bench.evaluate_split(DSS_DIR, dataset, split)
        assert sum(result.statuses.values()) == result.examples > 0
        assert result.statuses[OK] / result.examples > 0.9, (dataset, split, result.statuses)
        if result.reference is not None:
            assert result.accuracy >= result.reference, (dataset, split, result.accuracy)
            references_met += 1
    assert references_met == 3  # cqa test, svamp test, esnli valid


@pytest.mark.skipif(not DSS_DIR.is_dir(), reason=f"real teacher output not found at {DSS_DIR} (see SPEC.md)")
def test_bench_task_inference_on_real_gold_fields():
    bench = _bench()
    tasks = {}
    for dataset, split in bench.discover(DSS_DIR):
        gold, completions = bench.load_split(DSS_DIR, dataset, split)
        assert len(gold) == len(completions)
        tasks[dataset] = bench.infer_task(gold[:200])
    assert tasks == {"cqa": "multiple_choice", "esnli": "nli", "svamp": "math"}


def test_bench_reads_any_folder_in_the_layout(tmp_path, capsys):
    bench = _bench()
    folder = tmp_path / "moods" / "llm"
    folder.mkdir(parents=True)
    gold = [{"text": f"item {i}", "label": "happy" if i % 2 else "sad"} for i in range(60)]
    (tmp_path / "moods" / "moods_dev.json").write_text("\n".join(json.dumps(g) for g in gold) + "\n")
    replies = [f"Reason {i}. So the answer is {'Happy' if i % 3 else 'sad'}." for i in range(60)]
    # Two files, concatenated in numeric order (10 after 2), aligned with the gold rows by index.
    (folder / "dev_CoT_10.json").write_text(json.dumps(replies[40:]))
    (folder / "dev_CoT_2.json").write_text(json.dumps(replies[:40]))
    (folder / "dev_CoT_0.json").write_text(json.dumps([]))

    result = bench.evaluate_split(tmp_path, "moods", "dev")
    expected = sum(("happy" if i % 3 else "sad") == g["label"] for i, g in enumerate(gold))
    assert (result.task, result.examples, result.correct) == ("classification", 60, expected)
    assert bench.main(["--data-dir", str(tmp_path), "--dataset", "moods", "--task", "generic"]) == 0
    assert "moods" in capsys.readouterr().out
    assert bench.main(["--data-dir", str(tmp_path / "absent")]) == 2

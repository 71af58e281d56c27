"""CoT prompt templates and extract_rationales against scripted teachers."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import (
    BLOCKED,
    FAILED,
    OK,
    TRUNCATED,
    FakeClient,
    Generation,
    GenerationConfig,
    ModelClient,
    Prompt,
)
from tunekit.components.rationale_extraction.extract import OUTPUT_COLUMNS, ROW_STATUSES, extract_rationales
from tunekit.components.rationale_extraction.parsing import TASK_TYPES, parse_completion, strip_runaway
from tunekit.components.rationale_extraction.prompts import (
    ANSWER_PHRASE,
    TEMPLATE_DIR,
    build_cot_prompt,
    format_answer,
    format_choices,
    load_template,
    select_exemplars,
)

# One exemplar and one query per task type, written for these tests.
CASES = {
    "multiple_choice": (
        {
            "question": "Where is bread baked?",
            "choices": ["oven", "fridge", "sink"],
            "rationale": "Baking needs heat",
            "answer": "oven",
        },
        {"question": "What keeps milk cold?", "choices": ["oven", "fridge", "sink"]},
        None,
        "oven",
    ),
    "nli": (
        {
            "premise": "A boy kicks a ball.",
            "hypothesis": "A child plays.",
            "rationale": "Kicking a ball is play.",
            "label": 0,
        },
        {"premise": "A woman reads.", "hypothesis": "A woman sleeps."},
        None,
        "entailment",
    ),
    "math": (
        {
            "question": "Ann has 3 bags of 4 pears. How many pears?",
            "rationale": "3 bags of 4 is 3 * 4.",
            "answer": "(3 * 4)",
        },
        {"question": "Bo has 10 nuts and eats 3. How many are left?"},
        None,
        "(3 * 4)",
    ),
    "classification": (
        {"text": "What a delight.", "rationale": "Delight is praise.", "label": "positive"},
        {"text": "Dull and slow."},
        ["positive", "negative"],
        "positive",
    ),
    "extractive_qa": (
        {
            "question": "Who wrote it?",
            "context": "It was written by Ada in 1843.",
            "rationale": "The author is named.",
            "answer": "Ada",
        },
        {"question": "When?", "context": "The bridge opened in 1932."},
        None,
        "Ada",
    ),
    "generic": (
        {"input": "Name a primary colour.", "rationale": "Red, blue and yellow are primary.", "answer": "red"},
        {"input": "Name a planet."},
        None,
        "red",
    ),
}


# --- templates ------------------------------------------------------------------------------------------------


def test_every_task_type_has_a_template():
    assert sorted(p.stem for p in TEMPLATE_DIR.glob("*.j2")) == sorted(TASK_TYPES)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_prompts_render_and_exemplars_parse_back(task_type):
    exemplar, query, choices, answer = CASES[task_type]
    prompt = build_cot_prompt(task_type, [exemplar, exemplar], query, choices=choices)
    assert prompt.endswith("\nA:")
    assert prompt.count(ANSWER_PHRASE) >= 2
    assert "\n\n\n" not in prompt
    # The exemplar's completion, as the teacher is shown it, parses back to the exemplar's answer: the templates
    # and the parser speak the same format.
    shown = prompt.split("\nA: ", 1)[1]
    parsed = parse_completion(
        shown, task_type, exemplar.get("choices") or choices, context=exemplar.get("context")
    )
    assert (parsed.status, parsed.answer) == ("ok", answer)
    assert parsed.rationale.startswith(exemplar["rationale"])
    # The query's own fields are in the prompt, after the exemplars.
    query_part = prompt.rsplit(ANSWER_PHRASE, 1)[1]
    for value in query.values():
        for item in value if isinstance(value, list) else [value]:
            assert str(item) in query_part


def test_multiple_choice_prompt_shape():
    exemplar, query, _, _ = CASES["multiple_choice"]
    prompt = build_cot_prompt("multiple_choice", [exemplar], query, instruction="Pick one.")
    assert prompt == (
        "Pick one.\n\n"
        "Q: Where is bread baked?\nAnswer Choices:\n(a) oven\n(b) fridge\n(c) sink\n"
        "A: Baking needs heat. So the answer is (a) oven.\n\n"
        "Q: What keeps milk cold?\nAnswer Choices:\n(a) oven\n(b) fridge\n(c) sink\nA:"
    )


def test_classification_prompt_lists_its_classes_and_needs_them():
    exemplar, query, classes, _ = CASES["classification"]
    assert "Classes: positive, negative\n" in build_cot_prompt(
        "classification", [exemplar], query, choices=classes
    )
    with pytest.raises(UserError, match="classes"):
        build_cot_prompt("classification", [exemplar], query)


def test_prompt_options_and_answers_formatting():
    assert format_choices(["x", "y"]) == "(a) x\n(b) y"
    assert format_choices({"label": ["A", "B"], "text": ["x", "y"]}) == "(a) x\n(b) y"
    assert format_answer("multiple_choice", "B", ["x", "y"]) == "(b) y"
    assert format_answer("multiple_choice", 0, ["x", "y"]) == "(a) x"
    assert format_answer("nli", 2) == "contradiction"
    with pytest.raises(UserError):
        format_answer("multiple_choice", "z", ["x", "y"])
    with pytest.raises(UserError):
        format_answer("nli", "perhaps")


def test_shared_choices_string_query_and_aliases():
    exemplar, _, _, _ = CASES["multiple_choice"]
    shared = ["cup", "plate"]
    prompt = build_cot_prompt("multiple_choice", [exemplar], {"input_text": "What holds tea?"}, choices=shared)
    assert prompt.endswith("Q: What holds tea?\nAnswer Choices:\n(a) cup\n(b) plate\nA:")
    assert build_cot_prompt("math", [], "What is 2 + 2?").endswith("Q: What is 2 + 2?\nA:")
    with pytest.raises(UserError):
        build_cot_prompt("nli", [], "just one text")


def test_missing_fields_are_user_errors_and_templates_are_strict():
    exemplar, _, _, _ = CASES["nli"]
    with pytest.raises(UserError, match="hypothesis"):
        build_cot_prompt("nli", [exemplar], {"premise": "p"})
    with pytest.raises(UserError, match="rationale"):
        build_cot_prompt("nli", [{**exemplar, "rationale": ""}], {"premise": "p", "hypothesis": "h"})
    with pytest.raises(jinja2.UndefinedError):
        load_template("nli").render(exemplars=[], query={"premise": "p", "hypothesis": "h"}, answer_phrase="x")
    with pytest.raises(UserError, match="unknown task type"):
        build_cot_prompt("poetry", [], "x")


def test_select_exemplars_is_seeded_and_needs_rationales():
    seed_rows = [{"input": f"q{i}", "rationale": f"r{i}" if i % 2 else "", "answer": str(i)} for i in range(20)]
    first = select_exemplars(seed_rows, 3, seed=7)
    assert first == select_exemplars(seed_rows, 3, seed=7)
    assert all(row["rationale"] for row in first)
    with pytest.raises(UserError, match="10 rows"):
        select_exemplars(seed_rows, 11)


# --- extract_rationales ---------------------------------------------------------------------------------------

NLI_EXEMPLAR = CASES["nli"][0]
NLI_ROWS = [
    {"id": 1, "premise": "A cat naps.", "hypothesis": "An animal rests.", "label": 0},
    {"id": 2, "premise": "A man cooks.", "hypothesis": "A man swims.", "label": "contradiction"},
    {"id": 3, "premise": "Kids run.", "hypothesis": "Kids race.", "label": 1},
    {"id": 4, "premise": "A bird sings.", "hypothesis": "A bird is loud."},
    {"id": 5, "premise": "Rain falls.", "hypothesis": "It is wet.", "label": 0},
    {"id": 6, "premise": "A bus stops.", "hypothesis": "A bus moves.", "label": 2},
]
NLI_ANSWERS = {
    "A cat naps.": "Napping is resting. So the answer is entailment.\n\nPremise: A dog barks.\nHypothesis: x",
    "A man cooks.": "Cooking is not swimming.\nAnswer: contradiction",
    "Kids run.": "Running kids are racing. So the answer is entailment.",  # disagrees with its label
    "A bird sings.": "Singing may be quiet. So the answer is neutral.",  # unlabelled
    "Rain falls.": "When rain falls the ground",  # cut off, no answer
    "A bus stops.": "",  # empty
}


def _premise(prompt: Prompt) -> str:
    return prompt.text.rsplit("Premise: ", 1)[1].split("\n", 1)[0]


def test_every_row_comes_back_once_in_order_with_its_status():
    client = FakeClient(lambda p: NLI_ANSWERS[_premise(p)])
    out, counts = extract_rationales(NLI_ROWS, client, task_type="nli", exemplars=[NLI_EXEMPLAR])
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5, 6]
    assert len(client.calls) == len(NLI_ROWS)
    assert all(set(OUTPUT_COLUMNS) <= set(r) for r in out)
    assert [r["status"] for r in out] == ["ok", "ok", "ok", "ok", "truncated", "empty"]
    assert [r["teacher_answer"] for r in out] == [
        "entailment",
        "contradiction",
        "entailment",
        "neutral",
        None,
        None,
    ]
    assert [r["agrees_with_label"] for r in out] == [True, True, False, None, False, False]
    assert [r["rationale_kept"] for r in out] == [True, True, False, True, False, False]
    assert out[0]["rationale"] == "Napping is resting."
    assert counts["total"] == 6
    assert sum(counts[f"status_{s}"] for s in ROW_STATUSES) == 6
    assert counts["kept"] + counts["dropped"] == 6
    assert (counts["kept"], counts["dropped_disagreeing"], counts["kept_disagreeing"]) == (3, 1, 0)
    assert (counts["labelled"], counts["agreeing"], counts["disagreeing"]) == (5, 2, 3)
    assert counts["accuracy"] == pytest.approx(2 / 5)


def test_keep_disagreeing_keeps_and_counts_them():
    client = FakeClient(lambda p: NLI_ANSWERS[_premise(p)])
    out, counts = extract_rationales(
        NLI_ROWS, client, task_type="nli", exemplars=[NLI_EXEMPLAR], keep_disagreeing=True
    )
    assert out[2]["rationale_kept"] is True
    assert (counts["kept"], counts["kept_disagreeing"], counts["dropped_disagreeing"]) == (4, 1, 0)


class ScriptedClient(ModelClient):
    """Returns scripted generations per prompt, with candidates, and records each call's config."""

    backend = "scripted"

    def __init__(self, script):
        self.script = script
        self.configs: list[GenerationConfig | None] = []

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        self.configs.append(config)
        return [self.script(p, config) for p in prompts]


def test_client_statuses_are_kept_and_errors_reported():
    def script(prompt, config):
        premise = _premise(prompt)
        if premise == "A cat naps.":
            return Generation("", status=FAILED, error="503 after 5 retries")
        if premise == "A man cooks.":
            return Generation("", status=BLOCKED, error="SAFETY")
        if premise == "Kids run.":
            # Cut by the token limit after answering: the answer stands.
            return Generation("Running is racing. So the answer is neutral.\n\nPremise: Tw", status=TRUNCATED)
        return Generation("They are different.\nAnswer: neutr", status=TRUNCATED, input_tokens=7, output_tokens=3)

    out, counts = extract_rationales(
        NLI_ROWS[:4], ScriptedClient(script), task_type="nli", exemplars=[NLI_EXEMPLAR]
    )
    assert [r["status"] for r in out] == [FAILED, BLOCKED, OK, "truncated"]
    assert out[0]["error"] == "503 after 5 retries"
    assert out[2]["teacher_answer"] == "neutral"
    assert (counts["status_failed"], counts["status_blocked"], counts["status_truncated"]) == (1, 1, 1)
    assert (counts["input_tokens"], counts["output_tokens"]) == (7, 3)


def test_self_consistency_takes_the_majority_and_a_rationale_that_gives_it():
    samples = [
        "Boats float. So the answer is (a) oven.",
        "Cold keeps milk. So the answer is (b) fridge.",
        "",
        "Fridges are cold. So the answer is fridge.",
        "The answer is (b) fridge.",
    ]

    def script(prompt, config):
        return Generation(samples[0], candidates=samples[: config.candidate_count])

    client = ScriptedClient(script)
    exemplar, query, _, _ = CASES["multiple_choice"]
    rows = [{**query, "answer": "fridge"}]
    out, counts = extract_rationales(
        rows,
        client,
        task_type="multiple_choice",
        exemplars=[exemplar],
        config=GenerationConfig(temperature=0.7),
        n_samples=5,
    )
    assert client.configs[0].candidate_count == 5
    assert client.configs[0].temperature == 0.7
    row = out[0]
    assert (row["teacher_answer"], row["votes"], row["status"]) == ("fridge", 3, "ok")
    assert row["rationale"] == "Cold keeps milk."
    assert row["agrees_with_label"] is True and row["rationale_kept"] is True
    assert counts["short_of_samples"] == 0


def test_self_consistency_math_votes_by_value_and_ties_go_to_the_first_answer():
    samples = ["So 2 + 3. The answer is (2 + 3).", "It is 6. The answer is 6.", "Five. The answer is 5."]

    def script(prompt, config):
        return Generation(samples[0], candidates=list(samples))

    rows = [{"question": "Ann has 2 pears and gets 3 more. How many?", "label": "( 2.0 + 3.0 )"}]
    out, _ = extract_rationales(
        rows, ScriptedClient(script), task_type="math", exemplars=[CASES["math"][0]], n_samples=3
    )
    assert (out[0]["teacher_answer"], out[0]["votes"], out[0]["agrees_with_label"]) == ("(2 + 3)", 2, True)

    tied = ["A. So the answer is neutral.", "B. So the answer is entailment."]
    out, _ = extract_rationales(
        NLI_ROWS[:1],
        ScriptedClient(lambda p, c: Generation(tied[0], candidates=list(tied))),
        task_type="nli",
        exemplars=[NLI_EXEMPLAR],
        n_samples=2,
    )
    assert (out[0]["teacher_answer"], out[0]["votes"]) == ("neutral", 1)


def test_self_consistency_by_repeated_prompts_and_short_samples():
    answers = iter(
        ["X. So the answer is neutral.", "Y. So the answer is entailment.", "Z. So the answer is entailment."]
    )
    client = FakeClient(lambda p: next(answers))
    out, counts = extract_rationales(
        NLI_ROWS[:1], client, task_type="nli", exemplars=[NLI_EXEMPLAR], n_samples=3, repeat_prompts=True
    )
    assert len(client.calls) == 3 and len({c.text for c in client.calls}) == 1
    assert (out[0]["teacher_answer"], out[0]["rationale"], out[0]["votes"]) == ("entailment", "Y.", 2)
    # A backend that ignores candidate_count gives one sample: it is used, and the shortfall counted.
    out, counts = extract_rationales(
        NLI_ROWS[:2],
        FakeClient(lambda p: NLI_ANSWERS[_premise(p)]),
        task_type="nli",
        exemplars=[NLI_EXEMPLAR],
        n_samples=3,
    )
    assert [r["teacher_answer"] for r in out] == ["entailment", "contradiction"]
    assert counts["short_of_samples"] == 2


def test_no_sample_answers():
    client = ScriptedClient(lambda p, c: Generation("I wonder", candidates=["I wonder", "Perhaps it"]))
    out, counts = extract_rationales(NLI_ROWS[:1], client, task_type="nli", exemplars=[NLI_EXEMPLAR], n_samples=2)
    assert (out[0]["status"], out[0]["teacher_answer"], out[0]["votes"], out[0]["rationale_kept"]) == (
        "truncated",
        None,
        0,
        False,
    )


def test_classification_and_extractive_rows_are_checked_against_classes_and_context():
    classes = ["positive", "negative"]
    rows = [{"text": "Dull.", "label": "negative"}, {"text": "Meh."}]
    replies = {"Dull.": "Dull is bad. So the answer is Negative.", "Meh.": "Unclear. So the answer is mixed."}
    client = FakeClient(lambda p: replies[p.text.rsplit("Text: ", 1)[1].split("\n")[0]])
    out, counts = extract_rationales(
        rows, client, task_type="classification", exemplars=[CASES["classification"][0]], choices=classes
    )
    assert [(r["status"], r["teacher_answer"], r["raw_answer"]) for r in out] == [
        ("ok", "negative", "Negative"),
        ("out_of_set", None, "mixed"),
    ]
    assert counts["status_out_of_set"] == 1

    rows = [{"question": "When?", "context": "The bridge opened in 1932.", "answer": "1932"}]
    client = FakeClient(lambda p: "The year is given. So the answer is 1932.")
    out, _ = extract_rationales(rows, client, task_type="extractive_qa", exemplars=[CASES["extractive_qa"][0]])
    assert out[0]["teacher_answer"] == "1932" and out[0]["agrees_with_label"] is True


def test_bad_rows_and_arguments_are_user_errors():
    with pytest.raises(UserError) as info:
        extract_rationales(
            [NLI_ROWS[0], {"premise": "only"}], FakeClient(), task_type="nli", exemplars=[NLI_EXEMPLAR]
        )
    assert info.value.line == 2
    with pytest.raises(UserError, match="n_samples"):
        extract_rationales(NLI_ROWS, FakeClient(), task_type="nli", exemplars=[], n_samples=0)
    with pytest.raises(UserError, match="unknown task type"):
        extract_rationales(NLI_ROWS, FakeClient(), task_type="poetry", exemplars=[])
    out, counts = extract_rationales([], FakeClient(), task_type="nli", exemplars=[NLI_EXEMPLAR])
    assert out == [] and counts["total"] == 0


def test_runaway_is_not_in_any_kept_rationale():
    client = FakeClient(lambda p: NLI_ANSWERS[_premise(p)])
    out, _ = extract_rationales(NLI_ROWS, client, task_type="nli", exemplars=[NLI_EXEMPLAR])
    for row in out:
        assert "Premise:" not in row["rationale"]
        assert strip_runaway(row["rationale"]) == row["rationale"]

import math

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation.metrics import (
    PRIMARY_METRIC,
    TASKS,
    accuracy,
    chrf,
    compute_metrics,
    exact_match,
    macro_f1,
    normalize_answer,
    rouge_l,
    token_f1,
)


def test_normalize_answer_is_squad_style():
    assert normalize_answer("  The Eiffel-Tower, in Paris! ") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer(None) == ""
    assert normalize_answer("") == ""


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match("Billing.", "billing") == 1.0
    assert exact_match("the billing", "Billing") == 1.0
    assert exact_match("billing team", "billing") == 0.0
    assert exact_match(None, "billing") == 0.0
    assert exact_match(None, "") == 1.0


def test_token_f1_partial_overlap():
    # prediction tokens {paris, france}, gold {paris}: precision 1/2, recall 1
    assert token_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("London", "Paris") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1(None, "Paris") == 0.0
    assert token_f1("the", "a") == 1.0  # both normalise to nothing


def test_accuracy_and_macro_f1_count_none_as_wrong():
    predictions = ["Billing", None, "shipping", "shipping"]
    references = ["billing", "technical", "shipping", "account"]
    assert accuracy(predictions, references) == 0.5
    # billing F1 1, technical 0, shipping 2/3, account 0
    assert macro_f1(predictions, references) == pytest.approx((1 + 2 / 3) / 4)
    assert accuracy([], []) == 0.0


def test_rouge_l_and_chrf_bounds():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert 0.0 < rouge_l("the cat sat", "the cat sat on the mat") < 1.0
    assert rouge_l(None, "anything") == 0.0
    assert rouge_l("", "anything") == 0.0
    # rouge-score's own tokenizer drops non-ASCII text; ours keeps it
    assert rouge_l("größer als zwölf", "größer als zwölf") == pytest.approx(1.0)
    assert chrf("hello world", "hello world") == pytest.approx(1.0)
    assert chrf(None, "hello world") == 0.0


@pytest.mark.parametrize("task", TASKS)
def test_compute_metrics_has_primary_metric_in_range(task):
    predictions = ["billing", None, "", "the shipping team"]
    references = ["billing", "technical", "account", "shipping"]
    result = compute_metrics(task, predictions, references)
    assert PRIMARY_METRIC[task] in result
    for value in result.values():
        assert isinstance(value, float) and 0.0 <= value <= 1.0 and not math.isnan(value)
    perfect = compute_metrics(task, references, references)
    assert perfect[PRIMARY_METRIC[task]] == pytest.approx(1.0)


@pytest.mark.parametrize("task", TASKS)
def test_compute_metrics_empty_lists_score_zero(task):
    assert all(v == 0.0 for v in compute_metrics(task, [], []).values())


def test_compute_metrics_rejects_unknown_task_and_length_mismatch():
    with pytest.raises(UserError, match="unknown task"):
        compute_metrics("translation", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        compute_metrics("classification", ["a", "b"], ["a"])


def test_classification_metrics_values():
    result = compute_metrics("classification", ["Billing.", "technical", None], ["billing", "shipping", "account"])
    assert result["accuracy"] == pytest.approx(1 / 3)


def test_classification_report_per_class_and_confusion_matrix():
    from tunekit.components.evaluation.metrics import OTHER, classification_report

    predictions = ["Billing", "billing", "shipping", None, "refund please"]
    references = ["billing", "shipping", "shipping", "billing", "shipping"]
    report = classification_report(predictions, references)
    # None and "refund please" are none of the classes: an (other) column keeps the matrix square.
    assert report.labels == ["billing", "shipping", OTHER]
    assert report.matrix == [[1, 0, 1], [1, 1, 1], [0, 0, 0]]
    # billing: predicted twice, right once; 2 billing rows, 1 found
    assert report.precision["billing"] == pytest.approx(1 / 2)
    assert report.recall["billing"] == pytest.approx(1 / 2)
    # shipping: predicted once, right once; 3 shipping rows, 1 found
    assert report.precision["shipping"] == pytest.approx(1.0)
    assert report.recall["shipping"] == pytest.approx(1 / 3)
    assert report.f1["shipping"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    assert report.support == {"billing": 2, "shipping": 3}
    # macro-F1 is the mean of the per-class F1s
    assert macro_f1(predictions, references) == pytest.approx((report.f1["billing"] + report.f1["shipping"]) / 2)


def test_classification_report_without_stray_predictions_has_no_other_column():
    from tunekit.components.evaluation.metrics import classification_report

    report = classification_report(["a", "b", "b"], ["a", "b", "a"])
    assert report.labels == ["a", "b"] and report.matrix == [[1, 1], [0, 1]]
    assert report.precision == {"a": 1.0, "b": 0.5} and report.recall == {"a": 0.5, "b": 1.0}


def test_squad_exact_match_and_f1_hand_computed():
    # "the Denver Broncos" vs "Denver Broncos": articles dropped, exact match
    result = compute_metrics("extractive_qa", ["the Denver Broncos", "Broncos of Denver"], ["Denver Broncos"] * 2)
    assert result["exact_match"] == pytest.approx(0.5)
    # second: tokens {broncos, of, denver} vs {denver, broncos}: P 2/3, R 1, F1 0.8
    assert result["token_f1"] == pytest.approx((1.0 + 0.8) / 2)


def test_rouge_suite_hand_computed():
    result = compute_metrics("summarization", ["the cat sat"], ["the cat sat on the mat"])
    # unigrams: 3 of 3 predicted match, 3 of 6 reference covered: P 1, R 1/2, F 2/3
    assert result["rouge1"] == pytest.approx(2 / 3)
    # bigrams: "the cat", "cat sat" both in the reference (5 bigrams): P 1, R 2/5, F 4/7
    assert result["rouge2"] == pytest.approx(4 / 7)
    assert result["rougeL"] == pytest.approx(2 / 3)
    generic = compute_metrics("generic", ["the cat sat"], ["the cat sat on the mat"])
    assert generic["rougeL"] == pytest.approx(2 / 3) and 0.0 < generic["chrf"] < 1.0


def test_row_scores_average_to_the_primary_metric():
    from tunekit.components.evaluation.metrics import row_scores

    predictions = ["billing", None, "Paris, France", "the cat sat"]
    references = ["billing", "technical", "Paris", "the cat sat on the mat"]
    for task in TASKS:
        rows = row_scores(task, predictions, references)
        assert len(rows) == 4
        assert sum(rows) / 4 == pytest.approx(compute_metrics(task, predictions, references)[PRIMARY_METRIC[task]])
    assert row_scores("extractive_qa", predictions, references)[2] == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="unknown task"):
        row_scores("translation", [], [])


def test_classification_labels_keep_articles_so_option_a_is_not_the_empty_answer():
    # SQuAD normalisation would turn the option "A" into "" and count an empty answer as right.
    assert accuracy(["", "A", "b."], ["A", "a", "B"]) == pytest.approx(2 / 3)
    assert compute_metrics("classification", [None], ["A"])["accuracy"] == 0.0

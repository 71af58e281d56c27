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

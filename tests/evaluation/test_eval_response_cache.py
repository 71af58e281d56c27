"""Paid evaluation calls are cached with the step's outputs: a re-run pays nothing, a resumed run only the rest.

Two places: the supervised evaluation's pairwise autorater (Gen AI evaluation service ``:evaluateInstances``,
with the models' answers through the engine) and the preference evaluation's Gemini judge (through the engine).
"""

import json

import pytest
from evaluation_helpers import evaluate_on_vertex, gemini_tickets, resource, write_rows
from test_preference_vertex import evaluate_preference, fake_with_datasets, preference, prepare, warm_start

from tunekit.components.evaluation.autorater import make_evaluation_client

# --- the supervised evaluation's autorater -------------------------------------------------------------------


class _DiesAfter:
    """An evaluation client that answers ``n`` requests, then raises (a step killed halfway)."""

    def __init__(self, inner, n):
        self.inner, self.left = inner, n

    def evaluate_instances(self, **kwargs):
        if self.left <= 0:
            raise RuntimeError("killed")
        self.left -= 1
        return self.inner.evaluate_instances(**kwargs)


@pytest.fixture
def autorater_fake(vertex, tmp_path):
    vertex.endpoint = resource(vertex, "endpoints/7")
    vertex.responders[vertex.endpoint] = lambda text: "billing"
    vertex.responders["gemini-2.5-flash"] = lambda text: "billing" if text.endswith(("0", "1")) else "shipping"
    vertex.judge = lambda inst: "CANDIDATE" if inst["response"] != inst["baseline_model_response"] else "TIE"
    vertex.validation = write_rows(tmp_path / "v.jsonl", gemini_tickets(8, answer="billing"))
    return vertex


def _evaluate(server, tmp_path, cache, client=None):
    return evaluate_on_vertex(
        tmp_path,
        server,
        server.endpoint,
        server.validation,
        model_based=True,
        evaluation_client=client,
        cache_dir=str(tmp_path / cache),
    )


def _counts(server):
    return len(server.requests_to(r":evaluateInstances", "POST")), len(
        server.requests_to(r":generateContent$", "POST")
    )


def test_a_rerun_of_the_autorater_step_sends_nothing_and_gives_the_same_figures(autorater_fake, tmp_path):
    result = _evaluate(autorater_fake, tmp_path, "cache")
    first = result.extras["autorater"]["base"]
    assert first.win_rate == (6 + 2 * 0.5) / 8
    assert _counts(autorater_fake) == (8, 16)  # 8 verdicts; 8 rows answered by base and tuned
    again = _evaluate(autorater_fake, tmp_path, "cache")
    assert _counts(autorater_fake) == (8, 16)  # nothing sent the second time
    second = again.extras["autorater"]["base"]
    assert (second.win_rate, second.scores, second.explanations) == (
        first.win_rate,
        first.scores,
        first.explanations,
    )
    assert (second.interval.low, second.interval.high) == (first.interval.low, first.interval.high)
    assert again.metrics == result.metrics and again.figures == result.figures


def test_an_autorater_step_killed_halfway_resumes_paying_only_for_the_rest(autorater_fake, tmp_path):
    client = make_evaluation_client(autorater_fake.location)
    with pytest.raises(RuntimeError, match="killed"):
        _evaluate(autorater_fake, tmp_path, "cache", client=_DiesAfter(client, 5))
    assert _counts(autorater_fake) == (5, 16)
    result = _evaluate(autorater_fake, tmp_path, "cache", client=client)
    # The retry asks for the 3 missing verdicts only, and no model answer again.
    assert _counts(autorater_fake) == (8, 16)
    assert result.figures["autorater_win_rate_vs_base"] == (6 + 2 * 0.5) / 8
    # Every row was judged exactly once across both tries.
    judged = [
        json.loads(b["pairwiseMetricInput"]["instance"]["jsonInstance"])["prompt"]
        for _, _, b in autorater_fake.requests_to(r":evaluateInstances", "POST")
    ]
    assert sorted(judged) == sorted(set(judged)) and len(judged) == 8


# --- the preference evaluation's Gemini judge ----------------------------------------------------------------


def _judge(text):
    answer_a = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
    return "A" if answer_a.startswith("Sorry") else "B"


def _evaluate_preference(tmp_path, prepared, cache):
    return evaluate_preference(tmp_path, prepared, cache_dir=str(tmp_path / cache))


@pytest.fixture
def fake(monkeypatch, tmp_path):
    yield from fake_with_datasets(monkeypatch, tmp_path)


@pytest.fixture
def prepared(tmp_path):
    return prepare(tmp_path)[0]


@pytest.fixture
def tuned(fake, tmp_path, prepared):
    warm_start(tmp_path)
    info, _ = preference(tmp_path)
    endpoint_id = info["endpoint"].rsplit("/", 1)[1]
    fake.set_responder(lambda text: "Not our problem.", model="gemini-2.5-flash-lite")
    fake.set_responder(lambda text: "Sorry. Please restart it and reply.", model=endpoint_id)
    fake.set_responder(_judge, model="gemini-2.5-pro")
    return endpoint_id


def test_a_rerun_of_the_preference_judge_sends_nothing_and_gives_the_same_figures(fake, tmp_path, prepared, tuned):
    result = _evaluate_preference(tmp_path, prepared, "cache")
    judged = len(fake.requests_to(r"gemini-2.5-pro:generateContent"))
    answered = len(fake.requests_to(r":generateContent"))
    assert judged == 8 and result.figures["win_rate"] == 1.0 and result.passed
    again = _evaluate_preference(tmp_path, prepared, "cache")
    assert len(fake.requests_to(r":generateContent")) == answered  # neither judge nor models asked again
    assert again.figures == result.figures and again.predictions == result.predictions


def test_a_failed_preference_judge_resumes_paying_only_for_the_failed_calls(fake, tmp_path, prepared, tuned):
    fake.fail_next(3, status=400, path_contains="gemini-2.5-pro")  # not retryable: these calls fail for good
    # The held-out pairs are judged first (2 pairs, both orders): 3 of the 4 calls fail, the step fails.
    with pytest.raises(RuntimeError, match="3 of 4 judge calls failed"):
        _evaluate_preference(tmp_path, prepared, "cache")
    judge_calls = r"gemini-2.5-pro:generateContent"
    assert len(fake.requests_to(judge_calls)) == 4 and sum(fake.billed.values()) == 1
    result = _evaluate_preference(tmp_path, prepared, "cache")
    # The retry asks the 3 failed pair verdicts again (not the one received) and the 4 new prompt verdicts.
    assert len(fake.requests_to(judge_calls)) == 4 + 3 + 4
    # Judge calls billed: 8, each comparison once, as in a clean run; figures as a clean run.
    judge_billed = sum(fake.billed.values()) - 2 * 2  # minus the two models' answers on the 2 prompts
    assert judge_billed == 8
    assert result.figures["win_rate"] == 1.0 and result.figures["reward_accuracy"] == 1.0 and result.passed

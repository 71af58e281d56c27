"""Gemini 2.5+ thinking (issue 14, item A): every Gemini request states its thinking setting per model family.

Thinking tokens count against ``maxOutputTokens`` and thinking is dynamic by default on Gemini 2.5+
(https://cloud.google.com/vertex-ai/generative-ai/docs/thinking), so a judge asking for 8 tokens got an empty
answer with ``MAX_TOKENS``. The fake (``thinking=True``) spends thinking tokens the way Vertex does.
"""

from __future__ import annotations

import pytest
from fake_vertex import LOCATION, PROJECT, serve_fake_vertex
from google.genai import types

from tunekit.components.model_clients.base import OK, TRUNCATED, GenerationConfig, Prompt
from tunekit.components.model_clients.batch import batch_request
from tunekit.components.model_clients.vertex import (
    PRO_25_MIN_THINKING_BUDGET,
    VertexGeminiClient,
    generation_config_to_genai,
    thinking_for,
)

JUDGE = GenerationConfig(max_output_tokens=8, temperature=0.0)


@pytest.fixture
def fake(monkeypatch):
    yield from serve_fake_vertex(monkeypatch, thinking=True, responder=lambda text: "A")


def _judge(fake, model: str, **kwargs):
    client = VertexGeminiClient(model, PROJECT, LOCATION, client=fake.genai_client(), **kwargs)
    return client.generate([Prompt("Which answer is better, A or B?")], JUDGE)[0]


def test_without_a_thinking_config_the_judge_gets_an_empty_answer(fake):
    # What the judge sent before the fix: 8 tokens and no thinking config; the fake thinks them all away.
    genai = fake.genai_client()
    raw = genai.models.generate_content(
        model="gemini-2.5-flash",
        contents="Which answer is better, A or B?",
        config=types.GenerateContentConfig(max_output_tokens=8, temperature=0.0),
    )
    assert raw.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert not raw.text and raw.usage_metadata.thoughts_token_count == 8


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro"])
def test_the_judge_gets_its_verdict_on_gemini_25(fake, model):
    answer = _judge(fake, model)
    assert (answer.status, answer.text) == (OK, "A")


@pytest.mark.parametrize("model", ["gemini-3-flash-preview", "gemini-3-pro-preview", "gemini-3.1-pro-preview"])
def test_the_judge_gets_its_verdict_on_gemini_3(fake, model):
    answer = _judge(fake, model)
    assert (answer.status, answer.text) == (OK, "A")


def test_settings_per_family():
    flash, extra = thinking_for("gemini-2.5-flash")
    assert (flash.thinking_budget, flash.thinking_level, extra) == (0, None, 0)
    assert thinking_for("publishers/google/models/gemini-2.5-flash-lite")[0].thinking_budget == 0
    pro, extra = thinking_for("gemini-2.5-pro")
    assert (pro.thinking_budget, extra) == (PRO_25_MIN_THINKING_BUDGET, 128)
    assert thinking_for("gemini-3-flash-preview")[0].thinking_level == types.ThinkingLevel.MINIMAL
    g3pro, _ = thinking_for("gemini-3-pro-preview")
    assert (g3pro.thinking_level, g3pro.thinking_budget) == (types.ThinkingLevel.LOW, None)
    # Models that do not think get no thinking config (they would reject it); so does an endpoint of unknown base.
    assert thinking_for("gemini-2.0-flash-001") == (None, 0)
    endpoint = f"projects/{PROJECT}/locations/{LOCATION}/endpoints/123"
    assert thinking_for(endpoint) == (None, 0)
    # A tuned model's endpoint thinks as its base family.
    assert thinking_for(endpoint, "gemini-2.5-pro")[0].thinking_budget == PRO_25_MIN_THINKING_BUDGET


def test_25_pro_keeps_the_answer_budget_on_top_of_its_minimum_thinking():
    config = generation_config_to_genai(JUDGE, model="gemini-2.5-pro")
    assert config.max_output_tokens == 8 + PRO_25_MIN_THINKING_BUDGET
    assert generation_config_to_genai(JUDGE, model="gemini-2.5-flash").max_output_tokens == 8


def test_the_fake_refuses_turning_25_pro_thinking_off(fake):
    from google.genai import errors

    genai = fake.genai_client()
    with pytest.raises(errors.ClientError, match="cannot be disabled"):
        genai.models.generate_content(
            model="gemini-2.5-pro",
            contents="x",
            config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=0)),
        )


def _tuned_endpoint(fake) -> str:
    genai = fake.genai_client()
    tuning = genai.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
    )
    for _ in range(5):
        tuning = genai.tunings.get(name=tuning.name)
        if tuning.tuned_model and tuning.tuned_model.endpoint:
            break
    return tuning.tuned_model.endpoint


def test_a_tuned_endpoint_thinks_as_its_base(fake):
    endpoint = _tuned_endpoint(fake)
    assert _judge(fake, endpoint).status == TRUNCATED  # the base family unknown: no config, thinking eats it
    assert (_judge(fake, endpoint, base_model="gemini-2.5-flash").text) == "A"


def test_batch_requests_carry_the_thinking_setting():
    line = batch_request(Prompt("x"), JUDGE, 0, "gemini-2.5-flash")
    assert line["request"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


def test_the_preference_judge_with_8_tokens_on_gemini_25_flash_decides(monkeypatch):
    # The preference evaluation's judge (8 output tokens) on gemini-2.5-flash: before the thinking setting every
    # verdict came back empty, counted as a tie (0.5), and the gate never deployed.
    from tunekit.components.evaluation.preference.steps import model_judge

    def better(text: str) -> str:
        return "A" if text.split("Answer A:\n", 1)[1].startswith("good") else "B"

    for fake in serve_fake_vertex(monkeypatch, thinking=True, responder=better):
        client = VertexGeminiClient("gemini-2.5-flash", PROJECT, LOCATION, client=fake.genai_client())
        assert model_judge(client)(["q1", "q2"], ["good one", "good two"], ["bad one", "bad two"]) == [1.0, 1.0]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-2.5-pro"])
def test_the_engine_path_states_the_thinking_setting(fake, model):
    # The engine (retries, rate limits, cache) is what the preference judge, the evaluation and teacher labelling
    # use; its Vertex backend builds the request config with the model, so the family's setting is sent.
    from tunekit.components.model_clients.backends import VertexOnlineBackend
    from tunekit.components.model_clients.engine import Engine

    engine = Engine(VertexOnlineBackend(model, PROJECT, LOCATION, client=fake.genai_client()))
    try:
        (answer,) = engine.generate([Prompt("Which answer is better, A or B?")], JUDGE)
    finally:
        engine.close()
    assert (answer.status, answer.text) == (OK, "A")


def test_evaluation_scores_a_tuned_endpoint_with_its_base_familys_setting(fake, monkeypatch):
    # The supervised, preference and champion clients name the base model, so a tuned 2.5 Flash endpoint gets
    # thinking off instead of spending the answer's tokens on dynamic thinking.
    from tunekit.components.evaluation.scoring import vertex_client
    from tunekit.components.model_clients import backends

    endpoint = _tuned_endpoint(fake)
    monkeypatch.setattr(backends, "make_genai_client", lambda project, location: fake.genai_client())
    engine = vertex_client(endpoint, PROJECT, LOCATION, base_model="gemini-2.5-flash")
    try:
        (answer,) = engine.generate([Prompt("Which answer is better, A or B?")], JUDGE)
    finally:
        engine.close()
    assert (answer.status, answer.text) == (OK, "A")

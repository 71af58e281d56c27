"""The reward file: parsing and its errors (file, line, field), Vertex's reward configs, TRL reward functions."""

import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.tuning import rewards as rw
from tunekit.components.tuning.rewards import dry_run, parse_rewards


def example(answer="42", **references):
    return {
        "contents": [{"role": "user", "parts": [{"text": "What is 6 x 7?"}]}],
        "references": {"answer": answer, **references},
    }


def scores(text, file_text, ex=None):
    """Every reward of ``text`` on ``ex`` (by name, and the weighted ``total``), run locally."""
    return dry_run(parse_rewards(file_text), [ex or example()], [text])[0]


ALL_KINDS = """
parse: {regex: "<answer>(.*?)</answer>"}
rewards:
  - name: exact
    exact_match: {reference: answer}
    wrong: -1
  - name: contains
    contains: {value: "{{references.answer}}"}
  - name: regex
    regex: {pattern: "^4[0-9]$"}
  - name: format
    format: {pattern: "<answer>[0-9]+</answer>"}
    parse: none
  - name: json
    json_key: {key: label, reference: label}
  - name: numeric
    numeric: {reference: answer, tolerance: 0.5}
    correct: 0.5
  - name: length
    length: {max_words: 3}
    parse: none
  - name: python
    python: {function: "reward_module:evaluate"}
    weight: 2
  - name: judge
    judge: {model: gemini-2.5-flash, rubric: "Is the answer right? The right answer is {{references.answer}}."}
"""


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "reward_module.py").write_text(
        "def evaluate(example, response):\n"
        "    text = ''.join(p.get('text', '') for p in response.get('parts', []))\n"
        "    return 5.0 if example['references']['answer'] in text else -3.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_each_match_kind_scores_as_vertex_defines_it(reward_module):
    text = """
parse: {regex: "<answer>(.*?)</answer>"}
rewards:
  - name: exact
    exact_match: {reference: answer}
    wrong: -1
  - name: contains
    contains: {value: "{{references.answer}}"}
  - name: regex
    regex: {pattern: "^4[0-9]$"}
  - name: format
    format: {pattern: "<answer>[0-9]+</answer>"}
    parse: none
  - name: numeric
    numeric: {reference: answer, tolerance: 0.5}
    correct: 0.5
  - name: length
    length: {max_words: 3}
    parse: none
  - name: python
    python: {function: "reward_module:evaluate"}
    weight: 2
"""
    right = scores("<answer>42</answer>", text)
    # The python reward returned 5: clipped to 1, as Vertex clips every reward.
    assert {k: v for k, v in right.items() if k != "total"} == {
        "exact": 1.0,
        "contains": 1.0,
        "regex": 1.0,
        "format": 1.0,
        "numeric": 0.5,
        "length": 1.0,
        "python": 1.0,
    }
    # The weighted mean: (1 + 1 + 1 + 1 + 0.5 + 1 + 2 * 1) / 8.
    assert right["total"] == pytest.approx(7.5 / 8)
    wrong = scores("I think <answer>42.4</answer> or <answer>41.7</answer>", text)
    # The last match is what the rewards read (REGEX_EXTRACT): 41.7.
    assert wrong["exact"] == -1.0 and wrong["numeric"] == 0.5 and wrong["contains"] == 0.0
    assert wrong["format"] == 0.0 and wrong["length"] == 0.0
    # Nothing matched the parse regex: the rewards read ''.
    assert scores("forty-two", text)["regex"] == 0.0 and scores("forty-two", text)["python"] == -1.0


def test_json_key_matches_a_first_level_value():
    text = "rewards:\n  - name: label\n    json_key: {key: label, reference: label}\n"
    ex = example(label="spam")
    assert scores('{"label": "spam", "score": 3}', text, ex)["label"] == 1.0
    assert scores('{"label": "ham"}', text, ex)["label"] == 0.0
    assert scores("not json", text, ex)["label"] == 0.0
    assert scores('{"nested": {"label": "spam"}}', text, ex)["label"] == 0.0


def vertex_configs(text, **kwargs):
    found = parse_rewards(text).to_vertex(project="p", location="us-central1", **kwargs)
    return {k: v.model_dump(mode="json", exclude_none=True, by_alias=True) for k, v in found.items()}


def test_one_reward_is_a_single_config_and_several_a_weighted_composite(reward_module):
    single = vertex_configs("rewards:\n  - name: exact\n    exact_match: {reference: answer}\n")
    assert single == {
        "reward_config": {
            "rewardName": "exact",
            "stringMatchRewardScorer": {
                "correctAnswerReward": 1.0,
                "wrongAnswerReward": 0.0,
                "stringMatchExpression": {"matchOperation": "EXACT_MATCH", "expression": "{{references.answer}}"},
            },
        }
    }
    composite = vertex_configs(ALL_KINDS)["composite_reward_config"]["weightedRewardConfigs"]
    by_name = {w["rewardConfig"]["rewardName"]: w for w in composite}
    assert [w["weight"] for w in composite] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 1.0]
    parse = {"parseType": "REGEX_EXTRACT", "regexExtractExpression": "<answer>(.*?)</answer>"}
    assert by_name["exact"]["rewardConfig"]["parseResponseConfig"] == parse
    assert by_name["exact"]["rewardConfig"]["stringMatchRewardScorer"]["wrongAnswerReward"] == -1.0
    operations = {
        name: by_name[name]["rewardConfig"]["stringMatchRewardScorer"]["stringMatchExpression"]
        for name in ("contains", "regex", "format")
    }
    assert operations == {
        "contains": {"matchOperation": "PARTIAL_MATCH", "expression": "{{references.answer}}"},
        "regex": {"matchOperation": "REGEX_CONTAINS", "expression": "^4[0-9]$"},
        "format": {"matchOperation": "REGEX_CONTAINS", "expression": "^(?:<answer>[0-9]+</answer>)$"},
    }
    assert "parseResponseConfig" not in by_name["format"]["rewardConfig"]
    assert by_name["json"]["rewardConfig"]["stringMatchRewardScorer"]["jsonMatchExpression"] == {
        "keyName": "label",
        "valueStringMatchExpression": {"matchOperation": "EXACT_MATCH", "expression": "{{references.label}}"},
    }
    # numeric and length: a code snippet that parses the response itself (no parse config on top).
    numeric = by_name["numeric"]["rewardConfig"]
    assert "parseResponseConfig" not in numeric
    assert "def evaluate(example, response):" in numeric["codeExecutionRewardScorer"]["pythonCodeSnippet"]
    python = by_name["python"]["rewardConfig"]["codeExecutionRewardScorer"]["pythonCodeSnippet"]
    assert python.startswith("def evaluate(example, response):")
    judge = by_name["judge"]["rewardConfig"]["autoraterScorer"]
    assert judge["autoraterConfig"] == {
        "autoraterModel": "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash"
    }
    assert "{{response}}" in judge["autoraterPrompt"] and "{{references.answer}}" in judge["autoraterPrompt"]
    assert judge["autoraterResponseParseConfig"]["parseType"] == "REGEX_EXTRACT"
    assert judge["parsedResponseConversionScorer"] == {}


def test_the_code_snippet_vertex_gets_is_the_one_that_runs_locally():
    reward = parse_rewards(
        'parse: {regex: "= *([0-9.,-]+)"}\nrewards:\n  - name: n\n    numeric: {value: "{{references.answer}}", '
        "relative: 0.1}\n"
    ).rewards[0]
    code = rw.snippet(reward)
    scope = {}
    exec(code, scope)  # noqa: S102 - the snippet under test
    response = {"role": "model", "parts": [{"text": "so x = 1,000"}]}
    assert scope["evaluate"](example("1050"), response) == 1.0
    assert scope["evaluate"](example("1200"), response) == 0.0
    assert rw.local_scorer(reward)(example("1050"), "so x = 1,000") == 1.0


def test_trl_reward_functions_take_grpo_columns_and_weights_give_vertexs_weighted_mean():
    rewards = parse_rewards(
        "rewards:\n  - name: exact\n    exact_match: {reference: answer}\n    weight: 3\n"
        "  - name: short\n    length: {max_chars: 4}\n"
    )
    funcs, weights = rewards.trl_reward_funcs()
    assert [f.__name__ for f in funcs] == ["exact", "short"] and weights == [0.75, 0.25]
    column = [rw.example_json(example()), rw.example_json(example("7"))]
    # GRPOTrainer calls each with prompts, completions, completion_ids and the dataset's other columns by name.
    assert funcs[0](
        prompts=["p", "p"],
        completions=["42", "42"],
        completion_ids=[[1], [1]],
        references=column,
        trainer_state=None,
    ) == [1.0, 0.0]
    assert funcs[1](
        prompts=["p"], completions=[[{"role": "assistant", "content": "42 is it"}]], references=column[:1]
    ) == [0.0]
    assert rewards.references() == ["answer"]


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("rewards: []\n", 1, "rewards", "non-empty list"),
        (
            "rewards:\n  - name: a\n    exact_match: {reference: answer}\n    regex: {pattern: x}\n",
            2,
            "rewards[0]",
            "exactly one kind",
        ),
        (
            "rewards:\n  - name: a\n    exact_match: {refrence: answer}\n",
            3,
            "rewards[0].exact_match.refrence",
            "unknown setting",
        ),
        ("rewards:\n  - name: a\n    exact_match: {}\n", 3, "rewards[0].exact_match", "either 'reference'"),
        (
            "rewards:\n  - name: a\n    regex: {pattern: '(unclosed'}\n",
            3,
            "rewards[0].regex.pattern",
            "not a valid regular expression",
        ),
        (
            "rewards:\n  - name: a\n    contains: {value: x}\n    correct: 2\n",
            4,
            "rewards[0].correct",
            "within [-1, 1]",
        ),
        (
            "rewards:\n  - name: a\n    contains: {value: x}\n  - name: a\n    contains: {value: y}\n",
            4,
            "rewards[1].name",
            "used twice",
        ),
        ("rewards:\n  - name: a\n    contains: {value: x}\n    weight: 0\n", 4, "rewards[0].weight", "> 0"),
        (
            "rewards:\n  - name: a\n    python: {function: no_such_module_here:f}\n",
            2,
            "rewards[0].python.function",
            "cannot import",
        ),
        (
            "rewards:\n  - name: a\n    judge: {model: m, rubric: r}\n    correct: 1\n",
            4,
            "rewards[0].correct",
            "match kinds only",
        ),
        ("rewardz:\n  - name: a\n", 1, None, "'rewards' list"),
    ],
)
def test_a_bad_reward_file_is_one_line_naming_the_line_and_field(text, line, field, message):
    with pytest.raises(UserError) as err:
        parse_rewards(text, source="rewards.yaml")
    assert err.value.path == "rewards.yaml" and err.value.line == line and err.value.field == field
    assert message in err.value.message and "\n" not in err.value.format()


def test_what_one_side_cannot_express_fails_at_config_time():
    judge = parse_rewards(
        "rewards:\n  - name: style\n    judge: {model: gemini-2.5-flash, rubric: Be kind.}\n", source="r.yaml"
    )
    judge.check_backend("vertex")
    with pytest.raises(UserError) as err:
        judge.check_backend("local")
    assert (err.value.line, err.value.field) == (2, "rewards[0].judge.local_model")
    assert "needs judge.local_model locally" in err.value.message
    lookaround = parse_rewards("rewards:\n  - name: a\n    regex: {pattern: 'foo(?!bar)'}\n", source="r.yaml")
    lookaround.check_backend("local")
    with pytest.raises(UserError) as err:
        lookaround.check_backend("vertex")
    assert err.value.field == "rewards[0].regex.pattern" and "RE2" in err.value.message
    with pytest.raises(UserError, match="RE2"):
        parse_rewards("parse: {regex: '(a)\\1'}\nrewards:\n  - name: a\n    contains: {value: x}\n").to_vertex()


def test_a_judge_scores_locally_with_its_model_and_an_unreadable_verdict_scores_lowest():
    from tunekit.components.model_clients.base import FakeClient

    rewards = parse_rewards(
        "rewards:\n  - name: j\n    judge: {model: gemini-2.5-flash, rubric: 'Answer is {{references.answer}}.'}\n"
    )
    judge = FakeClient(lambda prompt: "<score>0.8</score>")
    assert dry_run(rewards, [example()], ["42"], judge_clients={"j": judge})[0]["j"] == 0.8
    asked = judge.calls[0].text
    assert "Answer is 42." in asked and "Response:\n42" in asked and "What is 6 x 7?" in asked
    unreadable = FakeClient(lambda prompt: "great")
    assert dry_run(rewards, [example()], ["42"], judge_clients={"j": unreadable})[0]["j"] == -1.0


def test_a_reward_that_fails_on_a_sample_fails_the_dry_run_naming_it(tmp_path, monkeypatch):
    (tmp_path / "broken_reward.py").write_text("def evaluate(example, response):\n    return example['nope']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rewards = parse_rewards(
        "rewards:\n  - name: b\n    python: {function: 'broken_reward:evaluate'}\n", source="r.yaml"
    )
    with pytest.raises(UserError) as err:
        dry_run(rewards, [example()], ["42"])
    assert err.value.field == "rewards[0].python" and "KeyError" in err.value.message


def test_the_example_reward_file_runs_on_both_sides():
    import os

    from tuning_helpers import EXAMPLES_DATA

    path = os.path.join(EXAMPLES_DATA, "..", "reinforcement_rewards.yaml")
    rewards = rw.load_rewards(path)
    rewards.check_backend("local")
    rewards.check_backend("vertex")
    configs = rewards.to_vertex()["composite_reward_config"].weighted_reward_configs
    assert [c.reward_config.reward_name for c in configs] == [r.name for r in rewards.rewards]
    values = dry_run(rewards, [example("12")], ["Answer: 12"])[0]
    assert values["exact_answer"] == 1.0 and values["answer_format"] == 1.0 and values["no_repeat"] == 1.0
    assert json.loads(rw.example_json(example()))["references"] == {"answer": "42"}


def test_a_python_reward_file_beside_a_gcs_reward_file_is_read_from_cloud_storage(tmp_path, monkeypatch):
    from tunekit.components.common import uris

    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "rewards.yaml").write_text(
        "rewards:\n  - name: p\n    python: {function: 'gcs_reward:score', file: gcs_reward.py}\n"
    )
    (bucket / "gcs_reward.py").write_text("def score(example, response):\n    return 0.25\n")
    import contextlib

    @contextlib.contextmanager
    def local_copy(uri):
        yield str(tmp_path / uri.removeprefix("gs://"))

    monkeypatch.setattr(uris, "local_copy", local_copy)
    rewards = rw.load_rewards("gs://bucket/rewards.yaml")
    assert dry_run(rewards, [example()], ["x"])[0]["p"] == 0.25
    code = rewards.to_vertex()["reward_config"].code_execution_reward_scorer.python_code_snippet
    assert code.startswith("def score(example, response):") and code.endswith("evaluate = score\n")

"""Rewards defined once: a YAML reward file turned into Vertex's reward configs and into TRL reward functions.

A reward file lists rewards, each a ``name``, an optional ``weight`` and one kind (docs/reinforcement_tuning.md
shows every kind with an example)::

    parse: {regex: "<answer>(.*?)</answer>"}   # optional: what every reward reads of a response
    rewards:
      - name: answer
        exact_match: {reference: answer}      # the parsed response equals the row's references.answer
        weight: 3
      - name: format
        format: {pattern: "<answer>.*</answer>"}
        parse: none                           # this one reads the whole response

Kinds: ``exact_match``, ``contains``, ``regex`` (a search), ``format`` (the whole parsed response matches),
``json_key`` (a first-level key of a JSON response), ``numeric`` (a number within a tolerance), ``length``
(characters or words within bounds), ``judge`` (a model scores the response with a rubric) and ``python`` (a
function ``evaluate(example, response) -> float`` by import path). The match
kinds give ``correct`` (default 1) or ``wrong`` (default 0); every reward is clipped to [-1, 1]; several rewards
combine as Vertex combines them, ``sum(weight * reward) / sum(weight)``.

One definition, two runtimes, the same meaning:

- Vertex (``method=REINFORCEMENT_TUNING``, google-genai 2.34 ``types.CreateTuningJobConfig.reward_config`` /
  ``composite_reward_config``): the match kinds become ``string_match_reward_scorer`` (``EXACT_MATCH``,
  ``PARTIAL_MATCH``, ``REGEX_CONTAINS``, or a ``json_match_expression``) with the row's reference as the
  ``{{references.KEY}}`` placeholder; ``parse`` becomes ``parse_response_config`` (``REGEX_EXTRACT``: the last
  match, its first group); ``judge`` an ``autorater_scorer``; ``python``, ``numeric`` and ``length`` a
  ``code_execution_reward_scorer`` whose Python code snippet this module writes (or, for ``python``, the
  function's module source) (google-genai types.py, ``SingleReinforcementTuningRewardConfig`` and the scorers'
  docstrings). Vertex's Cloud Run scorer is not offered: the evaluation scores held-out answers with the same
  rewards, and cannot call a user's service.
- Locally (TRL ``GRPOTrainer``): one reward function per reward, called with ``prompts``, ``completions`` and the
  dataset's ``references`` column (trl 1.16 grpo_trainer.py ``_calculate_rewards`` passes every other column by
  name) and weighted ``weight / sum(weights)`` (``GRPOConfig.reward_weights``), so TRL's weighted sum is Vertex's
  weighted mean. The code-snippet kinds run the very snippet Vertex is sent, on the same ``example``/``response``
  dicts (ProtoJSON, camel case).

Where one side cannot express a reward, :meth:`RewardSet.check_backend` says so when the config is loaded, naming
the reward file, its line and the field: a ``judge`` needs a local model folder locally
(``judge.local_model``), and a pattern using look-around or back-references cannot run on
Vertex (GoogleSQL's ``REGEXP_CONTAINS``/``REGEXP_EXTRACT`` are RE2, which has neither:
https://github.com/google/re2/wiki/Syntax).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import os
import re
import types as pytypes
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError

#: The kinds a reward can be, in the order the docs list them.
KINDS = (
    "exact_match",
    "contains",
    "regex",
    "format",
    "json_key",
    "numeric",
    "length",
    "judge",
    "python",
)
#: Kinds that give ``correct`` or ``wrong``.
MATCH_KINDS = ("exact_match", "contains", "regex", "format", "json_key", "numeric", "length")
#: Kinds Vertex runs as a Python code snippet this module writes.
SNIPPET_KINDS = ("numeric", "length")
#: Every reward is clipped to this range on Vertex ("reward = max(min(reward, 1.0), -1.0)", google-genai
#: types.py, ReinforcementTuningStringMatchRewardScorer and the other scorers); locally too.
REWARD_RANGE = (-1.0, 1.0)
#: Vertex's placeholder of a row's reference (types.py, StringMatchExpression.expression).
_PLACEHOLDER = re.compile(r"\{\{\s*references\.([A-Za-z_][\w-]*)\s*\}\}")
#: What RE2 lacks that Python's ``re`` has: look-around and back-references.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")
#: The judge's score is read from its reply between these tags (``score_regex`` overrides it).
DEFAULT_SCORE_REGEX = r"<score>\s*(-?[0-9.]+)\s*</score>"
JUDGE_INSTRUCTION = (
    "\n\nScore the response from -1 (worst) to 1 (best). Reply with the score between <score> and </score>."
)
_COMMON_KEYS = {"name", "weight", "parse", "correct", "wrong"}
_KIND_KEYS: dict[str, dict[str, bool]] = {
    # kind -> its keys (True: required)
    "exact_match": {"reference": False, "value": False},
    "contains": {"reference": False, "value": False},
    "regex": {"pattern": True},
    "format": {"pattern": True},
    "json_key": {"key": True, "reference": False, "value": False, "match": False},
    "numeric": {"reference": False, "value": False, "tolerance": False, "relative": False},
    "length": {"min_chars": False, "max_chars": False, "min_words": False, "max_words": False},
    "judge": {"model": True, "rubric": True, "local_model": False, "score_regex": False},
    "python": {"function": True, "file": False},
}
_JSON_MATCH = {"exact": "EXACT_MATCH", "contains": "PARTIAL_MATCH", "regex": "REGEX_CONTAINS"}
BACKENDS = ("local", "vertex")
#: Where a python reward loaded from ``file`` keeps its module's source.
_SOURCE = "__tunekit_reward_source__"


@dataclasses.dataclass
class Reward:
    """One reward of a reward file.

    Attributes:
        name: Its unique name (Vertex's ``reward_name``; the TRL reward function's name).
        kind: One of :data:`KINDS`.
        spec: The kind's settings as written.
        weight: Its weight in the combination.
        parse: A regex whose last match (its first group, if any) is what the reward reads; None: the whole text.
        correct: The match kinds' reward for a match.
        wrong: The match kinds' reward otherwise.
        where: Its field path in the file (``rewards[1]``).
        line: Its line in the file.
        source: The reward file.
    """

    name: str
    kind: str
    spec: dict
    weight: float = 1.0
    parse: str | None = None
    correct: float = 1.0
    wrong: float = 0.0
    where: str = ""
    line: int | None = None
    source: str = ""

    def error(self, message: str, key: str = "") -> UserError:
        """A UserError at this reward (``key``: a key of its kind's settings)."""
        field = f"{self.where}.{self.kind}.{key}" if key else f"{self.where}.{self.kind}"
        return UserError(message, path=self.source, line=self.line, field=field)

    def expected(self) -> str:
        """The value a match compares with: ``value`` (placeholders allowed) or the ``reference``'s placeholder."""
        if "value" in self.spec:
            return str(self.spec["value"])
        return "{{references." + str(self.spec["reference"]) + "}}"

    def references(self) -> set[str]:
        """The reference keys this reward reads of a row."""
        found = set()
        if "reference" in self.spec:
            found.add(str(self.spec["reference"]))
        for key in ("value", "pattern", "rubric"):
            if key in self.spec:
                found.update(_PLACEHOLDER.findall(str(self.spec[key])))
        return found


@dataclasses.dataclass
class RewardSet:
    """The rewards of one file; see the module's docstring."""

    rewards: list[Reward]
    source: str = ""

    def references(self) -> list[str]:
        """Every reference key a row must have (sorted)."""
        return sorted(set().union(*(r.references() for r in self.rewards)))

    def normalised_weights(self) -> list[float]:
        """``weight / sum(weights)``: TRL sums weighted rewards, Vertex averages them by weight."""
        total = sum(r.weight for r in self.rewards)
        return [r.weight / total for r in self.rewards]

    # -- what each runtime can express ---------------------------------------------------------------------------

    def check_backend(self, backend: str) -> None:
        """Raises where ``backend`` cannot run a reward as written (one line: file, line, field, what to do)."""
        if backend not in BACKENDS:
            raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")
        for reward in self.rewards:
            if backend == "local":
                if reward.kind == "judge" and not reward.spec.get("local_model"):
                    raise reward.error(
                        "a judge reward needs judge.local_model locally (a Hugging Face model folder that scores "
                        "the rubric); Vertex's autorater cannot be called from a local run",
                        "local_model",
                    )
            else:
                for key in ("pattern", "value"):
                    text = str(reward.spec.get(key, ""))
                    if reward.kind in ("regex", "format", "json_key") and _NOT_RE2.search(text):
                        raise reward.error(
                            "Vertex matches patterns with RE2 (GoogleSQL REGEXP_CONTAINS), which has no "
                            "look-around or back-references; rewrite the pattern without them",
                            key,
                        )
                if reward.parse and _NOT_RE2.search(reward.parse):
                    raise UserError(
                        "Vertex parses responses with RE2 (REGEX_EXTRACT), which has no look-around or "
                        "back-references; rewrite the pattern without them",
                        path=self.source,
                        line=reward.line,
                        field=f"{reward.where}.parse",
                    )
                if reward.kind == "python":
                    vertex_source(reward)

    # -- Vertex -------------------------------------------------------------------------------------------------

    def to_vertex(self, *, project: str = "", location: str = "") -> dict[str, Any]:
        """The reward part of a ``CreateTuningJobConfig``: ``reward_config`` (one reward) or ``composite_reward_config``.

        ``project``/``location`` complete a judge's publisher model into the autorater's full resource name
        (``AutoraterConfig.autorater_model``: ``projects/P/locations/L/publishers/google/models/M``).
        """
        from google.genai import types

        self.check_backend("vertex")
        singles = [vertex_reward(r, project=project, location=location) for r in self.rewards]
        if len(singles) == 1 and self.rewards[0].weight == 1.0:
            return {"reward_config": singles[0]}
        return {
            "composite_reward_config": types.CompositeReinforcementTuningRewardConfig(
                weighted_reward_configs=[
                    types.CompositeReinforcementTuningRewardConfigWeightedRewardConfig(
                        reward_config=single, weight=float(r.weight)
                    )
                    for single, r in zip(singles, self.rewards, strict=True)
                ]
            )
        }

    # -- local --------------------------------------------------------------------------------------------------

    def scorers(self, judge_clients: Mapping[str, Any] | None = None) -> list[Callable[[dict, str], float]]:
        """One ``score(example, completion_text) -> reward`` per reward (clipped), in order.

        ``judge_clients``: reward name -> a :class:`~tunekit.components.model_clients.base.ModelClient` for each
        judge reward (by default an ``HFLocalClient`` of its ``local_model``).
        """
        return [local_scorer(r, (judge_clients or {}).get(r.name)) for r in self.rewards]

    def trl_reward_funcs(
        self, judge_clients: Mapping[str, Any] | None = None
    ) -> tuple[list[Callable], list[float]]:
        """TRL ``GRPOTrainer`` reward functions and their ``reward_weights``.

        Each function takes ``prompts``, ``completions`` and the dataset's ``references`` column (JSON text of a
        row's ``example``, see :func:`example_json`), and is named after its reward (TRL logs
        ``rewards/<name>/mean``).
        """
        funcs = []
        for reward, score in zip(self.rewards, self.scorers(judge_clients), strict=True):
            funcs.append(_trl_function(reward.name, score))
        return funcs, self.normalised_weights()

    def score(self, scorers: Sequence[Callable[[dict, str], float]], example: dict, text: str) -> dict[str, float]:
        """Each reward of ``text`` (by name) and their weighted mean as ``total``."""
        values = {r.name: s(example, text) for r, s in zip(self.rewards, scorers, strict=True)}
        weights = self.normalised_weights()
        values["total"] = sum(w * values[r.name] for w, r in zip(weights, self.rewards, strict=True))
        return values


def _trl_function(name: str, score: Callable[[dict, str], float]) -> Callable:
    def reward(prompts, completions, references=None, **_: Any) -> list[float]:
        rows = references or [None] * len(completions)
        out = []
        for completion, example in zip(completions, rows, strict=True):
            text = completion if isinstance(completion, str) else _chat_text(completion)
            out.append(score(json.loads(example) if example else {}, text))
        return out

    reward.__name__ = name
    return reward


def _chat_text(completion: Any) -> str:
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def example_json(example: dict) -> str:
    """A row's Vertex example (``contents``, ``references``, ``systemInstruction``) as the TRL column's text."""
    return json.dumps(example, ensure_ascii=False, sort_keys=True)


# -- reading the file -----------------------------------------------------------------------------------------


def _node_lines(node: Any, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[(*path, key.value)] = key.start_mark.line + 1
                _node_lines(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), out)
    return out


def load_rewards(uri: str) -> RewardSet:
    """Reads and checks a reward file (a local path or ``gs://`` URI).

    Raises:
        UserError: One line naming the file, the line and the field.
    """
    try:
        with uris.local_copy(uri) as local, open(local, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise UserError("reward file not found; check the path", path=uri, field="reward_config_uri") from None
    return parse_rewards(text, source=uri)


def parse_rewards(text: str, source: str = "rewards.yaml") -> RewardSet:
    """A :class:`RewardSet` from reward-file text; see :func:`load_rewards`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise UserError(
            f"not valid YAML ({getattr(exc, 'problem', exc)})", path=source, line=mark.line + 1 if mark else None
        ) from None
    lines = _node_lines(node) if node is not None else {}

    def fail(message: str, *path: Any) -> UserError:
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        return UserError(message, path=source, line=lines.get(tuple(path)), field=field or None)

    if not isinstance(data, dict) or "rewards" not in data:
        raise fail("a reward file is a mapping with a 'rewards' list (see docs/reinforcement_tuning.md)")
    unknown = sorted(set(data) - {"rewards", "parse"})
    if unknown:
        raise fail(f"unknown key '{unknown[0]}'; a reward file has 'rewards' and an optional 'parse'", unknown[0])
    default_parse = _parse_spec(data.get("parse"), fail, ("parse",))
    items = data["rewards"]
    if not isinstance(items, list) or not items:
        raise fail("'rewards' must be a non-empty list of rewards", "rewards")
    rewards: list[Reward] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        at = ("rewards", index)
        if not isinstance(item, dict):
            raise fail("a reward is a mapping with a name and one kind", *at)
        kinds = [k for k in item if k in KINDS]
        others = sorted(set(item) - _COMMON_KEYS - set(KINDS))
        if others:
            raise fail(
                f"unknown key '{others[0]}'; a reward has {', '.join(sorted(_COMMON_KEYS))} and one of: "
                f"{', '.join(KINDS)}",
                *at,
                others[0],
            )
        if len(kinds) != 1:
            raise fail(f"a reward has exactly one kind, one of: {', '.join(KINDS)} (found {len(kinds)})", *at)
        kind = kinds[0]
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", name):
            raise fail("each reward needs a 'name' (letters, digits, '_' or '-')", *at, "name")
        if name in names or name == "total":
            raise fail(
                f"reward name '{name}' is used twice (or is 'total', the combined reward's name)", *at, "name"
            )
        names.add(name)
        spec = item[kind]
        if not isinstance(spec, dict):
            raise fail(f"'{kind}' takes a mapping of settings", *at, kind)
        allowed = _KIND_KEYS[kind]
        for key in spec:
            if key not in allowed:
                raise fail(f"unknown setting of {kind}; known: {', '.join(allowed)}", *at, kind, key)
        for key, required in allowed.items():
            if required and key not in spec:
                raise fail(f"{kind} needs '{key}'", *at, kind)
        numbers = {}
        for key, default in (("weight", 1.0), ("correct", 1.0), ("wrong", 0.0)):
            value = item.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise fail(f"'{key}' must be a number", *at, key)
            numbers[key] = float(value)
        if numbers["weight"] <= 0:
            raise fail("'weight' must be > 0", *at, "weight")
        for key in ("correct", "wrong"):
            if key in item and kind not in MATCH_KINDS:
                raise fail(f"'{key}' applies to the match kinds only ({', '.join(MATCH_KINDS)})", *at, key)
            if not REWARD_RANGE[0] <= numbers[key] <= REWARD_RANGE[1]:
                raise fail(f"'{key}' must be within [-1, 1]: Vertex clips every reward to that range", *at, key)
        parse = _parse_spec(item["parse"], fail, (*at, "parse")) if "parse" in item else default_parse
        reward = Reward(
            name=name,
            kind=kind,
            spec=dict(spec),
            weight=numbers["weight"],
            parse=parse,
            correct=numbers["correct"],
            wrong=numbers["wrong"],
            where=f"rewards[{index}]",
            line=lines.get(at),
            source=source,
        )
        _check_kind(
            reward, lambda message, key="", _at=at, _kind=kind: fail(message, *_at, _kind, *([key] if key else []))
        )
        rewards.append(reward)
    return RewardSet(rewards, source)


def _parse_spec(value: Any, fail: Callable[..., UserError], at: tuple) -> str | None:
    if value is None or value == "none":
        return None
    if isinstance(value, dict) and set(value) == {"regex"} and isinstance(value["regex"], str):
        _compile(value["regex"], lambda m: fail(m, *at, "regex"))
        return value["regex"]
    raise fail("'parse' is {regex: PATTERN} (the last match, its first group if it has one) or none", *at)


def _compile(pattern: str, fail: Callable[[str], UserError]) -> re.Pattern:
    try:
        return re.compile(_PLACEHOLDER.sub("x", pattern))
    except re.error as exc:
        raise fail(f"not a valid regular expression ({exc})") from None


def _check_kind(reward: Reward, fail: Callable[..., UserError]) -> None:
    spec, kind = reward.spec, reward.kind
    if kind in ("exact_match", "contains", "json_key", "numeric"):
        if ("reference" in spec) == ("value" in spec):
            raise fail(f"{kind} compares with either 'reference' (a key of the row's references) or 'value'")
        if "reference" in spec and not re.fullmatch(r"[A-Za-z_][\w-]*", str(spec["reference"])):
            raise fail("'reference' is the name of a key of the row's references", "reference")
    if kind in ("regex", "format"):
        _compile(str(spec["pattern"]), lambda m: fail(m, "pattern"))
    if kind == "json_key" and spec.get("match", "exact") not in _JSON_MATCH:
        raise fail(f"'match' is one of: {', '.join(_JSON_MATCH)}", "match")
    if kind == "json_key" and spec.get("match") == "regex":
        _compile(reward.expected(), lambda m: fail(m, "value"))
    if kind == "numeric":
        for key in ("tolerance", "relative"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise fail(f"'{key}' must be a number >= 0", key)
        if "value" in spec and not _PLACEHOLDER.search(str(spec["value"])) and _number(str(spec["value"])) is None:
            raise fail("'value' must be a number (or a {{references.KEY}} placeholder)", "value")
    if kind == "length":
        if not spec:
            raise fail("length needs at least one of min_chars, max_chars, min_words, max_words")
        for key, value in spec.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise fail(f"'{key}' must be a whole number >= 0", key)
    if kind == "judge":
        if not str(spec["rubric"]).strip():
            raise fail("the rubric is the judge's instructions; write what a good response is", "rubric")
        _compile(str(spec.get("score_regex", DEFAULT_SCORE_REGEX)), lambda m: fail(m, "score_regex"))
        if spec.get("local_model") and not os.path.isdir(str(spec["local_model"])):
            raise fail(f"'{spec['local_model']}' is not a model folder on this machine", "local_model")
    if kind == "python":
        _function(reward)


# -- shared semantics -----------------------------------------------------------------------------------------


def response_text(response: Mapping[str, Any]) -> str:
    """The text of a Vertex ``Content`` response (its text parts joined, thoughts left out)."""
    return "".join(str(p.get("text", "")) for p in response.get("parts", []) if not p.get("thought"))


def extract(pattern: str | None, text: str) -> str:
    """Vertex's ``REGEX_EXTRACT``: the last match, its first group when it has one; '' when nothing matches."""
    if not pattern:
        return text
    matches = list(re.finditer(pattern, text))
    if not matches:
        return ""
    last = matches[-1]
    return (last.group(1) or "") if last.re.groups else last.group(0)


def fill(template: str, example: Mapping[str, Any]) -> str:
    """``{{references.KEY}}`` placeholders replaced with the row's references (as Vertex substitutes them)."""
    references = example.get("references") or {}
    return _PLACEHOLDER.sub(lambda m: str(references.get(m.group(1), "")), template)


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", ""))
    except ValueError:
        return None


def clip(value: float) -> float:
    """A reward clipped to [-1, 1] (NaN counts as -1)."""
    if value != value:  # NaN
        return REWARD_RANGE[0]
    return max(REWARD_RANGE[0], min(REWARD_RANGE[1], float(value)))


def _match(operation: str, expected: str, target: str) -> bool:
    if operation == "EXACT_MATCH":
        return target == expected
    if operation == "PARTIAL_MATCH":
        return expected in target
    return re.search(expected, target) is not None


def _operation(reward: Reward) -> tuple[str, str]:
    """The match kinds' ``(match_operation, expression)`` as Vertex gets them."""
    kind = reward.kind
    if kind == "exact_match":
        return "EXACT_MATCH", reward.expected()
    if kind == "contains":
        return "PARTIAL_MATCH", reward.expected()
    if kind == "regex":
        return "REGEX_CONTAINS", str(reward.spec["pattern"])
    if kind == "format":
        # The whole (parsed) response: RE2's ^ and $ are the text's ends without the m flag, as fullmatch.
        return "REGEX_CONTAINS", "^(?:" + str(reward.spec["pattern"]) + ")$"
    return _JSON_MATCH[reward.spec.get("match", "exact")], reward.expected()


# -- code snippets (Vertex's code execution scorer; run locally too) ---------------------------------------------

_SNIPPET_HEAD = """import json
import math
import re


def _text(response):
    return "".join(str(p.get("text", "")) for p in response.get("parts", []) if not p.get("thought"))


def _extract(pattern, text):
    if not pattern:
        return text
    found = list(re.finditer(pattern, text))
    if not found:
        return ""
    last = found[-1]
    return (last.group(1) or "") if last.re.groups else last.group(0)


def _fill(template, example):
    refs = example.get("references") or {}
    return re.sub(r"\\{\\{\\s*references\\.([A-Za-z_][\\w-]*)\\s*\\}\\}", lambda m: str(refs.get(m.group(1), "")), template)

"""

_NUMERIC = """
def evaluate(example, response):
    text = _extract(PARSE, _text(response)).strip().replace(",", "")
    expected = _fill(EXPECTED, example).strip().replace(",", "")
    try:
        got, want = float(text), float(expected)
    except ValueError:
        return WRONG
    if not (math.isfinite(got) and math.isfinite(want)):
        return WRONG
    return CORRECT if abs(got - want) <= max(TOLERANCE, RELATIVE * abs(want)) else WRONG
"""

_LENGTH = """
def evaluate(example, response):
    text = _extract(PARSE, _text(response))
    chars, words = len(text), len(text.split())
    ok = MIN_CHARS <= chars and (MAX_CHARS is None or chars <= MAX_CHARS)
    ok = ok and MIN_WORDS <= words and (MAX_WORDS is None or words <= MAX_WORDS)
    return CORRECT if ok else WRONG
"""


def snippet(reward: Reward) -> str:
    """The Python code snippet (``def evaluate(example, response) -> float``) of a numeric or length reward."""
    constants = {"PARSE": reward.parse, "CORRECT": reward.correct, "WRONG": reward.wrong}
    if reward.kind == "numeric":
        constants.update(
            EXPECTED=reward.expected(),
            TOLERANCE=float(reward.spec.get("tolerance", 0)),
            RELATIVE=float(reward.spec.get("relative", 0)),
        )
        body = _NUMERIC
    else:
        spec = reward.spec
        constants.update(
            MIN_CHARS=int(spec.get("min_chars", 0)),
            MAX_CHARS=spec.get("max_chars"),
            MIN_WORDS=int(spec.get("min_words", 0)),
            MAX_WORDS=spec.get("max_words"),
        )
        body = _LENGTH
    header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    return _SNIPPET_HEAD + header + body


def _run_snippet(code: str) -> Callable[[dict, dict], float]:
    scope: dict[str, Any] = {"__name__": "tunekit_reward"}
    exec(compile(code, "<reward snippet>", "exec"), scope)  # noqa: S102 - our own generated snippet
    return scope["evaluate"]


def _function(reward: Reward) -> Callable[[dict, dict], float]:
    """A python reward's function, imported by ``module:name`` (``file``: the module's file, beside the reward file)."""
    spec = reward.spec
    target = str(spec["function"])
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name.isidentifier():
        raise reward.error("'function' is MODULE:NAME, e.g. my_rewards:score", "function")
    try:
        if spec.get("file"):
            path = str(spec["file"])
            if not os.path.isabs(path) and "://" not in path and reward.source:
                base = (
                    reward.source.rsplit("/", 1)[0]
                    if "://" in reward.source
                    else os.path.dirname(os.path.abspath(reward.source))
                )
                path = f"{base}/{path}" if "://" in reward.source else os.path.join(base, path)
            try:
                with uris.local_copy(path) as local, open(local, encoding="utf-8") as handle:
                    code = handle.read()
            except (FileNotFoundError, IsADirectoryError):
                raise reward.error(f"'{path}' is not a Python file", "file") from None
            module = pytypes.ModuleType(module_name)
            module.__file__ = path
            # Kept for Vertex: the module's source is the code snippet it is sent (the file may be a gs:// copy).
            module.__dict__[_SOURCE] = code
            exec(compile(code, path, "exec"), module.__dict__)  # noqa: S102 - the user's own reward module
        else:
            module = importlib.import_module(module_name)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module: any failure to import is theirs to fix
        raise reward.error(f"cannot import {module_name} ({type(exc).__name__}: {exc})", "function") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise reward.error(f"{module_name} has no function '{name}'", "function")
    try:
        inspect.signature(function).bind({}, {})
    except TypeError:
        raise reward.error(
            f"{target} must take (example, response) as Vertex's code scorer calls evaluate", "function"
        ) from None
    return function


def vertex_source(reward: Reward) -> str:
    """The code snippet Vertex is sent for a python reward: its module's source and ``evaluate`` bound to it.

    Raises:
        UserError: The module's source cannot be read (a compiled or built-in module).
    """
    function = _function(reward)
    source = getattr(function, "__globals__", {}).get(_SOURCE, "")
    try:
        if not source:
            # The file the function was defined in: its whole module.
            with open(function.__code__.co_filename, encoding="utf-8") as handle:
                source = handle.read()
    except (AttributeError, OSError):
        source = ""
    if not source:
        raise reward.error("Vertex runs a python reward from its source, which cannot be read here", "function")
    name = function.__name__
    return source if name == "evaluate" else f"{source}\n\nevaluate = {name}\n"


def vertex_reward(reward: Reward, *, project: str = "", location: str = ""):
    """One reward as google-genai's ``SingleReinforcementTuningRewardConfig``."""
    from google.genai import types

    fields: dict[str, Any] = {"reward_name": reward.name}
    kind = reward.kind
    if reward.parse and kind not in SNIPPET_KINDS and kind != "python":
        fields["parse_response_config"] = types.ReinforcementTuningParseResponseConfig(
            parse_type=types.ResponseParseType.REGEX_EXTRACT, regex_extract_expression=reward.parse
        )
    if kind in ("exact_match", "contains", "regex", "format"):
        operation, expression = _operation(reward)
        fields["string_match_reward_scorer"] = types.ReinforcementTuningStringMatchRewardScorer(
            correct_answer_reward=reward.correct,
            wrong_answer_reward=reward.wrong,
            string_match_expression=types.ReinforcementTuningStringMatchRewardScorerStringMatchExpression(
                match_operation=operation, expression=expression
            ),
        )
    elif kind == "json_key":
        operation, expression = _operation(reward)
        fields["string_match_reward_scorer"] = types.ReinforcementTuningStringMatchRewardScorer(
            correct_answer_reward=reward.correct,
            wrong_answer_reward=reward.wrong,
            json_match_expression=types.ReinforcementTuningStringMatchRewardScorerJsonMatchExpression(
                key_name=str(reward.spec["key"]),
                value_string_match_expression=types.ReinforcementTuningStringMatchRewardScorerStringMatchExpression(
                    match_operation=operation, expression=expression
                ),
            ),
        )
    elif kind in SNIPPET_KINDS or kind == "python":
        code = snippet(reward) if kind in SNIPPET_KINDS else vertex_source(reward)
        fields["code_execution_reward_scorer"] = types.ReinforcementTuningCodeExecutionRewardScorer(
            python_code_snippet=code
        )
    elif kind == "judge":
        model = str(reward.spec["model"])
        if not model.startswith("projects/") and project and location:
            model = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
        fields["autorater_scorer"] = types.ReinforcementTuningAutoraterScorer(
            autorater_config=types.AutoraterConfig(autorater_model=model),
            autorater_prompt=judge_prompt(reward),
            autorater_response_parse_config=types.ReinforcementTuningParseResponseConfig(
                parse_type=types.ResponseParseType.REGEX_EXTRACT,
                regex_extract_expression=str(reward.spec.get("score_regex", DEFAULT_SCORE_REGEX)),
            ),
            parsed_response_conversion_scorer=types.ReinforcementTuningAutoraterScorerParsedResponseConversionScorer(),
        )
    return types.SingleReinforcementTuningRewardConfig(**fields)


def judge_prompt(reward: Reward) -> str:
    """The judge's prompt: the rubric, the prompt and the response (Vertex's ``{{prompt}}``/``{{response}}``)."""
    rubric = str(reward.spec["rubric"]).rstrip()
    if "{{response}}" not in rubric:
        rubric += "\n\nPrompt:\n{{prompt}}\n\nResponse:\n{{response}}"
    if "score_regex" not in reward.spec:
        rubric += JUDGE_INSTRUCTION
    return rubric


def example_prompt(example: Mapping[str, Any]) -> str:
    """The text of a row's prompt turns (the judge's ``{{prompt}}``)."""
    return "\n".join(response_text(c) for c in example.get("contents") or [])


def local_scorer(reward: Reward, judge_client: Any = None) -> Callable[[dict, str], float]:
    """``score(example, completion_text) -> reward`` with the meaning Vertex gives ``reward`` (clipped)."""
    kind = reward.kind
    if kind in SNIPPET_KINDS or kind == "python":
        evaluate = _run_snippet(snippet(reward)) if kind in SNIPPET_KINDS else _function(reward)

        def run(example: dict, text: str) -> float:
            return clip(evaluate(example, {"role": "model", "parts": [{"text": text}]}))

        return run
    if kind == "judge":
        return _judge_scorer(reward, judge_client)
    operation, expression = _operation(reward)

    def match(example: dict, text: str) -> float:
        target = extract(reward.parse, text)
        if kind == "json_key":
            try:
                parsed = json.loads(target)
            except ValueError:
                return clip(reward.wrong)
            if not isinstance(parsed, dict) or str(reward.spec["key"]) not in parsed:
                return clip(reward.wrong)
            value = parsed[str(reward.spec["key"])]
            target = value if isinstance(value, str) else json.dumps(value)
        try:
            hit = _match(operation, fill(expression, example), target)
        except re.error:
            hit = False
        return clip(reward.correct if hit else reward.wrong)

    return match


def _judge_scorer(reward: Reward, client: Any) -> Callable[[dict, str], float]:
    from tunekit.components.model_clients.base import GenerationConfig, Prompt

    if client is None and not reward.spec.get("local_model"):
        raise reward.error("this judge has no model to score with here: set judge.local_model", "local_model")
    if client is None:
        from tunekit.components.model_clients.hf import HFLocalClient

        client = HFLocalClient(str(reward.spec["local_model"]))
    template = judge_prompt(reward)
    score_regex = str(reward.spec.get("score_regex", DEFAULT_SCORE_REGEX))
    config = GenerationConfig(max_output_tokens=16, temperature=0.0)

    def judge(example: dict, text: str) -> float:
        prompt = fill(template, example).replace("{{prompt}}", example_prompt(example))
        prompt = prompt.replace("{{response}}", extract(reward.parse, text))
        system = response_text(example.get("systemInstruction") or {})
        prompt = prompt.replace("{{system_instruction}}", system)
        answer = client.generate([Prompt(prompt)], config)[0].text
        value = _number(extract(score_regex, answer))
        # An unreadable verdict scores the lowest reward: a response cannot gain by confusing the judge.
        return clip(value if value is not None else REWARD_RANGE[0])

    return judge


# -- dry runs ---------------------------------------------------------------------------------------------------


def dry_run(
    rewards: RewardSet, examples: Sequence[dict], completions: Sequence[str], judge_clients=None
) -> list[dict]:
    """Every reward of each sample completion on its row (locally): what ``validate_reward`` does on Vertex.

    Raises:
        UserError: A reward raised or gave no number on a sample (the reward, the sample and the error named).
    """
    scorers = rewards.scorers(judge_clients)
    out = []
    for index, (example, completion) in enumerate(zip(examples, completions, strict=True)):
        values = {}
        for reward, score in zip(rewards.rewards, scorers, strict=True):
            try:
                value = score(example, completion)
            except Exception as exc:  # noqa: BLE001 - the user's reward failing on a sample is theirs to fix
                raise reward.error(
                    f"the reward failed on sample {index + 1} ({completion[:40]!r}): {type(exc).__name__}: {exc}"
                ) from None
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise reward.error(f"the reward gave {value!r} on sample {index + 1}, not a number")
            values[reward.name] = float(value)
        weights = rewards.normalised_weights()
        values["total"] = sum(w * values[r.name] for w, r in zip(weights, rewards.rewards, strict=True))
        out.append(values)
    return out

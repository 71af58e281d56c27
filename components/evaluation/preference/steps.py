"""Evaluating preference tuning: reward-model accuracy, the policy's win rates against the base and the champion.

On data the tuning never saw:

- ``reward_accuracy``: the share of held-out pairs whose preferred answer the judge scores higher (locally the
  reward model; on Vertex the autorater's agreement with the people who labelled the pairs). 0.5 is chance.
- ``win_rate``: the share of held-out prompts where the judge prefers the tuned policy's answer to the base
  model's (ties count half). The gate requires it to exceed ``min_win_rate``. ``win_rate_vs_reference``
  compares with the reference (the SFT warm start) when there is one: the preference step's own gain.
- ``win_rate_vs_champion``: the same against the champion, the model deployed for the run's ``purpose`` now,
  answering the same prompts and judged by the same judge; the gate requires it to exceed 0.5 (``beat_champion``),
  so a worse policy that merely beats its base never replaces a better one.
- ``kl_from_reference``: a Monte Carlo estimate of KL(policy || reference) in nats per answer, the mean of
  ``log p_policy(y|x) - log p_reference(y|x)`` over answers ``y`` sampled from the policy: how far tuning moved
  the model (local models only; Vertex does not expose log-probabilities of tuned models this way).

The gate is :func:`tunekit.components.evaluation.gate.decide` with a head-to-head policy (``min_win_rate``); the
step returns an :class:`~tunekit.components.evaluation.result.EvaluationResult`.

Input columns: pairs and prompts as in :mod:`tunekit.components.data_validation.preference_convert`. Output: one
prediction row per prompt (``prompt``, ``base``, ``tuned``, ``reference``?, ``champion``?, their rewards locally,
the judge's verdicts on Vertex).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.data_validation.preference_convert import PreferencePair, PromptRow, read_pairs
from tunekit.components.evaluation import scoring
from tunekit.components.evaluation.gate import (
    BASE,
    CANDIDATE,
    CHAMPION,
    GateDecision,
    GatePolicy,
    all_failed,
    decide,
    describe_champion,
    load_champion,
    locate_champion,
)
from tunekit.components.evaluation.result import EvaluationResult, gate_markdown
from tunekit.components.model_clients.reward import RewardModelScorer, load_tokenizer

#: ``scores(prompts, answers) -> rewards``, one per (prompt, answer).
Scorer = Callable[[Sequence[str], Sequence[str]], list[float]]
#: ``judge(prompts, answers_a, answers_b) -> preference for a`` in [0, 1] (1: a is better, 0.5: a tie).
Judge = Callable[[Sequence[str], Sequence[str], Sequence[str]], list[float]]

REFERENCE = "reference"
PRIMARY_METRIC = "win_rate"
BACKENDS = ("local", "vertex")
#: The win-rate figure against each other model.
WIN_RATE_VS = {BASE: "win_rate", REFERENCE: "win_rate_vs_reference", CHAMPION: "win_rate_vs_champion"}


@dataclass
class PreferenceReport:
    """What the judge found.

    Attributes:
        figures: ``reward_accuracy``, ``win_rate``, ``win_rate_vs_reference``, ``win_rate_vs_champion``,
            ``kl_from_reference`` (local), and the counts ``eval_pairs`` and ``eval_prompts``.
        metrics: ``model -> metric -> value``: locally each model's ``mean_reward``.
        wins: ``other model -> the judge's preference for the tuned answer over its answer``, one per prompt.
        predictions: One dict per held-out prompt.
        champion_error: Why the champion's answers could not be judged ('' when they were, or there is none).
    """

    figures: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    wins: dict[str, list[float]] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)
    champion_error: str = ""

    def add_wins(self, other: str, wins: list[float]) -> None:
        """Records the tuned model's per-prompt preference over ``other`` and its win rate."""
        self.wins[other] = wins
        self.figures[WIN_RATE_VS[other]] = sum(wins) / len(wins) if wins else 0.0


def preferences(candidate: Sequence[float], other: Sequence[float]) -> list[float]:
    """Per item, 1 where ``candidate`` scores above ``other``, 0.5 for a tie, 0 below."""
    return [1.0 if c > o else 0.5 if c == o else 0.0 for c, o in zip(candidate, other, strict=True)]


def win_rate(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """The share of items where ``candidate`` scores above ``baseline`` (ties count half)."""
    wins = preferences(candidate, baseline)
    return sum(wins) / len(wins) if wins else 0.0


def pair_accuracy(scores: Scorer, pairs: Sequence[PreferencePair]) -> float:
    """The share of pairs whose preferred answer gets the higher score (ties count half)."""
    if not pairs:
        return 0.0
    prompts = [p.text for p in pairs]
    return win_rate(scores(prompts, [p.chosen for p in pairs]), scores(prompts, [p.rejected for p in pairs]))


def scorer_judge(scores: Scorer) -> Judge:
    """A judge from a reward model: ``a`` wins when its reward is higher."""

    def judge(prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        return preferences(scores(prompts, first), scores(prompts, second))

    return judge


# -- local models -------------------------------------------------------------------------------------------------


class CausalPolicy:
    """A causal LM directory for generation and log-probabilities."""

    def __init__(self, model_dir: str, batch_size: int = 16):
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.tokenizer = load_tokenizer(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.batch_size = batch_size

    def _asked(self, prompt: str) -> str:
        """The text the policy was trained on and is served with (its chat template, one bos): hf.prompt_string."""
        from tunekit.components.model_clients.hf import prompt_string

        return prompt_string(self.tokenizer, prompt)

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, sample: bool = False, seed: int = 0
    ) -> list[str]:
        """Answers, greedy unless ``sample`` (temperature 1, seeded); prompts are left-padded in batches."""
        self.torch.manual_seed(seed)
        out = []
        with self.torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                enc = self.tokenizer(
                    [self._asked(p) for p in prompts[start : start + self.batch_size]],
                    return_tensors="pt",
                    padding=True,
                )
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=sample,
                    **({"top_k": 0} if sample else {}),
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
                width = enc["input_ids"].shape[1]
                out.extend(self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in ids)
        return out

    def logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        """``log p(answer | prompt)`` summed over the answer's tokens."""
        out = []
        with self.torch.no_grad():
            for prompt, answer in zip(prompts, answers, strict=True):
                p_ids = self.tokenizer(self._asked(prompt))["input_ids"]
                a_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
                if not a_ids:
                    out.append(0.0)
                    continue
                ids = self.torch.tensor([p_ids + a_ids])
                logits = self.model(input_ids=ids).logits[0, len(p_ids) - 1 : -1]
                logp = self.torch.log_softmax(logits.float(), dim=-1)
                out.append(float(logp.gather(1, self.torch.tensor(a_ids).unsqueeze(1)).sum()))
        return out


def kl_estimate(
    policy: CausalPolicy, reference: CausalPolicy, prompts: Sequence[str], max_new_tokens: int
) -> float:
    """Monte Carlo KL(policy || reference) per answer: answers sampled from the policy, log-ratio averaged."""
    if not prompts:
        return 0.0
    answers = policy.generate(prompts, max_new_tokens, sample=True, seed=1)
    mine = policy.logprobs(prompts, answers)
    theirs = reference.logprobs(prompts, answers)
    return sum(a - b for a, b in zip(mine, theirs, strict=True)) / len(prompts)


def evaluate_local(
    *,
    base_dir: str,
    tuned_dir: str,
    reward_dir: str,
    eval_pairs: Sequence[PreferencePair],
    eval_prompts: Sequence[PromptRow] | None = None,
    reference_dir: str = "",
    champion_dir: str = "",
    max_new_tokens: int = 64,
) -> PreferenceReport:
    """Scores local models: reward accuracy on ``eval_pairs``, win rates and KL on ``eval_prompts``.

    ``eval_prompts`` defaults to the pairs' prompts. ``reference_dir`` is the model preference tuning started from
    (the SFT warm start); '' or ``base_dir`` means the base model was the reference. ``champion_dir`` is the
    champion's model directory ('' for none): it answers the same prompts and the same reward model judges them;
    a champion that cannot answer is recorded in ``champion_error``.
    """
    eval_prompts = eval_pairs if eval_prompts is None else eval_prompts
    scorer = RewardModelScorer(reward_dir)
    report = PreferenceReport()
    report.figures["reward_accuracy"] = pair_accuracy(scorer, eval_pairs)
    report.figures["eval_pairs"] = float(len(eval_pairs))
    prompts = [p.text for p in eval_prompts]
    report.figures["eval_prompts"] = float(len(prompts))
    tuned = CausalPolicy(tuned_dir)
    answers = {
        CANDIDATE: tuned.generate(prompts, max_new_tokens),
        BASE: CausalPolicy(base_dir).generate(prompts, max_new_tokens),
    }
    has_reference = bool(reference_dir) and os.path.abspath(reference_dir) != os.path.abspath(base_dir)
    reference = CausalPolicy(reference_dir if has_reference else base_dir)
    if has_reference:
        answers[REFERENCE] = reference.generate(prompts, max_new_tokens)
    champion_answers, report.champion_error = load_champion(
        champion_dir or None, lambda path: CausalPolicy(path).generate(prompts, max_new_tokens)
    )
    if champion_answers is not None:
        answers[CHAMPION] = champion_answers
    rewards = {name: scorer(prompts, texts) for name, texts in answers.items()}
    for name in answers:
        if name != CANDIDATE:
            report.add_wins(name, preferences(rewards[CANDIDATE], rewards[name]))
    for name, values in rewards.items():
        report.metrics[name] = {"mean_reward": sum(values) / len(values) if values else 0.0}
    report.figures["kl_from_reference"] = kl_estimate(tuned, reference, prompts, max_new_tokens)
    for index, prompt in enumerate(prompts):
        row = {"line": eval_prompts[index].line, "prompt": prompt}
        for name in answers:
            row[name] = answers[name][index]
            row[f"{name}_reward"] = rewards[name][index]
        report.predictions.append(row)
    return report


# -- Vertex: an autorater -----------------------------------------------------------------------------------------

JUDGE_PROMPT = """You compare two answers to the same request and say which one is better.
Request:
{prompt}

Answer A:
{a}

Answer B:
{b}

Which answer is better? Reply with exactly one letter: A or B."""


def parse_verdict(text: str) -> float | None:
    """1.0 for A, 0.0 for B, None when the reply names neither (or both) at its start."""
    head = text.strip().upper()[:12]
    has_a, has_b = head.startswith("A") or "ANSWER A" in head, head.startswith("B") or "ANSWER B" in head
    if has_a == has_b:
        return None
    return 1.0 if has_a else 0.0


def model_judge(client, max_output_tokens: int = 8) -> Judge:
    """A pairwise autorater from a :class:`~tunekit.components.model_clients.base.ModelClient`.

    Each pair is asked in both orders, so that a judge that always says "A" scores a tie (0.5) rather than a win;
    an unreadable verdict counts as a tie too. A call that failed (after the client's retries) fails the judgement:
    give it an :class:`~tunekit.components.model_clients.engine.Engine` with a cache, and a retry pays only for
    the calls that failed.
    """
    from tunekit.components.model_clients.base import FAILED, GenerationConfig, Prompt

    config = GenerationConfig(max_output_tokens=max_output_tokens, temperature=0.0)

    def judge(prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        asks = [
            Prompt(JUDGE_PROMPT.format(prompt=p, a=a, b=b)) for p, a, b in zip(prompts, first, second, strict=True)
        ]
        asks += [
            Prompt(JUDGE_PROMPT.format(prompt=p, a=b, b=a)) for p, a, b in zip(prompts, first, second, strict=True)
        ]
        answers = client.generate(asks, config)
        failed = [g for g in answers if g.status == FAILED]
        if failed:
            # Not a tie: the step fails, and its retry asks again only for these (the engine cached the rest).
            raise RuntimeError(
                f"{len(failed)} of {len(asks)} judge calls failed (first: {failed[0].error or 'no answer'}); "
                "retry the step: answers already received are cached and not paid for again"
            )
        verdicts = [parse_verdict(g.text) for g in answers]
        n = len(prompts)
        out = []
        for forward, backward in zip(verdicts[:n], verdicts[n:], strict=True):
            forward = 0.5 if forward is None else forward
            backward = 0.5 if backward is None else 1.0 - backward
            out.append((forward + backward) / 2)
        return out

    return judge


def evaluate_with_judge(
    *,
    judge: Judge,
    base_client,
    tuned_client,
    eval_pairs: Sequence[PreferencePair],
    eval_prompts: Sequence[PromptRow] | None = None,
    max_output_tokens: int = 256,
    champion_client=None,
) -> PreferenceReport:
    """Scores served models (e.g. Gemini endpoints) with an autorater: agreement on pairs, win rates on prompts.

    ``eval_prompts`` are the prompts the models answer (by default the pairs' prompts). ``champion_client`` (None
    for no champion) answers the same prompts and the tuned answers are judged against its answers too; a
    champion whose every answer failed is recorded in ``champion_error``.
    """
    from tunekit.components.model_clients.base import GenerationConfig, Prompt

    eval_prompts = eval_pairs if eval_prompts is None else eval_prompts
    report = PreferenceReport()
    if eval_pairs:
        verdicts = judge(
            [p.text for p in eval_pairs], [p.chosen for p in eval_pairs], [p.rejected for p in eval_pairs]
        )
        report.figures["reward_accuracy"] = sum(verdicts) / len(verdicts)
    report.figures["eval_pairs"] = float(len(eval_pairs))
    config = GenerationConfig(max_output_tokens=max_output_tokens, temperature=0.0)
    asks = [
        Prompt(
            p.turns[-1].text,
            system=p.system,
            history=tuple((t.role, t.text) for t in p.turns[:-1]),
        )
        for p in eval_prompts
    ]
    tuned = [g.text for g in tuned_client.generate(asks, config)]
    answers = {BASE: [g.text for g in base_client.generate(asks, config)]}
    if champion_client is not None:
        generations, report.champion_error = load_champion(
            champion_client, lambda client: client.generate(asks, config)
        )
        report.champion_error = report.champion_error or all_failed(Counter(g.status for g in generations or []))
        if not report.champion_error:
            answers[CHAMPION] = [g.text for g in generations]
    prompts = [p.text for p in eval_prompts]
    for name, texts in answers.items():
        report.add_wins(name, judge(prompts, tuned, texts) if prompts else [])
    report.figures["eval_prompts"] = float(len(prompts))
    for index, (row, prompt) in enumerate(zip(eval_prompts, prompts, strict=True)):
        record = {"line": row.line, "prompt": prompt, CANDIDATE: tuned[index], BASE: answers[BASE][index]}
        record["tuned_wins"] = report.wins[BASE][index]
        if CHAMPION in answers:
            record[CHAMPION] = answers[CHAMPION][index]
            record["tuned_wins_vs_champion"] = report.wins[CHAMPION][index]
        report.predictions.append(record)
    return report


def render_markdown(result: EvaluationResult) -> str:
    """The evaluation as a Markdown summary (its figures, each model's, the gate)."""
    lines = ["# Preference tuning evaluation", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in result.figures.items()]
    lines += [
        f"| {model}_{name} | {value:.4f} |"
        for model, values in result.metrics.items()
        for name, value in values.items()
    ]
    lines += ["", gate_markdown(result.decision)]
    return "\n".join(lines) + "\n"


def _result(report: PreferenceReport, decision: GateDecision) -> EvaluationResult:
    rate = report.figures.get(PRIMARY_METRIC, 0.0)
    # The head-to-head with the base as per-model columns (the CLI's table shows metrics named <model>_<metric>).
    metrics = {CANDIDATE: {PRIMARY_METRIC: rate}, BASE: {PRIMARY_METRIC: 1.0 - rate}}
    for name, values in report.metrics.items():
        metrics.setdefault(name, {}).update(values)
    result = EvaluationResult(
        method="preference",
        primary_metric=PRIMARY_METRIC,
        decision=decision,
        metrics=metrics,
        figures=dict(report.figures),
        predictions=report.predictions,
        extras={"wins": report.wins},
    )
    result.summary = render_markdown(result)
    return result


def champion_weights(champion) -> str:
    """The folder of the champion's weights for the local evaluator ('' without a champion).

    Its model directory, or, for an open model on Vertex, its Cloud Storage artifact as this worker reads it.
    """
    from tunekit.components.common import uris
    from tunekit.components.deployment.champion import is_open_model

    if champion is None:
        return ""
    if is_open_model(champion):
        return uris.gcs_to_fuse(str(champion.extra.get("artifact_uri") or ""))
    return champion.model


def run_evaluate_preference(
    *,
    backend: str,
    base_model: str,
    warm_model_path: str,
    tuned_model_path: str,
    reward_model_path: str,
    eval_path: str,
    max_eval_examples: int,
    max_output_tokens: int,
    min_win_rate: float,
    judge_model: str,
    project: str,
    location: str,
    summary_path: str,
    predictions_path: str,
    cache_dir: str = "",
    purpose: str = "",
    local_registry: str = "",
    policy: GatePolicy | None = None,
) -> EvaluationResult:
    """Scores the tuned policy against the base model and the champion; returns the evaluation and its gate.

    Local: the reward model judges (its held-out pair accuracy, the win rates) and KL is estimated against the
    reference. Vertex: ``judge_model`` (a Gemini autorater, both answer orders) judges the tuned endpoint against
    the base model, and its agreement with the held-out human choices is reported as ``reward_accuracy``. On
    Vertex every call (the models' answers, the judge's verdicts) goes through the model engine, with its
    retries, rate limiter and, given ``cache_dir`` (the step's ``response_cache``), its persistent response
    cache: a retried or re-run step pays only for what is not cached yet.

    The champion is the model deployed for ``purpose`` now (looked up in ``local_registry`` locally, in the Model
    Registry on Vertex; none when ``purpose`` is ''): it answers the same held-out prompts, the same judge
    compares the tuned answers with its answers, and the gate requires the tuned policy to win more than half of
    them unless ``policy.beat_champion`` is false. ``policy`` holds the champion and significance options; the
    gate's win-rate threshold against the base is ``min_win_rate``.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")
    policy = dataclasses.replace(policy or GatePolicy(), min_win_rate=min_win_rate)
    pairs = read_pairs(eval_path)
    if max_eval_examples:
        pairs = pairs[:max_eval_examples]
    champion = locate_champion(
        purpose,
        backend=backend,
        model_uri=tuned_model_path,
        local_registry=local_registry,
        project=project,
        location=location,
    )
    champion_error = ""
    if backend == "local":
        start = ModelRecord.read(warm_model_path)
        report = evaluate_local(
            base_dir=base_model,
            tuned_dir=tuned_model_path,
            reward_dir=reward_model_path,
            eval_pairs=pairs,
            reference_dir=start.get("model", "") if start.get("warm_start") else "",
            # An open champion on Vertex is judged from its weights in Cloud Storage (the /gcs mount on Vertex).
            champion_dir=champion_weights(champion),
            max_new_tokens=max_output_tokens,
        )
    else:
        tuned = ModelRecord.read(tuned_model_path)
        engines = {
            name: scoring.vertex_client(model, project, location, cache_dir, base_model=base_model)
            for name, model in (("judge", judge_model), (BASE, base_model), (CANDIDATE, tuned.endpoint))
        }
        champion_engine, champion_error = load_champion(
            champion,
            lambda c: scoring.champion_client(c, project=project, location=location, cache_dir=cache_dir),
        )
        try:
            report = evaluate_with_judge(
                judge=model_judge(engines["judge"]),
                base_client=engines[BASE],
                tuned_client=engines[CANDIDATE],
                eval_pairs=pairs,
                max_output_tokens=max_output_tokens,
                champion_client=champion_engine,
            )
        finally:
            for engine in (*engines.values(), *([champion_engine] if champion_engine is not None else [])):
                engine.close()
    decision = decide(
        metric=PRIMARY_METRIC,
        candidate_scores=None,
        base_scores=report.wins.get(BASE),
        base_value=report.figures.get(PRIMARY_METRIC, 0.0),
        champion_scores=report.wins.get(CHAMPION),
        champion_value=report.figures.get(WIN_RATE_VS[CHAMPION]),
        champion_label=describe_champion(champion),
        champion_error=champion_error or report.champion_error,
        policy=policy,
    )
    result = _result(report, decision)
    result.write(predictions_path=predictions_path, summary_path=summary_path)
    return result

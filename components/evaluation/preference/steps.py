"""Evaluating preference tuning: reward-model accuracy, the policy's win rate against the base, KL from reference.

Three numbers, on data the tuning never saw:

- ``reward_accuracy``: the share of held-out pairs whose preferred answer the judge scores higher (locally the
  reward model; on Vertex the autorater's agreement with the people who labelled the pairs). 0.5 is chance.
- ``win_rate``: the share of held-out prompts where the judge prefers the tuned policy's answer to the base
  model's (ties count half). The gate compares it with ``min_win_rate``. ``win_rate_vs_reference`` compares
  with the reference (the SFT warm start) when there is one: the preference step's own gain.
- ``kl_from_reference``: a Monte Carlo estimate of KL(policy || reference) in nats per answer, the mean of
  ``log p_policy(y|x) - log p_reference(y|x)`` over answers ``y`` sampled from the policy: how far tuning moved
  the model (local models only; Vertex does not expose log-probabilities of tuned models this way).

Input columns: pairs and prompts as in :mod:`tunekit.components.data_validation.preference_convert`. Output: a
:class:`PreferenceReport` (metrics plus one prediction row per prompt: ``prompt``, ``base``, ``tuned``,
``reference``?, their rewards).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tunekit.components.data_validation.preference_convert import PreferencePair, PromptRow
from tunekit.components.evaluation.scoring import GateDecision
from tunekit.components.tuning.preference.local import RewardModelScorer

#: ``scores(prompts, answers) -> rewards``, one per (prompt, answer).
Scorer = Callable[[Sequence[str], Sequence[str]], list[float]]
#: ``judge(prompts, answers_a, answers_b) -> preference for a`` in [0, 1] (1: a is better, 0.5: a tie).
Judge = Callable[[Sequence[str], Sequence[str], Sequence[str]], list[float]]


@dataclass
class PreferenceReport:
    """What the evaluation found.

    Attributes:
        metrics: ``reward_accuracy``, ``win_rate``, ``win_rate_vs_reference``, ``kl_from_reference``,
            ``base_mean_reward``, ``tuned_mean_reward``, and counts.
        predictions: One dict per held-out prompt.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    predictions: list[dict] = field(default_factory=list)


def pair_accuracy(scores: Scorer, pairs: Sequence[PreferencePair]) -> float:
    """The share of pairs whose preferred answer gets the higher score (ties count half)."""
    if not pairs:
        return 0.0
    prompts = [p.text for p in pairs]
    chosen = scores(prompts, [p.chosen for p in pairs])
    rejected = scores(prompts, [p.rejected for p in pairs])
    return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)) / len(
        pairs
    )


def win_rate(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """The share of items where ``candidate`` scores above ``baseline`` (ties count half)."""
    if not candidate:
        return 0.0
    return sum(1.0 if c > b else 0.5 if c == b else 0.0 for c, b in zip(candidate, baseline, strict=True)) / len(
        candidate
    )


def scorer_judge(scores: Scorer) -> Judge:
    """A judge from a reward model: ``a`` wins when its reward is higher."""

    def judge(prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> list[float]:
        a, b = scores(prompts, first), scores(prompts, second)
        return [1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)]

    return judge


def decide_preference(metrics: dict[str, float], *, min_win_rate: float) -> GateDecision:
    """Deploy when the tuned policy wins more than ``min_win_rate`` of the held-out prompts against the base."""
    rate = metrics.get("win_rate", 0.0)
    if rate > min_win_rate:
        return GateDecision(True, f"deploy: tuned win rate {rate:.4f} vs base > {min_win_rate:.4f}")
    return GateDecision(False, f"keep the current model: tuned win rate {rate:.4f} vs base <= {min_win_rate:.4f}")


# -- local models -------------------------------------------------------------------------------------------------


class CausalPolicy:
    """A causal LM directory for generation and log-probabilities."""

    def __init__(self, model_dir: str, batch_size: int = 16):
        import torch
        from transformers import AutoModelForCausalLM

        from tunekit.components.tuning.preference.local import load_tokenizer

        self.torch = torch
        self.tokenizer = load_tokenizer(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.batch_size = batch_size

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, sample: bool = False, seed: int = 0
    ) -> list[str]:
        """Answers, greedy unless ``sample`` (temperature 1, seeded); prompts are left-padded in batches."""
        self.torch.manual_seed(seed)
        out = []
        with self.torch.no_grad():
            for start in range(0, len(prompts), self.batch_size):
                enc = self.tokenizer(
                    list(prompts[start : start + self.batch_size]), return_tensors="pt", padding=True
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
                p_ids = self.tokenizer(prompt)["input_ids"]
                a_ids = self.tokenizer(answer)["input_ids"]
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
    eval_prompts: Sequence[PromptRow],
    reference_dir: str = "",
    max_new_tokens: int = 64,
) -> PreferenceReport:
    """Scores local models: reward accuracy on ``eval_pairs``, win rates and KL on ``eval_prompts``.

    ``reference_dir`` is the model preference tuning started from (the SFT warm start); '' or ``base_dir`` means
    the base model was the reference.
    """
    scorer = RewardModelScorer(reward_dir)
    report = PreferenceReport()
    report.metrics["reward_accuracy"] = pair_accuracy(scorer, eval_pairs)
    report.metrics["eval_pairs"] = float(len(eval_pairs))
    prompts = [p.text for p in eval_prompts]
    report.metrics["eval_prompts"] = float(len(prompts))
    tuned = CausalPolicy(tuned_dir)
    answers = {
        "tuned": tuned.generate(prompts, max_new_tokens),
        "base": CausalPolicy(base_dir).generate(prompts, max_new_tokens),
    }
    has_reference = bool(reference_dir) and os.path.abspath(reference_dir) != os.path.abspath(base_dir)
    reference = CausalPolicy(reference_dir if has_reference else base_dir)
    if has_reference:
        answers["reference"] = reference.generate(prompts, max_new_tokens)
    rewards = {name: scorer(prompts, texts) for name, texts in answers.items()}
    report.metrics["win_rate"] = win_rate(rewards["tuned"], rewards["base"])
    if has_reference:
        report.metrics["win_rate_vs_reference"] = win_rate(rewards["tuned"], rewards["reference"])
    for name, values in rewards.items():
        report.metrics[f"{name}_mean_reward"] = sum(values) / len(values) if values else 0.0
    report.metrics["kl_from_reference"] = kl_estimate(tuned, reference, prompts, max_new_tokens)
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
    eval_prompts: Sequence[PromptRow],
    max_output_tokens: int = 256,
) -> PreferenceReport:
    """Scores served models (e.g. Gemini endpoints) with an autorater: agreement on pairs, win rate on prompts."""
    from tunekit.components.model_clients.base import GenerationConfig, Prompt

    report = PreferenceReport()
    if eval_pairs:
        verdicts = judge(
            [p.text for p in eval_pairs], [p.chosen for p in eval_pairs], [p.rejected for p in eval_pairs]
        )
        report.metrics["reward_accuracy"] = sum(verdicts) / len(verdicts)
    report.metrics["eval_pairs"] = float(len(eval_pairs))
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
    base = [g.text for g in base_client.generate(asks, config)]
    prompts = [p.text for p in eval_prompts]
    verdicts = judge(prompts, tuned, base) if prompts else []
    report.metrics["win_rate"] = sum(verdicts) / len(verdicts) if verdicts else 0.0
    report.metrics["eval_prompts"] = float(len(prompts))
    for row, prompt, t, b, v in zip(eval_prompts, prompts, tuned, base, verdicts, strict=True):
        report.predictions.append({"line": row.line, "prompt": prompt, "tuned": t, "base": b, "tuned_wins": v})
    return report


def render_markdown(report: PreferenceReport, decision: GateDecision) -> str:
    """The evaluation as a Markdown summary (metrics table, gate)."""
    lines = ["# Preference tuning evaluation", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in report.metrics.items()]
    lines += ["", f"Gate: {decision.reason}"]
    return "\n".join(lines) + "\n"


def write_predictions(report: PreferenceReport, path: str) -> None:
    """One JSON line per held-out prompt."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in report.predictions:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

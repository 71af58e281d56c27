"""Evaluating reinforcement tuning: the rewards and the task metric on held-out prompts, with intervals.

Each model (``base``, the ``warm_start`` when there is one, ``tuned`` and the ``champion``, the model deployed for
the run's purpose now) answers the same held-out prompts greedily; every answer is scored by the reward file's
rewards, run locally with the same meaning Vertex gives them (:mod:`tunekit.components.tuning.rewards`; a judge
reward asks its Gemini autorater on Vertex, its ``local_model`` locally). Per model:

- ``mean_reward``: the weighted mean of the rewards (Vertex's combination), averaged over the prompts;
- ``task_accuracy``: the share of prompts where the task reward (``task_reward``, by default the first one in the
  file) gives its best value (``correct`` for the match kinds, 1 otherwise): exact match, for an exact-match reward;
- ``reward_<name>``: each reward's mean, the per-reward breakdown.

The gate (:func:`~tunekit.components.evaluation.gate.decide`) compares ``gate_metric`` (one of the two) of the tuned
model with the base's and the champion's on the same prompts, with paired bootstrap intervals; the other metric's
differences and intervals are figures (``<metric>_delta_vs_<model>``, ``_ci_low``, ``_ci_high``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import read_jsonl
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.evaluation import scoring
from tunekit.components.evaluation.bootstrap import paired_bootstrap
from tunekit.components.evaluation.gate import (
    BASE,
    CANDIDATE,
    CHAMPION,
    GatePolicy,
    all_failed,
    decide,
    describe_champion,
    load_champion,
    locate_champion,
)
from tunekit.components.evaluation.result import EvaluationResult, gate_markdown
from tunekit.components.model_clients.base import OK, GenerationConfig, ModelClient, Prompt
from tunekit.components.tuning.rewards import MATCH_KINDS, RewardSet, load_rewards, response_text

WARM_START = "warm_start"
MEAN_REWARD = "mean_reward"
TASK_ACCURACY = "task_accuracy"
#: The metrics the gate can compare.
GATE_METRICS = (MEAN_REWARD, TASK_ACCURACY)
BACKENDS = ("local", "vertex")
#: Sample answers the summary shows.
SUMMARY_SAMPLES = 5


def row_prompt(row: Mapping[str, Any]) -> Prompt:
    """A held-out row (Vertex's reinforcement layout) as the prompt every model is asked."""
    turns = [(str(c.get("role", "user")), response_text(c)) for c in row.get("contents") or []]
    system = response_text(row.get("systemInstruction") or {}) or None
    return Prompt(turns[-1][1], system=system, history=tuple(turns[:-1]))


def task_reward_index(rewards: RewardSet, task_reward: str) -> int:
    """The position of the task reward ('' for the first).

    Raises:
        UserError: No reward has that name.
    """
    if not task_reward:
        return 0
    names = [r.name for r in rewards.rewards]
    if task_reward not in names:
        raise UserError(
            f"no reward named '{task_reward}' in {rewards.source}; one of: {', '.join(names)}", field="task_reward"
        )
    return names.index(task_reward)


def success(rewards: RewardSet, index: int, value: float) -> float:
    """1.0 when the task reward's value is its best (``correct``, or 1 for the kinds without one), else 0.0."""
    reward = rewards.rewards[index]
    best = reward.correct if reward.kind in MATCH_KINDS else 1.0
    return 1.0 if value >= best - 1e-9 else 0.0


def score_models(
    rows: list[dict],
    models: Mapping[str, ModelClient],
    rewards: RewardSet,
    *,
    task_reward: str = "",
    max_output_tokens: int = 64,
    judge_clients: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every model's answers to the rows, each answer's rewards, the per-model metrics and per-row scores.

    Returns:
        ``metrics`` (model -> metric -> value), ``scores`` (model -> metric -> per-row values), ``statuses``
        (model -> status counts) and ``predictions`` (one dict per row).
    """
    index = task_reward_index(rewards, task_reward)
    scorers = rewards.scorers(judge_clients)
    config = GenerationConfig(max_output_tokens=max_output_tokens, temperature=0.0)
    prompts = [row_prompt(r) for r in rows]
    predictions = [
        {"line": r.get("line"), "prompt": p.text, "references": r.get("references")}
        for r, p in zip(rows, prompts, strict=True)
    ]
    metrics: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, list[float]]] = {}
    statuses: dict[str, dict[str, int]] = {}
    for name, client in models.items():
        generations = scoring.generate_with_progress(client, prompts, config, f"evaluation prompts ({name})")
        statuses[name] = dict(Counter(g.status for g in generations))
        per_row: dict[str, list[float]] = {MEAN_REWARD: [], TASK_ACCURACY: []}
        for reward in rewards.rewards:
            per_row[f"reward_{reward.name}"] = []
        for row, record, generation in zip(rows, predictions, generations, strict=True):
            text = generation.text if generation.status == OK else (generation.text or "")
            example = {k: v for k, v in row.items() if k != "line"}
            values = rewards.score(scorers, example, text)
            per_row[MEAN_REWARD].append(values["total"])
            per_row[TASK_ACCURACY].append(success(rewards, index, values[rewards.rewards[index].name]))
            for reward in rewards.rewards:
                per_row[f"reward_{reward.name}"].append(values[reward.name])
            record[name] = generation.text
            record[f"{name}_status"] = generation.status
            record[f"{name}_reward"] = values["total"]
            record[f"{name}_rewards"] = {k: v for k, v in values.items() if k != "total"}
        scores[name] = per_row
        metrics[name] = {key: (sum(v) / len(v) if v else 0.0) for key, v in per_row.items()}
    return {"metrics": metrics, "scores": scores, "statuses": statuses, "predictions": predictions}


def render_markdown(result: EvaluationResult, rewards: RewardSet) -> str:
    """The summary: each model's mean reward, task accuracy and per-reward means, the gate, a few samples."""
    models = list(result.metrics)
    keys = [MEAN_REWARD, TASK_ACCURACY, *[f"reward_{r.name}" for r in rewards.rewards]]
    lines = ["# Reinforcement tuning evaluation", "", "| metric | " + " | ".join(models) + " |"]
    lines.append("| --- |" + " --- |" * len(models))
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{result.metrics[m].get(key, 0.0):.4f}" for m in models) + " |")
    if result.figures:
        lines += ["", "| figure | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in result.figures.items()]
    lines += ["", gate_markdown(result.decision), "", "## Samples", ""]
    for record in result.predictions[:SUMMARY_SAMPLES]:
        lines.append(f"- prompt: `{record['prompt'][:120]}`")
        for model in models:
            lines.append(
                f"  - {model} ({record.get(f'{model}_reward', 0.0):+.3f}): `{str(record.get(model, ''))[:120]}`"
            )
    return "\n".join(lines) + "\n"


def _clients(
    backend: str,
    base_model: str,
    tuned: ModelRecord,
    tuned_path: str,
    warm: ModelRecord,
    project: str,
    location: str,
    cache_dir: str,
) -> dict[str, ModelClient]:
    if backend == "local":
        from tunekit.components.model_clients.hf import HFLocalClient

        models = {BASE: HFLocalClient(base_model), CANDIDATE: HFLocalClient(tuned_path)}
        if warm.get("warm_start"):
            models[WARM_START] = HFLocalClient(str(warm.get("model")))
        return models
    models = {
        BASE: scoring.vertex_client(base_model, project, location, cache_dir),
        CANDIDATE: scoring.vertex_client(tuned.endpoint, project, location, cache_dir, base_model=base_model),
    }
    if warm.get("warm_start") and warm.get("endpoint"):
        models[WARM_START] = scoring.vertex_client(
            str(warm.get("endpoint")), project, location, cache_dir, base_model=base_model
        )
    return models


def run_evaluate_reinforcement(
    *,
    backend: str,
    base_model: str,
    reward_config_uri: str,
    warm_model_path: str,
    tuned_model_path: str,
    eval_path: str,
    summary_path: str,
    predictions_path: str,
    max_eval_examples: int = 0,
    max_output_tokens: int = 64,
    gate_metric: str = MEAN_REWARD,
    task_reward: str = "",
    min_improvement: float = 0.0,
    project: str = "",
    location: str = "",
    purpose: str = "",
    local_registry: str = "",
    policy: GatePolicy | None = None,
    cache_dir: str = "",
    clients: dict[str, ModelClient] | None = None,
    judge_clients: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Scores base, warm start, tuned model and champion on the held-out prompts; decides whether to deploy.

    ``clients`` (tests) replaces the models' clients; ``judge_clients`` gives a client per judge reward (by
    default: locally its ``local_model``, on Vertex its Gemini model through the engine, cached in ``cache_dir``).
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")
    if gate_metric not in GATE_METRICS:
        raise UserError(
            f"gate_metric is one of {', '.join(GATE_METRICS)}, not '{gate_metric}'", field="gate_metric"
        )
    rewards = load_rewards(reward_config_uri)
    rows = read_jsonl(eval_path)
    if max_eval_examples:
        rows = rows[:max_eval_examples]
    if not rows:
        raise UserError("no held-out prompts to evaluate on", path=eval_path)
    policy = dataclasses.replace(policy or GatePolicy(), min_improvement=min_improvement)
    tuned = ModelRecord.read(tuned_model_path)
    warm = ModelRecord.read(warm_model_path)
    champion = locate_champion(
        purpose,
        backend=backend,
        model_uri=tuned_model_path,
        local_registry=local_registry,
        project=project,
        location=location,
    )
    models = (
        dict(clients)
        if clients
        else _clients(backend, base_model, tuned, tuned_model_path, warm, project, location, cache_dir)
    )
    champion_error = ""
    if CHAMPION not in models:
        client, champion_error = load_champion(
            champion, lambda c: scoring.champion_client(c, project=project, location=location, cache_dir=cache_dir)
        )
        if client is not None:
            models[CHAMPION] = client
    if judge_clients is None and backend == "vertex":
        judge_clients = {
            r.name: scoring.vertex_client(str(r.spec["model"]), project, location, cache_dir)
            for r in rewards.rewards
            if r.kind == "judge"
        }
    try:
        found = score_models(
            rows,
            models,
            rewards,
            task_reward=task_reward,
            max_output_tokens=max_output_tokens,
            judge_clients=judge_clients,
        )
    finally:
        for client in [*models.values(), *(judge_clients or {}).values()]:
            close = getattr(client, "close", None)
            if close is not None:
                close()
    metrics, scores = found["metrics"], found["scores"]
    if CHAMPION in scores:
        champion_error = champion_error or all_failed(found["statuses"][CHAMPION])
    has_champion = CHAMPION in scores and not champion_error
    decision = decide(
        metric=gate_metric,
        candidate_scores=scores[CANDIDATE][gate_metric],
        base_scores=scores[BASE][gate_metric],
        champion_scores=scores[CHAMPION][gate_metric] if has_champion else None,
        champion_label=describe_champion(champion),
        champion_error=champion_error,
        policy=policy,
    )
    figures: dict[str, float] = {"eval_prompts": float(len(rows))}
    other_metric = TASK_ACCURACY if gate_metric == MEAN_REWARD else MEAN_REWARD
    for other in (BASE, WARM_START, CHAMPION):
        if other not in scores or (other == CHAMPION and not has_champion):
            continue
        for metric in (other_metric, gate_metric) if other == WARM_START else (other_metric,):
            interval = paired_bootstrap(
                scores[CANDIDATE][metric],
                scores[other][metric],
                resamples=policy.resamples,
                confidence=policy.confidence,
                seed=policy.seed,
            )
            figures[f"{metric}_delta_vs_{other}"] = interval.delta
            figures[f"{metric}_ci_low_vs_{other}"] = interval.low
            figures[f"{metric}_ci_high_vs_{other}"] = interval.high
    result = EvaluationResult(
        method="reinforcement",
        primary_metric=gate_metric,
        decision=decision,
        metrics=metrics,
        figures=figures,
        predictions=found["predictions"],
        metadata={
            "rewards": [r.name for r in rewards.rewards],
            "task_reward": rewards.rewards[task_reward_index(rewards, task_reward)].name,
        },
        extras={"scores": scores, "statuses": found["statuses"]},
    )
    result.summary = render_markdown(result, rewards)
    result.write(predictions_path=predictions_path, summary_path=summary_path)
    return result

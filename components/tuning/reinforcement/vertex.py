"""Reinforcement tuning of Gemini on Vertex AI: ``REINFORCEMENT_TUNING`` with the reward file's reward config.

google-genai 2.34 sends a ``CreateTuningJobConfig`` with ``method=REINFORCEMENT_TUNING`` as a
``reinforcementTuningSpec`` (tunings.py ``_CreateTuningJobConfig_to_vertex``): the training data's URI as its
``trainingDatasetUri``, ``reward_config`` as ``singleRewardConfig`` or ``composite_reward_config`` as
``compositeRewardConfig``, and ``samples_per_prompt``, ``evaluate_interval``, ``checkpoint_interval``,
``max_output_tokens``, ``thinking_level``, epochs, adapter size and learning-rate multiplier as its
``hyperParameters``. A ``projects/...`` base model (the SFT warm start's tuned model) goes as ``preTunedModel``
(with ``checkpointId``): continuous tuning from a tuned model or one of its checkpoints.

The job goes through :func:`~tunekit.components.tuning.gemini.run_tuning_job` (request id label before the
create call, the job's name in the state file before any waiting): a retried step re-attaches to the job it
started and never pays twice.

:func:`validate_rewards` is the dry run before paying: ``client.tunings.validate_reward`` (``POST
{parent}/tuningJobs:validateReinforcementTuningReward``) scores sample responses on sample rows with the same
reward config the job will get; an ``error`` in the answer, or in a reward's ``rewardInfoDetails``, fails the step.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from google.genai import types

from tunekit.components.common import vertex_jobs
from tunekit.components.common.errors import UserError
from tunekit.components.tuning import gemini as gv
from tunekit.components.tuning.rewards import RewardSet

#: ``thinking_level`` values Vertex's reinforcement tuning takes (types.ReinforcementTuningThinkingLevel); '' unset.
THINKING_LEVELS = ("", "MINIMAL", "HIGH")


def build_reinforcement_config(
    *,
    rewards: dict[str, Any],
    samples_per_prompt: int | None = None,
    evaluate_interval: int | None = None,
    checkpoint_interval: int | None = None,
    max_output_tokens: int | None = None,
    thinking_level: str | None = None,
    pre_tuned_model_checkpoint_id: str | None = None,
    **fields: Any,
) -> types.CreateTuningJobConfig:
    """The ``CreateTuningJobConfig`` of a ``REINFORCEMENT_TUNING`` job, with only the fields that are set.

    Args:
        rewards: :meth:`RewardSet.to_vertex`'s ``reward_config`` or ``composite_reward_config``.
        samples_per_prompt: Responses sampled per prompt.
        evaluate_interval: Steps between evaluations (Vertex: once per epoch when unset).
        checkpoint_interval: Steps between checkpoints (Vertex: one per epoch when unset).
        max_output_tokens: The most tokens per sampled response (Vertex's default 32768).
        thinking_level: ``MINIMAL`` or ``HIGH`` (Gemini 3.5+; types.ReinforcementTuningHyperParameters).
        pre_tuned_model_checkpoint_id: A checkpoint of the start model other than its default one.
        fields: :func:`~tunekit.components.tuning.gemini.tuning_config`'s fields.

    Raises:
        UserError: A setting Vertex would refuse.
    """
    for name, value in (
        ("samples_per_prompt", samples_per_prompt),
        ("evaluate_interval", evaluate_interval),
        ("checkpoint_interval", checkpoint_interval),
        ("max_output_tokens", max_output_tokens),
    ):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise UserError(f"{name} must be a positive whole number, not {value!r}", field=name)
    if (thinking_level or "") not in THINKING_LEVELS:
        raise UserError(
            f"thinking_level is MINIMAL or HIGH ('' leaves it to Vertex), not {thinking_level!r}",
            field="thinking_level",
        )
    return gv.tuning_config(
        types.TuningMethod.REINFORCEMENT_TUNING,
        **rewards,
        samples_per_prompt=int(samples_per_prompt) if samples_per_prompt else None,
        evaluate_interval=int(evaluate_interval) if evaluate_interval else None,
        checkpoint_interval=int(checkpoint_interval) if checkpoint_interval else None,
        max_output_tokens=int(max_output_tokens) if max_output_tokens else None,
        thinking_level=types.ReinforcementTuningThinkingLevel(thinking_level) if thinking_level else None,
        pre_tuned_model_checkpoint_id=str(pre_tuned_model_checkpoint_id)
        if pre_tuned_model_checkpoint_id
        else None,
        **fields,
    )


def check_start_model(start_model: str) -> str:
    """The model a reinforcement job starts from: a tunable Gemini id, or a tuned model's resource name.

    Raises:
        UserError: Neither.
    """
    start_model = start_model.strip()
    if start_model.startswith("projects/"):
        if "/models/" not in start_model:
            raise UserError(
                f"'{start_model}' is not a tuned model's resource name (projects/P/locations/L/models/M@V)",
                field="start_model",
            )
        return start_model
    gv.check_base_model(start_model)
    return gv.normalize_base_model(start_model)


def tune_gemini_reinforcement(
    *,
    start_model: str,
    base_model: str,
    rewards: RewardSet,
    samples_per_prompt: int | None = None,
    evaluate_interval: int | None = None,
    checkpoint_interval: int | None = None,
    max_output_tokens: int | None = None,
    thinking_level: str | None = None,
    pre_tuned_model_checkpoint_id: str | None = None,
    **job: Any,
) -> gv.TunedGemini:
    """Runs one ``REINFORCEMENT_TUNING`` job from ``start_model`` and waits for it, creating at most one job.

    Args:
        start_model: A tunable Gemini id, or the SFT warm start's tuned model (``projects/.../models/M@V``).
        base_model: The Gemini model underneath (the tuned model's lineage).
        rewards: The reward file's rewards.
        samples_per_prompt: See :func:`build_reinforcement_config` (and the other hyperparameters).
        evaluate_interval: See :func:`build_reinforcement_config`.
        checkpoint_interval: See :func:`build_reinforcement_config`.
        max_output_tokens: See :func:`build_reinforcement_config`.
        thinking_level: See :func:`build_reinforcement_config`.
        pre_tuned_model_checkpoint_id: A checkpoint of ``start_model`` other than its default one.
        job: :func:`~tunekit.components.tuning.gemini.run_tuning_job`'s arguments (``project``, ``location``,
            ``training_dataset_uri``: prompts in Vertex's reinforcement layout, ``state_path``, labels, client...).

    Raises:
        UserError: Bad arguments (before any call), a state file of another request, or Vertex refused the job.
        TuningJobFailed: The job failed, was cancelled or expired.
    """
    start = check_start_model(start_model)
    gv.check_job_args(**job)
    reward_fields = rewards.to_vertex(project=job.get("project", ""), location=job.get("location", ""))
    return gv.run_tuning_job(
        functools.partial(
            build_reinforcement_config,
            rewards=reward_fields,
            samples_per_prompt=samples_per_prompt,
            evaluate_interval=evaluate_interval,
            checkpoint_interval=checkpoint_interval,
            max_output_tokens=max_output_tokens,
            thinking_level=thinking_level,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id,
        ),
        base_model=start,
        state_fields={"method": "REINFORCEMENT_TUNING", "gemini_base_model": base_model},
        tuned_base_model=base_model,
        kind="Reinforcement tuning job",
        **job,
    )


def validate_rewards(
    rewards: RewardSet,
    examples: Sequence[dict],
    responses: Sequence[str],
    *,
    project: str,
    location: str,
    client: Any = None,
) -> list[dict[str, Any]]:
    """``client.tunings.validate_reward`` of each sample response on its row: Vertex's dry run of the rewards.

    Returns:
        Per sample, ``overall`` (the weighted reward) and each reward's value by name.

    Raises:
        UserError: Vertex answered with an error, for the whole config or one reward (the reward named).
    """
    from tunekit.components.model_clients.vertex import make_genai_client

    client = client if client is not None else make_genai_client(project, location)
    reward_fields = rewards.to_vertex(project=project, location=location)
    configs = (
        {"single_reward_config": reward_fields["reward_config"]}
        if "reward_config" in reward_fields
        else {"composite_reward_config": reward_fields["composite_reward_config"]}
    )
    parent = f"projects/{project}/locations/{location}"
    results = []
    for index, (example, text) in enumerate(zip(examples, responses, strict=True)):
        answer = vertex_jobs.retry_transient(
            lambda example=example, text=text: client.tunings.validate_reward(
                parent=parent,
                sample_response=types.Content(role="model", parts=[types.Part(text=text)]),
                example=types.ReinforcementTuningExample.model_validate(example),
                **configs,
            )
        )
        if answer.error:
            raise UserError(
                f"Vertex's validate_reward refused the rewards on sample {index + 1}: {answer.error}",
                path=rewards.source,
            )
        values: dict[str, Any] = {"overall": answer.overall_reward}
        for name, info in (answer.reward_info_details or {}).items():
            if info.error_status is not None and info.error_status.message:
                reward = next((r for r in rewards.rewards if r.name == name), None)
                raise UserError(
                    f"Vertex's validate_reward: reward '{name}' failed on sample {index + 1}: "
                    f"{info.error_status.message}",
                    path=rewards.source,
                    line=reward.line if reward else None,
                    field=reward.where if reward else None,
                )
            values[name] = info.reward
        results.append(values)
    return results

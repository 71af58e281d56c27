"""Preference tuning of open models with TRL: SFT warm start, reward model, then RLOO with a KL penalty, or DPO.

The two ways (``algorithm``):

- ``rloo`` (RLHF): a reward model (TRL ``RewardTrainer``, a sequence-classification head on the policy's
  architecture, Bradley-Terry loss on chosen/rejected pairs) scores completions; the policy is then trained with
  TRL's ``RLOOTrainer`` (REINFORCE leave-one-out: several completions per prompt, each one's baseline is the mean
  reward of the others) on the reward minus ``beta`` times the KL divergence from the reference model (the policy
  before this step: the SFT warm start, or the base model);
- ``dpo``: TRL's ``DPOTrainer`` optimises the policy on the pairs directly (one stage, no reward model; ``beta`` is
  DPO's KL temperature). A reward model is still trained when evaluation needs a judge.

Input columns: pairs as :class:`~tunekit.components.data_validation.preference_convert.PreferencePair` (rendered
to TRL's ``prompt``/``chosen``/``rejected``), prompts as ``PromptRow`` (TRL's ``prompt``). A policy's prompts are
:func:`~tunekit.components.model_clients.hf.encode_prompt`'s text (:func:`~.hf.prompt_string`: its chat template
applied), the text evaluation and ``tunekit serve`` send; the reward model's are the bare prompt text it scores. Output: Hugging Face
model directories (``save_pretrained``, tokenizer included) and a ``training_log.json`` per stage.

Nothing is silently dropped: TRL filters over-long pairs out when ``max_length`` is set, so lengths are left
unset here and over-long texts are *truncated* by :func:`truncate_pairs`, which counts what it cut.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.data_validation.preference_convert import (
    PreferencePair,
    PromptRow,
    to_trl_pair,
)
from tunekit.components.model_clients.hf import prompt_string
from tunekit.components.model_clients.reward import RewardModelScorer, load_tokenizer
from tunekit.components.tuning import trainers

RLOO = "rloo"
DPO = "dpo"
ALGORITHMS = (RLOO, DPO)


@dataclass
class PreferenceLocalConfig:
    """Settings of the local (TRL) preference tuning; every field has a default sized for tiny CPU runs.

    Attributes:
        algorithm: ``rloo`` (reward model, then RL with a KL penalty) or ``dpo`` (one stage).
        sft_steps: Optimizer steps of the SFT warm start on the preferred answers (0: no warm start).
        reward_steps: Optimizer steps of the reward model.
        rl_steps: Optimizer steps of RLOO or DPO.
        sft_learning_rate: Learning rate of the warm start.
        reward_learning_rate: Learning rate of the reward model.
        rl_learning_rate: Learning rate of RLOO or DPO.
        batch_size: Pairs (or prompts) per step.
        beta: RLOO: the KL coefficient against the reference; DPO: its temperature beta.
        num_generations: RLOO: completions sampled per prompt (at least 2).
        max_prompt_chars: Prompts longer than this are truncated from the left (the end of a prompt matters most).
        max_completion_chars: Answers longer than this are truncated from the right.
        max_new_tokens: Tokens generated per completion (RLOO sampling and evaluation).
        temperature: Sampling temperature of RLOO's completions.
        seed: Seeds initialisation, sampling and data order.
        threads: torch CPU threads (small values keep shared machines responsive).
    """

    algorithm: str = RLOO
    sft_steps: int = 0
    reward_steps: int = 60
    rl_steps: int = 20
    sft_learning_rate: float = 1e-3
    reward_learning_rate: float = 5e-4
    rl_learning_rate: float = 1e-4
    batch_size: int = 8
    beta: float = 0.05
    num_generations: int = 4
    max_prompt_chars: int = 256
    max_completion_chars: int = 256
    max_new_tokens: int = 64
    temperature: float = 1.0
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreferenceLocalConfig:
        """Builds a config from a dict (pipeline ``local_options``), restoring ints that arrived as floats.

        Raises:
            UserError: An unknown key, or an algorithm this module does not know.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(
                f"unknown local option(s) {', '.join(unknown)}; known: {', '.join(known)}", field="local_options"
            )
        clean = {}
        for key, value in values.items():
            if known[key].type in (int, "int") and isinstance(value, float) and value.is_integer():
                value = int(value)
            clean[key] = value
        config = cls(**clean)
        if config.algorithm not in ALGORITHMS:
            raise UserError(f"unknown algorithm '{config.algorithm}'; use rloo or dpo", field="algorithm")
        if config.algorithm == RLOO and config.num_generations < 2:
            raise UserError(
                "RLOO needs num_generations >= 2 (the leave-one-out baseline)", field="num_generations"
            )
        return config


def truncate_pairs(
    pairs: list[PreferencePair], max_prompt_chars: int, max_completion_chars: int
) -> tuple[list[PreferencePair], int]:
    """Pairs with prompts cut from the left and answers from the right; returns them and how many were cut."""
    cut = 0
    out = []
    for pair in pairs:
        text = pair.text
        chosen, rejected = pair.chosen[:max_completion_chars], pair.rejected[:max_completion_chars]
        changed = len(text) > max_prompt_chars or chosen != pair.chosen or rejected != pair.rejected
        cut += changed
        clone = PreferencePair(
            turns=pair.turns, system=pair.system, line=pair.line, chosen=chosen, rejected=rejected
        )
        if len(text) > max_prompt_chars:
            clone.extra["prompt_text"] = text[-max_prompt_chars:]
        out.append(clone)
    return out, cut


def _prompt_text(row: PromptRow, max_chars: int) -> str:
    text = row.extra.get("prompt_text") if isinstance(row, PreferencePair) else None
    return (text or row.text)[-max_chars:]


def _policy_prompt(tokenizer: Any, row: PromptRow, max_chars: int) -> str:
    """The prompt a policy trains on: :func:`~tunekit.components.model_clients.hf.encode_prompt`'s text form.

    TRL gets it as a "standard" (string) dataset, so it applies no chat template of its own and tokenizes it with
    a plain ``tokenizer(prompt)`` call (trl 1.16.0 ``data_utils._tokenize``; ``DPOTrainer._prepare_dataset``,
    ``SFTTrainer`` and ``RLOOTrainer``/``GRPOTrainer._tokenize_prompts``): the ids are exactly those evaluation's
    :class:`~tunekit.components.model_clients.hf.HFLocalClient` and ``tunekit serve`` generate from, the model's
    own chat template included when its tokenizer has one, and a ``bos`` not written twice.
    """
    return prompt_string(tokenizer, _prompt_text(row, max_chars))


def _fit(
    trainer_class: Any,
    model: Any,
    args: Any,
    rows: list[dict],
    tokenizer: Any,
    output_dir: str,
    record: dict,
    **trainer_args: Any,
) -> dict:
    """Trains ``model`` on ``rows`` with a TRL trainer, saves it and its tokenizer to ``output_dir``.

    The stage's ``training_log.json`` there holds ``record`` and the trainer's log history, and is returned.
    """
    from datasets import Dataset

    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, **trainer_args
    )
    trainer.train()
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    history = [dict(entry) for entry in trainer.state.log_history]
    record = {**record, "log_history": history}
    with open(os.path.join(output_dir, "training_log.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return record


def train_sft(model_dir: str, pairs: list[PreferencePair], output_dir: str, config: PreferenceLocalConfig) -> dict:
    """Supervised warm start: the policy learns to write the preferred answers (TRL ``SFTTrainer``).

    Input columns: ``prompt`` (the rendered prompt), ``completion`` (the preferred answer); the loss is on the
    completion only. Output: the full model in ``output_dir``.
    """
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    trainers.set_threads(config.threads)
    tokenizer = load_tokenizer(model_dir)
    rows = [
        {"prompt": _policy_prompt(tokenizer, p, config.max_prompt_chars), "completion": p.chosen} for p in pairs
    ]
    args = SFTConfig(
        **trainers.trl_arguments(
            output_dir, config.sft_steps, config.sft_learning_rate, config.batch_size, config.seed
        ),
        max_length=None,
        completion_only_loss=True,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    record = {"stage": "sft", "rows": len(rows), "steps": config.sft_steps}
    return _fit(SFTTrainer, model, args, rows, tokenizer, output_dir, record)


def train_reward_model(
    model_dir: str, pairs: list[PreferencePair], output_dir: str, config: PreferenceLocalConfig
) -> dict:
    """A reward model on the pairs (TRL ``RewardTrainer``): a one-output classification head on ``model_dir``.

    Input columns: ``prompt``, ``chosen``, ``rejected``. Output: the reward model in ``output_dir``; its score of
    ``prompt + answer`` is the reward.
    """
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    trainers.set_threads(config.threads)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "right"
    rows = [{**to_trl_pair(p), "prompt": _prompt_text(p, config.max_prompt_chars)} for p in pairs]
    args = RewardConfig(
        **trainers.trl_arguments(
            output_dir, config.reward_steps, config.reward_learning_rate, config.batch_size, config.seed
        ),
        max_length=None,
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    record = {"stage": "reward_model", "rows": len(rows), "steps": config.reward_steps}
    return _fit(RewardTrainer, model, args, rows, tokenizer, output_dir, record)


def train_rloo(
    policy_dir: str, reward_dir: str, prompts: list[PromptRow], output_dir: str, config: PreferenceLocalConfig
) -> dict:
    """RL against the reward model with a KL penalty from the reference (TRL ``RLOOTrainer``).

    The reference is the policy as loaded from ``policy_dir``; the per-sequence reward is
    ``reward_model(prompt + completion) - beta * KL(policy || reference)``. Input column: ``prompt``. Output: the
    tuned policy in ``output_dir``.
    """
    from transformers import AutoModelForCausalLM
    from trl import RLOOConfig, RLOOTrainer

    trainers.set_threads(config.threads)
    tokenizer = load_tokenizer(policy_dir)
    scorer = RewardModelScorer(reward_dir)

    # The policy's prompts carry its chat template; the reward model (the evaluation's judge too) was trained on,
    # and scores, the bare prompt text.
    policy_prompts = [_policy_prompt(tokenizer, p, config.max_prompt_chars) for p in prompts]
    bare = dict(zip(policy_prompts, (_prompt_text(p, config.max_prompt_chars) for p in prompts), strict=True))

    def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        # A function rather than the module itself: TRL would score prompt + completion without the eos token
        # the reward model was trained with.
        return scorer([bare.get(p, p) for p in prompts], completions)

    rows = [{"prompt": prompt} for prompt in policy_prompts]
    batch = max(config.batch_size - config.batch_size % config.num_generations, config.num_generations)
    args = RLOOConfig(
        **trainers.trl_arguments(output_dir, config.rl_steps, config.rl_learning_rate, batch, config.seed),
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        beta=config.beta,
    )
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    record = {"stage": "rloo", "prompts": len(rows), "steps": config.rl_steps, "beta": config.beta}
    return _fit(RLOOTrainer, model, args, rows, tokenizer, output_dir, record, reward_funcs=reward_model)


def train_dpo(
    policy_dir: str, pairs: list[PreferencePair], output_dir: str, config: PreferenceLocalConfig
) -> dict:
    """Direct preference optimisation on the pairs (TRL ``DPOTrainer``), against the policy as loaded.

    Input columns: ``prompt``, ``chosen``, ``rejected``. Output: the tuned policy in ``output_dir``.
    """
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    trainers.set_threads(config.threads)
    tokenizer = load_tokenizer(policy_dir)
    rows = [{**to_trl_pair(p), "prompt": _policy_prompt(tokenizer, p, config.max_prompt_chars)} for p in pairs]
    args = DPOConfig(
        **trainers.trl_arguments(
            output_dir, config.rl_steps, config.rl_learning_rate, config.batch_size, config.seed
        ),
        max_length=None,
        beta=config.beta,
    )
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    record = {"stage": "dpo", "rows": len(rows), "steps": config.rl_steps, "beta": config.beta}
    return _fit(DPOTrainer, model, args, rows, tokenizer, output_dir, record)


def tune_preference_local(
    *,
    policy_dir: str,
    pairs: list[PreferencePair],
    prompts: list[PromptRow],
    policy_out: str,
    reward_out: str,
    config: PreferenceLocalConfig,
) -> dict:
    """The preference stage: reward model, then RLOO (``rloo``) or DPO (``dpo``) from ``policy_dir``.

    ``policy_dir`` is the reference: the SFT warm start, or the base model. RLOO samples from ``prompts`` (the
    pairs' prompts when none are given). The reward model is trained for both algorithms: it is the judge of the
    evaluation (win rate), and RLOO's reward.

    Returns:
        A record of the run (stages, counts, truncations, configs) also written to ``policy_out``.

    Raises:
        UserError: No pairs, or an unknown algorithm.
    """
    if not pairs:
        raise UserError("no preference pairs to train on", field="train_dataset_uri")
    pairs, truncated = truncate_pairs(pairs, config.max_prompt_chars, config.max_completion_chars)
    os.makedirs(policy_out, exist_ok=True)
    os.makedirs(reward_out, exist_ok=True)
    reward_log = train_reward_model(policy_dir, pairs, reward_out, config)
    if config.algorithm == RLOO:
        policy_log = train_rloo(policy_dir, reward_out, prompts or pairs, policy_out, config)
    elif config.algorithm == DPO:
        policy_log = train_dpo(policy_dir, pairs, policy_out, config)
    else:
        raise UserError(f"unknown algorithm '{config.algorithm}'; use rloo or dpo", field="algorithm")
    record = {
        "algorithm": config.algorithm,
        "pairs": len(pairs),
        "prompts": len(prompts or pairs),
        "truncated_pairs": truncated,
        "reference_model": policy_dir,
        "config": asdict(config),
        "reward_final_loss": _last(reward_log, "loss"),
        "policy_final_loss": _last(policy_log, "loss"),
    }
    with open(os.path.join(policy_out, "preference_tuning.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    return record


def _last(log: dict, key: str) -> float | None:
    values = [entry[key] for entry in log.get("log_history", []) if key in entry]
    return float(values[-1]) if values else None

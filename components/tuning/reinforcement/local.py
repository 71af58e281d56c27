"""Reinforcement tuning of open causal models with TRL: an optional SFT warm start, then GRPO on the reward file.

TRL's ``GRPOTrainer`` samples ``num_generations`` completions per prompt, scores each with the reward functions
(:meth:`~tunekit.components.tuning.rewards.RewardSet.trl_reward_funcs`, weighted as Vertex weighs them) and
moves the policy towards the completions that score above their group's mean, with a KL penalty ``beta`` against
the model it started from (the warm start, or the base model).

Input: prompts in Vertex's reinforcement layout (``contents``, ``systemInstruction``?, ``references``),
rendered to the plain text an open model sees (:func:`~tunekit.components.model_clients.hf.prompt_text`), then
to :func:`~tunekit.components.model_clients.hf.encode_prompt`'s text (the model's chat template when it has one):
the text evaluation and the deployed model see too. Output: Hugging Face model folders (``save_pretrained``,
tokenizer included) with a ``training_log.json`` in the run report's layout: the loss, and the mean reward and
each reward's mean per logged step as the curves.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import Prompt
from tunekit.components.model_clients.hf import prompt_string, prompt_text
from tunekit.components.model_clients.reward import load_tokenizer
from tunekit.components.tuning import trainers
from tunekit.components.tuning.rewards import RewardSet, example_json, response_text


@dataclass
class ReinforcementLocalConfig:
    """Settings of the local (TRL) reinforcement tuning; defaults sized for tiny CPU runs.

    Attributes:
        sft_steps: Optimizer steps of the SFT warm start (when it is enabled).
        rl_steps: Optimizer steps of GRPO.
        sft_learning_rate: Learning rate of the warm start.
        rl_learning_rate: Learning rate of GRPO.
        batch_size: Completions per GRPO step (a multiple of ``num_generations``), or SFT rows per step.
        num_generations: Completions sampled per prompt (at least 2: GRPO compares them with their group).
        beta: KL coefficient against the start model (0: no reference model is kept).
        max_new_tokens: Tokens per sampled completion.
        temperature: Sampling temperature of the completions.
        max_prompt_chars: Prompts longer than this lose their beginning (the end of a prompt matters most).
        seed: Seeds initialisation, sampling and data order.
        threads: torch CPU threads.
    """

    sft_steps: int = 100
    rl_steps: int = 20
    sft_learning_rate: float = 1e-3
    rl_learning_rate: float = 1e-5
    batch_size: int = 8
    num_generations: int = 4
    beta: float = 0.0
    max_new_tokens: int = 32
    temperature: float = 1.0
    max_prompt_chars: int = 512
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReinforcementLocalConfig:
        """A config from ``local_options`` (ints that arrived as floats restored).

        Raises:
            UserError: An unknown key, or settings GRPO cannot run with.
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
        if config.num_generations < 2:
            raise UserError(
                "GRPO needs num_generations >= 2 (each completion is compared with its group)",
                field="local_options.num_generations",
            )
        if config.batch_size < 1 or config.rl_steps < 1:
            raise UserError("batch_size and rl_steps must be at least 1", field="local_options")
        return config


def row_prompt(row: dict, max_chars: int = 0) -> str:
    """The text an open model sees for a reinforcement row (system, earlier turns, the user's last turn)."""
    contents = row.get("contents") or []
    turns = [(str(c.get("role", "user")), response_text(c)) for c in contents]
    system = response_text(row.get("systemInstruction") or {}) or None
    text = prompt_text(Prompt(turns[-1][1], system=system, history=tuple(turns[:-1])))
    return text[-max_chars:] if max_chars else text


def _tokenizer(model_dir: str):
    # With a pad token, left padding, and no eos appended to a prompt encoded alone (TRL encodes prompts on
    # their own; ByT5's tokenizer would end each with "end of sequence", unlike the prompts the model answers).
    return load_tokenizer(model_dir)


def write_training_log(output_dir: str, record: dict, history: list[dict]) -> dict:
    """``training_log.json``: the run report's curves (``log``: step, loss, rewards as ``task_losses``) and the raw log."""
    log = []
    for entry in history:
        if "step" not in entry or "loss" not in entry:
            continue
        curves = {
            key.replace("rewards/", "reward ").replace("/mean", ""): value
            for key, value in entry.items()
            if (key == "reward" or (key.startswith("rewards/") and key.endswith("/mean")))
            and isinstance(value, (int, float))
        }
        point = {"step": entry["step"], "loss": entry["loss"]}
        if curves:
            point["task_losses"] = curves
        log.append(point)
    summary = {k: v for k, v in record.items() if isinstance(v, (int, float, str))}
    out = {**record, "log": log, "summary": summary, "log_history": history}
    with open(os.path.join(output_dir, "training_log.json"), "w", encoding="utf-8") as handle:
        json.dump(out, handle, indent=2)
    return out


def train_sft(model_dir: str, rows: list[dict], output_dir: str, config: ReinforcementLocalConfig) -> dict:
    """The warm start: TRL ``SFTTrainer`` on ``prompt``/``completion`` rows (loss on the completion only).

    ``prompt`` is the rendered prompt (:func:`row_prompt`); the model trains on its
    :func:`~tunekit.components.model_clients.hf.encode_prompt` text (:func:`~.hf.prompt_string`), as GRPO does.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    if not rows:
        raise UserError("the warm start has no rows to train on", field="sft_dataset_uri")
    trainers.set_threads(config.threads)
    tokenizer = _tokenizer(model_dir)
    args = SFTConfig(
        **trainers.trl_arguments(
            output_dir, config.sft_steps, config.sft_learning_rate, config.batch_size, config.seed, log_every=20
        ),
        max_length=None,
        completion_only_loss=True,
    )
    rows = [{**row, "prompt": prompt_string(tokenizer, row["prompt"])} for row in rows]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {"stage": "sft", "rows": len(rows), "steps": config.sft_steps}
    return write_training_log(output_dir, record, [dict(e) for e in trainer.state.log_history])


def train_grpo(
    policy_dir: str,
    rows: list[dict],
    rewards: RewardSet,
    output_dir: str,
    config: ReinforcementLocalConfig,
    judge_clients: dict | None = None,
) -> dict:
    """GRPO from ``policy_dir`` on the prompt rows with the reward file's rewards (TRL ``GRPOTrainer``).

    Dataset columns: ``prompt`` (the rendered prompt) and ``references`` (the row's example as JSON text, which
    the reward functions read). Returns the training log (also ``training_log.json`` in ``output_dir``).
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    if not rows:
        raise UserError("no prompts to train on", field="train_dataset_uri")
    trainers.set_threads(config.threads)
    tokenizer = _tokenizer(policy_dir)
    funcs, weights = rewards.trl_reward_funcs(judge_clients)
    data = [
        {
            # encode_prompt's text (its chat template applied): TRL tokenizes this "standard" prompt with a plain
            # tokenizer(prompt) call (trl 1.16.0 GRPOTrainer._tokenize_prompts), no template of its own, so the
            # ids are those evaluation and `tunekit serve` generate from.
            "prompt": prompt_string(tokenizer, row_prompt(row, config.max_prompt_chars)),
            "references": example_json({k: v for k, v in row.items() if k != "line"}),
        }
        for row in rows
    ]
    batch = max(config.batch_size - config.batch_size % config.num_generations, config.num_generations)
    args = GRPOConfig(
        **trainers.trl_arguments(
            output_dir, config.rl_steps, config.rl_learning_rate, batch, config.seed, log_every=20
        ),
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        beta=config.beta,
        reward_weights=weights,
    )
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list(data),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {
        "stage": "grpo",
        "prompts": len(rows),
        "steps": config.rl_steps,
        "rewards": [r.name for r in rewards.rewards],
        "reward_weights": weights,
        "config": asdict(config),
        "reference_model": policy_dir,
    }
    return write_training_log(output_dir, record, [dict(e) for e in trainer.state.log_history])

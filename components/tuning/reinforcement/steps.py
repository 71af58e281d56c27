"""The reinforcement-tuning steps as plain functions of paths and values (the KFP wrappers call these).

Data between the steps (JSON Lines in output artifacts), every row in Vertex's reinforcement layout
(``contents``, ``systemInstruction``?, ``references``; :mod:`tunekit.components.data_validation.reinforcement`):

- ``train_prompts``: the prompts tuning samples from;
- ``eval_prompts``: held-out prompts (the user's ``eval_dataset_uri``, or ``eval_split`` of the prompts, seeded);
- ``sft_dataset``: the warm start's data in the Gemini SFT format (the user's supervised data, validated).

Models: ``warm_model`` (``tunekit_model.json``: ``model`` is where reinforcement tuning starts: the base model
when there is no warm start, a local folder or a Vertex tuned model) and ``tuned_model`` (a model folder, or on
Vertex the record of the tuned Gemini model).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import read_jsonl, write_jsonl
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.data_validation import formats
from tunekit.components.data_validation.reinforcement import read_prompt_rows, vertex_row
from tunekit.components.data_validation.steps import run_validation
from tunekit.components.tuning.rewards import RewardSet, dry_run, load_rewards

BACKENDS = ("local", "vertex")
#: The ``tunekit-method`` label of the jobs.
METHOD = "reinforcement-tuning"
#: Rows whose sample completions the rewards are dry-run on (locally; on Vertex, by validate_reward).
DRY_RUN_ROWS = 3


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")


def check_reward_file(uri: str, config: Any) -> None:
    """The config-time check of ``reward_config_uri``: the file parses and the run's backend can express it.

    A ``gs://`` file is read when the validation step runs; a local one here. The message names the reward file,
    its line and field.

    Raises:
        UserError: The first problem.
    """
    if not uri or "://" in uri or uri.startswith("/gcs/"):
        return
    try:
        load_rewards(uri).check_backend(config.backend)
    except UserError as exc:
        raise UserError(exc.format()) from None


def sample_completions(rewards: RewardSet, row: dict) -> list[str]:
    """Completions to dry-run the rewards on for one row: an empty answer, and each reference as the answer."""
    references = row.get("references") or {}
    return ["", *[str(references[key]) for key in rewards.references() if key in references]]


def local_config(options: dict | None, **overrides: Any):
    """The local trainer's config from ``local_options`` and the pipeline's own parameters (0 or '': default)."""
    from tunekit.components.tuning.reinforcement.local import ReinforcementLocalConfig

    values = dict(options or {})
    values.update({k: v for k, v in overrides.items() if v not in (0, 0.0, "", None)})
    return ReinforcementLocalConfig.from_dict(values)


def run_validate_reinforcement(
    *,
    train_dataset_uri: str,
    eval_dataset_uri: str,
    sft_dataset_uri: str,
    reward_config_uri: str,
    backend: str,
    warm_start: bool,
    eval_split: float,
    seed: int,
    train_path: str,
    eval_path: str,
    sft_path: str,
    report_path: str,
    project: str = "",
    location: str = "",
    client: Any = None,
) -> dict[str, Any]:
    """Checks the prompts and the reward file, dry-runs the rewards, and writes the steps' data.

    Every reference a reward reads must be in every row (train and held-out). The rewards are dry-run on sample
    completions of the first rows: locally each reward function runs; on Vertex ``validate_reward`` scores them
    with the reward config the job will get. The warm start's supervised data is validated when given.

    Returns:
        Counts and the dry run, also written as the validation report (``report_path``, JSON).

    Raises:
        UserError: A bad row (file, line, field), a reward the backend cannot express, a reward failing on a
            sample, too few prompts to hold some out.
    """
    _check_backend(backend)
    rewards = load_rewards(reward_config_uri)
    rewards.check_backend(backend)
    needed = rewards.references()
    with uris.local_copy(train_dataset_uri) as local:
        rows = read_prompt_rows(local, needed)
    if eval_dataset_uri:
        with uris.local_copy(eval_dataset_uri) as local:
            held_out = read_prompt_rows(local, needed)
    else:
        if not 0.0 < eval_split < 1.0:
            raise UserError(
                f"no held-out prompts were given and eval_split is {eval_split}; give eval_dataset_uri or set "
                "0 < eval_split < 1",
                field="eval_split",
            )
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(rows) * eval_split))
        if len(rows) - n_eval < 1:
            raise UserError(f"{len(rows)} prompt(s) cannot be split for evaluation; give more", field="eval_split")
        chosen = set(order[:n_eval])
        held_out = [r for i, r in enumerate(rows) if i in chosen]
        rows = [r for i, r in enumerate(rows) if i not in chosen]
    write_jsonl(train_path, [vertex_row(r) for r in rows])
    write_jsonl(eval_path, [vertex_row(r) for r in held_out])

    samples = rows[:DRY_RUN_ROWS]
    examples = [vertex_row(r) for r in samples for _ in sample_completions(rewards, r)]
    completions = [c for r in samples for c in sample_completions(rewards, r)]
    if backend == "vertex":
        from tunekit.components.tuning.reinforcement.vertex import validate_rewards

        values = validate_rewards(
            rewards, examples, completions, project=project, location=location, client=client
        )
    else:
        values = dry_run(rewards, examples, completions)
    dry = [{"line": None, "completion": c, "rewards": v} for c, v in zip(completions, values, strict=True)]

    sft_rows = 0
    if warm_start:
        if not sft_dataset_uri:
            raise UserError("the warm start needs supervised data: set sft_dataset_uri", field="sft_dataset_uri")
        normalised = os.path.join(os.path.dirname(os.path.abspath(report_path)), "sft_normalised")
        run_validation(
            {"train": sft_dataset_uri},
            method="supervised",
            task="",
            base_model="",
            strict=False,
            report_path=os.path.join(os.path.dirname(os.path.abspath(report_path)), "sft_report.json"),
            html_path=os.path.join(os.path.dirname(os.path.abspath(report_path)), "sft_report.html"),
            log_metric=lambda *_: None,
            normalised_dir=normalised,
        )
        sft = read_jsonl(os.path.join(normalised, "train.jsonl"))
        sft_rows = len(sft)
        write_jsonl(sft_path, sft)
    else:
        write_jsonl(sft_path, [])
    counts = {"train_prompts": len(rows), "eval_prompts": len(held_out), "sft_rows": sft_rows}
    report = {
        "ok": True,
        "method": "reinforcement",
        "task": "",
        "model": "",
        "strict": False,
        "errors": 0,
        "warnings": 0,
        "summary": {
            "files": {
                "train": {
                    "path": train_dataset_uri,
                    "format": "reinforcement",
                    "rows": len(rows) + (0 if eval_dataset_uri else len(held_out)),
                    "valid_rows": len(rows) + (0 if eval_dataset_uri else len(held_out)),
                },
                **(
                    {
                        "validation": {
                            "path": eval_dataset_uri,
                            "format": "reinforcement",
                            "rows": len(held_out),
                            "valid_rows": len(held_out),
                        }
                    }
                    if eval_dataset_uri
                    else {}
                ),
            }
        },
        "findings": [],
        "rewards": {
            "file": reward_config_uri,
            "names": [r.name for r in rewards.rewards],
            "kinds": {r.name: r.kind for r in rewards.rewards},
            "weights": {r.name: r.weight for r in rewards.rewards},
            "references": needed,
            "dry_run": dry,
            "dry_run_by": "vertex validate_reward" if backend == "vertex" else "local reward functions",
        },
        "counts": counts,
    }
    os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
    with open(report_path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=str)
    return {**counts, "dry_run_samples": len(dry)}


def run_warm_start(
    *,
    backend: str,
    base_model: str,
    enabled: bool,
    sft_path: str,
    sft_uri: str,
    model_path: str,
    model_metadata: dict,
    sft_steps: int = 0,
    epoch_count: int = 0,
    adapter_size: int = 0,
    learning_rate_multiplier: float = 0.0,
    tuned_model_display_name: str = "",
    labels: dict | None = None,
    encryption_key: str = "",
    output_uri: str = "",
    local_options: dict | None = None,
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    poll_interval_s: float = 30.0,
) -> dict[str, Any]:
    """The optional supervised warm start (Google recommends it before reinforcement tuning).

    Disabled: records the base model as where reinforcement tuning starts. Local: TRL SFT into ``model_path``.
    Vertex: a ``SUPERVISED_FINE_TUNING`` job (re-attaching on retry through ``model_path/tuning_state.json``);
    reinforcement tuning continues from its tuned model.
    """
    _check_backend(backend)
    os.makedirs(model_path, exist_ok=True)
    if not enabled:
        info = {
            "backend": backend,
            "warm_start": False,
            "skipped": True,
            "model": base_model,
            "base_model": base_model,
        }
    elif backend == "local":
        from tunekit.components.tuning.reinforcement.local import row_prompt, train_sft

        config = local_config(local_options, sft_steps=sft_steps)
        rows = []
        for example in formats.load_examples(sft_path)[1]:
            turns = [{"role": t.role, "parts": [{"text": t.text}]} for t in example.prompt_turns]
            system = {"parts": [{"text": example.system}]} if example.system else None
            prompt = row_prompt({"contents": turns, **({"systemInstruction": system} if system else {})})
            rows.append({"prompt": prompt, "completion": example.target or ""})
        log = train_sft(base_model, rows, model_path, config)
        info = {
            "backend": "local",
            "warm_start": True,
            "model": model_path,
            "base_model": base_model,
            "sft_rows": log["rows"],
            "sft_steps": log["steps"],
        }
    else:
        from tunekit.components.tuning.gemini import sft_warm_start

        info = sft_warm_start(locals(), method=METHOD)
    return ModelRecord.from_dict(info).write(model_path, model_metadata)


def run_tune_reinforcement(
    *,
    backend: str,
    base_model: str,
    reward_config_uri: str,
    warm_model_path: str,
    train_path: str,
    train_uri: str,
    eval_uri: str,
    model_path: str,
    model_metadata: dict,
    rl_steps: int = 0,
    batch_size: int = 0,
    samples_per_prompt: int = 0,
    beta: float = 0.0,
    epoch_count: int = 0,
    adapter_size: int = 0,
    learning_rate_multiplier: float = 0.0,
    evaluate_interval: int = 0,
    checkpoint_interval: int = 0,
    rl_max_output_tokens: int = 0,
    thinking_level: str = "",
    pre_tuned_model_checkpoint_id: str = "",
    tuned_model_display_name: str = "",
    labels: dict | None = None,
    encryption_key: str = "",
    output_uri: str = "",
    local_options: dict | None = None,
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    poll_interval_s: float = 30.0,
    client: Any = None,
) -> dict[str, Any]:
    """Reinforcement tuning from the warm start (or the base model) with the reward file's rewards.

    Local: TRL GRPO (``samples_per_prompt`` completions per prompt, KL weight ``beta``). Vertex: a
    ``REINFORCEMENT_TUNING`` job continuing from the warm start's tuned model (or the base model), the held-out
    prompts as its validation data, re-attaching on retry through ``model_path/tuning_state.json``.
    """
    _check_backend(backend)
    rewards = load_rewards(reward_config_uri)
    start = ModelRecord.read(warm_model_path)
    start_model = start.get("model") or base_model
    os.makedirs(model_path, exist_ok=True)
    if backend == "local":
        from tunekit.components.tuning.reinforcement.local import train_grpo

        config = local_config(
            local_options,
            rl_steps=rl_steps,
            batch_size=batch_size,
            num_generations=samples_per_prompt,
            beta=beta,
            max_new_tokens=rl_max_output_tokens,
        )
        log = train_grpo(start_model, read_jsonl(train_path), rewards, model_path, config)
        info = {
            "backend": "local",
            "base_model": base_model,
            "reference_model": start_model,
            "model_dir": model_path,
            "algorithm": "grpo",
            "rl_steps": config.rl_steps,
            "num_generations": config.num_generations,
            "beta": config.beta,
            "train_prompts": log["prompts"],
            "rewards": ",".join(r.name for r in rewards.rewards),
        }
    else:
        from tunekit.components.tuning.gemini import job_options, jsonl_dataset_uri
        from tunekit.components.tuning.reinforcement.vertex import tune_gemini_reinforcement

        options = job_options(locals(), method=METHOD, stage="reinforcement", validation_dataset_uri=None)
        if client is not None:
            options["client"] = client
        result = tune_gemini_reinforcement(
            start_model=start_model,
            base_model=start.get("base_model") or base_model,
            rewards=rewards,
            training_dataset_uri=jsonl_dataset_uri(train_uri, train_path),
            samples_per_prompt=samples_per_prompt or None,
            evaluate_interval=evaluate_interval or None,
            checkpoint_interval=checkpoint_interval or None,
            max_output_tokens=rl_max_output_tokens or None,
            thinking_level=thinking_level or None,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id or None,
            **{**options, "validation_dataset_uri": jsonl_dataset_uri(eval_uri) or None},
        )
        info = {"backend": "vertex", "reference_model": start_model, "algorithm": "REINFORCEMENT_TUNING"}
        info.update(result.to_dict())
    return ModelRecord.from_dict(info).write(model_path, model_metadata)

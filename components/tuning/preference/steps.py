"""The preference-tuning steps as plain functions of paths and values (the KFP wrappers call these).

Data between the steps (JSON Lines files in output artifacts):

- ``preference_dataset``: training pairs in the Gemini preference format (``contents`` ending with the user's
  turn, ``completions`` scored 1 and 0), what Vertex's ``PREFERENCE_TUNING`` reads and what the local trainers
  parse;
- ``eval_pairs``: held-out pairs, same format;
- ``prompt_dataset``: RL prompts as ``{"systemInstruction"?, "contents"}``;
- ``sft_dataset``: the warm start's data in the Gemini SFT format (the preferred answers, or the user's own SFT
  data).

Models: ``warm_model`` is a folder with ``tunekit_model.json`` (``model``: the model preference tuning starts
from: the base model when there is no warm start, a local directory or a Vertex tuned model) and, locally, the
model's files; ``tuned_model`` and ``reward_model`` are model folders (or, on Vertex, ``tunekit_model.json``
records of the tuned Gemini model).
"""

from __future__ import annotations

import os
import random
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import read_jsonl, write_jsonl
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.data_validation import formats
from tunekit.components.data_validation.preference_convert import (
    PreferencePair,
    PromptRow,
    gemini_contents,
    pair_to_gemini,
    read_pairs,
    read_prompts,
    to_gemini_sft,
    with_system_instruction,
)
from tunekit.components.data_validation.steps import run_validation

BACKENDS = ("local", "vertex")
#: The ``tunekit-method`` label of the jobs.
METHOD = "preference-tuning"


def _prompt_record(prompt: PromptRow) -> dict:
    return with_system_instruction({"contents": gemini_contents(prompt.turns)}, prompt.system)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")


def run_prepare_preference(
    *,
    validated_dir: str,
    prompt_dataset_uri: str,
    sft_dataset_uri: str,
    eval_split: float,
    seed: int,
    preference_path: str,
    eval_path: str,
    prompt_path: str,
    sft_path: str,
    reports_dir: str,
) -> dict[str, Any]:
    """Builds the step inputs from the validated pairs (``validated_dir``/``train.jsonl``, ``validation.jsonl``).

    Without held-out pairs, ``eval_split`` of the training pairs is held out (seeded). The optional prompt and
    SFT datasets are validated here (reports under ``reports_dir``) and fail the step when invalid, before any
    tuning. Every valid row is used: nothing is dropped.

    Returns:
        Counts: ``train_pairs``, ``eval_pairs``, ``prompts``, ``sft_rows``, ``held_out`` (0/1).

    Raises:
        UserError: Too few pairs to hold some out, or the optional data is invalid.
    """
    pairs = read_pairs(os.path.join(validated_dir, "train.jsonl"))
    validation_file = os.path.join(validated_dir, "validation.jsonl")
    held_out_pairs = read_pairs(validation_file) if os.path.exists(validation_file) else []
    held_out = not held_out_pairs
    if held_out:
        if not 0.0 < eval_split < 1.0:
            raise UserError(
                f"no evaluation pairs were given and eval_split is {eval_split}; give eval_dataset_uri or set "
                "0 < eval_split < 1",
                field="eval_split",
            )
        order = list(range(len(pairs)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(pairs) * eval_split))
        if len(pairs) - n_eval < 1:
            raise UserError(f"{len(pairs)} pair(s) cannot be split for evaluation; give more", field="eval_split")
        chosen = set(order[:n_eval])
        held_out_pairs = [p for i, p in enumerate(pairs) if i in chosen]
        pairs = [p for i, p in enumerate(pairs) if i not in chosen]
    write_jsonl(preference_path, [pair_to_gemini(p) for p in pairs])
    write_jsonl(eval_path, [pair_to_gemini(p) for p in held_out_pairs])

    reports: dict[str, str] = {}
    if prompt_dataset_uri:
        _validate_extra(prompt_dataset_uri, "preference", "prompts", reports_dir)
        with uris.local_copy(prompt_dataset_uri) as local:
            prompts = read_prompts(local)
        reports["prompts"] = prompt_dataset_uri
    else:
        prompts = list(pairs)
    write_jsonl(prompt_path, [_prompt_record(p) for p in prompts])

    if sft_dataset_uri:
        normalised = os.path.join(reports_dir, "sft_normalised")
        _validate_extra(sft_dataset_uri, "supervised", "sft", reports_dir, normalised_dir=normalised)
        sft_rows = read_jsonl(os.path.join(normalised, "train.jsonl"))
    else:
        sft_rows = [to_gemini_sft(p) for p in pairs]
    write_jsonl(sft_path, sft_rows)
    return {
        "train_pairs": len(pairs),
        "eval_pairs": len(held_out_pairs),
        "prompts": len(prompts),
        "sft_rows": len(sft_rows),
        "held_out": int(held_out),
    }


def _validate_extra(uri: str, method: str, name: str, reports_dir: str, normalised_dir: str | None = None) -> None:
    os.makedirs(reports_dir, exist_ok=True)
    run_validation(
        {"train": uri},
        method=method,
        task="",
        base_model="",
        strict=False,
        report_path=os.path.join(reports_dir, f"{name}_report.json"),
        html_path=os.path.join(reports_dir, f"{name}_report.html"),
        log_metric=lambda *_: None,
        normalised_dir=normalised_dir,
    )


def local_config(options: dict, **overrides: Any):
    """The local trainer's config from ``local_options`` and the pipeline's own parameters.

    A parameter of 0 or '' leaves the :class:`~tunekit.components.tuning.preference.local.PreferenceLocalConfig` default.
    """
    from tunekit.components.tuning.preference.local import PreferenceLocalConfig

    values = dict(options or {})
    values.update({k: v for k, v in overrides.items() if v not in (0, 0.0, "", None)})
    return PreferenceLocalConfig.from_dict(values)


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
    """The optional supervised warm start on the preferred answers.

    Disabled: records the base model as the start of preference tuning. Local: TRL SFT into ``model_path``.
    Vertex: a ``SUPERVISED_FINE_TUNING`` job (re-attaching on retry through ``model_path/tuning_state.json``);
    its tuned model is where ``PREFERENCE_TUNING`` continues.
    """
    _check_backend(backend)
    os.makedirs(model_path, exist_ok=True)
    if not enabled:
        info = {"backend": backend, "warm_start": False, "model": base_model, "base_model": base_model}
    elif backend == "local":
        from tunekit.components.tuning.preference.local import train_sft

        config = local_config(local_options or {}, sft_steps=sft_steps)
        if not config.sft_steps:
            config.sft_steps = 100
        pairs = [
            PreferencePair(turns=e.prompt_turns, system=e.system, line=e.line, chosen=e.target or "")
            for e in formats.load_examples(sft_path)[1]
        ]
        log = train_sft(base_model, pairs, model_path, config)
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


def run_tune_preference(
    *,
    backend: str,
    algorithm: str,
    base_model: str,
    warm_model_path: str,
    preference_path: str,
    preference_uri: str,
    eval_uri: str,
    prompt_path: str,
    model_path: str,
    model_metadata: dict,
    reward_path: str,
    reward_metadata: dict,
    beta: float = 0.0,
    epoch_count: int = 0,
    adapter_size: int = 0,
    learning_rate_multiplier: float = 0.0,
    pre_tuned_model_checkpoint_id: str = "",
    tuned_model_display_name: str = "",
    labels: dict | None = None,
    encryption_key: str = "",
    output_uri: str = "",
    reward_steps: int = 0,
    rl_steps: int = 0,
    batch_size: int = 0,
    local_options: dict | None = None,
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    poll_interval_s: float = 30.0,
) -> dict[str, Any]:
    """Preference tuning from the warm start (or the base model).

    Local: reward model, then RLOO with a KL penalty against the start model, or DPO (``algorithm``). Vertex: a
    ``PREFERENCE_TUNING`` job continuing from the warm start's tuned model (``beta``, epochs, adapter size),
    re-attaching on retry through ``model_path/tuning_state.json``; no reward model is trained there (the
    evaluation's autorater judges).
    """
    _check_backend(backend)
    start = ModelRecord.read(warm_model_path)
    start_model = start.get("model") or base_model
    os.makedirs(model_path, exist_ok=True)
    os.makedirs(reward_path, exist_ok=True)
    if backend == "local":
        from tunekit.components.tuning.preference.local import tune_preference_local

        config = local_config(
            local_options or {},
            algorithm=algorithm,
            beta=beta,
            reward_steps=reward_steps,
            rl_steps=rl_steps,
            batch_size=batch_size,
        )
        record = tune_preference_local(
            policy_dir=start_model,
            pairs=read_pairs(preference_path),
            prompts=read_prompts(prompt_path),
            policy_out=model_path,
            reward_out=reward_path,
            config=config,
        )
        info = {
            "backend": "local",
            "base_model": base_model,
            "reference_model": start_model,
            "model_dir": model_path,
            "algorithm": config.algorithm,
            "beta": config.beta,
            "train_pairs": record["pairs"],
            "truncated_pairs": record["truncated_pairs"],
        }
        reward_info = {
            "backend": "local",
            "model_dir": reward_path,
            "reward_final_loss": record["reward_final_loss"],
        }
    else:
        from tunekit.components.tuning import cost
        from tunekit.components.tuning.gemini import job_options, jsonl_dataset_uri
        from tunekit.components.tuning.preference.vertex import tune_gemini_preference

        # The bill before the job: 2 x prompt + completions, counted by countTokens, x epochs x the price.
        gemini = start.get("base_model") or base_model
        # The data is read where this step sees it: its local copy, or the /gcs mount of its URI on Vertex.
        readable = preference_path or (preference_uri if os.path.isfile(preference_uri) else "")
        estimate = None
        if readable:
            estimate = cost.vertex_estimate(
                gemini, readable, epoch_count, project=project, location=location, preference=True
            )
        else:
            print(
                "tuning cost: no readable copy of the preference data here; the billed tokens are recorded after the job"
            )
        result = tune_gemini_preference(
            start_model=start_model,
            base_model=start.get("base_model") or base_model,
            training_dataset_uri=jsonl_dataset_uri(preference_uri, preference_path),
            beta=beta or None,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id or None,
            **job_options(
                locals(), method=METHOD, stage="preference", validation_dataset_uri=jsonl_dataset_uri(eval_uri)
            ),
        )
        info = {"backend": "vertex", "reference_model": start_model, "algorithm": "PREFERENCE_TUNING"}
        info.update(result.to_dict())
        # ... and after it: the billed tokens of the job's tuning_data_stats.
        info.update(
            cost.vertex_billed(
                estimate, result.job_name, project=project, location=location, model=gemini, epochs=epoch_count
            )
        )
        reward_info = {"backend": "vertex", "note": "Vertex preference tuning trains no separate reward model"}
    ModelRecord.from_dict(reward_info).write(reward_path, reward_metadata)
    return ModelRecord.from_dict(info).write(model_path, model_metadata)

"""The supervised-tuning steps as plain functions of paths and values (the KFP wrappers call these).

Artifacts are passed as ``(path, metadata)``: the wrapper hands over ``artifact.path`` and ``artifact.metadata``
(a dict the step fills in), and ``artifact.uri`` where a remote service must read the data.
"""

from __future__ import annotations

import os
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.model_record import ModelRecord
from tunekit.components.tuning import defaults, prepare


def run_prepare(
    *,
    backend: str,
    normalised_dir: str,
    validation_split: float,
    train_path: str,
    validation_path: str,
    train_metadata: dict,
    validation_metadata: dict,
) -> prepare.PreparedData:
    """Renders validation's normalised rows for ``backend`` into the two output files.

    ``normalised_dir`` is the validation step's ``normalised_dataset``: ``train.jsonl`` (the valid training rows)
    and, when validation data was given, ``validation.jsonl``; without it ``validation_split`` of the training
    rows is held out. Reading what validation checked (instead of the user's files again) means the rows tuned on
    are the rows validated, even when the files under the URIs change during the run.
    """
    train_local = os.path.join(normalised_dir, "train.jsonl")
    validation_local = os.path.join(normalised_dir, "validation.jsonl")
    if not os.path.isfile(train_local):
        raise UserError("the validation step wrote no training rows; run validate-data first", path=train_local)
    result = prepare.prepare_supervised(
        train_local,
        validation_local if os.path.isfile(validation_local) else None,
        backend=backend,
        train_out=train_path,
        validation_out=validation_path,
        validation_split=validation_split,
    )
    layout = "gemini" if backend == "vertex" else "prompt_completion"
    train_metadata.update(
        rows=result.train_rows, layout=layout, source_format=result.source_format, fingerprint=result.fingerprint
    )
    validation_metadata.update(rows=result.validation_rows, layout=layout, held_out=result.held_out)
    return result


def run_tune(
    *,
    backend: str,
    base_model: str,
    task: str,
    train_path: str,
    train_uri: str,
    validation_path: str,
    validation_uri: str,
    model_path: str,
    model_metadata: dict,
    tuned_model_display_name: str = "",
    epoch_count: int = 0,
    learning_rate_multiplier: float = 0.0,
    adapter_size: int = 0,
    labels: dict | None = None,
    encryption_key: str = "",
    output_uri: str = "",
    train_steps: int = 0,
    learning_rate: float = 0.0,
    batch_size: int = 0,
    lora_rank: int = 0,
    local_options: dict | None = None,
    project: str = "",
    location: str = "",
    pipeline_job_name: str = "",
    poll_interval_s: float = 30.0,
    tuning_mode: str = "",
    custom_base_model: str = "",
    start_from: str = "",
    pre_tuned_model_checkpoint_id: str = "",
) -> dict[str, Any]:
    """Tunes ``base_model`` on the prepared data with the chosen backend; fills ``model_metadata``.

    Vertex (:func:`~tunekit.components.tuning.supervised.vertex.tune_vertex`: Gemini, an open model, or
    continuous tuning from ``start_from``): the tuning job's name is written to ``model_path/tuning_state.json``
    before waiting, so a retried step re-attaches to the job it started instead of paying for a second one.
    Local: LoRA with transformers and PEFT; the adapter and tokenizer are written under ``model_path``.
    """
    defaults.check_task(task)
    vertex_only = {
        "start_from": start_from,
        "pre_tuned_model_checkpoint_id": pre_tuned_model_checkpoint_id,
        "tuning_mode": tuning_mode,
        "custom_base_model": custom_base_model,
    }
    for name, value in vertex_only.items():
        if value and backend != "vertex":
            # Never dropped silently: the local trainer has no such option.
            raise UserError(f"{name} is a Vertex AI tuning setting; backend is {backend}", field=name)
    os.makedirs(model_path, exist_ok=True)
    if backend == "vertex":
        from tunekit.components.tuning import cost

        # The bill before the job: counted tokens x epochs x the dated price (printed; recorded below).
        estimate = cost.vertex_estimate(base_model, train_path, epoch_count, project=project, location=location)
        from tunekit.components.tuning.gemini import job_options
        from tunekit.components.tuning.supervised.vertex import tune_vertex

        # Gemini, an open model (managed open-model tuning) or a tuned model to continue from (start_from).
        summary = tune_vertex(
            base_model=base_model,
            train_path=train_path,
            train_uri=train_uri,
            validation_path=validation_path,
            validation_uri=validation_uri,
            job=job_options(locals(), method="supervised-tuning"),
            start_from=start_from,
            pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id,
            tuning_mode=tuning_mode,
            learning_rate=learning_rate,
            batch_size=batch_size,
            custom_base_model=custom_base_model,
        )
        # ... and after it: the billed tokens of the job's tuning_data_stats.
        summary.update(
            cost.vertex_billed(estimate, summary.get("job_name", ""), project=project, location=location)
        )
    elif backend == "local":
        from tunekit.components.tuning.lora import LocalTuningConfig
        from tunekit.components.tuning.lora import local_options as local_options_of
        from tunekit.components.tuning.supervised.local import tune_local

        options = local_options_of(
            local_options,
            LocalTuningConfig,
            default_steps=defaults.default_train_steps(task),
            train_steps=train_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            lora_rank=lora_rank,
        )
        config = LocalTuningConfig.from_dict(options)
        every = max(1, config.max_steps // 20) if config.max_steps else 10
        from tunekit.components.tuning import cost

        # The bill before training: the tokenizer's count x the run's epochs (unpriced: no per-token price here).
        estimate = cost.local_estimate(base_model, train_path, config)

        def progress(step: int, total: int, loss: float) -> None:
            if step == 1 or step % every == 0 or step == total:
                print(f"training step {step}/{total}  loss {loss:.4f}", flush=True)

        training = tune_local(
            base_model, train_path, validation_path or None, model_path, config, progress=progress
        )
        summary = {"backend": "local", "base_model": base_model, "model_dir": model_path, "training": training}
        summary.update(cost.cost_record(estimate, None))
    else:
        raise UserError(f"unknown backend '{backend}'; use 'vertex' or 'local'", field="backend")
    return ModelRecord.from_dict(summary).write(model_path, model_metadata)

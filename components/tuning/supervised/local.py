"""Supervised tuning of open models on this machine: Hugging Face transformers + PEFT LoRA, CPU or GPU.

The loop is a plain torch loop (AdamW, linear warm-up and decay, gradient clipping), which keeps the behaviour
the same across transformers releases and makes every step's loss easy to report.

Input columns (JSON Lines, one row per example), either:

- ``prompt`` and ``completion``: already rendered (the output of data validation), or
- any supervised format :func:`~tunekit.components.data_validation.formats.load_examples` reads (text pairs
  ``input_text``/``output_text``, chat ``messages``, Gemini ``contents``), rendered with
  :func:`~tunekit.components.data_validation.formats.to_prompt_completion`.

The loss is on the completion only: a seq2seq model reads the prompt with its encoder and is trained to decode
the completion; a causal model reads prompt + completion and the prompt's positions are masked out of the loss.

Output (in ``output_dir``):

- the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``; it includes any ``modules_to_save``)
  and the tokenizer. The adapter records the base model's path; load it with
  ``HFLocalClient(base_model, adapter_dir=output_dir)``. With ``merge_adapter=True`` a full merged model is
  written instead (bigger, but it loads with ``HFLocalClient(output_dir)`` and any transformers code).
- ``training_log.json``: the config, the loss of every logging window, eval losses, the summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.hf import resolve_device
from tunekit.components.tuning.lora import (
    TRAINING_LOG,
    LocalTuningConfig,
    ProgressCallback,
    _Features,
    add_lora,
    autocast,
    collate,
    featurize,
    load_for_training,
    optimizer_and_schedule,
    optimizer_step,
    planned_steps,
    read_prompt_completions,
    resolve_precision,
    trainable_parameters,
)


def _evaluate(model: Any, features: list[_Features], pad_id: int, device: str, config: LocalTuningConfig, dtype):
    """Token-weighted mean loss over ``features``."""
    import torch

    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(features), config.eval_batch_size):
            batch = collate(features[start : start + config.eval_batch_size], pad_id, device)
            with autocast(dtype):
                logits = model(**{k: v for k, v in batch.items() if k != "labels"}, labels=batch["labels"]).logits
            labels = batch["labels"]
            if not model.config.is_encoder_decoder:
                # Causal models predict token t+1 at position t.
                logits, labels = logits[:, :-1], labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += loss.item()
            tokens += int((labels != -100).sum())
    model.train()
    return total / max(tokens, 1)


def tune_local(
    base_model: str,
    train_path: str,
    validation_path: str | None,
    output_dir: str,
    config: LocalTuningConfig,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Fine-tunes a local seq2seq or causal model with LoRA on prompt/completion data.

    Args:
        base_model: A local model directory (config, weights, tokenizer), e.g. a downloaded
            ``google/flan-t5-base`` or one written by :func:`~tunekit.components.tuning.tiny.make_tiny_model`.
        train_path: Training JSON Lines (see the module docstring for its columns).
        validation_path: Validation JSON Lines, or None for no validation loss.
        output_dir: Where the adapter (or merged model), tokenizer and ``training_log.json`` are written.
        config: Hyperparameters.
        progress: Called as ``progress(step, total_steps, loss)`` after every optimizer step.

    Returns:
        A summary: ``train_loss`` (mean of the last logging window), ``eval_loss`` (None without validation
        data), ``steps``, ``train_examples``, ``wall_seconds`` (training loop only), ``examples_per_second``,
        ``truncated_prompts``, ``device``, ``output_dir``, ``adapter`` (False when a merged model was written).

    Raises:
        UserError: A path is missing, a file is malformed, or a setting is invalid.
    """
    import torch

    if not os.path.isdir(base_model):
        raise UserError("base model directory not found; give a local model directory", path=base_model)
    if config.max_steps <= 0 and config.epochs <= 0:
        raise UserError("set max_steps or epochs to a positive number", field="max_steps")
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    train_rows = read_prompt_completions(train_path)
    validation_rows = read_prompt_completions(validation_path) if validation_path else []

    model, tokenizer, pad_id, is_encoder_decoder = load_for_training(base_model, dtype, config.seed)
    model = add_lora(model, config, is_encoder_decoder)
    trainable = trainable_parameters(model, device)

    train_features = featurize(train_rows, tokenizer, is_encoder_decoder=is_encoder_decoder, config=config)
    validation_features = featurize(
        validation_rows, tokenizer, is_encoder_decoder=is_encoder_decoder, config=config
    )
    total_steps = planned_steps(config, len(train_features))
    optimizer, scheduler, scaler = optimizer_and_schedule(trainable, config, total_steps, dtype)
    generator = torch.Generator().manual_seed(config.seed)

    def batches():
        """Endless shuffled batches, reshuffled every epoch."""
        while True:
            order = torch.randperm(len(train_features), generator=generator).tolist()
            for start in range(0, len(order), config.batch_size):
                yield [train_features[i] for i in order[start : start + config.batch_size]]

    log: list[dict[str, Any]] = []
    eval_log: list[dict[str, Any]] = []
    window_loss, window_steps, last_loss = 0.0, 0, float("nan")
    examples_seen = 0
    stream = batches()
    started = time.perf_counter()
    for step in range(1, total_steps + 1):
        step_loss = 0.0
        for _ in range(config.gradient_accumulation_steps):
            features = next(stream)
            batch = collate(features, pad_id, device)
            with autocast(dtype):
                loss = model(**batch).loss / config.gradient_accumulation_steps
            scaler.scale(loss).backward()
            step_loss += loss.item()
            examples_seen += len(features)
        optimizer_step(optimizer, scheduler, scaler, trainable, config)
        window_loss += step_loss
        window_steps += 1
        if step % config.logging_steps == 0 or step == total_steps:
            last_loss = window_loss / window_steps
            log.append(
                {
                    "step": step,
                    "epoch": round(examples_seen / len(train_features), 3),
                    "loss": last_loss,
                    "learning_rate": scheduler.get_last_lr()[0],
                }
            )
            window_loss, window_steps = 0.0, 0
        if validation_features and config.eval_steps > 0 and step % config.eval_steps == 0 and step < total_steps:
            eval_log.append(
                {"step": step, "eval_loss": _evaluate(model, validation_features, pad_id, device, config, dtype)}
            )
        if progress is not None:
            progress(step, total_steps, step_loss)
    wall = time.perf_counter() - started
    eval_loss = None
    if validation_features:
        eval_loss = _evaluate(model, validation_features, pad_id, device, config, dtype)
        eval_log.append({"step": total_steps, "eval_loss": eval_loss})

    os.makedirs(output_dir, exist_ok=True)
    if config.merge_adapter:
        model.merge_and_unload().save_pretrained(output_dir)
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    summary = {
        "train_loss": last_loss,
        "eval_loss": eval_loss,
        "steps": total_steps,
        "train_examples": len(train_features),
        "validation_examples": len(validation_features),
        "wall_seconds": round(wall, 3),
        "examples_per_second": round(examples_seen / wall, 3) if wall > 0 else None,
        "truncated_prompts": sum(f.truncated for f in train_features + validation_features),
        "device": device,
        "output_dir": output_dir,
        "adapter": not config.merge_adapter,
    }
    with open(os.path.join(output_dir, TRAINING_LOG), "w", encoding="utf-8") as handle:
        json.dump(
            {
                "base_model": base_model,
                "is_encoder_decoder": is_encoder_decoder,
                "config": dataclasses.asdict(config),
                "log": log,
                "eval": eval_log,
                "summary": summary,
            },
            handle,
            indent=2,
        )
    return summary

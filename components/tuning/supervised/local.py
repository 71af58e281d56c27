"""Supervised tuning of open models on this machine or a GPU job: PEFT LoRA on the field's trainers.

Causal models train with TRL's ``SFTTrainer`` and encoder-decoder models with transformers' ``Seq2SeqTrainer``;
their set-up (arguments from :class:`~tunekit.components.tuning.lora.LocalTuningConfig`, progress, checkpoints
and resume, the training log) is :mod:`tunekit.components.tuning.trainers`. The same call trains on one CPU, one
GPU, or one process per device under ``torchrun``.

Input columns (JSON Lines, one row per example), either:

- ``prompt`` and ``completion``: already rendered (the output of data validation), or
- any supervised format :func:`~tunekit.components.data_validation.formats.load_examples` reads (text pairs
  ``input_text``/``output_text``, chat ``messages``, Gemini ``contents``), rendered with
  :func:`~tunekit.components.data_validation.formats.to_prompt_completion`.

The rows are tokenised the way prediction reads them (:func:`~tunekit.components.tuning.lora.featurize`), and
the loss is on the completion only: a seq2seq model reads the prompt with its encoder and is trained to decode
the completion; a causal model reads prompt + completion and the prompt's positions are masked out of the loss.

Output (in ``output_dir``):

- the LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``; it includes any ``modules_to_save``)
  and the tokenizer. The adapter records the base model's path; load it with
  ``HFLocalClient(base_model, adapter_dir=output_dir)``. With ``merge_adapter=True`` a full merged model is
  written instead (bigger, but it loads with ``HFLocalClient(output_dir)`` and any transformers code).
- ``training_log.json``: the config, the trainer's log history (``log``: the loss of every logging window;
  ``eval``: the validation losses), the summary.
- while training, ``checkpoints/`` (see :mod:`~tunekit.components.tuning.trainers`), deleted at the end.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.hf import resolve_device
from tunekit.components.tuning import trainers
from tunekit.components.tuning.lora import (
    LocalTuningConfig,
    ProgressCallback,
    add_lora,
    featurize,
    load_for_training,
    read_prompt_completions,
    resolve_precision,
)


def _dataset(features: list) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"input_ids": f.input_ids, "labels": f.labels} for f in features])


def build_trainer(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    eval_dataset: Any,
    output_dir: str,
    config: LocalTuningConfig,
    *,
    is_encoder_decoder: bool,
    device: str,
    dtype: Any,
    callbacks: list | None = None,
) -> Any:
    """The library trainer of a supervised run: ``Seq2SeqTrainer`` (encoder-decoder) or TRL's ``SFTTrainer``.

    The datasets are already tokenised (``input_ids`` and ``labels`` with -100 on the prompt), so neither trainer
    re-renders the text: what is trained is exactly what :func:`~tunekit.components.tuning.lora.featurize` built.
    """
    common = {"device": device, "dtype": dtype, "has_eval": eval_dataset is not None}
    if is_encoder_decoder:
        from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

        if config.packing:
            raise UserError(
                "packing is for causal models; an encoder-decoder model reads one input at a time", field="packing"
            )
        args = trainers.training_arguments(config, output_dir, arguments_class=Seq2SeqTrainingArguments, **common)
        trainer = Seq2SeqTrainer(
            model=model,
            args=args,
            data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    else:
        from trl import SFTConfig, SFTTrainer

        args = trainers.training_arguments(
            config,
            output_dir,
            arguments_class=SFTConfig,
            packing=config.packing,
            # The rows are cut to these lengths when tokenised; the packed sequences are this long.
            max_length=config.max_input_length + config.max_target_length if config.packing else None,
            completion_only_loss=True,
            **common,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    return trainers.quiet(trainer)


def tune_local(
    base_model: str,
    train_path: str,
    validation_path: str | None,
    output_dir: str,
    config: LocalTuningConfig,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Fine-tunes a local seq2seq or causal model with LoRA on prompt/completion data.

    A run that finds complete checkpoints of itself (same settings and data) in ``output_dir`` resumes from the
    last one. Under ``torchrun`` every process calls this; only the main one writes the outputs.

    Args:
        base_model: A local model directory (config, weights, tokenizer), e.g. a downloaded
            ``google/flan-t5-base`` or one written by :func:`~tunekit.components.tuning.tiny.make_tiny_model`.
        train_path: Training JSON Lines (see the module docstring for its columns).
        validation_path: Validation JSON Lines, or None for no validation loss.
        output_dir: Where the adapter (or merged model), tokenizer and ``training_log.json`` are written.
        config: Hyperparameters.
        progress: Called as ``progress(step, total_steps, loss)`` after every optimizer step (``loss``: the last
            logging window's).

    Returns:
        A summary: ``train_loss`` (mean of the last logging window), ``eval_loss`` (None without validation
        data), ``steps``, ``train_examples``, ``wall_seconds`` (training only), ``examples_per_second``,
        ``truncated_prompts``, ``device``, ``processes``, ``resumed_from`` (the checkpoint's step, 0 for a fresh
        run), ``output_dir``, ``adapter`` (False when a merged model was written).

    Raises:
        UserError: A path is missing, a file is malformed, or a setting is invalid.
    """
    if not os.path.isdir(base_model):
        raise UserError("base model directory not found; give a local model directory", path=base_model)
    if config.max_steps <= 0 and config.epochs <= 0:
        raise UserError("set max_steps or epochs to a positive number", field="max_steps")
    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    train_rows = read_prompt_completions(train_path)
    validation_rows = read_prompt_completions(validation_path) if validation_path else []

    model, tokenizer, _, is_encoder_decoder = load_for_training(base_model, dtype, config.seed)
    model = trainers.upcast_trainable(add_lora(model, config, is_encoder_decoder))
    if config.gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings' outputs must carry gradients through it

    train_features = featurize(train_rows, tokenizer, is_encoder_decoder=is_encoder_decoder, config=config)
    validation_features = featurize(
        validation_rows, tokenizer, is_encoder_decoder=is_encoder_decoder, config=config
    )
    trainer = build_trainer(
        model,
        tokenizer,
        _dataset(train_features),
        _dataset(validation_features) if validation_features else None,
        output_dir,
        config,
        is_encoder_decoder=is_encoder_decoder,
        device=device,
        dtype=dtype,
        callbacks=[step := trainers.step_callback(progress)],
    )
    run = trainers.fingerprint("supervised", config, base_model, train_path)
    metrics = trainers.train(trainer, run)
    log, eval_log = trainers.split_log_history(trainer.state.log_history)
    eval_loss = trainers.final_eval_loss(trainer, eval_log)

    main = trainer.is_world_process_zero()
    if main:
        os.makedirs(output_dir, exist_ok=True)
        if config.merge_adapter:
            trainer.model.merge_and_unload().save_pretrained(output_dir)
        else:
            trainer.model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    summary = {
        "train_loss": log[-1]["loss"] if log else step.last_loss,
        "eval_loss": eval_loss,
        "steps": trainer.state.global_step,
        "train_examples": len(train_features),
        "validation_examples": len(validation_features),
        "wall_seconds": round(metrics["train_runtime"], 3),
        "examples_per_second": round(metrics["train_samples_per_second"], 3),
        "truncated_prompts": sum(f.truncated for f in train_features + validation_features),
        "device": device,
        "processes": trainers.world_size(),
        "resumed_from": metrics["resumed_from"],
        "output_dir": output_dir,
        "adapter": not config.merge_adapter,
    }
    if main:
        trainers.write_training_log(
            output_dir,
            {
                "base_model": base_model,
                "is_encoder_decoder": is_encoder_decoder,
                "trainer": type(trainer).__name__,
                "config": dataclasses.asdict(config),
                "log": log,
                "eval": eval_log,
                "summary": summary,
            },
        )
    if not config.keep_checkpoints:
        trainers.clear_checkpoints(trainer)
    return summary

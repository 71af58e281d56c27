"""What the open-model trainers share: Hugging Face ``Trainer`` set-up, checkpoints and resume, the training log.

Supervised tuning trains with TRL's ``SFTTrainer`` (causal models) or transformers' ``Seq2SeqTrainer``
(encoder-decoder models); the distillation student with a ``Trainer`` subclass that only overrides the loss. They
all get from here:

- :func:`training_arguments`: the trainer's arguments from a
  :class:`~tunekit.components.tuning.lora.LocalTuningConfig` (the documented fields keep their meaning: batch size
  per process, accumulation, learning rate with linear warm-up and decay, clipping, precision, logging and
  evaluation intervals, seed);
- :class:`StepCallback`: progress (:mod:`tunekit.components.common.progress`, and a ``progress(step, total, loss)``
  function), a loss logged at the last step, and the mark that makes a checkpoint complete;
- :func:`resume_point`: the last complete checkpoint of the same run in the step's output folder, so a retried or
  re-run step resumes instead of starting from step 0;
- :func:`train`: resume, train, and clear the checkpoints once the model is saved;
- :func:`split_log_history` and :func:`write_training_log`: ``training_log.json`` from the trainer's log history.

Checkpoints go to ``<output_dir>/checkpoints/checkpoint-<step>`` (on Vertex AI the step's output is a ``gs://``
folder mounted at ``/gcs``, so they outlive the container). Hugging Face's ``Trainer`` writes a checkpoint file by
file (``Trainer._save_checkpoint``: model, optimizer, scheduler, RNG state, then ``trainer_state.json``) and calls
``on_save`` after the last one; :class:`StepCallback` then writes :data:`COMPLETE` into the folder. A folder
without it was cut short by a kill and is never resumed from (nor is a folder of a run with other settings or
data: :data:`RUN_FILE` records the run's fingerprint).

The same code runs under ``torchrun --nproc_per_node N`` (one process per device, gloo on CPU, NCCL on GPUs): the
``Trainer`` reads the launcher's environment, shards the batches and averages the gradients; only the main process
writes the model, the log and the checkpoints' marks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from tunekit.components.common import progress as progress_lines
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state, write_text
from tunekit.components.tuning.lora import TRAINING_LOG, TRAINING_STEPS, LocalTuningConfig

#: The checkpoints' folder inside a step's output folder.
CHECKPOINTS = "checkpoints"
#: Written into a checkpoint folder once every file of it is written.
COMPLETE = "tunekit_checkpoint.json"
#: The fingerprint of the run the checkpoints belong to.
RUN_FILE = "tunekit_run.json"

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: Fields that change how often the run logs, evaluates or saves, or where it runs, not what it learns.
_NOT_FINGERPRINTED = {
    "logging_steps",
    "eval_steps",
    "eval_batch_size",
    "save_steps",
    "save_total_limit",
    "keep_checkpoints",
    "merge_adapter",
    "device",
}


def world_size() -> int:
    """Processes training together (``WORLD_SIZE`` set by ``torchrun``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def checkpoint_folder(output_dir: str) -> str:
    """Where the checkpoints of a run writing to ``output_dir`` go."""
    return os.path.join(output_dir, CHECKPOINTS)


def training_arguments(
    config: LocalTuningConfig,
    output_dir: str,
    *,
    device: str,
    dtype: Any,
    has_eval: bool,
    arguments_class: type | None = None,
    **extra: Any,
) -> Any:
    """The trainer's arguments for ``config``; checkpoints under :func:`checkpoint_folder` of ``output_dir``.

    Args:
        config: The run's hyperparameters.
        output_dir: The step's output folder.
        device: ``cpu`` or ``cuda`` (resolved).
        dtype: The 16-bit dtype of the run, or None for float32 (from
            :func:`~tunekit.components.tuning.lora.resolve_precision`).
        has_eval: Whether there is validation data (``eval_steps`` then evaluates during training).
        arguments_class: ``TrainingArguments`` or a subclass (``SFTConfig``, ``Seq2SeqTrainingArguments``).
        extra: Fields of ``arguments_class`` beyond the config's (``packing``, ``max_length``, ...).

    Raises:
        UserError: A setting out of range.
    """
    import torch
    from transformers import TrainingArguments

    for name in ("batch_size", "gradient_accumulation_steps", "logging_steps", "eval_batch_size"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be at least 1, not {getattr(config, name)}", field=name)
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise UserError(f"warmup_ratio must be in [0, 1), not {config.warmup_ratio}", field="warmup_ratio")
    if config.save_steps < 0 or config.save_total_limit < 1:
        raise UserError("save_steps must be 0 or more and save_total_limit at least 1", field="save_steps")
    if config.max_steps <= 0 and config.epochs <= 0:
        raise UserError("set max_steps or epochs to a positive number", field="max_steps")
    arguments_class = arguments_class or TrainingArguments
    evaluate = has_eval and config.eval_steps > 0
    values: dict[str, Any] = {
        "output_dir": checkpoint_folder(output_dir),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "lr_scheduler_type": "linear",
        # A float below 1 is a share of the steps (TrainingArguments.warmup_steps).
        "warmup_steps": config.warmup_ratio,
        "max_grad_norm": config.max_grad_norm,
        "max_steps": config.max_steps if config.max_steps > 0 else -1,
        "num_train_epochs": config.epochs,
        "seed": config.seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": device == "cpu",
        "gradient_checkpointing": config.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if config.gradient_checkpointing else None,
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "eval_strategy": "steps" if evaluate else "no",
        "eval_steps": config.eval_steps if evaluate else None,
        "prediction_loss_only": True,
        "save_strategy": "steps",
        # 0: every tenth of the run (a float below 1 is a share of the steps), or at the eval interval when the
        # checkpoints are kept for the evaluation's checkpoint selection.
        "save_steps": config.save_steps
        if config.save_steps > 0
        else (config.eval_steps if config.keep_checkpoints and evaluate else 0.1),
        "save_total_limit": config.save_total_limit,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": device.startswith("cuda"),
        # Every trainable weight takes part in every step (LoRA, modules_to_save, or the whole model).
        "ddp_find_unused_parameters": False,
    }
    values.update(extra)
    return arguments_class(**values)


def upcast_trainable(model: Any) -> Any:
    """Keeps the weights that train in float32 (under 16-bit autocast bf16 is too coarse for their updates)."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def fingerprint(method: str, config: LocalTuningConfig, base_model: str, *paths: str) -> str:
    """What a checkpoint must match to be resumed from: the method, the settings that shape training, the data."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_FINGERPRINTED}
    digest = hashlib.sha256(json.dumps([method, settings, os.path.abspath(base_model)], sort_keys=True).encode())
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _checkpoints(folder: str) -> list[tuple[int, str]]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in names if (m := _CHECKPOINT.match(n))]
    return sorted(p for p in found if os.path.isdir(p[1]))


def is_complete(path: str, step: int) -> bool:
    """Whether the checkpoint folder ``path`` of ``step`` was written to the end (it holds :data:`COMPLETE`)."""
    try:
        mark = read_state(os.path.join(path, COMPLETE), what="checkpoint mark")
    except UserError:
        return False
    return mark.get("step") == step and os.path.isfile(os.path.join(path, "trainer_state.json"))


def last_complete_checkpoint(folder: str) -> str | None:
    """The complete checkpoint of the highest step in ``folder``, or None."""
    for step, path in reversed(_checkpoints(folder)):
        if is_complete(path, step):
            return path
    return None


def resume_point(args: Any, run: str) -> str | None:
    """The checkpoint a run with fingerprint ``run`` resumes from, after clearing what cannot be resumed.

    The main process runs first (``args.main_process_first``): it deletes checkpoint folders left half-written by
    a kill, and every checkpoint of another run (other settings or data) in the folder, then records ``run``; the
    other processes then find the same checkpoint.
    """
    folder = args.output_dir
    with args.main_process_first(desc="checkpoints", local=False):
        if args.process_index == 0:
            recorded = read_state(os.path.join(folder, RUN_FILE), what="run fingerprint").get("run")
            if recorded != run and _checkpoints(folder):
                print(
                    f"checkpoints in {folder} are of another run (other settings or data): starting over",
                    flush=True,
                )
                shutil.rmtree(folder, ignore_errors=True)
            for step, path in _checkpoints(folder):
                if not is_complete(path, step):
                    shutil.rmtree(path, ignore_errors=True)
            write_state(os.path.join(folder, RUN_FILE), {"run": run})
        found = last_complete_checkpoint(folder)
    return found


class StepCallback:
    """Progress after every optimizer step, a log at the last step, and the completeness mark of checkpoints.

    Built by :func:`step_callback` (a ``transformers.TrainerCallback``); this class holds its logic.

    Args:
        progress: Called as ``progress(step, total_steps, loss)`` after each optimizer step, on the main process;
            ``loss`` is that of the last logging window (NaN before the first).
    """

    def __init__(self, progress: Callable[[int, int, float], None] | None = None):
        self.progress = progress
        self.last_loss = float("nan")
        self._pending: int | None = None

    def _report(self, state: Any) -> None:
        progress_lines.report(TRAINING_STEPS, state.global_step, state.max_steps)
        if self.progress is not None:
            self.progress(state.global_step, state.max_steps, self.last_loss)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """After each optimizer step: progress now, or with the loss when this step logs."""
        if state.global_step >= state.max_steps:
            control.should_log = True  # the last window is logged even when it is shorter than logging_steps
        if state.is_world_process_zero:
            if control.should_log:
                self._pending = state.global_step  # reported with the loss, in on_log
            else:
                self._report(state)
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping | None = None, **kwargs: Any) -> Any:
        """Keeps the logged loss; reports the step that waited for it."""
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        if self._pending is not None and state.is_world_process_zero:
            self._pending = None
            self._report(state)
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """After the trainer wrote a checkpoint's last file: marks the checkpoint complete."""
        if state.is_world_process_zero:
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            write_state(os.path.join(path, COMPLETE), {"step": state.global_step})
        return control


def step_callback(progress: Callable[[int, int, float], None] | None = None) -> Any:
    """A ``TrainerCallback`` doing what :class:`StepCallback` describes."""
    from transformers import TrainerCallback

    class _Callback(StepCallback, TrainerCallback):
        pass

    return _Callback(progress)


def quiet(trainer: Any) -> Any:
    """Drops the trainer's printing of every log dict (progress lines and the training log say it all)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def train(trainer: Any, run: str) -> dict[str, Any]:
    """Trains, resuming from the last complete checkpoint of the same run.

    Returns:
        The trainer's train metrics (``train_runtime``, ``train_samples_per_second``, ...) and ``resumed_from``
        (the checkpoint's step, or 0).
    """
    checkpoint = resume_point(trainer.args, run)
    if checkpoint is not None and trainer.is_world_process_zero():
        print(f"resuming from {checkpoint}", flush=True)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(output.metrics)
    metrics["resumed_from"] = int(_CHECKPOINT.match(os.path.basename(checkpoint)).group(1)) if checkpoint else 0
    return metrics


def clear_checkpoints(trainer: Any) -> None:
    """Deletes the run's checkpoints once the trained model is saved (the main process; the others wait)."""
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)


def split_log_history(history: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trainer's log history as training-loss entries and evaluation entries (the end-of-run summary dropped)."""
    log = [dict(e) for e in history if "loss" in e and "step" in e]
    evals = [dict(e) for e in history if "eval_loss" in e and "step" in e]
    return log, evals


def final_eval_loss(trainer: Any, evals: list[dict[str, Any]]) -> float | None:
    """The validation loss at the last step: the one logged there, else a new evaluation (which is logged)."""
    if trainer.eval_dataset is None:
        return None
    step = trainer.state.global_step
    if not (evals and evals[-1]["step"] == step):
        trainer.evaluate()
        evals.append(dict(trainer.state.log_history[-1]))
    value = evals[-1]["eval_loss"]
    return None if value is None or math.isnan(value) else float(value)


def write_training_log(output_dir: str, payload: dict[str, Any]) -> None:
    """Writes ``training_log.json`` (``log``, ``eval``, ``summary`` and what the caller adds) whole."""
    write_text(os.path.join(output_dir, TRAINING_LOG), json.dumps(payload, indent=2))


# -- the TRL trainers of preference and reinforcement tuning (CPU, short, no checkpoints) -------------------------


def set_threads(threads: int) -> None:
    """Torch's intra-op threads for a local TRL run (at least 1)."""
    import torch

    torch.set_num_threads(max(1, threads))


def trl_arguments(
    output_dir: str, steps: int, learning_rate: float, batch_size: int, seed: int, *, log_every: int = 10
) -> dict:
    """The ``TrainingArguments`` fields the local TRL trainers share (preference and reinforcement tuning).

    ``steps`` at a constant learning rate on the CPU, no checkpoints, about ``log_every`` log lines a run.
    """
    return {
        "output_dir": output_dir,
        "max_steps": steps,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "logging_steps": max(1, steps // log_every),
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "use_cpu": True,
        "disable_tqdm": True,
        "lr_scheduler_type": "constant",
        "dataloader_num_workers": 0,
    }

"""Distilling step-by-step, student side: the multi-task student dataset and the open-model student trainer.

The student learns two tasks on the same inputs (Hsieh et al., 2023): predicting the label and generating the
teacher's rationale, told apart by a task prefix (``predict: `` / ``explain: `` by default), with the loss
``alpha * label_loss + (1 - alpha) * rationale_loss``. At serving time only the label task runs, so the rationales
cost nothing there. Two other modes exist for comparison: ``standard`` (label only) and ``cot`` (the target is the
rationale followed by the answer, so the student reasons at serving time too).

Input columns of :func:`build_student_examples` (the output of rationale extraction, one row per input):

- ``input_text`` (str): the input (``input``, ``question`` or ``text`` are accepted too).
- ``output_text`` (str, optional): the gold label; it wins over any teacher label.
- ``teacher_label`` (str, optional) and ``label_source`` (``teacher``, optional): a label from the
  teacher-labelling step (which also writes it into ``output_text``; ``label_source`` tells it from a gold one).
- ``teacher_answer`` (str | None) and ``status`` (str): the answer parsed from the teacher's chain of thought;
  used as the label of rows that have neither of the above when ``status`` is ``ok``.
- ``rationale`` (str) and ``rationale_kept`` (bool): the teacher's rationale and whether it is fit for training.
  Rows whose rationale was dropped still train the label task.

Output columns (one JSON line per training example; the open-model trainer and the Gemini converter read them):

- ``prompt`` (str): the task prefix and the input (no prefix in ``standard`` and ``cot`` modes).
- ``completion`` (str): the label, the rationale, or (``cot``) the rationale then ``So the answer is <label>.``.
- ``task`` (str): ``label``, ``rationale`` or ``cot``.
- ``weight`` (float): the task's loss weight: ``alpha`` for labels and ``1 - alpha`` for rationales in multi-task
  mode, 1.0 otherwise.
- ``example_id`` (int): the input row's index; the label and rationale examples of one input share it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tunekit.components.common import jsonl
from tunekit.components.common.errors import UserError
from tunekit.components.tuning import lora, trainers
from tunekit.components.tuning.lora import LocalTuningConfig, collate, featurize

#: Training modes: distilling step-by-step, label-only fine-tuning, chain-of-thought fine-tuning.
MULTITASK = "multitask"
STANDARD = "standard"
COT = "cot"
MODES = (MULTITASK, STANDARD, COT)

LABEL_TASK = "label"
RATIONALE_TASK = "rationale"
COT_TASK = "cot"

#: The reference code's task prefixes.
DEFAULT_LABEL_PREFIX = "predict: "
DEFAULT_RATIONALE_PREFIX = "explain: "
DEFAULT_ALPHA = 0.5
#: The limits users know from Vertex AI's (PaLM-era) distillation: longer inputs and outputs are truncated.
MAX_INPUT_TOKENS = 7_168
MAX_OUTPUT_TOKENS = 1_024
#: What a chain-of-thought target puts between the rationale and the answer (the teacher prompts' phrase).
ANSWER_PHRASE = "So the answer is"

#: Recommended distillation train steps per task (SPEC, distillation columns): (min, max).
DISTILLATION_STEPS: dict[str, tuple[int, int]] = {
    "classification": (200, 1000),
    "summarization": (1000, 1500),
    "extractive_qa": (200, 800),
    "generic": (200, 1000),
}

STUDENT_DATA_INFO = "tunekit_student_data.json"
TRAINING_LOG = "training_log.json"

_INPUT_KEYS = ("input_text", "input", "question", "text")


def default_train_steps(task: str) -> int:
    """The middle of the SPEC's recommended distillation step range for ``task`` (``generic`` for others)."""
    low, high = DISTILLATION_STEPS.get(task, DISTILLATION_STEPS["generic"])
    return (low + high) // 2


class TokenCounter(Protocol):
    """Counts and cuts text in a student's tokens."""

    def count(self, text: str) -> int:
        """Tokens in ``text``."""

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to its first ``max_tokens`` tokens."""


class CharTokens:
    """A model-free token estimate of about four characters a token (Gemini students, whose tokenizer is remote)."""

    chars_per_token = 4

    def count(self, text: str) -> int:
        """Estimated tokens in ``text``."""
        return math.ceil(len(text) / self.chars_per_token)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The first ``max_tokens`` estimated tokens of ``text``."""
        return text[: max_tokens * self.chars_per_token]


class HFTokens:
    """Exact counts with a Hugging Face tokenizer (open-model students).

    Args:
        tokenizer: The student's tokenizer.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count(self, text: str) -> int:
        """Tokens in ``text``, special tokens excluded."""
        return len(self._ids(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """The decoded first ``max_tokens`` tokens of ``text``."""
        ids = self._ids(text)
        return (
            text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)
        )


@dataclass
class StudentDataStats:
    """What :func:`build_student_examples` did with the rows.

    Attributes:
        inputs: Input rows read.
        used_inputs: Rows that produced at least one example.
        label_examples: Label (or ``cot``) examples written.
        rationale_examples: Rationale examples written (multi-task mode).
        gold_labels: Rows labelled with their gold label.
        teacher_labels: Rows labelled by the teacher.
        no_label: Rows skipped: no gold label and no usable teacher answer.
        rationale_dropped: Labelled rows without a usable rationale (label task only; skipped in ``cot`` mode).
        truncated_inputs: Inputs cut to ``max_input_tokens``.
        truncated_outputs: Targets cut to ``max_output_tokens``.
    """

    inputs: int = 0
    used_inputs: int = 0
    label_examples: int = 0
    rationale_examples: int = 0
    gold_labels: int = 0
    teacher_labels: int = 0
    no_label: int = 0
    rationale_dropped: int = 0
    truncated_inputs: int = 0
    truncated_outputs: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts as a dict."""
        return dataclasses.asdict(self)


def row_input(row: Mapping) -> str:
    """The input text of a row (``input_text``, else ``input``, ``question`` or ``text``).

    Raises:
        UserError: The row has none of them.
    """
    for key in _INPUT_KEYS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    raise UserError(f"a row needs an input ({' or '.join(_INPUT_KEYS)}); it has {sorted(row)}")


def row_label(row: Mapping) -> tuple[str | None, str]:
    """A row's training label and where it came from: ``gold``, ``teacher`` or ``none``.

    Gold labels (``output_text``, ``label``, ``answer``) win; then the teacher-labelling step's ``teacher_label``;
    then the answer of the teacher's chain of thought when its status is ``ok``. A row the labelling step labelled
    (``label_source: teacher``) carries the teacher's label in ``output_text``: it counts as the teacher's.
    """
    if row.get("label_source") == "teacher":
        value = row.get("teacher_label") or row.get("output_text")
        if value is not None and str(value).strip():
            return str(value).strip(), "teacher"
    for key in ("output_text", "label", "answer"):
        value = row.get(key)
        if value is not None and str(value).strip():
            return str(value).strip(), "gold"
    value = row.get("teacher_label")
    if value is not None and str(value).strip():
        return str(value).strip(), "teacher"
    answer = row.get("teacher_answer")
    if answer is not None and str(answer).strip() and row.get("status", "ok") == "ok":
        return str(answer).strip(), "teacher"
    return None, "none"


def _rationale(row: Mapping) -> str:
    if row.get("rationale_kept") is False:
        return ""
    return str(row.get("rationale") or "").strip()


def cot_target(rationale: str, label: str) -> str:
    """The ``cot`` target: the rationale, then the answer phrase and the label."""
    rationale = " ".join(rationale.split())
    if rationale and rationale[-1] not in ".!?":
        rationale += "."
    return f"{rationale} {ANSWER_PHRASE} {label}.".strip()


def build_student_examples(
    rows: Iterable[Mapping],
    *,
    mode: str = MULTITASK,
    alpha: float = DEFAULT_ALPHA,
    label_prefix: str = DEFAULT_LABEL_PREFIX,
    rationale_prefix: str = DEFAULT_RATIONALE_PREFIX,
    max_input_tokens: int = MAX_INPUT_TOKENS,
    max_output_tokens: int = MAX_OUTPUT_TOKENS,
    truncate: bool = True,
    tokens: TokenCounter | None = None,
) -> tuple[list[dict], StudentDataStats]:
    """Turns labelled rows with rationales into the student's training examples.

    Args:
        rows: Rows with the input columns of the module docstring.
        mode: ``multitask`` (distilling step-by-step), ``standard`` (label only) or ``cot`` (rationale, then answer).
        alpha: Weight of the label task in multi-task mode (the rationale task gets ``1 - alpha``).
        label_prefix: Prefix of the label task's inputs (multi-task mode); the serving prompt's prefix.
        rationale_prefix: Prefix of the rationale task's inputs (multi-task mode).
        max_input_tokens: Inputs longer than this (prefix included) are cut, or rejected without ``truncate``.
        max_output_tokens: Targets longer than this are cut, or rejected without ``truncate``.
        truncate: Cut over-long inputs and targets (counted) instead of failing.
        tokens: Counts tokens; by default :class:`CharTokens`.

    Returns:
        The examples (output columns of the module docstring) and the counts.

    Raises:
        UserError: A bad mode, alpha or prefix; a row without input; or, without ``truncate``, an over-long row.
    """
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}'; use one of {', '.join(MODES)}", field="mode")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}", field="alpha")
    if mode == MULTITASK and label_prefix == rationale_prefix:
        raise UserError("the label and rationale prefixes must differ: they tell the two tasks apart")
    tokens = tokens or CharTokens()
    stats = StudentDataStats()
    examples: list[dict] = []

    def fit(text: str, limit: int, kind: str, line: int) -> str:
        if tokens.count(text) <= limit:
            return text
        if not truncate:
            raise UserError(
                f"the {kind} has {tokens.count(text):,} tokens, over the limit of {limit:,}; shorten it or allow "
                "truncation (no_truncate: false)",
                line=line,
            )
        setattr(stats, f"truncated_{kind}s", getattr(stats, f"truncated_{kind}s") + 1)
        return tokens.truncate(text, limit)

    def add(index: int, task: str, prompt: str, target: str, weight: float) -> None:
        line = index + 1
        examples.append(
            {
                "prompt": fit(prompt, max_input_tokens, "input", line),
                "completion": fit(target, max_output_tokens, "output", line),
                "task": task,
                "weight": weight,
                "example_id": index,
            }
        )
        if task == RATIONALE_TASK:
            stats.rationale_examples += 1
        else:
            stats.label_examples += 1

    for index, row in enumerate(rows):
        stats.inputs += 1
        before = len(examples)
        try:
            text = row_input(row)
        except UserError as exc:
            raise UserError(exc.message, line=index + 1) from None
        label, source = row_label(row)
        if label is None:
            stats.no_label += 1
            continue
        stats.gold_labels += source == "gold"
        stats.teacher_labels += source == "teacher"
        rationale = _rationale(row)
        if not rationale:
            stats.rationale_dropped += 1
        if mode == MULTITASK:
            if alpha > 0:
                add(index, LABEL_TASK, label_prefix + text, label, alpha)
            if rationale and 1.0 - alpha > 0:
                add(index, RATIONALE_TASK, rationale_prefix + text, rationale, 1.0 - alpha)
        elif mode == STANDARD:
            add(index, LABEL_TASK, text, label, 1.0)
        elif rationale:  # cot: a target without its reasoning would teach the student to skip it
            target = cot_target(rationale, label)
            if tokens.count(target) > max_output_tokens and truncate:
                # Cut the reasoning, never the answer at its end.
                room = max(max_output_tokens - tokens.count(cot_target("", label)) - 1, 0)
                target = cot_target(tokens.truncate(rationale, room), label)
                stats.truncated_outputs += 1
            add(index, COT_TASK, text, target, 1.0)
        stats.used_inputs += len(examples) > before
    return examples, stats


def serving_prefix(mode: str, label_prefix: str = DEFAULT_LABEL_PREFIX) -> str:
    """What a student trained in ``mode`` is given before the input at prediction time."""
    return label_prefix if mode == MULTITASK else ""


# --- the open-model student trainer ------------------------------------------------------------------------------

LORA = "lora"
FULL = "full"


@dataclass
class DistillTuningConfig(LocalTuningConfig):
    """Hyperparameters of an open-model student: :class:`~.local.LocalTuningConfig`'s, plus the distillation ones.

    Attributes:
        finetuning: ``lora`` (adapters on a pretrained student) or ``full`` (every weight; for small students
            and students trained from scratch).
        alpha: Overrides the label weight of the data's ``weight`` column when set (0 to 1); None keeps it.
        max_target_length: Rationales are longer than labels, so the default is higher than SFT's.
    """

    finetuning: str = LORA
    alpha: float | None = None
    max_target_length: int = 256


def task_weights(rows: Sequence[Mapping], alpha: float | None = None) -> dict[str, float]:
    """The loss weight of each task in the training rows (``alpha`` overrides the label/rationale split).

    Raises:
        UserError: One task carries different weights, or a weight is negative.
    """
    weights: dict[str, float] = {}
    for row in rows:
        task = str(row.get("task") or LABEL_TASK)
        weight = float(row.get("weight", 1.0))
        if weight < 0:
            raise UserError(f"a loss weight cannot be negative ({weight})", field="weight")
        if weights.setdefault(task, weight) != weight:
            raise UserError(
                f"task '{task}' has several loss weights ({weights[task]} and {weight})", field="weight"
            )
    if alpha is not None:
        if not 0.0 <= alpha <= 1.0:
            raise UserError(f"alpha must be between 0 and 1, not {alpha}", field="alpha")
        if LABEL_TASK in weights:
            weights[LABEL_TASK] = alpha
        if RATIONALE_TASK in weights:
            weights[RATIONALE_TASK] = 1.0 - alpha
    return weights


def weighted_loss(losses: Mapping[str, Any], weights: Mapping[str, float]) -> Any:
    """``sum(w_t * L_t) / sum(w_t)`` over the tasks present in a batch.

    With both tasks present and weights ``alpha`` and ``1 - alpha`` this is exactly
    ``alpha * label_loss + (1 - alpha) * rationale_loss``; a batch that holds one task only (its inputs' rationales
    were dropped) trains that task at full strength rather than at a fraction of it.
    """
    present = [t for t in losses if weights.get(t, 0.0) > 0]
    total = sum(weights[t] for t in present)
    if not present or total <= 0:
        raise ValueError("no task with a positive weight in the batch")
    return sum(losses[t] * (weights[t] / total) for t in present)


def _task_columns(rows: Sequence[Mapping], features: Sequence[Any], tasks: Sequence[str]) -> list[dict[str, list]]:
    """One dataset row per input (``example_id``): each task's token ids and labels, empty where it has none.

    Grouping an input's examples keeps both tasks of the same inputs in one step, as the reference code does.
    """
    groups: dict[int, dict[str, list]] = {}
    for position, (row, feature) in enumerate(zip(rows, features, strict=True)):
        task = str(row.get("task") or LABEL_TASK)
        if task not in tasks:
            continue
        group = groups.setdefault(
            int(row.get("example_id", position)),
            {f"{t}_{part}": [] for t in tasks for part in ("input_ids", "labels")},
        )
        group[f"{task}_input_ids"], group[f"{task}_labels"] = feature.input_ids, feature.labels
    return list(groups.values())


class MultiTaskCollator:
    """Pads each task's examples of a batch apart: ``{task: {"input_ids", "attention_mask", "labels"}}``.

    Args:
        tasks: The tasks trained (positive weight).
        pad_id: The padding token.
    """

    def __init__(self, tasks: Sequence[str], pad_id: int):
        self.tasks = list(tasks)
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list]]) -> dict[str, dict[str, Any]]:
        """The batch of ``rows`` (dataset rows of :func:`_task_columns`)."""
        batch = {}
        for task in self.tasks:
            features = [
                lora._Features(row[f"{task}_input_ids"], row[f"{task}_labels"])
                for row in rows
                if row[f"{task}_input_ids"]
            ]
            if features:
                batch[task] = collate(features, self.pad_id, "cpu")
        return batch


def student_trainer_class() -> type:
    """``StepByStepTrainer``: transformers' ``Trainer`` with the weighted multi-task loss, nothing else changed.

    Each batch is :class:`MultiTaskCollator`'s: a forward pass per task, and the step's loss is
    :func:`weighted_loss` of the tasks' token-mean losses (TRL's pattern: a trainer subclass overrides
    ``compute_loss`` and keeps the rest: optimizer, schedule, accumulation, mixed precision, distributed data
    parallelism, checkpoints). A task's token mean is taken over the whole step: every accumulated micro-batch
    of every process, as ``Trainer`` does for one loss with ``num_items_in_batch``; so 2 processes of 4 inputs
    train exactly as 1 process of 8. The per-task losses of each logging window are logged as ``<task>_loss``
    (and ``eval_<task>_loss``), token-weighted.
    """
    import torch
    from transformers import Trainer

    class StepByStepTrainer(Trainer):
        def __init__(self, *args: Any, task_weights: Mapping[str, float], is_encoder_decoder: bool, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.task_weights = dict(task_weights)
            self.is_encoder_decoder = is_encoder_decoder
            self.tasks = sorted(t for t, w in self.task_weights.items() if w > 0)
            # compute_loss divides by the step's token counts (all micro-batches), so the trainer must not also
            # divide by the accumulation steps (Trainer.training_step).
            self.loss_is_scaled_for_ga = True
            self._windows = {m: torch.zeros(2, len(self.tasks), dtype=torch.float64) for m in ("train", "eval")}
            self.counted = torch.zeros(2, dtype=torch.float64)  # tokens and examples trained on

        def _targets(self, batch: Mapping[str, Any]) -> Any:
            labels = batch["labels"] if self.is_encoder_decoder else batch["labels"][:, 1:]  # causal: shifted
            return (labels != -100).sum()

        def _get_num_items_in_batch(self, batch_samples: list, device: Any) -> Any:
            """Target tokens of each task in the step's micro-batches, summed over the processes."""
            counts = torch.zeros(len(self.tasks), dtype=torch.float64)
            for batch in batch_samples:
                for task, inputs in batch.items():
                    counts[self.tasks.index(task)] += float(self._targets(inputs))
            counts = counts.to(device)
            if self.args.world_size > 1:
                counts = self.accelerator.reduce(counts, reduction="sum")
            return counts

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            losses, sums = {}, {}
            for task, batch in inputs.items():
                targets = self._targets(batch)
                mean = model(**batch).loss
                sums[task] = (mean * targets).detach(), targets
                if num_items_in_batch is None:  # evaluation: this batch's token mean
                    losses[task] = mean
                else:  # this micro-batch's share of the step's token mean (DDP then averages the processes)
                    total = num_items_in_batch[self.tasks.index(task)].clamp(min=1)
                    losses[task] = mean * targets / total * self.args.world_size
            loss = weighted_loss(losses, self.task_weights)
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                window = self._windows[mode]
                for task, (total, targets) in sums.items():
                    window[0, self.tasks.index(task)] += float(total)
                    window[1, self.tasks.index(task)] += float(targets)
                if mode == "train":
                    for batch in inputs.values():
                        tokens = batch["attention_mask"].sum()
                        if self.is_encoder_decoder:
                            tokens = tokens + (batch["labels"] != -100).sum()
                        self.counted[0] += float(tokens)
                        self.counted[1] += batch["input_ids"].shape[0]
            return (loss, None) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                loss = self.compute_loss(model, inputs)
            return loss.detach(), None, None

        def task_means(self, mode: str) -> dict[str, float]:
            """The window's token-mean loss per task over every process, and a new window."""
            window = self._windows[mode].clone()
            self._windows[mode].zero_()
            if self.args.world_size > 1:
                window = self.accelerator.reduce(window.to(self.args.device), reduction="sum").cpu()
            return {t: float(window[0, i] / window[1, i]) for i, t in enumerate(self.tasks) if window[1, i] > 0}

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                logs.update({f"{t}_loss": v for t, v in self.task_means("train").items()})
            elif "eval_loss" in logs:
                logs.update({f"eval_{t}_loss": v for t, v in self.task_means("eval").items()})
            super().log(logs, start_time)

    return StepByStepTrainer


def _task_losses(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    found = re.compile(rf"^{prefix}(.+)_loss$")
    return {
        m.group(1): v for k, v in entry.items() if (m := found.match(k)) and m.group(1) not in ("eval", "train")
    }


def tune_student(
    base_model: str,
    train_path: str,
    validation_path: str | None,
    output_dir: str,
    config: DistillTuningConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Trains an open seq2seq (T5-style) or causal student with the weighted multi-task loss.

    Each step draws ``batch_size`` inputs; every task an input has (label, rationale) is a separate forward pass,
    and the step's loss is :func:`weighted_loss` of the tasks' token-mean losses (:func:`student_trainer_class`).
    Label-only and CoT data have one task, so this is plain fine-tuning there and a run's budget is counted in
    inputs per step for every mode. A run that finds complete checkpoints of itself in ``output_dir`` resumes from
    the last one; under ``torchrun`` only the main process writes the outputs.

    Args:
        base_model: A local model directory (a pretrained checkpoint, or a tiny model from
            :func:`~tunekit.components.tuning.tiny.make_tiny_model`).
        train_path: Student examples (``prompt``, ``completion``, ``task``, ``weight``, ``example_id``).
        validation_path: Held-out student examples for a validation loss, or None.
        output_dir: Where the adapter (LoRA) or the full model, the tokenizer and ``training_log.json`` go.
        config: Hyperparameters.
        progress: Called as ``progress(step, total_steps, loss)`` after each optimizer step (``loss``: the last
            logging window's).

    Returns:
        A summary: ``train_loss``, ``task_losses`` (last logging window, per task), ``eval_loss``,
        ``eval_task_losses``, ``steps``, ``train_inputs``, ``train_examples``, ``task_weights``, ``wall_seconds``,
        ``tokens_per_second`` (input plus target tokens, padding excluded), ``examples_per_second``, ``device``,
        ``precision``, ``finetuning``, ``parameters``, ``trainable_parameters``, ``processes``, ``resumed_from``,
        ``output_dir``, ``adapter``.

    Raises:
        UserError: A missing directory, a bad setting or malformed data.
    """
    from datasets import Dataset

    from tunekit.components.model_clients.hf import resolve_device

    if config.finetuning not in (LORA, FULL):
        raise UserError(f"unknown finetuning '{config.finetuning}'; use 'lora' or 'full'", field="finetuning")
    if config.packing:
        raise UserError("packing is not available for the student: each task is a forward pass", field="packing")
    if config.keep_checkpoints:
        # Accepted by the shared trainer config, but only supervised tuning's evaluation selects among checkpoints.
        raise UserError(
            "keep_checkpoints is for supervised tuning's select_checkpoint; the student's checkpoints are not "
            "selected: remove it",
            field="keep_checkpoints",
        )
    if not os.path.isdir(base_model):
        raise UserError("student model directory not found; give a local model directory", path=base_model)
    if config.max_steps <= 0 and config.epochs <= 0:
        raise UserError("set max_steps or epochs to a positive number", field="max_steps")
    rows = jsonl.read_jsonl(train_path)
    if not rows:
        raise UserError("the student dataset is empty", path=train_path)
    validation_rows = jsonl.read_jsonl(validation_path) if validation_path else []
    weights = task_weights(rows, config.alpha)
    tasks = sorted(t for t, w in weights.items() if w > 0)
    if not tasks:
        raise UserError("every task has weight 0; nothing to train", field="alpha")

    device = resolve_device(config.device)
    dtype = lora.resolve_precision(config.precision, device)
    model, tokenizer, pad_id, is_encoder_decoder = lora.load_for_training(base_model, dtype, config.seed)
    if config.finetuning == LORA:
        model = lora.add_lora(model, config, is_encoder_decoder)
        if config.gradient_checkpointing:
            model.enable_input_require_grads()
    trainers.upcast_trainable(model)

    def dataset(source: Sequence[Mapping]) -> Any:
        features = featurize(source, tokenizer, is_encoder_decoder=is_encoder_decoder, config=config)
        return Dataset.from_list(_task_columns(source, features, tasks))

    train_dataset = dataset(rows)
    validation_dataset = dataset(validation_rows) if validation_rows else None
    if validation_dataset is not None and len(validation_dataset) == 0:
        validation_dataset = None
    args = trainers.training_arguments(
        config,
        output_dir,
        device=device,
        dtype=dtype,
        has_eval=validation_dataset is not None,
        remove_unused_columns=False,  # the columns are per task, not the model's arguments
    )
    trainer = trainers.quiet(
        student_trainer_class()(
            model=model,
            args=args,
            data_collator=MultiTaskCollator(tasks, pad_id),
            train_dataset=train_dataset,
            eval_dataset=validation_dataset,
            processing_class=tokenizer,
            callbacks=[step := trainers.step_callback(progress)],
            task_weights=weights,
            is_encoder_decoder=is_encoder_decoder,
        )
    )
    run = trainers.fingerprint("distillation-student", config, base_model, train_path)
    metrics = trainers.train(trainer, run)
    log, eval_log = trainers.split_log_history(trainer.state.log_history)
    eval_loss = trainers.final_eval_loss(trainer, eval_log)
    wall = metrics["train_runtime"]
    counted = trainer.counted.to(args.device)
    counted = (trainer.accelerator.reduce(counted, reduction="sum") if args.world_size > 1 else counted).cpu()
    for entry in log:
        entry["task_losses"] = _task_losses(entry)
    for entry in eval_log:
        entry["task_losses"] = _task_losses(entry, "eval_")

    main = trainer.is_world_process_zero()
    if main:
        os.makedirs(output_dir, exist_ok=True)
        to_save = trainer.model
        if config.finetuning == LORA and config.merge_adapter:
            to_save = to_save.merge_and_unload()
        to_save.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    summary = {
        "train_loss": log[-1]["loss"] if log else step.last_loss,
        "task_losses": log[-1]["task_losses"] if log else {},
        "eval_loss": eval_loss,
        "eval_task_losses": eval_log[-1]["task_losses"] if eval_log else {},
        "steps": trainer.state.global_step,
        "train_inputs": len(train_dataset),
        "train_examples": len(rows),
        "task_weights": weights,
        "wall_seconds": round(wall, 3),
        "tokens_per_second": round(float(counted[0]) / wall, 1) if wall > 0 else None,
        "examples_per_second": round(float(counted[1]) / wall, 3) if wall > 0 else None,
        "device": device,
        "precision": str(dtype).replace("torch.", "") if dtype is not None else "fp32",
        "finetuning": config.finetuning,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "is_encoder_decoder": is_encoder_decoder,
        "processes": trainers.world_size(),
        "resumed_from": metrics["resumed_from"],
        "output_dir": output_dir,
        "adapter": config.finetuning == LORA and not config.merge_adapter,
    }
    if main:
        trainers.write_training_log(
            output_dir,
            {
                "base_model": base_model,
                "trainer": type(trainer).__name__,
                "config": dataclasses.asdict(config),
                "log": log,
                "eval": eval_log,
                "summary": summary,
            },
        )
    trainers.clear_checkpoints(trainer)
    return summary

"""What every local (open-model) trainer shares: the LoRA hyperparameters, the data reader and the batching.

Supervised tuning (:mod:`.supervised.local`) and the distillation student (:mod:`.distillation.local`) both train
with these pieces: :class:`LocalTuningConfig` (LoRA rank, learning rate, steps, precision, ...),
:func:`read_prompt_completions` (``prompt``/``completion`` rows, or any supervised format rendered to them),
:func:`featurize` (the loss is on the completion only, which ends with ``eos``), :func:`collate`,
:func:`resolve_precision`, :func:`load_for_training` and :func:`add_lora`. The Hugging Face trainers they run on
are set up by :mod:`tunekit.components.tuning.trainers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.common.jsonl import iter_jsonl
from tunekit.components.data_validation.formats import load_examples, to_prompt_completion
from tunekit.components.model_clients.hf import encode_prompt, half_dtype

TRAINING_LOG = "training_log.json"

#: ``progress(step, total_steps, loss)`` is called after every optimizer step.
ProgressCallback = Callable[[int, int, float], None]


@dataclass
class LocalTuningConfig:
    """Hyperparameters of a local LoRA tuning run.

    Attributes:
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_r``).
        lora_dropout: Dropout on the LoRA branch.
        target_modules: Modules that get LoRA adapters: ``"all-linear"`` (every linear layer but the output
            head) or a list of module names (e.g. ``["q", "v"]`` for T5, ``["q_proj", "v_proj"]`` for Llama).
        modules_to_save: Modules trained fully and saved with the adapter (e.g. ``["lm_head"]``). Useful when
            the base model is randomly initialised (the tiny demo model), where a low-rank update of a random
            output head learns slowly; rarely needed for a pretrained model.
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_ratio: Fraction of the steps over which the learning rate rises linearly from 0; it then decays
            linearly to 0.
        max_steps: Optimizer steps; 0 means ``epochs`` passes over the training data.
        epochs: Passes over the training data when ``max_steps`` is 0.
        batch_size: Examples per forward pass (per process under ``torchrun``: the global batch is ``batch_size`` x
            processes x ``gradient_accumulation_steps``).
        gradient_accumulation_steps: Forward passes per optimizer step.
        max_input_length: The most prompt tokens; longer prompts lose their end (also at prediction time).
        max_target_length: The most completion tokens, end-of-sequence token included.
        max_grad_norm: Gradient-norm clipping threshold; 0 disables clipping.
        seed: Seeds LoRA initialisation, dropout and data order, so a run can be repeated.
        device: ``auto`` (GPU when visible), ``cpu`` or ``cuda``.
        precision: ``auto`` (bfloat16 on GPUs that support it, float16 on other GPUs, float32 on CPU),
            ``fp32``, ``bf16`` or ``fp16``. 16-bit loads the base weights in that dtype and trains the adapter
            in float32 under autocast.
        logging_steps: Optimizer steps per logged training loss.
        eval_steps: Optimizer steps between validation losses; 0 evaluates only at the end.
        eval_batch_size: Examples per forward pass when computing the validation loss.
        merge_adapter: Write a merged full model instead of the adapter.
        gradient_checkpointing: Recompute activations in the backward pass instead of keeping them: less memory
            (longer inputs or bigger batches fit on a GPU) for about 20-30% more compute.
        packing: Causal models only: pack several examples into each sequence of ``max_input_length +
            max_target_length`` tokens (TRL's best-fit packing; each example still attends only to itself), so
            fewer padding tokens are computed. A batch then holds ``batch_size`` packed sequences.
        save_steps: Optimizer steps between checkpoints in the step's output folder; a retried or re-run step
            resumes from the last complete one. 0 saves every tenth of the run. The checkpoints are deleted once
            the trained model is written.
        save_total_limit: The most checkpoints kept (older ones are deleted as new ones are written).
        keep_checkpoints: Keep the checkpoints after training (for the evaluation's checkpoint selection,
            ``select_checkpoint``); with ``save_steps`` 0 they are then saved at the eval interval (``eval_steps``)
            when there is one. Raise ``save_total_limit`` to compare more of them.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = None
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_steps: int = 0
    epochs: float = 3.0
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_input_length: int = 512
    max_target_length: int = 128
    max_grad_norm: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    logging_steps: int = 10
    eval_steps: int = 0
    eval_batch_size: int = 16
    merge_adapter: bool = False
    gradient_checkpointing: bool = False
    packing: bool = False
    save_steps: int = 0
    save_total_limit: int = 2
    keep_checkpoints: bool = False

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LocalTuningConfig:
        """Builds a config from a mapping (a YAML file, command-line overrides).

        Raises:
            UserError: A key is not a field of this config.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(
                f"unknown local tuning setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> LocalTuningConfig:
        """A config from :data:`PRESETS` with ``overrides`` applied.

        Raises:
            UserError: ``name`` is not a preset.
        """
        if name not in PRESETS:
            raise UserError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


#: Named settings for the tiny models of :mod:`tunekit.components.tuning.tiny` on the demo data
#: (``examples/data/support_tickets_*.jsonl``).
#:
#: - ``demo``: about 40 s of training on two CPU cores for the default tiny seq2seq model; its validation accuracy
#:   goes from 0.0 to about 0.9 (0.875 to 1.0 over seeds 0-2). The model is random, so the learning rate is far
#:   above what a pretrained model wants (1e-4 to 3e-4 there). For the tiny causal model add
#:   ``modules_to_save=["lm_head"]`` (about 45 s, accuracy 1.0): its random output head is small and untied, and
#:   LoRA alone, which leaves the head as it is, learns the right answers with logits too flat to lower the loss.
#: - ``quick_test``: a few seconds on the smallest tiny models; the loss goes down, nothing more. For tests of the
#:   mechanics.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "lora_r": 32,
        "lora_alpha": 32,
        "lora_dropout": 0.0,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.05,
        "max_steps": 400,
        "batch_size": 16,
        "max_input_length": 256,
        "max_target_length": 16,
        "logging_steps": 20,
    },
    "quick_test": {
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "max_steps": 6,
        "batch_size": 4,
        "max_input_length": 128,
        "max_target_length": 16,
        "logging_steps": 1,
        "device": "cpu",
    },
}


@dataclass
class _Features:
    """Token ids of one example, ready to batch.

    Seq2seq: ``input_ids`` is the encoder input and ``labels`` the decoder targets. Causal: both cover prompt +
    completion, with the prompt's labels set to -100.
    """

    input_ids: list[int]
    labels: list[int]
    truncated: bool = field(default=False, repr=False)


def read_prompt_completions(path: str) -> list[dict[str, str]]:
    """Reads a training or validation file as ``{"prompt", "completion"}`` rows.

    Input columns: ``prompt`` and ``completion`` (used as they are), or any supervised format of
    :func:`~tunekit.components.data_validation.formats.load_examples`.

    Raises:
        UserError: The file is unreadable or empty, or a row lacks a completion.
    """
    rows = []
    for line, obj in iter_jsonl(path):
        if "prompt" not in obj:
            break
        if not isinstance(obj.get("prompt"), str) or not isinstance(obj.get("completion"), str):
            raise UserError("'prompt' and 'completion' must both be strings", path=path, line=line)
        rows.append({"prompt": obj["prompt"], "completion": obj["completion"]})
    else:
        if not rows:
            raise UserError("the dataset is empty; it needs at least one example", path=path)
        return rows
    _, examples = load_examples(path)
    for example in examples:
        if example.target is None:
            raise UserError(
                "the example has no answer (final model turn) to train on", path=path, line=example.line
            )
    return [to_prompt_completion(example) for example in examples]


def featurize(
    rows: list[dict[str, str]], tokenizer: Any, *, is_encoder_decoder: bool, config: LocalTuningConfig
) -> list[_Features]:
    """Tokenises prompt/completion rows; the completion ends with ``eos`` so the model learns to stop."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    features = []
    for row in rows:
        prompt_ids, truncated = encode_prompt(
            tokenizer, row["prompt"], is_encoder_decoder=is_encoder_decoder, max_length=config.max_input_length
        )
        target = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        target = target[: max(config.max_target_length - len(eos), 0)] + eos
        if is_encoder_decoder:
            features.append(_Features(prompt_ids, target, truncated=truncated))
        else:
            features.append(_Features(prompt_ids + target, [-100] * len(prompt_ids) + target, truncated=truncated))
    return features


def collate(features: list[_Features], pad_id: int, device: str) -> dict[str, Any]:
    """Pads a batch on the right; padded label positions are -100 so they carry no loss."""
    import torch

    def pad(rows: list[list[int]], value: int) -> Any:
        width = max(len(r) for r in rows)
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], device=device)

    inputs = [f.input_ids for f in features]
    batch = {
        "input_ids": pad(inputs, pad_id),
        "attention_mask": pad([[1] * len(r) for r in inputs], 0),
        "labels": pad([f.labels for f in features], -100),
    }
    return batch


def resolve_precision(precision: str, device: str) -> Any:
    """The torch dtype for ``precision`` (auto, fp32, bf16, fp16) on ``device``; None means fp32."""
    import torch

    if precision == "auto":
        return half_dtype(device)
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise UserError(f"unknown precision '{precision}'; use auto, fp32, bf16 or fp16", field="precision")
    if dtypes[precision] is not None and not device.startswith("cuda"):
        raise UserError(f"precision '{precision}' needs a GPU; use fp32 or auto on CPU", field="precision")
    return dtypes[precision]


def local_options(
    options: dict | None,
    config_class: type,
    *,
    default_steps: int,
    train_steps: int = 0,
    learning_rate: float = 0.0,
    batch_size: int = 0,
    lora_rank: int = 0,
    **defaults: Any,
) -> dict[str, Any]:
    """A trainer's config fields from a pipeline's ``local_options`` and its top-level shortcuts.

    The shortcuts (``train_steps`` → ``max_steps``, ``learning_rate``, ``batch_size``, ``lora_rank`` →
    ``lora_r``) win when set (0 means unset); ``max_steps`` falls back to ``default_steps``; ``defaults`` fill
    fields neither sets. A dict pipeline parameter travels as a protobuf Struct, where every number is a float, so
    the integer fields of ``config_class`` get their ints back.
    """
    merged = dict(options or {})
    shortcuts = {"max_steps": train_steps, "learning_rate": learning_rate, "batch_size": batch_size}
    shortcuts["lora_r"] = lora_rank
    merged.update({key: value for key, value in shortcuts.items() if value})
    merged.setdefault("max_steps", default_steps)
    for key, value in defaults.items():
        merged.setdefault(key, value)
    kinds = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    return {
        key: int(value) if kinds.get(key) == "int" and isinstance(value, float) and value.is_integer() else value
        for key, value in merged.items()
    }


# --- the model to train (the trainers themselves: :mod:`tunekit.components.tuning.trainers`) ---------------------


def load_for_training(base_model: str, dtype: Any, seed: int) -> tuple[Any, Any, int, bool]:
    """Seeds torch and loads a local seq2seq or causal model and its tokenizer for training.

    Args:
        base_model: A local model directory.
        dtype: The dtype of the weights (None: float32), from :func:`resolve_precision`.
        seed: Seeds torch before the model (and any adapter) is built.

    Returns:
        ``(model, tokenizer, pad_id, is_encoder_decoder)``.

    Raises:
        UserError: The tokenizer has neither a pad nor an eos token.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    torch.manual_seed(seed)
    is_encoder_decoder = bool(AutoConfig.from_pretrained(base_model).is_encoder_decoder)
    auto_model = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    model = auto_model.from_pretrained(base_model, **({"dtype": dtype} if dtype is not None else {}))
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise UserError("the tokenizer has neither a pad nor an eos token", path=base_model)
    return model, tokenizer, pad_id, is_encoder_decoder


def add_lora(model: Any, config: LocalTuningConfig, is_encoder_decoder: bool) -> Any:
    """``model`` with LoRA adapters of ``config`` (PEFT), the only weights left trainable but ``modules_to_save``."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        modules_to_save=config.modules_to_save,
        task_type="SEQ_2_SEQ_LM" if is_encoder_decoder else "CAUSAL_LM",
    )
    return get_peft_model(model, lora)


#: The progress label of optimizer steps (reported by :class:`~tunekit.components.tuning.trainers.StepCallback`).
TRAINING_STEPS = "training steps"

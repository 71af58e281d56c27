"""Tiny, randomly initialised models built from a config, for the demo and the tests.

Nothing is downloaded: the model comes from a config and the tokenizer is ByT5's byte-level tokenizer, which
needs no vocabulary file. Both are written with ``save_pretrained``, so the directory loads with the same
``AutoConfig``/``AutoModel*``/``AutoTokenizer`` code as a real model directory (e.g. a downloaded
``google/flan-t5-base``).

The folder is written beside its target and renamed into place when complete
(:func:`~tunekit.components.common.state.replace_directory`): a kill while it is being written leaves no folder
at the target, so the next run builds it again instead of failing on a half-written one.
:func:`ensure_tiny_model` also rebuilds a half-written folder that an older version left (a 0-byte
``config.json``, truncated weights).
"""

from __future__ import annotations

import json
import os

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import replace_directory

SEQ2SEQ = "seq2seq"
CAUSAL = "causal"
KINDS = (SEQ2SEQ, CAUSAL)

#: Default sizes, small enough to train in about a minute on two CPU cores yet able to learn the demo task.
DEFAULT_SIZES = {
    SEQ2SEQ: {"d_model": 128, "d_kv": 32, "num_heads": 4, "d_ff": 256, "num_layers": 2, "num_decoder_layers": 2},
    CAUSAL: {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 1024,
    },
}


def make_tiny_model(output_dir: str, kind: str = SEQ2SEQ, seed: int = 0, **size: int) -> str:
    """Saves a tiny random model and its byte-level tokenizer to ``output_dir``.

    Args:
        output_dir: Where to write ``config.json``, the weights and the tokenizer files.
        kind: ``seq2seq`` (a T5 v1.1-style encoder-decoder) or ``causal`` (a Llama-style decoder).
        seed: Seeds the random initialisation, so the same call writes the same weights.
        **size: Config fields that override :data:`DEFAULT_SIZES` (``T5Config`` names for ``seq2seq``, e.g.
            ``d_model``, ``num_layers``; ``LlamaConfig`` names for ``causal``, e.g. ``hidden_size``).

    Returns:
        ``output_dir``.

    Raises:
        UserError: ``kind`` is not one of :data:`KINDS`.
    """
    import torch
    from transformers import (
        ByT5Tokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    if kind not in KINDS:
        raise UserError(f"unknown tiny model kind '{kind}'; use one of {', '.join(KINDS)}")
    tokenizer = ByT5Tokenizer()
    # ByT5 ids: pad 0, eos 1, unk 2, then 256 bytes and 125 sentinel tokens; it has no bos token.
    special = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    sizes = {**DEFAULT_SIZES[kind], **size}
    torch.manual_seed(seed)
    if kind == SEQ2SEQ:
        # T5 v1.1's gated-GELU feed-forward, without dropout so that the tiny model trains fast. The output
        # head stays tied to the input embedding with the original T5's output scaling: transformers 5 ties
        # T5's head whatever the config says, and without the scaling a random head starts with huge logits.
        config = T5Config(
            **special,
            **sizes,
            decoder_start_token_id=tokenizer.pad_token_id,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
        )
        model = T5ForConditionalGeneration(config)
    else:
        config = LlamaConfig(**special, **sizes, bos_token_id=None, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    _check_replaceable(output_dir)
    with replace_directory(output_dir) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return output_dir


def ensure_tiny_model(output_dir: str, kind: str = SEQ2SEQ) -> str:
    """``output_dir`` holding a complete tiny model of ``kind``: kept when it is one, else (re)built.

    Returns:
        ``output_dir``.

    Raises:
        UserError: ``kind`` is unknown, or ``output_dir`` holds files that are not a model's.
    """
    if not is_complete_model(output_dir):
        make_tiny_model(output_dir, kind=kind)
    return output_dir


def is_complete_model(model_dir: str) -> bool:
    """Whether ``model_dir`` holds a whole model as :func:`make_tiny_model` writes it.

    Checked: ``config.json`` and ``tokenizer_config.json`` are JSON objects (``config.json`` names its
    ``model_type``) and the weights' safetensors header is whole and covers the file (safetensors rejects a
    truncated file when it is opened).
    """
    for name in ("config.json", "tokenizer_config.json"):
        try:
            with open(os.path.join(model_dir, name), encoding="utf-8") as handle:
                content = json.load(handle)
        except (OSError, ValueError):
            return False
        if not isinstance(content, dict) or (name == "config.json" and "model_type" not in content):
            return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as weights:
            return bool(list(weights.keys()))
    except (OSError, SafetensorError):
        return False


def _check_replaceable(output_dir: str) -> None:
    """Refuses to replace a folder that holds something other than a (possibly half-written) model."""
    try:
        entries = os.listdir(output_dir)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UserError("is a file, not a folder; give a folder for the tiny model", path=output_dir) from None
    if entries and "config.json" not in entries:
        raise UserError(
            "holds files that are not a model's; give a new or empty folder for the tiny model", path=output_dir
        )

"""Tiny, randomly initialised models built from a config, for the demo and the tests.

Nothing is downloaded: the model comes from a config and the tokenizer is ByT5's byte-level tokenizer, which
needs no vocabulary file. Both are written with ``save_pretrained``, so the directory loads with the same
``AutoConfig``/``AutoModel*``/``AutoTokenizer`` code as a real model directory (e.g. a downloaded
``google/flan-t5-base``).
"""

from __future__ import annotations

import os

from tunekit.components.common.errors import UserError

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
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir

"""A model client for local (open) Hugging Face models: a base model, optionally with a LoRA adapter.

Prompts are rendered and tokenised by the same functions that the local trainers use at training time
(:func:`prompt_text`, then :func:`encode_prompt`, which applies the model's own chat template when its tokenizer
has one), so that a tuned model sees, at evaluation time and behind ``tunekit serve``, exactly the token ids it was
trained on, and stops at the ``eos`` token its completions ended with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import (
    EMPTY,
    OK,
    TRUNCATED,
    Generation,
    GenerationConfig,
    ModelClient,
    Prompt,
    Turn,
    render_prompt,
)

ADAPTER_CONFIG = "adapter_config.json"


def prompt_text(prompt: Prompt) -> str:
    """The plain text an open model sees for ``prompt``, with :func:`render_prompt`'s layout.

    A prompt with only ``text`` (no system, no history) is passed through unchanged, as text-pair training
    prompts are.
    """
    turns = [Turn(role, text) for role, text in prompt.history] + [Turn("user", prompt.text)]
    return render_prompt(prompt.system, turns)


def chat_template(tokenizer: Any) -> str | None:
    """The tokenizer's chat template, or None when it has none (then prompts are the bare rendered text)."""
    template = getattr(tokenizer, "chat_template", None)
    return template if isinstance(template, (str, dict)) and template else None


def _template_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as the one user turn of the model's chat template, ready for the model's answer."""
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, Mapping):  # a BatchEncoding where the tokenizer returns one
        ids = ids["input_ids"]
    return list(ids)


def encode_prompt(
    tokenizer: Any, text: str, *, is_encoder_decoder: bool, max_length: int
) -> tuple[list[int], bool]:
    """Token ids of a prompt: THE rendering of a prompt for an open model, at training and prediction time alike.

    Training (:func:`~tunekit.components.tuning.lora.featurize`: these ids, then the completion's and ``eos``),
    evaluation (:class:`HFLocalClient`) and ``tunekit serve`` (which generates with :class:`HFLocalClient`) all call
    it, so a tuned model sees at prediction time exactly the ids it was trained on.

    - A decoder-only model whose tokenizer has a chat template (``tokenizer.chat_template``) gets the prompt as
      the one user turn of that template with its generation prompt (``apply_chat_template(...,
      add_generation_prompt=True)``): the model's own special tokens and turn markers, and the template's ``bos``
      if it writes one. The completion follows directly and ends with the tokenizer's ``eos`` at training time,
      which is where generation stops.
    - Other decoder-only models get the bare text after the tokenizer's ``bos`` token, if it has one, and no
      ``eos``, because the completion follows it directly.
    - Encoder-decoder models get the tokenizer's own special tokens (T5 appends ``</s>``).

    Args:
        tokenizer: A Hugging Face tokenizer.
        text: The rendered prompt (:func:`prompt_text`).
        is_encoder_decoder: Whether the model is an encoder-decoder (seq2seq) model.
        max_length: The most prompt tokens kept; longer prompts lose the end of their text (a chat template's
            generation prompt is kept).

    Returns:
        The ids, and whether the prompt was truncated.
    """
    if is_encoder_decoder:
        full = tokenizer(text)["input_ids"]
        if len(full) <= max_length:
            return full, False
        return tokenizer(text, truncation=True, max_length=max_length)["input_ids"], True
    if chat_template(tokenizer) is not None:
        ids = _template_ids(tokenizer, text)
        if len(ids) <= max_length:
            return ids, False
        # The text loses its end, the template's markers around it stay (the model still answers).
        content = tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(len(content) - (len(ids) - max_length), 0)
        ids = _template_ids(tokenizer, tokenizer.decode(content[:keep]))
        return ids[:max_length], True
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    room = max(max_length - len(bos), 1)
    return bos + ids[:room], len(ids) > room


def _added_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a plain ``tokenizer(text)`` call puts before and after a text (a ``bos``, an ``eos``)."""
    probe = "a"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def prompt_string(tokenizer: Any, text: str, *, max_length: int = 1024) -> str:
    """:func:`encode_prompt`'s ids as a string a plain ``tokenizer(string)`` call turns back into exactly them.

    For a decoder-only model, the form to hand a library that tokenizes prompt *strings* itself (TRL's trainers on
    "standard", not "conversational", datasets call ``processing_class(text=prompt)`` with the tokenizer's own
    special tokens; the Vertex vLLM container tokenizes its ``prompt`` field the same way): the chat template
    already applied, and no ``bos`` written twice (a ``bos`` the tokenizer adds itself is left out of the string).

    Args:
        tokenizer: A Hugging Face tokenizer (a decoder-only model's).
        text: The rendered prompt (:func:`prompt_text`).
        max_length: As :func:`encode_prompt`'s (the local client's default ``max_input_length``).

    Raises:
        UserError: The tokenizer cannot give these ids back from any string (it appends special tokens to every
            text, or adds a ``bos`` the chat template does not write).
    """
    ids, truncated = encode_prompt(tokenizer, text, is_encoder_decoder=False, max_length=max_length)
    lead, trail = _added_around(tokenizer)
    if trail or ids[: len(lead)] != lead:
        raise UserError(
            "this tokenizer adds special tokens the prompt's rendering does not have "
            f"(before: {lead}, after: {trail}); give a tokenizer that adds none after a text"
        )
    body = ids[len(lead) :]
    candidates = []
    if not truncated:
        if chat_template(tokenizer) is not None:
            candidates.append(
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
                )
            )
        else:
            bos = tokenizer.bos_token if tokenizer.bos_token_id is not None else None
            candidates.append((bos or "") + text)
    candidates.append(tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False))
    for candidate in candidates:
        if lead:
            head = tokenizer.decode(lead, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            candidate = candidate[len(head) :] if candidate.startswith(head) else candidate
        if list(tokenizer(candidate)["input_ids"]) == ids:
            return candidate
    raise UserError(
        "the prompt's tokens cannot be written as text this tokenizer reads back the same; "
        "use a tokenizer whose special tokens are written as their own strings"
    )


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible and ``cpu`` otherwise; other values are kept.

    Raises:
        UserError: ``cuda`` was asked for but no GPU is visible, or the value is unknown.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for but no GPU is visible; use 'cpu' or 'auto'", field="device")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device '{device}'; use 'auto', 'cpu' or 'cuda'", field="device")
    return device


def half_dtype(device: str) -> Any:
    """The 16-bit dtype for ``device``: bfloat16 where the GPU supports it, else float16; None on CPU."""
    import torch

    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def read_adapter_base(adapter_dir: str) -> str | None:
    """The base model path recorded in a PEFT adapter directory, or None when it is not an adapter."""
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("base_model_name_or_path")


def load_model_and_tokenizer(
    model_dir: str, adapter_dir: str | None = None, *, device: str = "cpu", dtype: Any = None
) -> tuple[Any, Any]:
    """Loads a base model (seq2seq or causal, chosen from its config) and its tokenizer, plus an adapter.

    Args:
        model_dir: A local model directory (``config.json``, weights, tokenizer files).
        adapter_dir: A PEFT adapter directory trained on ``model_dir``; its LoRA weights are merged in. Its
            tokenizer, when it has one, is used.
        device: A torch device.
        dtype: The weights' dtype; None keeps the checkpoint's default (float32 for the tiny models).

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        UserError: A directory is missing.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    for name, path in (("model_dir", model_dir), ("adapter_dir", adapter_dir)):
        if path is not None and not os.path.isdir(path):
            raise UserError("directory not found; give a local model directory", path=path, field=name)
    config = AutoConfig.from_pretrained(model_dir)
    auto_model = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = auto_model.from_pretrained(model_dir, **kwargs)
    tokenizer_dir = model_dir
    if adapter_dir is not None:
        from peft import PeftModel

        # Merging makes generation as fast as the base model's; modules_to_save copies replace the originals.
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        if os.path.isfile(os.path.join(adapter_dir, "tokenizer_config.json")):
            tokenizer_dir = adapter_dir
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model.to(device).eval()
    return model, tokenizer


class HFLocalClient(ModelClient):
    """Generates with a local Hugging Face model, optionally with a LoRA adapter, in batches.

    Args:
        model_dir: The base model directory, or a merged tuned model, or an adapter directory whose
            ``adapter_config.json`` names a base model that exists here.
        adapter_dir: A PEFT adapter trained on ``model_dir`` (the output of ``tune_local``), or None.
        batch_size: Prompts per ``generate`` call.
        device: ``auto`` (GPU when visible), ``cpu`` or ``cuda``.
        max_input_length: The most prompt tokens; longer prompts lose their end, as at training time.
    """

    backend = "hf"

    def __init__(
        self,
        model_dir: str,
        adapter_dir: str | None = None,
        batch_size: int = 16,
        device: str = "auto",
        max_input_length: int = 1024,
    ):
        if adapter_dir is None and (base := read_adapter_base(model_dir)) is not None:
            model_dir, adapter_dir = base, model_dir
        self.device = resolve_device(device)
        self.batch_size = max(1, batch_size)
        self.max_input_length = max_input_length
        self.model, self.tokenizer = load_model_and_tokenizer(
            model_dir, adapter_dir, device=self.device, dtype=half_dtype(self.device)
        )
        self.is_encoder_decoder = bool(self.model.config.is_encoder_decoder)
        self.eos_id = self.tokenizer.eos_token_id
        # Decoder-only tokenizers often lack a pad token; eos pads instead (padding is masked anyway).
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Generates one :class:`Generation` per prompt, in order.

        Greedy when ``config.temperature`` is 0, sampling otherwise. The text is decoded without special tokens
        and stripped of surrounding whitespace; its status is ``truncated`` when generation stopped at
        ``max_output_tokens`` before an end-of-sequence token, and ``empty`` when no text remains.
        """
        config = config or GenerationConfig()
        encoded = [
            encode_prompt(
                self.tokenizer,
                prompt_text(p),
                is_encoder_decoder=self.is_encoder_decoder,
                max_length=self.max_input_length,
            )[0]
            for p in prompts
        ]
        # Batches of similar lengths waste less compute on padding; results go back to their prompt's slot.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[Generation | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for index, generation in zip(
                chunk, self._generate_batch([encoded[i] for i in chunk], config), strict=True
            ):
                results[index] = generation
        return [r for r in results if r is not None]

    def _generate_batch(self, batch: list[list[int]], config: GenerationConfig) -> list[Generation]:
        import torch

        width = max(len(ids) for ids in batch)
        input_ids, mask = [], []
        for ids in batch:
            pad = [self.pad_id] * (width - len(ids))
            # A decoder-only model continues from the last position, so its prompts are padded on the left.
            input_ids.append(ids + pad if self.is_encoder_decoder else pad + ids)
            ones, zeros = [1] * len(ids), [0] * len(pad)
            mask.append(ones + zeros if self.is_encoder_decoder else zeros + ones)
        sample = config.temperature > 0
        count = max(1, config.candidate_count) if sample else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": config.max_output_tokens,
            "do_sample": sample,
            "num_beams": 1,
            "num_return_sequences": count,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_id,
        }
        if sample:
            kwargs.update(temperature=config.temperature, top_p=config.top_p, top_k=0)
            if config.seed is not None:
                torch.manual_seed(config.seed)
        else:
            # Real checkpoints ship sampling defaults in generation_config.json; greedy must not inherit them.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=torch.tensor(input_ids, device=self.device),
                attention_mask=torch.tensor(mask, device=self.device),
                **kwargs,
            )
        # Seq2seq output starts with the decoder start token; causal output starts with the prompt.
        new_tokens = output[:, 1:] if self.is_encoder_decoder else output[:, width:]
        generations = []
        for row, ids in enumerate(batch):
            texts, statuses, lengths = [], [], []
            for candidate in range(count):
                text, status, length = self._decode(new_tokens[row * count + candidate].tolist(), config)
                texts.append(text)
                statuses.append(status)
                lengths.append(length)
            error = ""
            if statuses[0] == TRUNCATED:
                error = f"stopped at max_output_tokens={config.max_output_tokens}"
            elif statuses[0] == EMPTY:
                error = "the model generated no text"
            generations.append(
                Generation(
                    text=texts[0],
                    status=statuses[0],
                    error=error,
                    input_tokens=len(ids),
                    output_tokens=sum(lengths),
                    candidates=texts if config.candidate_count > 1 else [],
                )
            )
            if config.candidate_count > 1 and not sample:
                # Greedy decoding has one answer; every requested candidate is that answer.
                generations[-1].candidates = texts * config.candidate_count
        return generations

    def _decode(self, tokens: list[int], config: GenerationConfig) -> tuple[str, str, int]:
        """Text, status and generated-token count of one output row (padding after ``eos`` dropped)."""
        if self.eos_id is not None and self.eos_id in tokens:
            tokens = tokens[: tokens.index(self.eos_id)]
            finished = True
        else:
            finished = False
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if not finished and len(tokens) >= config.max_output_tokens:
            status = TRUNCATED
        elif not text:
            status = EMPTY
        else:
            status = OK
        # eos counts as a generated token, as backends bill it.
        return text, status, len(tokens) + (1 if finished else 0)

    def close(self) -> None:
        """Drops the model so its memory can be freed."""
        self.model = None
        self.tokenizer = None
